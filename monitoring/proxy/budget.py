"""Budget status (runbook 9.1): the month's spend against the monthly budget.

The runbook's CostMonitor sums every ``$`` amount in the cost log forever; here the window is
the calendar month (UTC, the time zone of every log of the bundle), so the budget resets on
the 1st. Status levels are the runbook's: OK below ``warning``, WARNING, CRITICAL, EXCEEDED at
``budget.levels_percent`` (75 / 90 / 100 %) of ``budget.monthly_usd``. The daily threshold is
``budget.daily_warning_usd`` or the runbook's monthly budget / 30.

The month-end projection is the burn rate so far (spend / elapsed part of the month) times the
month's length; before a whole day has passed the elapsed time counts as one day, so the
first requests of a month do not project an absurd figure.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from monitoring.host_config import BudgetSpec
from monitoring.proxy.cost_log import CostRecord, month_of

DAY = 86400.0


class Level(StrEnum):
    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    EXCEEDED = "EXCEEDED"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


def level_of(percent: float, spec: BudgetSpec) -> Level:
    """The runbook's ``_get_status`` with the stack's levels."""
    if percent >= spec.exceeded_percent:
        return Level.EXCEEDED
    if percent >= spec.critical_percent:
        return Level.CRITICAL
    if percent >= spec.warning_percent:
        return Level.WARNING
    return Level.OK


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def month_days(now: datetime) -> int:
    now = now.astimezone(UTC)
    return calendar.monthrange(now.year, now.month)[1]


def project(spent: float, now: datetime) -> float:
    """Month-end spend at this month's burn rate (see the module docstring)."""
    elapsed = max((now.astimezone(UTC) - month_start(now)).total_seconds(), DAY)
    return spent * month_days(now) * DAY / elapsed


@dataclass(frozen=True)
class BudgetStatus:
    """Everything ``provider-fallback budget`` shows and the metrics export."""

    month: str
    now: datetime
    spent: float
    limit: float
    level: Level
    daily_threshold: float
    spent_today: float
    projected: float
    requests: int
    stale_answers: int
    by_provider: dict[str, float] = field(default_factory=dict)
    by_model: dict[str, float] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        return self.limit - self.spent

    @property
    def percent_used(self) -> float:
        return self.spent / self.limit * 100

    @property
    def used_ratio(self) -> float:
        return self.spent / self.limit

    @property
    def daily_warning(self) -> bool:
        """Today's spend is over the daily threshold (runbook: $20 / 30 days = $0.67)."""
        return self.spent_today > self.daily_threshold

    @property
    def projected_overspend(self) -> bool:
        return self.projected > self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month, "status": str(self.level),
            "total_spent": round(self.spent, 8), "budget": self.limit,
            "remaining": round(self.remaining, 8),
            "percent_used": round(self.percent_used, 4),
            "daily_threshold": self.daily_threshold, "spent_today": round(self.spent_today, 8),
            "daily_warning": self.daily_warning, "projected_month_end": round(self.projected, 8),
            "projected_overspend": self.projected_overspend, "requests": self.requests,
            "stale_answers": self.stale_answers,
            "by_provider": {k: round(v, 8) for k, v in sorted(self.by_provider.items())},
            "by_model": {k: round(v, 8) for k, v in sorted(self.by_model.items())},
        }


def budget_status(records: Iterable[CostRecord], spec: BudgetSpec, now: datetime) -> BudgetStatus:
    """The status of the calendar month of ``now`` from every record of the cost log."""
    now = now.astimezone(UTC)
    month = month_of(now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spent = today = 0.0
    requests = stale = 0
    by_provider: dict[str, float] = {}
    by_model: dict[str, float] = {}
    for record in records:
        if record.month != month or record.ts > now + timedelta(seconds=1):
            continue
        requests += 1
        stale += record.stale
        spent += record.cost_usd
        if record.ts >= day_start:
            today += record.cost_usd
        by_provider[record.provider] = by_provider.get(record.provider, 0.0) + record.cost_usd
        by_model[record.served_by] = by_model.get(record.served_by, 0.0) + record.cost_usd
    percent = spent / spec.monthly_usd * 100
    return BudgetStatus(month=month, now=now, spent=spent, limit=spec.monthly_usd,
                        level=level_of(percent, spec), daily_threshold=spec.daily_warning_usd,
                        spent_today=today, projected=project(spent, now), requests=requests,
                        stale_answers=stale, by_provider=by_provider, by_model=by_model)
