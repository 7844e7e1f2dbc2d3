"""A person's agents (monitoring/agents/follower.py): the watchdog decides and publishes, the
follower applies in the person's home and reports; status and agents tell whose files."""

from __future__ import annotations

import json
import os
import pwd
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from monitoring.agents import follower as fol
from monitoring.cli import main
from monitoring.events import EventLog, read_events
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.load import parse_stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.state import save_state
from tasks.render import watchdog
from tests.conftest import STACK_FILE
from tests.support.polling import until
from tests.support.watchdog_harness import RecordingBackend, fast_config

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
MASTER = "sk-master-test-0123456789"
GEMINI = "AIza-test-person-01234"
KEYS = {"LITELLM_MASTER_KEY": MASTER, "GEMINI_API_KEY": GEMINI}
UNIT = "provider-fallback-agents@me.service"


class _Prober:
    env: ClassVar[dict[str, str]] = dict(KEYS)


def _dog(tmp_path: Path, *, person: bool = True) -> tuple[Watchdog, WatchdogConfig]:
    stack = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    config = fast_config(watchdog.build(stack, layout(stack, "linux")), tmp_path)
    if person:
        (Path(config.paths.state_dir) / fol.FOLLOWER_DIR).mkdir()
    dog = Watchdog(config, prober=_Prober(), backend=RecordingBackend(),  # type: ignore[arg-type]
                   events=EventLog.from_config(config), exporter=Exporter())
    return dog, config


def _follower(config: WatchdogConfig, home: Path) -> fol.Follower:
    return fol.Follower(config.paths.state_dir, by=UNIT, home=home, env=KEYS)


def _person_home(tmp_path: Path) -> Path:
    """A home with the person's own Kilo Code and Gemini CLI files, as they write them."""
    home = tmp_path / "alice"
    kilo = home / ".config" / "kilo" / "kilo.jsonc"
    kilo.parent.mkdir(parents=True)
    kilo.write_text('{\n  // my own settings\n  "theme": "dark",\n  "autoupdate": false\n}\n')
    gemini = home / ".gemini"
    gemini.mkdir()
    (gemini / "settings.json").write_text('{\n  "ui": {"theme": "GitHub"}\n}\n')
    (gemini / ".env").write_text("# mine\nGEMINI_API_KEY=my-own-key\n")
    (gemini / ".env").chmod(0o600)
    return home


def _report(config: WatchdogConfig) -> dict[str, Any]:
    path = Path(config.paths.state_dir, fol.FOLLOWER_DIR, fol.REPORT_FILE)
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def _agents(dog: Watchdog) -> list[dict[str, Any]]:
    """What the watchdog last saved for the agents (status reads the same)."""
    rows = dog.state.extra["agents"]
    assert isinstance(rows, list)
    return [r for r in rows if isinstance(r, dict)]


def test_the_watchdog_decides_the_follower_applies_in_the_persons_home(tmp_path: Path) -> None:
    dog, config = _dog(tmp_path)
    targets = {t.name: t for t in config.targets}
    home = _person_home(tmp_path)
    kilo = home / ".config" / "kilo" / "kilo.jsonc"
    follower = _follower(config, home)
    dog._switch(targets["litellm"], NOW, pinned=False)
    decision = Path(config.paths.state_dir, fol.DECISION_FILE)
    assert stat.S_IMODE(decision.stat().st_mode) == 0o644  # the person's follower reads it
    text = decision.read_text()
    assert MASTER not in text
    assert GEMINI not in text
    assert not Path(str(config.agent_home)).exists()  # the service account's home: untouched
    # Before the follower applied it: decided, pending, not an error.
    assert all(a["pending"] and a["ok"] for a in _agents(dog))
    assert follower.tick() is True
    assert follower.tick() is False  # nothing moved: the report is not rewritten
    assert decision.read_bytes() == text.encode()
    before = decision.stat().st_mtime_ns
    dog._write_agents(targets["litellm"])
    assert decision.stat().st_mtime_ns == before  # an unchanged decision is not rewritten
    assert follower.manager is not None
    assert follower.manager.current("kilo-code") == "litellm"
    assert "// my own settings" in kilo.read_text()
    env = (home / ".gemini" / ".env").read_text()
    assert "GOOGLE_GEMINI_BASE_URL=" in env
    assert "# mine" in env
    assert stat.S_IMODE((home / ".gemini" / ".env").stat().st_mode) == 0o600
    on_proxy = kilo.read_bytes()
    dog._write_agents(targets["litellm"])
    rows = {a["agent"]: a for a in _agents(dog)}
    assert rows["kilo-code"]["target"] == "litellm"
    assert not rows["kilo-code"]["pending"]
    assert rows["kilo-code"]["whose"] == f"managed for {pwd.getpwuid(os.getuid()).pw_name} " \
                                         f"by {UNIT}"

    dog._switch(targets["kilo-code"], NOW, pinned=False)
    line = Path(config.paths.event_log).read_text().splitlines()[-1]
    assert "agents: kilo-code on kilo-code (restart Kilo CLI" in line
    assert "gemini-cli on google" in line
    assert f"by {UNIT}" in line
    follower.tick()
    assert follower.manager.current("kilo-code") == "kilo-code"
    assert follower.manager.current("gemini-cli") == "google"
    dog._write_agents(targets["kilo-code"])
    rows = {a["agent"]: a for a in _agents(dog)}
    assert rows["kilo-code"]["target"] == "kilo-code"
    assert rows["kilo-code"]["ok"]
    assert rows["gemini-cli"]["target"] == "google"
    assert "restart" in str(rows["kilo-code"]["restart"])  # kept until the next switch

    dog._switch(targets["litellm"], NOW, pinned=False)
    follower.tick()
    assert kilo.read_bytes() == on_proxy  # back, byte for byte
    assert not Path(str(config.agent_home)).exists()


def test_a_file_the_follower_cannot_edit_is_reported_once_by_the_watchdog(
        tmp_path: Path) -> None:
    dog, config = _dog(tmp_path)
    targets = {t.name: t for t in config.targets}
    home = _person_home(tmp_path)
    follower = _follower(config, home)
    dog._switch(targets["litellm"], NOW, pinned=False)
    follower.tick()
    settings = home / ".gemini" / "settings.json"
    settings.chmod(0o444)
    try:
        dog._switch(targets["kilo-code"], NOW, pinned=False)
        follower.tick()
        for _ in range(2):
            dog._write_agents(targets["kilo-code"])
    finally:
        settings.chmod(0o644)
    errors = [e for e in read_events(config.paths.event_log) if e.kind == "ERROR"]
    assert len(errors) == 1
    assert "settings.json is read-only" in errors[0].message
    rows = {a["agent"]: a for a in _agents(dog)}
    assert not rows["gemini-cli"]["ok"]
    assert rows["kilo-code"]["ok"]


def test_without_a_person_the_watchdog_edits_its_own_home_and_publishes_nothing(
        tmp_path: Path) -> None:
    dog, config = _dog(tmp_path, person=False)
    left = Path(config.paths.state_dir, fol.DECISION_FILE)
    left.write_text("{}")  # from the time a person was named: nobody reads it now
    dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
    assert Path(str(config.agent_home), ".config", "kilo", "kilo.jsonc").exists()
    assert not left.exists()
    assert "whose" not in _agents(dog)[0]


def test_a_bad_decision_is_reported_and_the_last_good_one_kept(tmp_path: Path) -> None:
    dog, config = _dog(tmp_path)
    home = _person_home(tmp_path)
    follower = _follower(config, home)
    follower.tick()
    assert "no decision yet" in str(_report(config)["problem"])
    dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
    follower.tick()
    assert _report(config)["problem"] is None
    assert _report(config)["decision"]
    decision = Path(config.paths.state_dir, fol.DECISION_FILE)
    decision.write_text('{"version": 99}')
    follower.tick()
    report = _report(config)
    assert "is not a decision of this version" in str(report["problem"])
    assert report["agents"]  # still applying the last good decision


def test_the_follower_loop_polls_and_stops(tmp_path: Path) -> None:
    dog, config = _dog(tmp_path)
    home = _person_home(tmp_path)
    follower = _follower(config, home)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, 0.05))
    thread.start()
    try:
        dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
        kilo = home / ".config" / "kilo" / "kilo.jsonc"
        until(lambda: "litellm" in kilo.read_text(), 20, "the follower to apply")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_status_and_agents_say_whose_files_and_release_acts_on_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    dog, config = _dog(tmp_path)
    targets = {t.name: t for t in config.targets}
    home = _person_home(tmp_path)
    kilo = home / ".config" / "kilo" / "kilo.jsonc"
    own = kilo.read_bytes()
    entry = pwd.getpwuid(os.getuid())
    person = pwd.struct_passwd(("alice", "x", entry.pw_uid, entry.pw_gid, "", str(home),
                                "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: person)
    follower = _follower(config, home)
    dog._switch(targets["litellm"], NOW, pinned=False)
    follower.tick()
    dog._write_agents(targets["litellm"])
    save_state(dog.state, config.paths.state_file)
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json())
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 0
    assert f"agents' files: managed for alice by {UNIT}" in capsys.readouterr().out
    assert main(["agents", "--json", "--config", str(path)]) == 0
    rows = {r["agent"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["kilo-code"]["whose"] == str(home)
    assert rows["kilo-code"]["managed_by"] == f"managed for alice by {UNIT}"
    assert rows["kilo-code"]["points_at"] == "litellm"
    assert rows["kilo-code"]["managed"]
    assert main(["agents", "release", "kilo-code", "--config", str(path)]) == 0
    assert kilo.read_bytes() == own  # the person's own bytes, from the follower's record
    assert f"released; {UNIT} leaves" in capsys.readouterr().out
    follower.tick()
    assert kilo.read_bytes() == own  # the follower leaves a released agent alone
    assert "released" in str({a["agent"]: a for a in _report(config)["agents"]
                              }["kilo-code"]["error"])


def test_agents_follow_needs_the_state_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "follow"]) == 2
    assert "--state-dir" in capsys.readouterr().err
    assert main(["agents", "follow", "--state-dir", "/nonexistent", "--interval", "0"]) == 2


def test_no_follower_directory_means_nobody(tmp_path: Path) -> None:
    assert fol.follower_of(tmp_path) is None
    (tmp_path / fol.FOLLOWER_DIR).mkdir()
    whose = fol.follower_of(tmp_path)
    assert whose is not None
    assert whose.login == pwd.getpwuid(os.getuid()).pw_name
    assert whose.report() is None
    assert whose.phrase() == f"managed for {whose.login} by its follower"
