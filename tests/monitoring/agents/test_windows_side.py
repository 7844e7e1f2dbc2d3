"""A WSL person's Windows-side agents (linux.windows_profile): the watchdog's decision names
their profile, the follower edits their Windows files there (Windows locations, CRLF kept)
with the proxy at http://127.0.0.1:<port>; data cases on a fake /mnt/c tree."""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from monitoring.agents import follower as fol
from monitoring.cli import main
from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.state import save_state
from tasks.render import watchdog
from tests.conftest import STACK_FILE
from tests.support.watchdog_harness import RecordingBackend, fast_config

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEYS = {"LITELLM_MASTER_KEY": "sk-master-test-0123456789", "GEMINI_API_KEY": "AIza-test-0123"}
KILO = '{\r\n  // mine, saved by VS Code on Windows\r\n  "theme": "dark"\r\n}\r\n'
SETTINGS = '{\r\n  "ui": {"theme": "GitHub"}\r\n}\r\n'
DOTENV = "# mine\r\nGEMINI_API_KEY=my-own\r\n"


class _Prober:
    env: ClassVar[dict[str, str]] = dict(KEYS)


def _profile(tmp_path: Path) -> Path:
    """A fake ``/mnt/c/Users/alice`` with the person's Windows-side files (CRLF)."""
    profile = tmp_path / "mnt" / "c" / "Users" / "Alice Smith"
    for rel, text in ((".config/kilo/kilo.jsonc", KILO), (".gemini/settings.json", SETTINGS),
                      (".gemini/.env", DOTENV)):
        path = profile / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return profile


def _setup(tmp_path: Path, listen: str = "127.0.0.1") -> tuple[Watchdog, WatchdogConfig,
                                                                fol.Follower, Path]:
    profile = _profile(tmp_path)
    stack = load_stack(STACK_FILE, {"linux": {"windows_profile": str(profile)},
                                    "litellm": {"listen": {"host": listen}}})
    config = fast_config(watchdog.build(stack, layout(stack, "linux")), tmp_path)
    (Path(config.paths.state_dir) / fol.FOLLOWER_DIR).mkdir()
    dog = Watchdog(config, prober=_Prober(), backend=RecordingBackend(),  # type: ignore[arg-type]
                   events=EventLog.from_config(config), exporter=Exporter())
    home = tmp_path / "alice"
    home.mkdir()
    follower = fol.Follower(config.paths.state_dir, by="unit", home=home, env=KEYS)
    return dog, config, follower, profile


def _bare_lf(data: bytes) -> bool:
    return b"\n" in data.replace(b"\r\n", b"")


def test_windows_side_agents_follow_with_crlf_kept_and_the_proxy_at_127_0_0_1(
        tmp_path: Path) -> None:
    dog, config, follower, profile = _setup(tmp_path, listen="0.0.0.0")  # noqa: S104
    targets = {t.name: t for t in config.targets}
    kilo = profile / ".config" / "kilo" / "kilo.jsonc"
    dog._switch(targets["litellm"], NOW, pinned=False)
    follower.tick()
    text = kilo.read_bytes()
    assert b'"baseURL": "http://127.0.0.1:4000/v1"' in text
    assert b"// mine, saved by VS Code on Windows" in text
    assert not _bare_lf(text)
    env = (profile / ".gemini" / ".env").read_bytes()
    assert b"GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:4000\r\n" in env
    assert not _bare_lf(env)
    assert not _bare_lf((profile / ".gemini" / "settings.json").read_bytes())
    assert KEYS["LITELLM_MASTER_KEY"] not in text.decode()  # a reference, not the key
    on_proxy = kilo.read_bytes()
    assert follower.windows is not None
    assert follower.windows.current("kilo-code") == "litellm"
    dog._write_agents(targets["litellm"])
    rows = {a["agent"]: a for a in dog.state.extra["agents"]  # type: ignore[union-attr]
            if isinstance(a, dict)}
    assert rows["kilo-code@windows"]["ok"]
    assert rows["kilo-code@windows"]["label"] == "Kilo Code (Windows)"
    assert not rows["kilo-code@windows"]["pending"]
    assert rows["kilo-code"]["ok"]  # the person's WSL-side agents too

    dog._switch(targets["kilo-code"], NOW, pinned=False)
    follower.tick()
    assert follower.windows.current("kilo-code") == "kilo-code"
    assert follower.windows.current("gemini-cli") == "google"
    assert not _bare_lf(kilo.read_bytes())
    dog._switch(targets["litellm"], NOW, pinned=False)
    follower.tick()
    assert kilo.read_bytes() == on_proxy
    records = Path(config.paths.state_dir, fol.FOLLOWER_DIR, fol.WINDOWS_RECORDS_DIR)
    assert json.loads((records / "kilo-code.json").read_text())["files"]


def test_the_decision_names_the_profile_and_windows_targets_only_when_set(
        tmp_path: Path) -> None:
    dog, config, _, profile = _setup(tmp_path)
    dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
    body: Any = json.loads(Path(config.paths.state_dir, fol.DECISION_FILE).read_text())
    assert body["windows"]["home"] == str(profile)
    proxy = next(t for t in body["windows"]["targets"] if t["name"] == "litellm")
    assert set(proxy["endpoints"].values()) <= {"http://127.0.0.1:4000/v1",
                                                 "http://127.0.0.1:4000"}
    stack = load_stack(STACK_FILE)
    assert watchdog.build(stack, layout(stack, "linux")).windows_side is None


def test_agents_lists_the_windows_side_and_releases_it_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``agents`` shows the person's Windows-side agents as NAME@windows (their files, where
    they point, managed or not), and ``release kilo-code@windows`` gives back the Windows
    file's own bytes while the WSL-side kilo-code stays managed."""
    dog, config, follower, profile = _setup(tmp_path)
    entry = pwd.getpwuid(os.getuid())
    person = pwd.struct_passwd(("alice", "x", entry.pw_uid, entry.pw_gid, "",
                                str(follower.home), "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: person)
    kilo = profile / ".config" / "kilo" / "kilo.jsonc"
    dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
    follower.tick()
    dog._write_agents({t.name: t for t in config.targets}["litellm"])
    save_state(dog.state, config.paths.state_file)
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json())
    capsys.readouterr()

    assert main(["agents", "--json", "--config", str(path)]) == 0
    rows = {r["agent"]: r for r in json.loads(capsys.readouterr().out)}
    win = rows["kilo-code@windows"]
    assert win["label"] == "Kilo Code (Windows)"
    assert win["whose"] == str(profile)
    assert win["files"]
    assert all(f.startswith(str(profile)) for f in win["files"].values())
    assert (win["points_at"], win["expected"], win["managed"]) == ("litellm", "litellm", True)
    assert win["traps"] == []
    assert rows["kilo-code"]["whose"] == str(follower.home)
    assert {"gemini-cli@windows", "kilo-code", "gemini-cli"} <= set(rows)
    assert main(["agents", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"and of the Windows profile: {profile} (NAME@windows)" in text
    assert "Kilo Code (Windows) (kilo-code@windows): enrolled" in text

    assert main(["agents", "release", "kilo-code@windows", "--config", str(path)]) == 0
    assert "kilo-code@windows: released" in capsys.readouterr().out
    assert kilo.read_bytes() == KILO.encode()  # the person's own bytes, CRLF and comment
    follower.tick()
    assert kilo.read_bytes() == KILO.encode(), "the follower leaves a released agent alone"
    assert follower.manager is not None
    assert follower.manager.managed("kilo-code")
    assert main(["agents", "manage", "kilo-code@windows", "--config", str(path)]) == 0
    follower.tick()
    assert b"http://127.0.0.1:4000/v1" in kilo.read_bytes()
    assert main(["agents", "release", "nobody@windows", "--config", str(path)]) == 2
    assert "kilo-code@windows" in capsys.readouterr().err


def test_agents_release_all_gives_every_side_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``agents release --all`` (what the deploy runs before it retires a person's follower):
    the Windows files get their own bytes back, the files provider-fallback created in the
    WSL home are removed, every agent is released; with a NAME it is a usage error."""
    dog, config, follower, profile = _setup(tmp_path)
    entry = pwd.getpwuid(os.getuid())
    person = pwd.struct_passwd(("alice", "x", entry.pw_uid, entry.pw_gid, "",
                                str(follower.home), "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: person)
    dog._switch({t.name: t for t in config.targets}["litellm"], NOW, pinned=False)
    follower.tick()
    created = follower.home / ".config" / "kilo" / "kilo.jsonc"
    assert created.exists()
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json())
    capsys.readouterr()
    assert main(["agents", "release", "kilo-code", "--all", "--config", str(path)]) == 2
    assert main(["agents", "release", "--all", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    for name in ("kilo-code", "gemini-cli", "kilo-code@windows", "gemini-cli@windows"):
        assert f"{name}: released" in out, out
    assert (profile / ".config" / "kilo" / "kilo.jsonc").read_bytes() == KILO.encode()
    assert (profile / ".gemini" / ".env").read_bytes() == DOTENV.encode()
    assert (profile / ".gemini" / "settings.json").read_bytes() == SETTINGS.encode()
    assert not created.exists(), "provider-fallback created it: removed"
    follower.tick()
    assert (profile / ".config" / "kilo" / "kilo.jsonc").read_bytes() == KILO.encode()
    assert main(["agents", "release", "--all", "--config", str(path)]) == 0
    assert capsys.readouterr().out == "", "nothing left to give back"
