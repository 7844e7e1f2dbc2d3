"""The REAL rendered init script (hosts without systemd), run as root with an unprivileged
service user (``nobody``), start-stop-daemon and all (issue 12, M1 and L3).

Everything lives in a fresh directory under /tmp (the stack's paths point there), except the
PID file, which the script keeps in /run under a name unique to the test. The daemon is a tiny
shell script at the venv's ``provider-fallback`` path: what is under test is the init script,
not the watchdog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from tasks.render import render
from tests.support.polling import until

STACK_FILE = Path(__file__).resolve().parents[3] / "inventory" / "stack.yaml"
KEY = "gsk_" + "k" * 40
CANARY = "PF_TEST_DEPLOYING_SHELL_CANARY"

#: Writes its environment beside it (in the state directory, its cwd), says hello on stdout.
DAEMON = """#!/bin/sh
env > ./daemon.env
echo "watchdog stand-in started as $(id -un)"
exec sleep 300
"""

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="runs the init script as root, as a host does"),
    pytest.mark.skipif(shutil.which("start-stop-daemon") is None,
                       reason="needs Debian's start-stop-daemon"),
]


@dataclass
class Init:
    script: Path
    lay: Layout
    name: str
    base: Path

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", CANARY: "leaked"}
        return subprocess.run(["/bin/sh", str(self.script), action], env=env, text=True,
                              capture_output=True, timeout=60, check=False)

    @property
    def log(self) -> Path:
        return Path(self.lay.log("watchdog.log"))

    @property
    def pid_file(self) -> Path:
        return Path("/run") / f"{self.name}.pid"


def _stack(base: Path, name: str) -> Stack:
    stack = load_stack(STACK_FILE)
    linux = stack.linux.model_copy(update={
        "user": "nobody", "group": "nogroup", "install_dir": str(base / "opt"),
        "config_dir": str(base / "etc"), "state_dir": str(base / "lib"),
        "log_dir": str(base / "log"),
        "units": stack.linux.units.model_copy(update={"watchdog": f"{name}.service"})})
    return stack.model_copy(update={"linux": linux})


@pytest.fixture
def init() -> Iterator[Init]:
    base = Path(tempfile.mkdtemp(prefix="pf-init-", dir="/tmp"))
    base.chmod(0o755)  # nobody must reach its own directories below
    name = f"pf-test-{uuid.uuid4().hex[:8]}"
    stack = _stack(base, name)
    lay = layout(stack, "linux")
    rendered = render(stack, "linux", {"GROQ_API_KEY": KEY})
    rel = f"sysvinit/{name}"
    script = base / "init"
    script.write_bytes(rendered[rel].data)
    secrets = Path(rendered["secrets/secrets.env"].dest)
    secrets.parent.mkdir(parents=True)
    secrets.write_bytes(rendered["secrets/secrets.env"].data)
    secrets.chmod(0o600)
    daemon = Path(lay.watchdog_bin)
    daemon.parent.mkdir(parents=True)
    daemon.write_text(DAEMON)
    daemon.chmod(0o755)
    handle = Init(script=script, lay=lay, name=name, base=base)
    try:
        yield handle
    finally:
        handle.run("stop")
        with contextlib.suppress(FileNotFoundError):
            handle.pid_file.unlink()
        shutil.rmtree(base)


def _pid(init: Init) -> int | None:
    try:
        return int(init.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def test_a_symlink_planted_in_the_log_directory_makes_root_write_nothing(init: Init) -> None:
    """M1: the log directory is the service user's; the log is opened after the privilege
    drop, so a link to a root-only place leaves that place alone (and the daemon, unable to
    open its log, does not start)."""
    root_only = init.base / "root-only"
    root_only.mkdir(mode=0o700)
    target = root_only / "created-by-root"
    log_dir = Path(init.lay.log_dir)
    log_dir.mkdir()
    os.chown(log_dir, 65534, 65534)
    init.log.symlink_to(target)
    assert init.run("start").returncode == 0
    pid = until(lambda: _pid(init), 30, "the PID file")
    until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the start to give up")
    assert not target.exists(), "root followed the planted link"
    assert not (Path(init.lay.state_dir) / "daemon.env").exists()


def test_the_daemon_gets_a_clean_environment_and_writes_its_own_log(init: Init) -> None:
    """L3: nothing of the caller's environment reaches the daemon; the keys do (under the
    host's names) and the log is the service user's file."""
    started = init.run("start")
    assert started.returncode == 0, started.stderr
    env_file = Path(init.lay.state_dir) / "daemon.env"
    until(lambda: env_file.exists() and init.log.exists() and init.log.stat().st_size > 0,
          30, "the daemon started")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert CANARY not in env, "the deploying shell's environment leaked into the daemon"
    assert env["PF_GROQ_API_KEY"] == KEY
    assert "GROQ_API_KEY" not in env
    assert env["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin"
    assert init.log.stat().st_uid == 65534, "the log is written by the service user"
    assert "started as nobody" in init.log.read_text()
    assert KEY not in init.log.read_text()
    status = init.run("status")
    assert status.returncode == 0, status.stdout
    assert init.run("stop").returncode == 0
    assert init.run("status").returncode == 3
