"""The watchdog's persisted state: it survives a restart; a corrupt file is set aside."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitoring import atomic
from monitoring.watchdog import state
from monitoring.watchdog.state import (
    LoadedState,
    RouteState,
    WatchdogState,
    dump_state,
    load_state,
    save_state,
)

T0 = datetime(2026, 2, 13, 3, 0, 0, tzinfo=UTC)


def _busy_state() -> WatchdogState:
    s = WatchdogState()
    s.set_active("litellm", T0)
    s.set_active("kilo-code", T0 + timedelta(seconds=40))
    route = s.route("litellm")
    route.state = "open"
    route.consecutive_failures = 3
    route.opened_at = T0 + timedelta(seconds=39)
    route.last_change = T0 + timedelta(seconds=39)
    route.last_error_class = "network"
    route.last_message = "connection refused"
    s.route("groq").consecutive_successes = 7
    s.record_restart(T0 + timedelta(seconds=41), "network")
    s.set_pin("kilo-code", T0, ttl=timedelta(hours=2), reason="maintenance")
    s.degraded = False
    s.extra["cost"] = {"month": "2026-02", "spend": 1.25}
    return s


def test_state_survives_a_save_and_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.json"
    saved = _busy_state()
    assert save_state(saved, path)
    loaded = load_state(path)
    assert loaded == LoadedState(saved)
    s = loaded.state
    assert s.active_target == "kilo-code"
    assert s.route("litellm").state == "open"
    assert s.route("litellm").opened_at == T0 + timedelta(seconds=39)
    assert s.restarts_since(T0) == 1
    assert s.active_pin(T0 + timedelta(hours=1)) is not None
    assert s.extra["cost"] == {"month": "2026-02", "spend": 1.25}


def test_saved_file_is_private_and_readable_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(_busy_state(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["routes"]["litellm"]["opened_at"] == "2026-02-13T03:00:39Z"
    assert data["version"] == state.STATE_VERSION


def test_saving_an_unchanged_state_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    s = _busy_state()
    assert save_state(s, path)
    before = path.stat()
    assert not save_state(s, path)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    s.route("litellm").consecutive_failures += 1
    assert save_state(s, path)
    assert load_state(path).state.route("litellm").consecutive_failures == 4


def test_save_uses_the_one_shared_atomic_helper() -> None:
    assert state.__dict__["atomic_write"] is atomic.atomic_write


def test_a_missing_file_is_a_fresh_start_with_a_note(tmp_path: Path) -> None:
    loaded = load_state(tmp_path / "state.json")
    assert loaded.state == WatchdogState()
    assert loaded.warning is not None
    assert "starting fresh" in loaded.warning
    assert loaded.set_aside is None


@pytest.mark.parametrize(
    "content",
    [b"{\"active_target\": \"kilo", b"\x00\x00\x00\x00", b"[1, 2]",
     b'{"routes": {"litellm": {"consecutive_failures": -4}}}', b'{"switches": ["yesterday"]}'],
    ids=["truncated", "zeros", "array", "negative-counter", "bad-date"],
)
def test_a_corrupt_file_is_set_aside_and_the_watchdog_starts_fresh(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    loaded = load_state(path, clock=lambda: T0)
    assert loaded.state == WatchdogState()
    assert loaded.set_aside == tmp_path / "state.json.corrupt-20260213T030000Z"
    assert loaded.set_aside.read_bytes() == content
    assert not path.exists()
    assert loaded.warning is not None
    assert "corrupt" in loaded.warning
    assert "state.json.corrupt-20260213T030000Z" in loaded.warning
    save_state(loaded.state, path)  # and the fresh state saves over the old name
    assert load_state(path).warning is None


def test_two_corrupt_files_in_one_second_are_both_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    names = []
    for content in (b"first{", b"second{"):
        path.write_bytes(content)
        aside = load_state(path, clock=lambda: T0).set_aside
        assert aside is not None
        names.append((aside.name, aside.read_bytes()))
    assert names == [("state.json.corrupt-20260213T030000Z", b"first{"),
                     ("state.json.corrupt-20260213T030000Z-1", b"second{")]


def test_unknown_keys_from_a_newer_watchdog_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    data = json.loads(dump_state(_busy_state()))
    data["some_future_field"] = {"x": 1}
    data["routes"]["litellm"]["future"] = 2
    path.write_text(json.dumps(data))
    loaded = load_state(path)
    assert loaded.warning is None
    assert loaded.state.route("litellm").consecutive_failures == 3


def test_timestamps_are_always_aware_utc() -> None:
    naive = datetime(2026, 2, 13, 3, 0, 0)
    r = RouteState(opened_at=naive)
    assert r.opened_at == T0
    r.last_change = datetime(2026, 2, 13, 5, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert r.last_change == T0
    assert r.last_change.tzinfo == UTC


def test_switch_history_counts_real_switches_for_the_hourly_cap() -> None:
    s = WatchdogState()
    s.set_active("litellm", T0)  # start-up: not a switch
    assert s.switches == []
    for minute, target in ((10, "kilo-code"), (20, "kilo-code"), (30, "litellm"),
                           (80, "kilo-code")):
        s.set_active(target, T0 + timedelta(minutes=minute))
    assert s.active_target == "kilo-code"
    assert s.active_since == T0 + timedelta(minutes=80)
    assert s.switches_since(T0 + timedelta(minutes=80) - timedelta(hours=1)) == 2
    assert s.switches_since(T0) == 3


def test_restart_history_and_prune() -> None:
    s = WatchdogState()
    for hours in (0, 20, 25.5, 26):
        s.record_restart(T0 + timedelta(hours=hours), "timeout")
    now = T0 + timedelta(hours=26)
    assert s.restarts_since(now - timedelta(hours=1)) == 2
    s.prune(now)
    assert [r.at for r in s.restarts] == [T0 + timedelta(hours=h) for h in (20, 25.5, 26)]


def test_pin_expiry() -> None:
    s = WatchdogState()
    pin = s.set_pin("openrouter", T0, ttl=timedelta(minutes=30))
    assert pin.expires_at == T0 + timedelta(minutes=30)
    assert s.active_pin(T0 + timedelta(minutes=29)) == pin
    assert s.active_pin(T0 + timedelta(minutes=30)) is None
    assert s.pin == pin  # expired but still there until pruned
    s.prune(T0 + timedelta(minutes=31))
    assert s.pin is None
    forever = s.set_pin("groq", T0)
    assert s.active_pin(T0 + timedelta(days=365)) == forever
