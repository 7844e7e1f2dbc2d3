"""Whose agents on a host whose PID 1 is not systemd: the deploy installs
``/etc/init.d/provider-fallback-agents`` for the login in ``/etc/default``, which starts the
follower AS THAT PERSON (start-stop-daemon --chuid): their Kilo Code and Gemini CLI files point
where the watchdog decided, stay theirs, and a second deploy changes nothing. With nobody
named again, the follower stops and the person's files are their own again."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoring.agents.follower import FOLLOWER_DIR
from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from tests.host.conftest import STACK_FILE, unavailable
from tests.support.deploy_run import fake_key, run_deploy, write_inventory
from tests.support.polling import until
from tests.support.testhost import TestHost, booted_hosts

pytestmark = pytest.mark.host

LOGIN = "bob"
KILO = '{\n  // bob\'s own settings\n  "theme": "dark"\n}\n'


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestHost, Any]]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    stack = load_stack(STACK_FILE)
    env = {name: fake_key("sk-") for name in stack.secret_env_names()}
    with contextlib.ExitStack() as cleanup:
        (host,) = cleanup.enter_context(booted_hosts(1, systemd=False))
        done = host.ssh(f"useradd -m -s /bin/sh {LOGIN} && su -s /bin/sh {LOGIN} -c "
                        + shlex.quote(f"mkdir -p ~/.config/kilo && printf %s {shlex.quote(KILO)}"
                                      " > ~/.config/kilo/kilo.jsonc"))
        assert done.returncode == 0, done.stderr
        inventory = write_inventory(tmp_path_factory.mktemp("bob") / "inventory.py", [host],
                                    {"stack": {"linux": {"agents_user": LOGIN}}})
        first = run_deploy(inventory, env).check()
        yield host, (stack, inventory, env, first)


def _sh(host: TestHost, command: str) -> str:
    done = host.ssh(command)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout


def test_the_init_script_runs_the_follower_as_the_person(guest: tuple[TestHost, Any]) -> None:
    host, (stack, inventory, env, _) = guest
    lay = layout(stack, "linux")
    name = stack.linux.units.agents.removesuffix("@.service")
    assert f"AGENTS_USER={LOGIN}" in _sh(host, f"cat /etc/default/{name}")
    _sh(host, f"/etc/init.d/{name} status")
    assert _sh(host, f"stat -c %U /proc/$(cat /run/{name}.pid)").strip() == LOGIN

    def agents() -> dict[str, Any]:
        out = _sh(host, f"{lay.watchdog_bin} agents --json --config {lay.watchdog_config}")
        return {r["agent"]: r for r in json.loads(out) if r["enrolled"]}

    def followed() -> bool:
        rows = agents()
        return all(r["expected"] and r["points_at"] == r["expected"] for r in rows.values())

    until(followed, 120, f"{LOGIN}'s agents where the watchdog decided")
    assert agents()["kilo-code"]["managed_by"] == f"managed for {LOGIN} by {name}"
    home = _sh(host, f"getent passwd {LOGIN} | cut -d: -f6").strip()
    kilo = f"{home}/.config/kilo/kilo.jsonc"
    assert _sh(host, f"stat -c '%U %a' {kilo}").split() == [LOGIN, "644"]
    assert "// bob's own settings" in _sh(host, f"cat {kilo}")
    assert _sh(host, f"stat -c '%U %a' {home}/.gemini/.env").split() == [LOGIN, "600"]
    assert _sh(host, f"stat -c %U {lay.state(FOLLOWER_DIR)}").strip() == LOGIN
    assert run_deploy(inventory, env).check().changed == 0


def test_nobody_named_stops_it_and_gives_the_person_their_files_back(
        guest: tuple[TestHost, Any], tmp_path: Path) -> None:
    """``linux.agents_user: null``: the init script's follower is stopped, the person's files
    get their own bytes back from the takeover records, and the directory goes."""
    host, (stack, _, env, _) = guest
    lay = layout(stack, "linux")
    name = stack.linux.units.agents.removesuffix("@.service")
    home = _sh(host, f"getent passwd {LOGIN} | cut -d: -f6").strip()
    kilo = f"{home}/.config/kilo/kilo.jsonc"
    def managed() -> bool:
        out = _sh(host, f"{lay.watchdog_bin} agents --json --config {lay.watchdog_config}")
        rows = {r["agent"]: r for r in json.loads(out)}
        return bool(rows["kilo-code"]["managed"] and rows["kilo-code"]["points_at"])

    until(managed, 120, f"{LOGIN}'s Kilo Code file switched")
    assert _sh(host, f"cat {kilo}") != KILO
    nobody = write_inventory(tmp_path / "inventory.py", [host],
                             {"stack": {"linux": {"agents_user": None}}})
    run_deploy(nobody, env).check()
    assert _sh(host, f"cat {kilo}") == KILO
    assert _sh(host, f"stat -c '%U %a' {kilo}").split() == [LOGIN, "644"]
    assert host.ssh(f"test -e {lay.state(FOLLOWER_DIR)}").returncode != 0
    assert host.ssh(f"test -e /etc/default/{name}").returncode != 0
    assert host.ssh(f"pgrep -u {LOGIN} -f 'agents follow'").returncode != 0
    assert run_deploy(nobody, env).check().changed == 0
