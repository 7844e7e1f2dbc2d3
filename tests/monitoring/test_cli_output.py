"""What the CLI prints: the watchdog's liveness first, honest --json (checked against the
schemas in docs/cli-json/), one timestamp format, help pages, --version, colour only where it
belongs, no crash on a cp1252 console, and ``events --follow``. No proxy needed: the state,
events and spend are written the way the watchdog and the proxy write them."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitoring import console
from monitoring.cli import EXIT_OK, EXIT_USAGE, NO_JSON, main, parser
from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.cost_log import CostRecord, append_record
from monitoring.proxy.kill_switch import KillSwitch
from monitoring.stack.schema import Stack
from monitoring.version import LINUX_MARKER
from monitoring.watchdog.loop import WATCHDOG_PID_FILE
from monitoring.watchdog.state import WatchdogState, save_state
from tasks.completion import subcommands
from tests.support.cli_host import temp_host_config
from tests.support.cli_json import errors
from tests.support.polling import until
from tests.support.watchdog_harness import seed_agent_file

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:")
#: From the parser: a subcommand added later is held to the same help and JSON rules.
SUBCOMMANDS = tuple(subcommands(parser()))


@pytest.fixture
def host(stack: Stack, tmp_path: Path) -> tuple[Path, WatchdogConfig]:
    return temp_host_config(stack, tmp_path)


def seed(config: WatchdogConfig, *, age: timedelta = timedelta(0)) -> None:
    """A state with a failed provider (microsecond timestamps, as the watchdog saves them),
    two events, spend over the budget and the kill switch on (a third event)."""
    now = datetime.now(UTC) - age
    state = WatchdogState()
    state.set_active("kilo-code", now - timedelta(minutes=5))
    for name in ("litellm", "groq", "openrouter"):
        state.route(name).last_success = now - timedelta(seconds=2, microseconds=123456)
        state.route(name).last_latency_s = 0.012
    groq = state.route("groq")
    groq.state, groq.last_error_class, groq.last_message = "failed", "auth", "401 Unauthorized"
    groq.last_failure = now
    state.set_pin("kilo-code", now, timedelta(minutes=30), reason="test")
    save_state(state, config.paths.state_file)
    stamp = now.timestamp()
    os.utime(config.paths.state_file, (stamp, stamp))
    events = EventLog.from_config(config)
    events.fallback("litellm", "kilo-code", "connection refused", error_class="network",
                    from_label="LiteLLM", to_label="Kilo Code")
    events.restored("kilo-code", "litellm", to_label="LiteLLM")
    append_record(config.paths.cost_log, CostRecord(
        ts=datetime.now(UTC), model="gpt-4", served_by="gpt-4", provider="openai",
        tokens_in=1000, tokens_out=500, cost_usd=21.0))
    KillSwitch(config).update(21.0, True, datetime.now(UTC))


def pretend_running(config: WatchdogConfig, pid: int | None = None) -> None:
    """The watchdog's PID file, naming a live process (this one by default)."""
    pid_file = Path(config.paths.state_file).with_name(WATCHDOG_PID_FILE)
    pid_file.write_text(f"{pid or os.getpid()}\n")


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == EXIT_OK, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


# --------------------------------------------------------------------------- --json


def test_every_json_output_matches_its_schema(host: tuple[Path, WatchdogConfig],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config)
    cfg = ["--config", str(path)]
    documents = {
        "status": run_json(["status", *cfg], capsys),
        "budget": run_json(["budget", *cfg], capsys),
        "select": run_json(["select", "--task", "coding", *cfg], capsys),
        "report": run_json(["report", *cfg], capsys),
        "history": run_json(["history", *cfg], capsys),
    }
    seed_agent_file(config)
    documents["agents"] = run_json(["agents", *cfg], capsys)
    documents["switch"] = run_json(["switch", "kilo-code", "--for", "5m", *cfg], capsys)
    restore = run_json(["restore", *cfg], capsys)
    reset = run_json(["budget", "reset", "--yes", *cfg], capsys)
    for name, data in documents.items():
        assert errors(name, data) == [], name
    assert errors("switch", restore) == []
    assert errors("budget-reset", reset) == []
    assert reset["was_active"] is True
    assert documents["report"]["severity"] == "Critical"  # the kill switch was on
    assert documents["status"]["budget"]["kill_switch_active"] is True
    # Every timestamp anywhere is ISO 8601 UTC with Z, whole seconds.
    for name, data in documents.items():
        times = [s for s in strings(data) if LOOKS_LIKE_TIME.match(s)]
        assert all(ISO_Z.match(t) for t in times), (name, times)
    assert documents["status"]["routes"]["groq"]["last_success"].endswith("Z")
    assert {a["agent"] for a in documents["agents"] if a["enrolled"]} == {
        a.name for a in config.agents}


def test_events_json_is_json_lines_each_matching_the_event_schema(
        host: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config)
    capsys.readouterr()
    assert main(["events", "--json", "--config", str(path)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert errors("event", json.loads(line)) == []
    assert [json.loads(line)["kind"] for line in lines] == ["FALLBACK", "RESTORED",
                                                           "KILL-SWITCH"]


def test_the_schema_check_catches_drift(host: tuple[Path, WatchdogConfig],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config)
    status = run_json(["status", "--config", str(path)], capsys)
    undocumented = {**status, "new_field": 1}
    assert any("new_field" in e for e in errors("status", undocumented))
    old_format = {**status, "active_since": "2026-11-30 17:40:31.435808+00:00"}
    assert errors("status", old_format)
    markdown = "## Provider Outage Report\n"
    assert errors("report", markdown)


def test_watch_refuses_json_with_exit_2(host: tuple[Path, WatchdogConfig],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = host
    assert main(["watch", "--json", "--config", str(path)]) == EXIT_USAGE
    assert "watch has no JSON output" in capsys.readouterr().err


def test_every_subcommand_either_emits_json_or_refuses_it() -> None:
    """From the parser, so a new subcommand fails here until it has a schema in
    docs/cli-json/ (and a test of its output) or is listed in NO_JSON."""
    schemas = {p.name.removesuffix(".schema.json")
               for p in (Path(__file__).parents[2] / "docs" / "cli-json").glob("*.json")}
    shape = {"events": "event", "restore": "switch"}  # one line of events; restore as switch
    for name in SUBCOMMANDS:
        assert name in NO_JSON or shape.get(name, name) in schemas, name
    assert {"watch", "status", "check", "switch", "restore", "events", "budget", "select",
            "report", "history"} <= set(SUBCOMMANDS)


# --------------------------------------------------------------------------- status


def first_line(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == EXIT_OK
    return capsys.readouterr().out


def test_status_says_when_the_watchdog_never_ran(host: tuple[Path, WatchdogConfig],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = host
    out = first_line(path, capsys)
    assert out.splitlines()[0].endswith("watchdog: inactive (it has never run here)")


def test_a_stopped_watchdogs_old_state_is_marked_stale(
        host: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config, age=timedelta(hours=3, minutes=12))
    out = first_line(path, capsys)
    lines = out.splitlines()
    assert "watchdog: inactive (not running); data from 3h 12m ago" in lines[0]
    assert "it is not the present" in lines[1]
    assert "as last saved, 3h 12m ago (STALE)" in out
    assert re.search(r"^groq\s+failed\s+auth\s+12ms\s+3h 12m ago\s+401 Unauthorized$", out,
                     re.MULTILINE), out
    assert run_json(["status", "--config", str(path)], capsys)["watchdog"]["state"] == "stopped"


def test_a_live_watchdog_that_stopped_saving_is_stale(
        host: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config, age=timedelta(minutes=10))
    pretend_running(config)
    out = first_line(path, capsys)
    assert out.splitlines()[0].startswith(
        f"● watchdog: active but STALE (not saving), pid {os.getpid()}; data from 10m ago")
    data = run_json(["status", "--config", str(path)], capsys)["watchdog"]
    assert data["state"] == "stale"
    assert data["pid"] == os.getpid()


def test_a_running_watchdog_leads_the_status(host: tuple[Path, WatchdogConfig],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config)
    pretend_running(config)
    out = first_line(path, capsys)
    assert re.match(rf"● watchdog: active \(running\), pid {os.getpid()}; data from \ds ago",
                    out), out
    assert "STALE" not in out
    assert "  active target: Kilo Code (since 5m ago), pinned until" in out


def test_a_pid_file_of_a_dead_process_is_stopped(host: tuple[Path, WatchdogConfig],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    seed(config)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pretend_running(config, int(dead.stdout))
    assert "inactive (not running)" in first_line(path, capsys).splitlines()[0]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (42.4, "42s"), (60, "1m"), (185, "3m 5s"), (3 * 3600 + 12 * 60 + 9, "3h 12m"),
    (7200, "2h"), (2 * 86400 + 4 * 3600, "2d 4h"), (-3, "0s")])
def test_ages_are_humanised(seconds: float, text: str) -> None:
    assert console.human_age(seconds) == text


# --------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_a_description_and_an_example(
        command: str, host: tuple[Path, WatchdogConfig],
        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = host
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help", "--config", str(path)])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    _, description, *_ = text.split("\n\n")
    assert len(description.split()) >= 8, description
    assert re.search(rf"^examples:\n  provider-fallback {command}", text, re.MULTILINE), text
    assert "(default: " in text  # --config's default is shown


def test_switch_help_lists_the_targets_of_the_config(
        host: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    with pytest.raises(SystemExit):
        main(["switch", "--help", "--config", str(path)])
    names = ", ".join(t.name for t in config.targets)
    assert f"Valid targets: {names}." in " ".join(capsys.readouterr().out.split())


def test_top_level_help_has_no_rest_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text
    assert "Exit codes" in text


def test_version_prints_the_wheel_hash_the_deploy_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sha = "ab" * 32
    (tmp_path / LINUX_MARKER).write_text(sha + "\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert re.match(r"provider-fallback \d+\.\d+\.\d+\n", out), out
    assert f"wheel sha256: {sha} ({tmp_path / LINUX_MARKER})" in out


def test_version_without_a_deploy_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "wheel sha256: unknown (not installed by the deploy" in capsys.readouterr().out


# --------------------------------------------------------------------------- terminals


def cli(path: Path, *argv: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "monitoring.cli", *argv, "--config", str(path)],
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=60,
                          check=False)


def test_a_cp1252_pipe_gets_plain_text_and_no_crash(host: tuple[Path, WatchdogConfig]) -> None:
    """Windows with stdout redirected: the budget's warning sign used to raise
    UnicodeEncodeError; the status dot falls back to ASCII."""
    path, config = host
    seed(config)
    env = {"PYTHONIOENCODING": "cp1252"}
    for argv in (["budget"], ["status"], ["events"], ["report"]):
        done = cli(path, *argv, env=env)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        text = done.stdout.decode("cp1252")
        assert "\x1b" not in text
    assert "KILL-SWITCH" in cli(path, "budget", env=env).stdout.decode("cp1252")
    assert cli(path, "status", env=env).stdout.decode("cp1252").startswith("o watchdog:")


def on_a_terminal(path: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    """The output of the CLI run on a real pseudo-terminal."""
    main_fd, sub_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", *argv, "--config",
                             str(path)], stdout=sub_fd, stderr=sub_fd, stdin=subprocess.DEVNULL,
                            env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"},
                                 "TERM": "xterm-256color", "COLUMNS": "160", **(env or {})})
    os.close(sub_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(main_fd)
    assert proc.returncode == 0
    return b"".join(chunks).decode()


def test_failures_stand_out_in_colour_on_a_terminal(host: tuple[Path, WatchdogConfig]) -> None:
    path, config = host
    seed(config)
    status = on_a_terminal(path, "status")
    # bold red for the failed route, the kill switch and the stopped watchdog
    assert re.search(r"\x1b\[1;31mfailed", status), repr(status)
    assert re.search(r"\x1b\[1;31mON \(free providers only\)", status), repr(status)
    budget = on_a_terminal(path, "budget")
    assert re.search(r"\x1b\[1;31mEXCEEDED", budget), repr(budget)


def test_no_color_gives_plain_text_on_a_terminal(host: tuple[Path, WatchdogConfig]) -> None:
    path, config = host
    seed(config)
    for argv in (["status"], ["budget"]):
        text = on_a_terminal(path, *argv, env={"NO_COLOR": "1"})
        assert not re.search(r"\x1b\[[0-9;]*m", text), repr(text)


# --------------------------------------------------------------------------- follow


def test_events_follow_prints_new_events_as_they_come(host: tuple[Path, WatchdogConfig]) -> None:
    path, config = host
    seed(config)
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "events", "--follow",
                             "--json", "--since", "1h", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    got = b""

    def lines() -> list[dict[str, Any]]:
        nonlocal got
        got += proc.stdout.read() or b"" if proc.stdout else b""
        return [json.loads(line) for line in got.splitlines()]

    try:
        until(lambda: len(lines()) == 3, 30, "the three events already logged")
        EventLog.from_config(config).error("a new event while following", target="litellm")
        found = until(lambda: len(lines()) == 4 and lines(), 30, "the new event")
        assert found[3]["kind"] == "ERROR"
        assert found[3]["message"].startswith("a new event while following")
        assert errors("event", found[3]) == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_events_follow_reads_a_log_made_anew_from_its_start(tmp_path: Path) -> None:
    """The event log deleted and created again (the same inode back on ext4 and tmpfs, as
    long as the old one) is followed from its start, not from the old file's offset."""
    from monitoring.cli import follow_events
    from monitoring.events import Event

    path = tmp_path / "events.jsonl"
    when = datetime.now(UTC).replace(microsecond=0)
    path.write_text(Event(when, "ERROR", "first").json_line())
    deadline = time.monotonic() + 30  # a missed event ends the stream: StopIteration fails
    stream = follow_events(path, None, stop=lambda: time.monotonic() > deadline)
    assert next(stream).message == "first"
    path.unlink()
    path.write_text(Event(when, "ERROR", "again").json_line())  # the same length
    assert next(stream).message == "again"
    with path.open("w") as f:  # truncated and written again: the inode is kept for certain
        f.write(Event(when, "ERROR", "third").json_line())
    assert next(stream).message == "third"


def test_version_reads_the_windows_install_marker(tmp_path: Path) -> None:
    from monitoring.version import WINDOWS_MARKER, installed

    (tmp_path / WINDOWS_MARKER).write_text(json.dumps({"lock_sha256": "00" * 32,
                                                       "wheel_sha256": "cd" * 32}))
    build = installed(tmp_path)
    assert build.wheel_sha256 == "cd" * 32
    assert build.source == str(tmp_path / WINDOWS_MARKER)


def test_text_from_the_logs_is_never_read_as_markup(
        host: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = host
    append_record(config.paths.cost_log, CostRecord(
        ts=datetime.now(UTC), model="m", served_by="m", provider="[bold]odd[/bold]",
        tokens_in=1, tokens_out=1, cost_usd=1.0))
    capsys.readouterr()
    assert main(["budget", "--config", str(path)]) == EXIT_OK
    assert "By provider: [bold]odd[/bold] $1.00" in capsys.readouterr().out
