"""The outage report (7.3) and the recurring-issues table (5.3) for a recorded event sequence.

The sequence is written through the real EventLog with an injected clock; the output must
match the expected files in tests/monitoring/watchdog/expected/ byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.events import EventKind, EventLog, read_events
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from monitoring.watchdog.report import ReportInputs, history, history_table, outage_report
from monitoring.watchdog.state import WatchdogState
from tasks.render import watchdog

EXPECTED = Path(__file__).parent / "expected"
T0 = datetime(2026, 2, 13, 3, 0, tzinfo=UTC)


@pytest.fixture
def config(stack: Stack) -> WatchdogConfig:
    return watchdog.build(stack, layout(stack, "linux"))


def recorded(tmp_path: Path) -> list:  # type: ignore[type-arg]
    """Two days: a proxy crash restored by a restart, a rate limit, an emergency, the budget."""
    clock = [T0]
    log = EventLog(tmp_path / "events.log", tmp_path / "events.jsonl", clock=lambda: clock[0])

    def at(minutes: float) -> None:
        clock[0] = T0 + timedelta(minutes=minutes)

    at(0)
    log.fallback("litellm", "kilo-code", "connection refused", error_class="network",
                 from_label="LiteLLM", to_label="Kilo Code")
    at(1)
    log.restart("connection refused", attempt=1, limit=6, error_class="network")
    at(2)
    log.recovery(restarts=1)
    at(15)
    log.restored("kilo-code", "litellm", to_label="LiteLLM")
    at(60 * 24)
    log.fallback("litellm", "kilo-code", "rate limited at groq", error_class="rate",
                 from_label="LiteLLM", to_label="Kilo Code")
    at(60 * 24 + 5)
    log.fallback("litellm", "kilo-code", "connection refused", error_class="network",
                 from_label="LiteLLM", to_label="Kilo Code")
    at(60 * 24 + 6)
    log.emergency("kilo-code", error_class="server")
    at(60 * 24 + 20)
    log.record(EventKind.RESTORED, "Providers recovered, leaving degraded mode", to="kilo-code")
    at(60 * 24 + 30)
    log.kill_switch(True, 20.41, 20.0)
    return read_events(tmp_path / "events.jsonl")


def test_history_matches_the_expected_table(tmp_path: Path, config: WatchdogConfig) -> None:
    text = history_table(history(recorded(tmp_path), config))
    assert text == (EXPECTED / "history.md").read_text()


def test_report_matches_the_expected_file(tmp_path: Path, config: WatchdogConfig) -> None:
    events = recorded(tmp_path)
    state = WatchdogState(active_target="kilo-code", degraded=False)
    proxy = state.route("litellm")
    proxy.state, proxy.last_error_class = "failed", "network"
    proxy.last_message = "connection refused (127.0.0.1:4000)"
    groq = state.route("groq")
    groq.state, groq.last_error_class, groq.last_message = "failed", "rate", "HTTP 429"
    text = outage_report(ReportInputs(config, state, events, T0 + timedelta(days=1, hours=1),
                                      kill_switch_active=True))
    assert text == (EXPECTED / "report.md").read_text()


def test_a_quiet_period_reports_medium_with_generic_steps(tmp_path: Path,
                                                          config: WatchdogConfig) -> None:
    state = WatchdogState(active_target="litellm")
    text = outage_report(ReportInputs(config, state, [], T0))
    assert "**Severity**: Medium" in text
    assert "**Affected Providers**: none" in text
    assert "- [ ] Development workflow affected" in text
    assert "1. Run `provider-fallback check`" in text
