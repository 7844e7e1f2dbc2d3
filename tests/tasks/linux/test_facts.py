"""The Linux facts: each command run for real on this machine through sh (as pyinfra runs
it on a host), its output through the fact's own parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pyinfra.api.command import StringCommand

from tasks.linux import facts


def _run(fact: Any, **kwargs: Any) -> Any:
    command = fact.command(**kwargs)
    text = command.get_raw_value() if isinstance(command, StringCommand) else command
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True)
    return fact.process(out.stdout.splitlines())


def test_host_platform_reads_the_init_system_wsl_and_python3() -> None:
    found = _run(facts.HostPlatform())
    assert found["systemd"] is Path("/run/systemd/system").is_dir()
    assert found["wsl"] is False
    assert found["python3"]


def test_host_platform_parses_a_wsl_host_with_systemd_and_no_python() -> None:
    parsed = facts.HostPlatform().process(["systemd=1", "wsl=1", "python3="])
    assert parsed == {"systemd": True, "wsl": True, "python3": None}


def test_python_markers_are_the_interpreters_own() -> None:
    found = _run(facts.PythonMarkers(), python=sys.executable)
    assert found["sys_platform"] == sys.platform
    assert found["python_full_version"] == ".".join(map(str, sys.version_info[:3]))
    assert found["glibc"].count(".") == 1


def test_python_markers_of_a_missing_interpreter_are_none() -> None:
    assert _run(facts.PythonMarkers(), python="/nonexistent/python3") is None


def test_venv_lists_distributions_and_no_wheel_marker() -> None:
    found = _run(facts.Venv(), path=sys.prefix)
    assert found["distributions"]["pyinfra"] == "3.10.0"
    assert found["project_sha256"] is None


def test_venv_that_is_missing_or_broken_is_none(tmp_path: Path) -> None:
    assert _run(facts.Venv(), path=str(tmp_path / "nothing")) is None
    broken = tmp_path / "broken" / "bin"
    broken.mkdir(parents=True)
    (broken / "python").write_text("#!/bin/sh\nexit 1\n")
    (broken / "python").chmod(0o755)
    assert _run(facts.Venv(), path=str(tmp_path / "broken")) is None


def test_linux_user_reads_passwd_and_knows_a_missing_user() -> None:
    root = _run(facts.LinuxUser(), user="root")
    assert (root["uid"], root["home"]) == ("0", "/root")
    assert _run(facts.LinuxUser(), user="no-such-user-here") is None


def test_firewall_facts_say_inactive_when_there_is_none() -> None:
    # This machine has neither ufw nor an inet filter table.
    assert _run(facts.UfwStatus()) is None
    assert _run(facts.NftablesInput()) is None


def test_ufw_status_of_an_active_firewall_is_its_lines() -> None:
    lines = ["Status: active", "", "To  Action  From", "22/tcp  ALLOW  Anywhere"]
    assert facts.UfwStatus().process(lines) == lines
