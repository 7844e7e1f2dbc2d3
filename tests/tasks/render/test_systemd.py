"""The rendered units pass the real ``systemd-analyze verify`` and say what they should."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from monitoring.stack.layout import Layout, proxy_command, watchdog_command
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from tasks.render import render
from tasks.render.common import Rendered

SYSTEM_UNITS = Path("/lib/systemd/system")


def _verify(units: dict[str, bytes], executables: list[str], root: Path,
            verify: list[str] | None = None) -> str:
    """Run systemd-analyze verify on ``units`` inside a scratch root; return its output.

    The scratch root holds the machine's own system units (targets the units refer to) and
    stub executables at the paths the units start, so nothing outside ``root`` is touched.
    """
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, data in units.items():
        (unit_dir / name).write_bytes(data)
    for exe in executables:
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *(verify or units)], capture_output=True,
        text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise AssertionError(f"systemd-analyze verify failed ({result.returncode}):\n{output}")
    return output


def _units(stack: Stack, rendered: Rendered) -> dict[str, bytes]:
    names = (stack.linux.units.litellm, stack.linux.units.watchdog)
    return {name: rendered[f"systemd/{name}"].data for name in names}


def test_units_pass_systemd_analyze_verify(stack: Stack, linux_layout: Layout,
                                           rendered_linux: Rendered, tmp_path: Path) -> None:
    executables = [proxy_command(stack, linux_layout)[0], watchdog_command(linux_layout)[0]]
    output = _verify(_units(stack, rendered_linux), executables, tmp_path)
    # Warnings ("Unknown key", "Unknown section", bad values) do not change the exit code.
    assert output == "", output


def test_verify_catches_a_broken_unit(stack: Stack, linux_layout: Layout,
                                      rendered_linux: Rendered, tmp_path: Path) -> None:
    units = _units(stack, rendered_linux)
    name = stack.linux.units.litellm
    units[name] = units[name].replace(b"[Service]\n", b"[Service]\nRestartt=always\n")
    output = _verify(units, [proxy_command(stack, linux_layout)[0],
                             watchdog_command(linux_layout)[0]], tmp_path)
    assert "Unknown key" in output


def test_verify_catches_a_missing_executable(stack: Stack, rendered_linux: Rendered,
                                             tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="not executable"):
        _verify(_units(stack, rendered_linux), [], tmp_path)


def test_units_start_the_rendered_commands_with_secrets_from_the_0600_file(
        stack: Stack, linux_layout: Layout, rendered_linux: Rendered) -> None:
    proxy = rendered_linux[f"systemd/{stack.linux.units.litellm}"]
    watchdog = rendered_linux[f"systemd/{stack.linux.units.watchdog}"]
    exec_proxy = " ".join(f'"{part}"' for part in proxy_command(stack, linux_layout))
    exec_watchdog = " ".join(f'"{part}"' for part in watchdog_command(linux_layout))
    assert f"ExecStart={exec_proxy}\n".encode() in proxy.data
    assert f"ExecStart={exec_watchdog}\n".encode() in watchdog.data
    for unit in (proxy, watchdog):
        assert f"EnvironmentFile={linux_layout.secrets_env}\n".encode() in unit.data
        assert f"User={stack.linux.user}\n".encode() in unit.data
        assert unit.dest.startswith("/etc/systemd/system/")
        assert unit.mode == 0o644
    assert rendered_linux["secrets/secrets.env"].mode == 0o600
    assert b"LITELLM_LOCAL_MODEL_COST_MAP=True" in proxy.data
    assert f"After=network-online.target {stack.linux.units.litellm}".encode() in watchdog.data


def test_the_sysvinit_script_is_valid_sh_and_holds_no_secret(tmp_path: Path) -> None:
    """The watchdog's init script for hosts without systemd: ``sh -n`` accepts it, it
    sources the 0600 secrets file rather than holding a key, and supervises the proxy."""
    stack = load_stack(Path(__file__).resolve().parents[3] / "inventory" / "stack.yaml")
    key = "gsk_" + "k" * 40
    rendered = render(stack, "linux", {"GROQ_API_KEY": key})
    rel = "sysvinit/" + stack.linux.units.watchdog.removesuffix(".service")
    script = rendered[rel]
    assert script.mode == 0o755
    assert script.dest == "/etc/init.d/" + stack.linux.units.watchdog.removesuffix(".service")
    text = script.data.decode()
    assert key not in text
    assert f"sh {rendered['secrets/secrets.env'].dest} " in text  # sourced by a clean shell
    path = tmp_path / "init"
    path.write_bytes(script.data)
    checked = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr
