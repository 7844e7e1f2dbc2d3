"""The watchdog's persisted state, so a restarted watchdog resumes instead of resetting.

Without it a watchdog restarted during an outage would believe the primary is healthy, switch
the agents back to a dead proxy, forget it already restarted the proxy five times this hour
(and restart it again, past the cap), and forget a manual pin. So the state that decides what
to do next is saved on every change and loaded at start-up:

- the active target and since when;
- per health route (``litellm``, a provider name) a generic :class:`RouteState`: the circuit
  state name (the state machine owns its values), counters in a row, when it opened or last
  changed, the last error class and message;
- the proxy restart history (for the hourly restart cap and the crash-loop state);
- the times of recent switches (for ``max_switches_per_hour``);
- a manual pin to a target, with an optional expiry;
- whether degraded mode (runbook 7.1) is on.

Loading never fails: a missing file is a first start; a file that is not valid JSON or not a
valid state (a disk fault, a hand edit, a future version) is moved aside as
``<name>.corrupt-<UTC timestamp>`` for a human to look at, and the watchdog starts fresh with a
warning, which is safer than refusing to watch at all. Saving is atomic
(:func:`monitoring.atomic.atomic_write`) and skipped when nothing changed, so saving on every
tick costs a read, not a disk flush.

Every timestamp is an aware UTC datetime; naive ones are taken to be UTC.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError

from monitoring.atomic import StrPath, atomic_write, ensure_dir

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
STATE_FILE_MODE: Final = 0o600
#: How long switch and restart history is kept: the caps look back one hour; a day is kept
#: for ``provider-fallback status`` and post-mortems, and bounds the file.
HISTORY_KEEP: Final = timedelta(hours=24)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    # Unknown keys are ignored, so a watchdog rolled back one version still resumes from
    # the state a newer one saved, instead of setting it aside as corrupt.
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class RouteState(_Model):
    """The circuit of one health route; ``state`` values belong to the state machine."""

    state: str = "healthy"
    consecutive_failures: int = Field(default=0, ge=0)
    consecutive_successes: int = Field(default=0, ge=0)
    opened_at: UtcDateTime | None = None
    last_change: UtcDateTime | None = None
    last_failure: UtcDateTime | None = None
    last_success: UtcDateTime | None = None
    last_error_class: str | None = None
    last_message: str | None = None
    diagnosis: str | None = None
    last_latency_s: float | None = None
    #: The evidence path this route failed on since it was last healthy: ``completion`` when
    #: requests through the proxy (real traffic or a canary) failed, so that only a completion
    #: can close it again; None when only the reachability probes failed.
    failed_path: str | None = None


class Pin(_Model):
    """A manual pin (``provider-fallback pin <target>``): automatic switching is suspended."""

    target: str
    set_at: UtcDateTime
    expires_at: UtcDateTime | None = None
    reason: str | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or _utc(now) < self.expires_at


class RestartRecord(_Model):
    """One restart of the proxy by the watchdog."""

    at: UtcDateTime
    reason: str | None = None


class WatchdogState(_Model):
    """Everything the watchdog must remember across its own restarts."""

    version: int = STATE_VERSION
    active_target: str | None = None
    active_since: UtcDateTime | None = None
    degraded: bool = False
    routes: dict[str, RouteState] = Field(default_factory=dict)
    restarts: list[RestartRecord] = Field(default_factory=list)
    switches: list[UtcDateTime] = Field(default_factory=list)
    pin: Pin | None = None
    #: For a component whose state has no field here yet; promote it to a field once settled.
    extra: dict[str, JsonValue] = Field(default_factory=dict)

    def route(self, name: str) -> RouteState:
        """The state of ``name``, created healthy on first use."""
        if name not in self.routes:
            self.routes[name] = RouteState()
        return self.routes[name]

    def set_active(self, target: str, now: datetime, *, counted: bool = True) -> None:
        """Record that the agents now point at ``target``, counting it for the switch cap.

        The first target of a fresh state is a start, not a switch, and is not counted; nor is
        a switch a person asked for (``counted=False``): the cap guards against flapping, and
        a manual test of failover must not use up the switches a real outage needs.
        """
        if target != self.active_target:
            if self.active_target is not None and counted:
                self.switches.append(_utc(now))
            self.active_target = target
            self.active_since = _utc(now)

    def switches_since(self, since: datetime) -> int:
        since = _utc(since)
        return sum(1 for t in self.switches if t >= since)

    def record_restart(self, now: datetime, reason: str | None = None) -> None:
        self.restarts.append(RestartRecord(at=_utc(now), reason=reason))

    def restarts_since(self, since: datetime) -> int:
        since = _utc(since)
        return sum(1 for r in self.restarts if r.at >= since)

    def set_pin(
        self, target: str, now: datetime, ttl: timedelta | None = None, reason: str | None = None
    ) -> Pin:
        now = _utc(now)
        self.pin = Pin(target=target, set_at=now, expires_at=now + ttl if ttl else None,
                       reason=reason)
        return self.pin

    def active_pin(self, now: datetime) -> Pin | None:
        """The pin if it has not expired (an expired one is left for :meth:`prune`)."""
        return self.pin if self.pin is not None and self.pin.active(now) else None

    def clamp_future(self, now: datetime) -> None:
        """Bring timestamps later than ``now`` back to ``now`` (the clock jumped back).

        Otherwise a route could not half-open or meet its dwell, and restart or switch records
        "in the future" would keep the caps shut, until the clock caught up again.
        """
        now = _utc(now)
        for route in self.routes.values():
            for name in ("opened_at", "last_change", "last_failure", "last_success"):
                value = getattr(route, name)
                if value is not None and value > now:
                    setattr(route, name, now)
        self.switches = [min(t, now) for t in self.switches]
        for record in self.restarts:
            if record.at > now:
                record.at = now
        if self.active_since is not None and self.active_since > now:
            self.active_since = now

    def prune(self, now: datetime, keep: timedelta = HISTORY_KEEP) -> None:
        """Drop history older than ``keep`` and an expired pin, so the file stays small."""
        cutoff = _utc(now) - keep
        self.switches = [t for t in self.switches if t >= cutoff]
        self.restarts = [r for r in self.restarts if r.at >= cutoff]
        if self.pin is not None and not self.pin.active(now):
            self.pin = None


@dataclass(frozen=True)
class LoadedState:
    """A loaded state and, when it had to start fresh, why (for the log and the event log)."""

    state: WatchdogState
    warning: str | None = None
    set_aside: Path | None = None


def _set_aside(path: Path, now: datetime) -> Path | None:
    base = f"{path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}"
    for n in range(100):
        aside = path.with_name(base if n == 0 else f"{base}-{n}")
        if aside.exists():
            continue
        try:
            os.replace(path, aside)
        except OSError as exc:
            log.error("cannot set the corrupt state file %s aside: %s", path, exc)
            return None
        return aside
    return None


def load_state(path: StrPath, *, clock: Callable[[], datetime] = utc_now) -> LoadedState:
    """The saved state, or a fresh one with a warning; never raises for the file's content."""
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        message = f"no state file at {target}: starting fresh"
        log.info("%s", message)
        return LoadedState(WatchdogState(), warning=message)
    except OSError as exc:
        message = f"cannot read the state file {target} ({exc.strerror or exc}): starting fresh"
        log.warning("%s", message)
        return LoadedState(WatchdogState(), warning=message)
    try:
        data = json.loads(raw.decode("utf-8"))
        state = WatchdogState.model_validate(data)
    except (UnicodeDecodeError, ValueError, ValidationError) as exc:
        problem = (f"{exc.error_count()} invalid field(s)" if isinstance(exc, ValidationError)
                   else "not valid JSON")
        aside = _set_aside(target, _utc(clock()))
        where = f"moved to {aside.name}" if aside else "could not be moved aside"
        message = f"the state file {target} is corrupt ({problem}), {where}: starting fresh"
        log.warning("%s", message)
        return LoadedState(WatchdogState(), warning=message, set_aside=aside)
    return LoadedState(state)


def dump_state(state: WatchdogState) -> bytes:
    """Stable bytes for ``state`` (fields in model order, 2-space indent, final newline)."""
    return (state.model_dump_json(indent=2) + "\n").encode("utf-8")


def save_state(state: WatchdogState, path: StrPath) -> bool:
    """Write ``state`` atomically, user-only; False (and no write) when the file already says so.

    Raises OSError when it cannot write: the caller decides whether that is worth an ERROR.
    """
    target = Path(path)
    data = dump_state(state)
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        ensure_dir(target.parent)
    atomic_write(target, data, new_mode=STATE_FILE_MODE)
    return True
