"""A person's agents follower (monitoring/agents/follower.py): its systemd template unit and
its init script, as rendered from the stack; the deploy enables an instance for a person."""

from __future__ import annotations

import subprocess
from pathlib import Path

from monitoring.agents.follower import FOLLOWER_DIR
from monitoring.stack.layout import Layout, watchdog_command
from monitoring.stack.schema import Stack
from tasks.linux.agents import HOME_DROPIN, follower_instance, home_dropin
from tasks.render.common import Rendered
from tasks.render.systemd import follower_command, follower_defaults, follower_rels
from tests.tasks.render.test_systemd import _verify


def test_the_template_unit_passes_verify_runs_as_the_person_and_may_write_only_their_home(
        stack: Stack, linux_layout: Layout, rendered_linux: Rendered, tmp_path: Path) -> None:
    unit_rel, _ = follower_rels(stack)
    unit = rendered_linux[unit_rel]
    assert unit.dest == f"/etc/systemd/system/{stack.linux.units.agents}"
    assert unit.mode == 0o644
    text = unit.data.decode()
    for line in ("User=%i", f"EnvironmentFile={linux_layout.secrets_env}",
                 "WorkingDirectory=~", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=read-only", f"ReadWritePaths={linux_layout.state(FOLLOWER_DIR)}",
                 "RestrictAddressFamilies=AF_UNIX", "UMask=0077"):
        assert f"\n{line}\n" in text, line
    command = " ".join(f'"{part}"' for part in follower_command(linux_layout))
    assert f"\nExecStart={command} --by %n\n" in text
    assert f"After={stack.linux.units.watchdog}" in text
    watchdog = rendered_linux[f"systemd/{stack.linux.units.watchdog}"].data
    output = _verify({stack.linux.units.agents: unit.data,
                      stack.linux.units.watchdog: watchdog},
                     [watchdog_command(linux_layout)[0]], tmp_path)
    assert output == "", output


def test_the_init_script_reads_the_person_from_its_defaults_and_holds_no_secret(
        stack: Stack, linux_layout: Layout, rendered_linux: Rendered, tmp_path: Path) -> None:
    _, script_rel = follower_rels(stack)
    script = rendered_linux[script_rel]
    assert script.dest == "/etc/init.d/" + stack.linux.units.agents.removesuffix("@.service")
    assert script.mode == 0o755
    text = script.data.decode()
    assert f". {follower_defaults(stack)}" in text
    assert '--chuid "$AGENTS_USER"' in text
    assert f"sh {linux_layout.secrets_env} " in text  # the keys sourced by a clean shell
    assert "agents follow --state-dir" in text
    path = tmp_path / "init"
    path.write_bytes(script.data)
    checked = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr


def test_an_instance_with_its_home_drop_in_passes_verify(
        stack: Stack, linux_layout: Layout, rendered_linux: Rendered, tmp_path: Path) -> None:
    """The deploy's drop-in (tasks/linux/agents.py) makes the person's home writable: the
    instance, template and drop-in together, is accepted by systemd-analyze verify."""
    unit_rel, _ = follower_rels(stack)
    instance = follower_instance(stack, "alice")
    assert instance == "provider-fallback-agents@alice.service"
    dropin = home_dropin("/home/alice smith")
    assert b'\nReadWritePaths="/home/alice smith"\n' in dropin
    root = tmp_path / "root"
    folder = root / "etc/systemd/system" / f"{instance}.d"
    folder.mkdir(parents=True)
    (folder / HOME_DROPIN).write_bytes(dropin)
    watchdog = rendered_linux[f"systemd/{stack.linux.units.watchdog}"].data
    output = _verify({stack.linux.units.agents: rendered_linux[unit_rel].data,
                      stack.linux.units.watchdog: watchdog},
                     [watchdog_command(linux_layout)[0]], root, verify=[instance])
    assert output == "", output
