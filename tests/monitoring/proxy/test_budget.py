"""Budget status (9.1), kill-switch decisions (9.3) and the cost-aware choice (9.2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.host_config import WatchdogConfig
from monitoring.proxy.budget import Level, budget_status, project
from monitoring.proxy.choice import NoProviderError, cost_order, cost_table, select_provider
from monitoring.proxy.cost_log import CostRecord
from monitoring.proxy.kill_switch import KillState, KillSwitch, decide
from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from tasks.render import watchdog

NOW = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # half of November has passed


@pytest.fixture
def config(stack: Stack, tmp_path: Path) -> WatchdogConfig:
    base = watchdog.build(stack, layout(stack, "linux"))
    paths = base.paths.model_copy(update={
        "state_dir": str(tmp_path / "state"), "log_dir": str(tmp_path / "log"),
        "event_log": str(tmp_path / "log" / "events.log"),
        "event_jsonl": str(tmp_path / "log" / "events.jsonl"),
        "cost_log": str(tmp_path / "log" / "costs.log"),
        "alert_log": str(tmp_path / "log" / "alerts.log"),
        "provider_config": str(tmp_path / "home" / "provider-config.json")})
    return base.model_copy(update={"paths": paths})


def spend(usd: float, when: datetime = NOW, provider: str = "openai") -> CostRecord:
    return CostRecord(ts=when, model="gpt-4", served_by="gpt-4", provider=provider,
                      tokens_in=1, tokens_out=1, cost_usd=usd)


@pytest.mark.parametrize(("spent", "level"), [
    (14.99, Level.OK), (15.0, Level.WARNING), (17.99, Level.WARNING), (18.0, Level.CRITICAL),
    (19.99, Level.CRITICAL), (20.0, Level.EXCEEDED), (25.0, Level.EXCEEDED)])
def test_levels_are_the_runbooks(config: WatchdogConfig, spent: float, level: Level) -> None:
    assert budget_status([spend(spent)], config.budget, NOW).level is level


def test_the_window_is_the_calendar_month(config: WatchdogConfig) -> None:
    records = [spend(19.0, NOW - timedelta(days=20)), spend(2.0), spend(1.0, NOW.replace(day=1))]
    status = budget_status(records, config.budget, NOW)
    assert status.month == "2026-11"
    assert status.spent == 3.0
    assert status.level is Level.OK
    december = budget_status(records, config.budget, datetime(2026, 12, 1, 0, 1, tzinfo=UTC))
    assert december.spent == 0.0
    assert december.month == "2026-12"


def test_daily_threshold_projection_and_breakdown(config: WatchdogConfig) -> None:
    records = [spend(0.5, NOW - timedelta(days=3), "google"), spend(0.7), spend(0.1)]
    status = budget_status(records, config.budget, NOW + timedelta(hours=12))
    assert status.daily_threshold == 0.67  # the runbook's $20 / 30
    assert status.spent_today == pytest.approx(0.8)
    assert status.daily_warning
    assert status.by_provider == pytest.approx({"google": 0.5, "openai": 0.8})
    # 1.30 in 15.5 of 30 days
    assert status.projected == pytest.approx(1.3 * 30 / 15.5)
    assert project(1.0, NOW.replace(day=1, hour=1)) == pytest.approx(30.0)  # at least a day
    data = status.to_json()
    assert data["status"] == "OK"
    assert data["projected_overspend"] is False


def test_decide_activates_once_and_only_a_new_month_releases() -> None:
    state, what = decide(KillState(), "2026-11", 19.0, False, NOW)
    assert (state.active, what) == (False, None)
    state, what = decide(state, "2026-11", 20.5, True, NOW)
    assert (state.active, what) == (True, "activated")
    state, what = decide(state, "2026-11", 21.0, True, NOW)
    assert (state.active, what) == (True, None)
    assert decide(state, "2026-11", 0.0, False, NOW)[0].active, "no release within the month"
    later = KillState(active=False, month="2026-12")
    assert decide(later, "2026-11", 25.0, True, NOW) == (later, None), "a clock behind waits"
    state, what = decide(state, "2026-12", 0.0, False, NOW)
    assert (state.active, state.month, what) == (False, "2026-12", "deactivated")


def test_reset_needs_a_new_month_to_arm_again(config: WatchdogConfig) -> None:
    kill = KillSwitch(config)
    assert kill.update(20.5, True, NOW) == "activated"
    path = Path(config.paths.provider_config)
    path.write_text(json.dumps({**json.loads(path.read_text()), "theme": "dark"}))
    assert kill.reset(20.5, NOW)
    assert kill.update(22.0, True, NOW) is None
    assert not kill.state().active
    data = json.loads(path.read_text())
    assert data["theme"] == "dark", "user keys are preserved"
    assert data["released_by_hand"]
    assert not data["kill_switch_active"]
    alerts = Path(config.paths.alert_log).read_text().splitlines()
    assert [a.split("] ")[1][:25] for a in alerts] == ["KILL-SWITCH: ACTIVATED - ",
                                                      "KILL-SWITCH: DEACTIVATED "]
    nxt = datetime(2026, 12, 3, tzinfo=UTC)
    assert kill.update(21.0, True, nxt) == "activated", "armed again in the next month"


def test_select_is_the_runbooks_choice_and_budget_aware(config: WatchdogConfig) -> None:
    table = cost_table(config)
    prefs = config.budget.task_preferences
    assert select_provider("coding", table, 10, preferences=prefs) == "kilo-code"
    assert select_provider("implementation", table, 10, preferences=prefs) == "kilo-code"
    assert select_provider("research", table, 10, preferences=prefs) == "groq-70b"
    assert select_provider("analysis", table, 0, preferences=prefs) == "groq-70b"
    paid = {n: c for n, c in table.items() if not c.is_free}
    assert select_provider("coding", paid, 1.0, preferences=prefs) == "gemini-pro"
    with pytest.raises(NoProviderError, match="No providers available within budget"):
        select_provider("coding", paid, 0.0, preferences=prefs)
    assert cost_order(["gpt-4", "gemini-pro", "groq-8b"], table) == [
        "groq-8b", "gemini-pro", "gpt-4"]
