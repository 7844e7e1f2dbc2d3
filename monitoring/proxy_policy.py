"""What the proxy's hooks decide, without LiteLLM: spend, kill switch, degraded answers.

:mod:`monitoring.litellm_hooks` adapts LiteLLM's callback API to this class, which is plain
Python so it is tested without a proxy. One instance lives in the proxy process; it reads the
watchdog's rendered config (``PROVIDER_FALLBACK_CONFIG``, which render puts in the LiteLLM
config's ``environment_variables``), so the proxy and the watchdog share one set of paths,
prices, budget and allow-list.

- :meth:`record` (success callback): one cost-log line per request, the month's running total,
  and the kill switch decided right after the request that crossed the budget; a good answer
  is kept for degraded mode.
- :meth:`substitute` (pre-call hook): while the kill switch is on, a paid model name is served
  by a free one of the allow-list (its own fallback chain's first free model, else the first
  free model of the allow-list), and :meth:`allowed_deployments` keeps the router from ever
  reaching a paid deployment, fallbacks included.
- :meth:`degraded_answer` (the ``degraded-cache`` model): the stale answer or None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.cost_log import DEGRADED_MODEL, CostLedger, CostRecord, append_record, month_of
from monitoring.degraded_cache import CachedAnswer, DegradedCache, request_key
from monitoring.events import EventLog
from monitoring.kill_switch import KillSwitch
from monitoring.select import cost_order, cost_table
from monitoring.watchdog_config import WatchdogConfig

log = logging.getLogger(__name__)

CONFIG_ENV: Final = "PROVIDER_FALLBACK_CONFIG"
DEFAULT_CONFIG: Final = "/etc/provider-fallback/watchdog.json"
#: Response headers of a stale answer (runbook 7.1's degraded mode).
STALE_HEADER: Final = "x-provider-fallback-stale"
STALE_AGE_HEADER: Final = "x-provider-fallback-stale-age"
KILL_SWITCH_HEADER: Final = "x-provider-fallback-kill-switch"
ALL_DOWN_MESSAGE: Final = ("All providers are down (every model of the fallback chain failed) "
                           "and no cached answer to this request is available: degraded mode, "
                           "try again later")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class KillSwitchBlockedError(Exception):
    """A paid model was asked for while the kill switch is on and no free model can serve."""


@dataclass(frozen=True)
class Served:
    """What the success callback learnt about one request."""

    model: str  # what the client asked for
    routed: str  # the model group the router started from (a kill-switch substitute)
    served_by: str  # the model group that answered (another one after a fallback)
    provider: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


def _model_name(deployment: Any, default: str) -> str:
    """The model group a router deployment belongs to (its ``model_name``)."""
    name = deployment.get("model_name") if isinstance(deployment, dict) else None
    return name if isinstance(name, str) else default


class ProxyPolicy:
    """The decisions of the proxy's hooks for one host."""

    def __init__(self, config: WatchdogConfig, *, clock: Clock = utc_now,
                 home: str | None = None) -> None:
        self.config = config
        self.clock = clock
        self.table = cost_table(config)
        self.paid = {name for name, m in config.models.items() if not m.is_free}
        self.free = set(config.models) - self.paid
        events = EventLog.from_config(config, clock=clock)
        self.kill = KillSwitch(config, home=home, events=events)
        degraded = config.degraded
        self.cache = (DegradedCache(degraded.cache_dir, degraded.ttl_s)
                      if degraded is not None and degraded.enabled else None)
        self.degraded_model = degraded.model if degraded is not None else DEGRADED_MODEL
        self.ledger = CostLedger(config.paths.cost_log)
        self._month: str | None = None
        self._month_spend = 0.0
        self._seen = 0

    @classmethod
    def from_env(cls) -> ProxyPolicy | None:
        """The policy from ``$PROVIDER_FALLBACK_CONFIG``; None (hooks inert) without one."""
        path = os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)
        if not Path(path).is_file():
            log.warning("provider-fallback: no watchdog config at %s: spend is not recorded "
                        "and the kill switch is not enforced by this proxy", path)
            return None
        return cls(WatchdogConfig.load(path))

    # -- spend

    def month_spend(self, month: str) -> float:
        """This month's spend from the cost log, reading only the lines added since the last
        call (the whole file again after a rotation or a new month)."""
        new = self.ledger.refresh()
        records = self.ledger.records
        if self._month != month or self._seen != len(records) - len(new):
            # Only this month's records are kept: a long-running proxy stays small.
            self.ledger.records = [r for r in records if r.month == month]
            self._month = month
            self._month_spend = sum(r.cost_usd for r in self.ledger.records)
        else:
            self._month_spend += sum(r.cost_usd for r in new if r.month == month)
        self._seen = len(self.ledger.records)
        return self._month_spend

    def record(self, served: Served, *, stale: bool = False) -> CostRecord:
        """Append the request to the cost log and decide the kill switch."""
        now = self.clock()
        provider = ("degraded-cache" if stale else
                    self.config.models[served.served_by].provider
                    if served.served_by in self.config.models else served.provider)
        record = CostRecord(ts=now, model=served.model, served_by=served.served_by,
                            provider=provider, tokens_in=served.tokens_in,
                            tokens_out=served.tokens_out,
                            cost_usd=0.0 if stale else max(served.cost_usd, 0.0),
                            fallback=served.served_by != served.routed, stale=stale)
        month = month_of(now)
        append_record(self.config.paths.cost_log, record)
        spend = self.month_spend(month)
        if record.cost_usd > 0 or self.kill.state().month != month:
            self.kill.update(spend, spend >= self.config.budget.exceeded_usd, now)
        return record

    # -- kill switch

    def kill_switch_active(self) -> bool:
        return self.kill.state().active_in(month_of(self.clock()))

    def substitute(self, model: str) -> str | None:
        """The free model serving ``model`` while the kill switch is on; None when no change.

        Raises :class:`KillSwitchBlockedError` when ``model`` is paid and nothing free can
        serve it.
        """
        # An allow-list, not a deny-list: while the switch is on, anything that is not a free
        # alias (a deployment name such as "openai/gpt-4", a deployment id, a wildcard) is
        # served by a free model, so no spelling of a paid model reaches its upstream.
        if (model in self.free or model == self.degraded_model
                or not self.kill_switch_active()):
            return None
        allow = self.config.budget.free_allow_list
        chain = self.config.fallbacks.get(model, [])
        free_models = [n for n in allow if n in self.free]
        candidates = [n for n in chain if n in free_models] + cost_order(free_models, self.table)
        if not candidates:
            raise KillSwitchBlockedError(
                f"budget kill switch active: {model} is a paid model and no free model of "
                "budget.free_allow_list is served by this proxy")
        return candidates[0]

    def allowed_deployments(self, deployments: list[Any], requested: str) -> list[Any]:
        """``deployments`` without the paid ones while the kill switch is on (fallbacks
        included), each judged by its own ``model_name``, never by the name requested. The
        switch's file is read once per routing decision, and only when a paid one is there."""
        paid = [d for d in deployments if _model_name(d, requested) in self.paid]
        if not paid or not self.kill_switch_active():
            return deployments
        return [d for d in deployments if _model_name(d, requested) not in self.paid]

    # -- degraded mode

    def remember(self, model: str, messages: Any, extra: dict[str, Any],
                 response: dict[str, Any], served_by: str) -> None:
        if self.cache is not None and served_by != self.degraded_model:
            self.cache.store(request_key(model, messages, extra), response, model=model,
                             served_by=served_by, now=self.clock())

    def degraded_answer(self, model: str, messages: Any,
                        extra: dict[str, Any]) -> CachedAnswer | None:
        if self.cache is None:
            return None
        return self.cache.lookup(request_key(model, messages, extra), self.clock())
