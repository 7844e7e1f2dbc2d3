"""What the watchdog and the CLI do the same way on Windows: the PID check (no tasklist text,
no reused PID), one lock for every writer, and output a cp1252 stdout can take."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitoring import atomic
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.kill_switch import KillSwitch
from monitoring.watchdog.classify import process_alive
from tests.conftest import REPO
from tests.monitoring.test_cli_budget import config_file, spend
from tests.support.polling import until

__all__ = ["config_file"]  # the fixture, shared with test_cli_budget


def test_a_running_process_is_alive_and_a_reused_pid_is_not() -> None:
    before = time.time() - 30
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert process_alive(child.pid)
        assert process_alive(child.pid, started_by=time.time())
        # A PID file written before this process existed names another (earlier) process.
        assert not process_alive(child.pid, started_by=before)
    finally:
        child.communicate(b"")
    assert not process_alive(child.pid)
    assert not process_alive(0)
    assert not process_alive(-5)


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        until(lambda: not process_alive(child.pid), 20, "the exited child counts as gone",
              interval=0.05)
    finally:
        child.wait()


def _contended(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second holder of ``locked(path)`` waits for the first, on "Windows" too."""
    monkeypatch.setattr(sys, "platform", "win32")  # what the old code skipped the lock for
    held, release, acquired = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with atomic.locked(path):
            held.set()
            release.wait(30)

    def second() -> None:
        with atomic.locked(path):
            acquired.set()

    a = threading.Thread(target=first)
    a.start()
    assert held.wait(30)
    b = threading.Thread(target=second)
    b.start()
    assert not acquired.wait(0.5), "the second holder got the lock while the first held it"
    release.set()
    assert acquired.wait(30)
    a.join(30)
    b.join(30)


def test_locked_excludes_a_second_holder_on_every_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _contended(tmp_path / "state" / "kill-switch.lock", monkeypatch)


def test_appends_and_their_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log" / "events.log"
    _contended(atomic.lock_file_for(log), monkeypatch)

    def append(n: int) -> None:
        for i in range(50):
            atomic.append_locked(log, f"{n}-{i}\n".encode(), 0o640,
                                 repair=lambda fd: b"")

    workers = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(f"{n}-{i}" for n in range(4) for i in range(50))
    assert atomic.lock_file_for(log).name == ".events.log.lock"
    assert oct(os.stat(atomic.lock_file_for(log)).st_mode & 0o777) == oct(0o640)


def test_budget_with_the_kill_switch_on_prints_under_cp1252(
        config_file: tuple[Path, WatchdogConfig], tmp_path: Path) -> None:
    """`provider-fallback budget > file` on Windows: stdout is cp1252, which has no emoji."""
    path, config = config_file
    spend(config, 21.0)
    assert KillSwitch(config).update(21.0, True, datetime.now(UTC)) == "activated"
    out = tmp_path / "budget.txt"
    with out.open("wb") as handle:
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from monitoring.cli import main; "
             f"sys.exit(main(['budget', '--config', {str(path)!r}]))"],
            cwd=REPO, stdout=handle, stderr=subprocess.PIPE, timeout=60, check=False,
            env={**os.environ, "PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0"})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    text = out.read_bytes().decode("cp1252")
    assert "KILL-SWITCH: Budget exceeded, switching to free providers only" in text
