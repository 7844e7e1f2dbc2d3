"""The budget kill switch (runbook 9.3), persisted in the runbook's provider config file.

The file (``budget.provider_config``, ``~/.kilocode/provider-config.json`` by default) keeps the
runbook's schema::

    {"budget_limit": 20.0, "current_spend": 20.41, "kill_switch_active": true,
     "allowed_providers": ["kilo-code", "groq-70b", "groq-8b", "openrouter-free"],
     "month": "2026-11", "activated_at": "2026-11-26T10:00:00Z", "released_by_hand": false}

``month`` (the calendar month the switch belongs to), ``activated_at`` and ``released_by_hand``
are the bundle's additions; every other key a user keeps in the file is preserved, and the file
is written atomically (:func:`monitoring.atomic.atomic_write`) and only when it changes.

Two processes decide with the same function, :func:`decide`, under one lock file in the state
directory: the proxy's success callback, right after the request that crossed the budget (so
not one more paid request gets through), and the watchdog every tick (the month rollover, a
kill switch that must survive restarts, agent files). Whoever makes a transition writes its
``KILL-SWITCH`` line, once: to the cost alert log (``budget.alert_log``), to the event log and,
on Windows, as event 1004.

Rules of :func:`decide`:

- The switch activates when the month's spend reaches the EXCEEDED level (100 % by default).
- It stays active for the rest of that month: only the month rolling over or
  ``provider-fallback budget reset --yes`` (which also keeps it off for the rest of the month:
  ``released_by_hand``) turns it off.
- A file written for a LATER month than the caller's clock is left alone: the caller's clock
  is behind (in tests, the watchdog's clock is moved forward while the proxy's is not).

While it is active the proxy serves paid model names from the free allow-list and never lets a
request reach a paid deployment (:mod:`monitoring.proxy.litellm_hooks`), and the watchdog switches
the agent files to free targets only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from monitoring.atomic import (
    FileStamp,
    StrPath,
    atomic_write,
    ensure_dir,
    expand_user,
    locked,
    stamp,
)
from monitoring.events import EventKind, EventLog, append_line, kill_switch_message
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.cost_log import format_ts, month_of

log = logging.getLogger(__name__)

LOCK_FILE: Final = "kill-switch.lock"
PROVIDER_CONFIG_MODE: Final = 0o600

Transition = Literal["activated", "deactivated", "reset"]


@dataclass(frozen=True)
class KillState:
    """The kill-switch part of the provider config file."""

    active: bool = False
    month: str | None = None
    current_spend: float = 0.0
    activated_at: str | None = None
    released_by_hand: bool = False

    @classmethod
    def of(cls, data: dict[str, Any]) -> KillState:
        month = data.get("month")
        spend = data.get("current_spend")
        activated = data.get("activated_at")
        return cls(active=data.get("kill_switch_active") is True,
                   month=month if isinstance(month, str) else None,
                   current_spend=float(spend) if isinstance(spend, int | float) else 0.0,
                   activated_at=activated if isinstance(activated, str) else None,
                   released_by_hand=data.get("released_by_hand") is True)

    def active_in(self, month: str) -> bool:
        """Active for a caller whose clock says ``month`` (a later file month counts too)."""
        return self.active and (self.month is None or self.month >= month)


def decide(state: KillState, month: str, spend: float, exceeded: bool,
           now: datetime) -> tuple[KillState, Transition | None]:
    """The next state and the transition, if any (see the module docstring)."""
    if state.month is not None and state.month > month:
        return state, None
    if state.month != month:  # a new budget month (or the first decision ever)
        active = exceeded
        new = KillState(active=active, month=month, current_spend=spend,
                        activated_at=format_ts(now) if active else None)
        if active and not state.active:
            return new, "activated"
        if state.active and not active:
            return new, "deactivated"
        return new, None
    if not state.active and exceeded and not state.released_by_hand:
        return KillState(active=True, month=month, current_spend=spend,
                         activated_at=format_ts(now)), "activated"
    return KillState(active=state.active, month=month, current_spend=spend,
                     activated_at=state.activated_at,
                     released_by_hand=state.released_by_hand), None


class KillSwitch:
    """Reads, decides and writes the kill switch of one host (proxy or watchdog side)."""

    def __init__(self, config: WatchdogConfig, *, home: StrPath | None = None,
                 events: EventLog | None = None) -> None:
        self.config = config
        self.path = expand_user(config.paths.provider_config, home)
        self.lock_path = Path(config.paths.state_dir) / LOCK_FILE
        self.events = events if events is not None else EventLog.from_config(config)
        self._cache: tuple[FileStamp, KillState] | None = None

    # -- the file

    def _read_raw(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read the provider config %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def state(self) -> KillState:
        """The state in the file, re-read only when the file changed (cheap per request)."""
        seen = stamp(self.path)
        if self._cache is not None and self._cache[0] == seen:
            return self._cache[1]
        state = KillState.of(self._read_raw())
        self._cache = (seen, state)
        return state

    def allowed(self, active: bool) -> list[str]:
        if active:
            return list(self.config.budget.free_allow_list)
        names = [t.name for t in self.config.targets] + list(self.config.models)
        return list(dict.fromkeys(names))

    def _write(self, raw: dict[str, Any], state: KillState) -> None:
        data = dict(raw)
        data.update({
            "budget_limit": self.config.budget.monthly_usd,
            "current_spend": round(state.current_spend, 8),
            "kill_switch_active": state.active,
            "allowed_providers": self.allowed(state.active),
            "month": state.month,
            "activated_at": state.activated_at,
            "released_by_hand": state.released_by_hand,
        })
        if data == raw:
            return
        ensure_dir(self.path.parent)
        atomic_write(self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"),
                     new_mode=PROVIDER_CONFIG_MODE)

    # -- decisions

    def update(self, spend: float, exceeded: bool, now: datetime) -> Transition | None:
        """Decide with this month's ``spend``; write the file and log a transition."""
        month = month_of(now)
        with locked(self.lock_path):
            raw = self._read_raw()
            old = KillState.of(raw)
            new, transition = decide(old, month, spend, exceeded, now)
            if new != old or not raw:
                self._write(raw, new)
        if transition is not None:
            self._log(transition, new.active, spend, month)
        return transition

    def reset(self, spend: float, now: datetime) -> bool:
        """``budget reset``: off, and kept off for the rest of this month. False if it was off."""
        month = month_of(now)
        with locked(self.lock_path):
            raw = self._read_raw()
            old = KillState.of(raw)
            was_active = old.active_in(month)
            if was_active:
                self._write(raw, KillState(active=False, month=month, current_spend=spend,
                                           released_by_hand=True))
        if was_active:
            self._log("reset", False, spend, month)
        return was_active

    def _log(self, transition: Transition, active: bool, spend: float, month: str) -> None:
        budget = self.config.budget.monthly_usd
        if transition == "reset":
            money = f"${spend:.2f} of ${budget:.2f} this month"
            event = self.events.record(
                EventKind.KILL_SWITCH,
                f"DEACTIVATED - Reset by hand ({money}), all providers allowed until the end "
                f"of {month}", reason="budget")
        else:
            event = self.events.kill_switch(active, spend, budget,
                                            details={"month": month, "spend_usd": spend})
        try:
            append_line(self.config.paths.alert_log, event.line())
        except OSError as exc:
            log.error("cannot append to %s: %s", self.config.paths.alert_log, exc)
        if active:
            log.warning("%s", kill_switch_message(True, spend, budget))
