"""The event log: the runbook's exact lines, the JSON twin, torn lines, redaction, Event Log."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monitoring import events
from monitoring.events import (
    TORN_MARK,
    EventKind,
    EventLog,
    read_events,
    redact,
    windows_event_writer,
)
from monitoring.host_config import WindowsEvents
from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.render.watchdog import build

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 2, 13, 3, 0, 0, tzinfo=UTC)
GROQ_KEY = "gsk_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4Y5z6"
WINDOWS = WindowsEvents(source="ProviderFallback", log="Application", fallback=1001,
                        restored=1002, error=1003, kill_switch=1004)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: float) -> Clock:
        self.now = T0 + timedelta(minutes=minutes)
        return self


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(tmp_path: Path, clock: Clock) -> EventLog:
    return EventLog(tmp_path / "fallback-events.log", tmp_path / "fallback-events.jsonl",
                    clock=clock)


def _text(log: EventLog) -> bytes:
    assert log.text_path is not None
    return log.text_path.read_bytes()


def _jsonl(log: EventLog) -> list[dict[str, Any]]:
    assert log.jsonl_path is not None
    return [json.loads(line) for line in log.jsonl_path.read_text().splitlines()]


# ------------------------------------------------------------------------- the runbook's lines


def test_the_three_runbook_lines_byte_for_byte(log: EventLog, clock: Clock) -> None:
    log.fallback("litellm", "kilo-code", "connection refused", error_class="network",
                 from_label="LiteLLM", to_label="Kilo Code")
    clock.at(15)
    log.restored("kilo-code", "litellm", to_label="LiteLLM")
    clock.at(20)
    log.emergency("kilo-code", error_class="network")
    assert _text(log) == (
        b"[2026-02-13T03:00:00Z] FALLBACK: LiteLLM connection refused, switched to Kilo Code\n"
        b"[2026-02-13T03:15:00Z] RESTORED: LiteLLM recovered, switched back to primary\n"
        b"[2026-02-13T03:20:00Z] EMERGENCY: All providers failed, entering degraded mode\n"
    )


def test_the_watchdogs_own_kinds(log: EventLog) -> None:
    log.restart("connection refused", attempt=2, limit=6, error_class="network")
    log.recovery(restarts=2)
    log.recovery(restarts=1)
    log.error("LiteLLM auto-recovery failed, manual intervention required")
    log.kill_switch(True, 20.41, 20.0)
    log.kill_switch(False, 0.0, 20.0)
    log.restored("groq", "openrouter", to_label="OpenRouter", primary=False)
    prefix = "[2026-02-13T03:00:00Z] "
    assert _text(log).decode().splitlines() == [
        prefix + "RESTART: LiteLLM connection refused, restarting it (attempt 2 of 6 this hour)",
        prefix + "RECOVERY: LiteLLM auto-recovery successful after 2 restarts",
        prefix + "RECOVERY: LiteLLM auto-recovery successful after 1 restart",
        prefix + "ERROR: LiteLLM auto-recovery failed, manual intervention required",
        prefix + "KILL-SWITCH: ACTIVATED - Budget exceeded ($20.41 of $20.00 this month),"
                 " only free providers allowed",
        prefix + "KILL-SWITCH: DEACTIVATED - Spend back within budget ($0.00 of $20.00 this"
                 " month), all providers allowed",
        prefix + "RESTORED: OpenRouter recovered, switched back to OpenRouter",
    ]


def test_the_json_twin_has_one_object_per_event(log: EventLog) -> None:
    log.fallback("litellm", "kilo-code", "connection refused", error_class="network",
                 from_label="LiteLLM", to_label="Kilo Code", details={"probe": "liveliness"})
    assert _jsonl(log) == [{
        "ts": "2026-02-13T03:00:00Z", "kind": "FALLBACK", "from": "litellm", "to": "kilo-code",
        "reason": "network",
        "message": "LiteLLM connection refused, switched to Kilo Code",
        "details": {"probe": "liveliness"},
    }]


def test_timestamps_are_utc_with_a_z_to_the_second(tmp_path: Path) -> None:
    cest = timezone(timedelta(hours=2))
    for when in (datetime(2026, 2, 13, 5, 0, 0, 999999, tzinfo=cest),
                 datetime(2026, 2, 13, 3, 0, 0)):  # naive: taken as UTC
        log = EventLog(tmp_path / "e.log", None, clock=Clock(when))
        assert log.error("x").line() == "[2026-02-13T03:00:00Z] ERROR: x\n"


def test_a_message_cannot_forge_a_second_line(log: EventLog) -> None:
    log.error("upstream said:\n[2026-02-13T03:00:00Z] RESTORED: fake\r\x00")
    assert _text(log).count(b"\n") == 1
    assert len(read_events(log.text_path or "")) == 1


# ------------------------------------------------------------------------- reading back


def test_read_events_from_either_file(log: EventLog, clock: Clock) -> None:
    log.fallback("litellm", "kilo-code", "connection refused", from_label="LiteLLM",
                 to_label="Kilo Code", error_class="network")
    clock.at(15)
    log.restored("kilo-code", "litellm", to_label="LiteLLM")
    assert log.jsonl_path is not None
    assert log.text_path is not None
    from_json = read_events(log.jsonl_path)
    from_text = read_events(log.text_path)
    assert [e.kind for e in from_json] == [EventKind.FALLBACK, EventKind.RESTORED]
    assert [(e.ts, e.kind, e.message) for e in from_json] == [
        (e.ts, e.kind, e.message) for e in from_text]
    assert from_json[0].from_ == "litellm"
    assert from_json[0].reason == "network"
    assert from_json[0].line() == _text(log).decode().splitlines(keepends=True)[0]


def test_read_events_since(log: EventLog, clock: Clock) -> None:
    for minute in (0, 10, 20):
        clock.at(minute)
        log.error(f"at {minute}")
    assert log.jsonl_path is not None
    assert [e.message for e in read_events(log.jsonl_path, since=T0 + timedelta(minutes=10))] \
        == ["at 10", "at 20"]
    naive = datetime(2026, 2, 13, 3, 20)
    assert [e.message for e in read_events(log.jsonl_path, since=naive)] == ["at 20"]


def test_a_missing_log_has_no_events(tmp_path: Path) -> None:
    assert read_events(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize("which", ["jsonl", "text"])
def test_a_torn_trailing_line_is_skipped_and_the_next_event_is_whole(
    log: EventLog, clock: Clock, which: str
) -> None:
    path = log.jsonl_path if which == "jsonl" else log.text_path
    assert path is not None
    log.error("first")
    whole = path.read_bytes()
    second_line = whole  # simulate a crash after half of the second event's line
    with path.open("ab") as fh:
        fh.write(second_line[: len(second_line) // 2])
    assert [e.message for e in read_events(path)] == ["first"]
    clock.at(1)
    log.error("third")
    assert [e.message for e in read_events(path)] == ["first", "third"]
    lines = path.read_bytes().split(b"\n")
    assert lines[1].endswith(TORN_MARK.encode())
    assert lines[-1] == b""


def test_garbage_and_other_writers_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.log"
    path.write_bytes(
        b"[2026-02-13T03:00:00Z] FALLBACK: LiteLLM connection refused, switched to Kilo Code\n"
        b"random noise\n\x00\x00\x00\n{\"not\": \"an event\"}\n\n"
        b"[2026-02-13T03:01:00Z] WARN: some future kind\n"
    )
    got = read_events(path)
    assert [(e.kind, e.message) for e in got] == [
        (EventKind.FALLBACK, "LiteLLM connection refused, switched to Kilo Code"),
        ("WARN", "some future kind")]


def test_concurrent_appenders_never_interleave(tmp_path: Path) -> None:
    writer = (
        "import sys\n"
        "from monitoring.events import EventLog\n"
        "log = EventLog(sys.argv[1], sys.argv[2])\n"
        "for i in range(150):\n"
        "    log.error(f'writer {sys.argv[3]} event {i} ' + 'pad ' * 75)\n"
    )
    text, jsonl = tmp_path / "e.log", tmp_path / "e.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(text), str(jsonl), str(n)],
                              cwd=REPO) for n in range(3)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0]
    for path in (text, jsonl):
        got = read_events(path)
        assert len(got) == 450
        assert len(path.read_bytes().split(b"\n")) == 451
        for n in range(3):
            mine = [e.message for e in got if e.message.startswith(f"writer {n} ")]
            assert mine == [f"writer {n} event {i} " + "pad " * 74 + "pad" for i in range(150)]


# ------------------------------------------------------------------------- secrets


def test_keys_never_reach_either_file(log: EventLog) -> None:
    log.error(f"auth failed: Authorization: Bearer {GROQ_KEY} for api_key={GROQ_KEY}",
              details={"headers": {"x-api-key": GROQ_KEY}, "tries": [GROQ_KEY, 3]},
              error_class="auth", target="groq")
    log.fallback("groq", "kilo-code", f"rejected key {GROQ_KEY}", error_class="auth")
    for path in (log.text_path, log.jsonl_path):
        assert path is not None
        content = path.read_text()
        assert GROQ_KEY not in content
        assert GROQ_KEY[:12] not in content
        assert "[REDACTED]" in content
    assert _jsonl(log)[0]["details"] == {"headers": {"x-api-key": "[REDACTED]"},
                                         "tries": ["[REDACTED]", 3]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("litellm.AuthenticationError: invalid key sk-or-v1-0123456789abcdef0123",
         "litellm.AuthenticationError: invalid key [REDACTED]"),
        ("GROQ_API_KEY is not set", "GROQ_API_KEY is not set"),
        *[(kept, kept) for kept in ("GET http://127.0.0.1:4000/v1/models -> 401",
                                    "/var/lib/provider-fallback/state/state.json")],
        ("key=AIzaSyD0123456789abcdefghijklmnopq", "key=[REDACTED]"),
        ("token 'eyJhbGciOiJIUzI1NiJ9.e30.abc'", "token '[REDACTED]'"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


# ------------------------------------------------------------------------- robustness


def test_a_write_failure_is_logged_not_raised(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "is-a-dir.log").mkdir()
    log = EventLog(tmp_path / "is-a-dir.log", tmp_path / "ok.jsonl", clock=clock)
    event = log.error("disk trouble")
    assert event.message == "disk trouble"
    assert len(read_events(tmp_path / "ok.jsonl")) == 1
    assert "cannot append" in caplog.text


def test_the_log_directory_is_created(tmp_path: Path, clock: Clock) -> None:
    log = EventLog(tmp_path / "logs" / "e.log", tmp_path / "logs" / "e.jsonl", clock=clock)
    log.error("x")
    assert len(read_events(tmp_path / "logs" / "e.jsonl")) == 1


# ------------------------------------------------------------------------- Windows Event Log


class FakeWin32EvtLogUtil:
    """Stands in for pywin32's win32evtlogutil at its boundary: records ReportEvent calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def ReportEvent(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


@pytest.fixture
def fake_pywin32(monkeypatch: pytest.MonkeyPatch) -> FakeWin32EvtLogUtil:
    fake = FakeWin32EvtLogUtil()
    monkeypatch.setitem(sys.modules, "win32evtlogutil", fake)
    return fake


def test_windows_writer_imports_pywin32_lazily_and_calls_report_event(
    fake_pywin32: FakeWin32EvtLogUtil,
) -> None:
    write = windows_event_writer("ProviderFallback")
    assert fake_pywin32.calls == []
    write(1001, events.EVENTLOG_WARNING_TYPE, "FALLBACK: LiteLLM down, switched to Kilo Code")
    assert fake_pywin32.calls == [(
        ("ProviderFallback", 1001),
        {"eventCategory": 0, "eventType": 0x0002,
         "strings": ["FALLBACK: LiteLLM down, switched to Kilo Code"], "data": b""},
    )]


def test_importing_events_does_not_need_pywin32() -> None:
    code = ("import sys, monitoring.events\n"
            "assert 'win32evtlogutil' not in sys.modules\n"
            "w = monitoring.events.windows_event_writer('X')\n"
            "assert 'win32evtlogutil' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_each_kind_goes_to_its_configured_event_id(tmp_path: Path, clock: Clock) -> None:
    fake = FakeWin32EvtLogUtil()
    log = EventLog(tmp_path / "e.log", None, clock=clock, windows=WINDOWS,
                   windows_writer=windows_event_writer(WINDOWS.source, module=fake))
    log.fallback("litellm", "kilo-code", "connection refused", from_label="LiteLLM",
                 to_label="Kilo Code")
    log.restored("kilo-code", "litellm", to_label="LiteLLM")
    log.error("boom")
    log.kill_switch(True, 21.0, 20.0)
    log.emergency()
    log.restart("hung", attempt=1)
    log.recovery()
    got = [(args[1], kwargs["eventType"], kwargs["strings"][0]) for args, kwargs in fake.calls]
    assert got == [
        (1001, 2, "FALLBACK: LiteLLM connection refused, switched to Kilo Code"),
        (1002, 4, "RESTORED: LiteLLM recovered, switched back to primary"),
        (1003, 1, "ERROR: boom"),
        (1004, 2, "KILL-SWITCH: ACTIVATED - Budget exceeded ($21.00 of $20.00 this month),"
                  " only free providers allowed"),
        (1003, 1, "EMERGENCY: All providers failed, entering degraded mode"),
        (1003, 2, "RESTART: LiteLLM hung, restarting it (attempt 1)"),
        (1002, 4, "RECOVERY: LiteLLM auto-recovery successful"),
    ]
    assert all(args[0] == "ProviderFallback" for args, _ in fake.calls)


def test_a_broken_event_log_does_not_stop_the_file_log(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # What happens on a Windows host without pywin32: the lazy import fails at the first event.
    log = EventLog(tmp_path / "e.log", None, clock=clock, windows=WINDOWS,
                   windows_writer=windows_event_writer(WINDOWS.source))
    log.error("still logged")
    assert len(read_events(tmp_path / "e.log")) == 1
    assert "Windows Event Log" in caplog.text


def test_from_config_uses_the_rendered_paths_and_ids(
    stack: Stack, windows_layout: Layout, linux_layout: Layout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    win = build(stack, windows_layout)
    assert win.windows_events is not None
    fake = FakeWin32EvtLogUtil()
    log = EventLog.from_config(win, windows_writer=windows_event_writer("S", module=fake))
    assert str(log.text_path) == win.paths.event_log
    assert str(log.jsonl_path) == win.paths.event_jsonl
    assert log.windows == win.windows_events
    monkeypatch.setattr(events, "_ON_WINDOWS", True)
    assert EventLog.from_config(win).windows_writer is not None  # pywin32 only at first event
    lx = build(stack, linux_layout)
    assert EventLog.from_config(lx).windows_writer is None


def test_event_kinds_are_the_documented_seven() -> None:
    assert [k.value for k in EventKind] == [
        "FALLBACK", "RESTORED", "EMERGENCY", "ERROR", "RESTART", "RECOVERY", "KILL-SWITCH"]
    assert set(events.WINDOWS_EVENT) == set(EventKind)


def test_event_objects_round_trip_through_json() -> None:
    event = events.Event(ts=T0, kind=EventKind.FALLBACK, message="m", from_="a", to="b",
                         reason="rate", details={"n": 1})
    assert events.Event.from_json(json.loads(event.json_line())) == event
    assert SimpleNamespace(**event.to_json()).kind == "FALLBACK"
