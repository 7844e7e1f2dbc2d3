"""The circuit of one health route: healthy -> suspect -> failed -> half-open -> healthy.

Pure: it takes a probe outcome and the time, and updates a :class:`RouteState`; the caller
decides what a state change means (fall back, restore, restart). The hysteresis is what keeps
an intermittent fault from making the agents flap:

- ``failure_threshold`` failures in a row open the route (healthy/suspect -> failed);
- a failed route ignores successes until ``half_open_after`` has passed since its last
  failure, then counts them (half-open); any failure sends it back to failed;
- ``success_threshold`` successes in a row close it again, but never before ``min_dwell``
  has passed since it opened (the least time a fallback stays active).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from monitoring.host_config import Hysteresis
from monitoring.watchdog.state import RouteState


class Circuit(IntEnum):
    """Circuit states; the values are what the ``provider_circuit_state`` gauge exports."""

    HEALTHY = 0
    SUSPECT = 1
    FAILED = 2
    HALF_OPEN = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def usable(self) -> bool:
        """Whether traffic may go this way: a suspect route is still used (not yet proven bad)."""
        return self in (Circuit.HEALTHY, Circuit.SUSPECT)


def circuit_of(route: RouteState) -> Circuit:
    """The circuit a stored route is in (an unknown name from an older file counts healthy)."""
    try:
        return Circuit[route.state.upper().replace("-", "_")]
    except KeyError:
        return Circuit.HEALTHY


@dataclass(frozen=True)
class Outcome:
    """One probe verdict for a route."""

    ok: bool
    error_class: str | None = None
    message: str | None = None
    diagnosis: str | None = None
    latency_s: float | None = None


@dataclass(frozen=True)
class Change:
    """A state change caused by :func:`observe` (None when the state stayed the same)."""

    before: Circuit
    after: Circuit

    @property
    def opened(self) -> bool:
        return self.after is Circuit.FAILED and self.before.usable

    @property
    def closed(self) -> bool:
        return self.after is Circuit.HEALTHY and not self.before.usable


def observe(route: RouteState, outcome: Outcome, now: datetime,
            policy: Hysteresis) -> Change | None:
    """Apply one outcome to ``route`` (in place); return the state change, if any."""
    before = circuit_of(route)
    after = before
    if outcome.latency_s is not None:
        route.last_latency_s = outcome.latency_s
    if outcome.ok:
        route.last_success = now
        route.consecutive_failures = 0
        if before is Circuit.SUSPECT:
            after = Circuit.HEALTHY
        elif before in (Circuit.FAILED, Circuit.HALF_OPEN):
            quiet = route.last_failure is None or (
                now - route.last_failure >= timedelta(seconds=policy.half_open_after))
            if quiet:
                route.consecutive_successes += 1
                after = Circuit.HALF_OPEN
                dwelt = route.opened_at is None or (
                    now - route.opened_at >= timedelta(seconds=policy.min_dwell))
                if route.consecutive_successes >= policy.success_threshold and dwelt:
                    after = Circuit.HEALTHY
    else:
        route.last_failure = now
        route.consecutive_successes = 0
        route.consecutive_failures += 1
        route.last_error_class = outcome.error_class
        route.last_message = outcome.message
        if outcome.diagnosis is not None:  # else keep the one made when the route opened
            route.diagnosis = outcome.diagnosis
        if before in (Circuit.HEALTHY, Circuit.SUSPECT):
            opened = route.consecutive_failures >= policy.failure_threshold
            after = Circuit.FAILED if opened else Circuit.SUSPECT
        else:
            after = Circuit.FAILED
    if after is before:
        return None
    route.state = after.label
    route.last_change = now
    if after is Circuit.FAILED and before.usable:
        route.opened_at = now
    if after is Circuit.HEALTHY:
        route.opened_at = None
        route.consecutive_successes = 0
        route.last_error_class = None
        route.diagnosis = None
        route.failed_path = None
    return Change(before, after)
