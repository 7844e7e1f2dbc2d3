"""The circuit's hysteresis: opens on N failures, closes on M successes after the dwell."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.host_config import Hysteresis
from monitoring.watchdog.circuit import Circuit, Outcome, circuit_of, observe
from monitoring.watchdog.state import RouteState

POLICY = Hysteresis(failure_threshold=2, success_threshold=3, min_dwell=30, half_open_after=5,
                    max_switches_per_hour=6)
T0 = datetime(2026, 2, 13, 3, 0, tzinfo=UTC)
OK = Outcome(ok=True, latency_s=0.01)
FAIL = Outcome(ok=False, error_class="network", message="connection refused")


def run(route: RouteState, outcomes: list[Outcome], start: datetime = T0,
        step: float = 1.0) -> list[Circuit]:
    seen = []
    for i, outcome in enumerate(outcomes):
        observe(route, outcome, start + timedelta(seconds=i * step), POLICY)
        seen.append(circuit_of(route))
    return seen


def test_one_failure_is_suspect_two_open() -> None:
    route = RouteState()
    assert run(route, [FAIL, FAIL]) == [Circuit.SUSPECT, Circuit.FAILED]
    assert route.opened_at == T0 + timedelta(seconds=1)
    assert route.last_error_class == "network"


def test_a_success_clears_suspicion() -> None:
    route = RouteState()
    assert run(route, [FAIL, OK, FAIL, OK]) == [Circuit.SUSPECT, Circuit.HEALTHY] * 2


def test_successes_before_half_open_after_do_not_count() -> None:
    route = RouteState()
    states = run(route, [FAIL, FAIL] + [OK] * 5)  # OKs at 2..6 s, last failure at 1 s
    assert states[2:] == [Circuit.FAILED] * 4 + [Circuit.HALF_OPEN]


def test_restore_waits_for_the_dwell_then_needs_m_successes() -> None:
    route = RouteState()
    run(route, [FAIL, FAIL])                 # opened at T0+1
    states = run(route, [OK] * 40, start=T0 + timedelta(seconds=2))
    first_healthy = states.index(Circuit.HEALTHY)
    closed_at = 2 + first_healthy
    assert closed_at >= 1 + POLICY.min_dwell
    assert closed_at == 1 + POLICY.min_dwell  # no later than needed either
    assert route.opened_at is None
    assert route.last_error_class is None


def test_a_long_outage_restores_within_half_open_after_plus_m_probes() -> None:
    route = RouteState()
    run(route, [FAIL] * 60)                  # an outage longer than the dwell
    states = run(route, [OK] * 20, start=T0 + timedelta(seconds=60))
    recovered = states.index(Circuit.HEALTHY) + 1  # probes after the fault cleared
    assert recovered <= POLICY.half_open_after + POLICY.success_threshold


def test_a_failure_in_half_open_reopens_without_resetting_the_dwell() -> None:
    route = RouteState()
    run(route, [FAIL, FAIL])
    opened = route.opened_at
    run(route, [OK] * 6 + [FAIL], start=T0 + timedelta(seconds=2))
    assert circuit_of(route) is Circuit.FAILED
    assert route.opened_at == opened


def test_an_unknown_stored_state_counts_as_healthy() -> None:
    assert circuit_of(RouteState(state="closed")) is Circuit.HEALTHY


@given(st.lists(st.booleans(), min_size=1, max_size=400))
def test_never_closes_before_the_dwell_nor_opens_without_n_failures(flips: list[bool]) -> None:
    route = RouteState()
    failures_in_row = 0
    for i, ok in enumerate(flips):
        now = T0 + timedelta(seconds=i)
        before = circuit_of(route)
        opened_at = route.opened_at
        change = observe(route, OK if ok else FAIL, now, POLICY)
        failures_in_row = 0 if ok else failures_in_row + 1
        if change and change.opened:
            assert failures_in_row >= POLICY.failure_threshold
        if change and change.closed:
            assert opened_at is not None
            assert now - opened_at >= timedelta(seconds=POLICY.min_dwell)
        assert before is not None


@pytest.mark.parametrize("seed", range(5))
def test_thirty_percent_random_failures_open_rarely(seed: int) -> None:
    rng = random.Random(seed)
    route = RouteState()
    opens = 0
    for i in range(120):  # two minutes at the default 1 s probe interval
        change = observe(route, FAIL if rng.random() < 0.3 else OK,
                         T0 + timedelta(seconds=i), POLICY)
        opens += bool(change and change.opened)
    # The dwell alone bounds it: at most one open per min_dwell, plus the first.
    assert opens <= 120 // POLICY.min_dwell + 1
