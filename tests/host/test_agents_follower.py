"""Whose agents, on the provisioned systemd host: a non-root login user with real Kilo Code
and Gemini CLI files is named in ``linux.agents_user``; the deploy enables
``provider-fallback-agents@<login>``, which switches THEIR files to the fallback after a real
failover and back after the restore. The files stay theirs (owner, modes); the service
account's agent files are not touched meanwhile. Then another person is named: the first one's
follower stops, their files get their own bytes back, and the new person's follower starts
in a directory of its own. At the end the host is deployed again with nobody named (as the
session's other modules expect it): the follower is stopped and disabled, the last person's
files are theirs again, and the directory is removed."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from monitoring.agents.follower import DECISION_FILE, FOLLOWER_DIR
from tests.host.conftest import HostEnv
from tests.support.deploy_run import run_deploy
from tests.support.polling import until

pytestmark = pytest.mark.host

LOGIN = "alice"
#: The person named next (linux.agents_user changed).
OTHER = "bob"
FAILING = ("groq", "openrouter")  # every provider of the proxy target's chain
#: The person's own files, in the agents' own formats (what the adapters read and write).
KILO = '{\n  // alice\'s own settings\n  "theme": "dark",\n  "autoupdate": false\n}\n'
SETTINGS = '{\n  "ui": {\n    "theme": "GitHub"\n  }\n}\n'
DOTENV = "# alice's Gemini CLI\nGEMINI_API_KEY=alices-own-key\n"
#: home-relative path -> mode the person gave it.
FILES = {".config/kilo/kilo.jsonc": (KILO, "644"), ".gemini/settings.json": (SETTINGS, "644"),
         ".gemini/.env": (DOTENV, "600")}


def _sh(env: HostEnv, command: str) -> str:
    done = env.run(command)
    assert done.rc == 0, f"{command}: {done.stderr}"
    return str(done.stdout)


def _person(env: HostEnv, login: str) -> str:
    """``login``, created with their own agent files (alice's, in their name); their home."""
    _sh(env, f"id {login} >/dev/null 2>&1 || useradd -m -s /bin/bash {login}")
    for rel, (text, mode) in FILES.items():
        own = text.replace("alice", login)
        _sh(env, f"su -s /bin/sh {login} -c " + shlex.quote(
            f"mkdir -p $(dirname ~/{rel}) && printf %s {shlex.quote(own)} > ~/{rel} "
            f"&& chmod {mode} ~/{rel}"))
    return _sh(env, f"getent passwd {login} | cut -d: -f6").strip()


def _inventory(env: HostEnv, path: Path, agents_user: str | None) -> Path:
    """The session's inventory with ``linux.agents_user`` set (host data, as a user would)."""
    rows = ast.literal_eval(env.inventory.read_text().split("=", 1)[1].strip())
    for _, data in rows:
        stack = data.setdefault("stack", {})
        stack["linux"] = {**stack.get("linux", {}), "agents_user": agents_user}
    path.write_text(f"hosts = {rows!r}\n", encoding="utf-8")
    return path


def _agents(env: HostEnv) -> dict[str, Any]:
    out = _sh(env, f"{env.layout.watchdog_bin} agents --json --config "
                   f"{env.layout.watchdog_config}")
    return {row["agent"]: row for row in json.loads(out) if row["enrolled"]}


def _points_at(env: HostEnv) -> dict[str, str | None]:
    return {name: row["points_at"] for name, row in _agents(env).items()}


def _service_home_files(env: HostEnv) -> str:
    """Digests of every agent file in the service account's home (its own, from before)."""
    home = env.layout.state_dir
    return str(env.run(f"cd {home} && find .config .gemini -type f -exec sha256sum {{}} + "
                       "2>/dev/null | sort").stdout)


def _events(env: HostEnv) -> list[str]:
    out = env.run(f"cat {env.layout.log(env.stack.watchdog.event_log)}")
    return str(out.stdout).splitlines() if out.rc == 0 else []


def test_a_persons_agents_follow_a_real_failover_and_restore(host_env: HostEnv,
                                                             tmp_path: Path) -> None:
    env = host_env
    unit = env.stack.linux.units.agents.replace("@.", f"@{LOGIN}.")
    home = _person(env, LOGIN)
    person = _inventory(env, tmp_path / "person.py", LOGIN)
    try:
        run_deploy(person, env.env).check()

        def journal() -> str:
            return str(env.run(f"systemctl status {unit} --no-pager; journalctl -u {unit} "
                               "--no-pager -n 60").stdout)

        assert env.run(f"systemctl is-active {unit}").stdout.strip() == "active", journal()
        assert _sh(env, f"systemctl is-enabled {unit}").strip() == "enabled"
        props = _sh(env, f"systemctl show -p User -p NoNewPrivileges {unit}")
        assert f"User={LOGIN}" in props
        assert "NoNewPrivileges=yes" in props
        folder = env.layout.state(FOLLOWER_DIR)
        assert _sh(env, f"stat -c '%U %a' {folder}").split() == [LOGIN, "750"]
        assert _sh(env, f"stat -c %a {env.layout.state_dir}").strip() == "751"
        assert run_deploy(person, env.env).check().changed == 0  # idempotent

        until(lambda: set(_points_at(env).values()) == {"litellm"}, 90,
              f"{LOGIN}'s agents on the proxy")
        rows = _agents(env)
        assert rows["kilo-code"]["whose"] == home
        assert rows["kilo-code"]["managed_by"] == f"managed for {LOGIN} by {unit}"
        theirs = _service_home_files(env)
        before = len(_events(env))
        try:
            for name in FAILING:
                env.upstreams[name].set_fault(500)
            until(lambda: _points_at(env) == {"kilo-code": "kilo-code", "gemini-cli": "google"},
                  120, f"{LOGIN}'s agents on their fallbacks")
        finally:
            for name in FAILING:
                env.upstreams[name].set_fault("ok")
        fallback = [line for line in _events(env)[before:] if "FALLBACK:" in line]
        assert fallback, _events(env)[before:]
        assert f"managed for {LOGIN} by {unit}" in fallback[0]
        until(lambda: set(_points_at(env).values()) == {"litellm"}, 180,
              f"{LOGIN}'s agents restored to the proxy")
        assert any("RESTORED:" in line for line in _events(env)[before:])

        for rel, (_, mode) in FILES.items():
            owner = _sh(env, f"stat -c '%U %a' {home}/{rel}").split()
            assert owner == [LOGIN, mode], rel
        kilo = _sh(env, f"cat {home}/.config/kilo/kilo.jsonc")
        assert "// alice's own settings" in kilo  # the person's file, edited in place
        assert "# alice's Gemini CLI" in _sh(env, f"cat {home}/.gemini/.env")
        assert _service_home_files(env) == theirs  # the service account's: untouched
        status = _sh(env, f"{env.layout.watchdog_bin} status --config "
                          f"{env.layout.watchdog_config}")
        assert f"agents' files: managed for {LOGIN} by {unit}" in status

        # Another person named: alice's follower stops and her files get her own bytes back
        # (her takeover records), then bob's follower starts in a directory of his own.
        bob_home = _person(env, OTHER)
        other = _inventory(env, tmp_path / "other.py", OTHER)
        run_deploy(other, env.env).check()
        for rel, (text, mode) in FILES.items():
            assert _sh(env, f"cat {home}/{rel}") == text, f"{LOGIN}'s own {rel} back"
            assert _sh(env, f"stat -c '%U %a' {home}/{rel}").split() == [LOGIN, mode], rel
        assert env.run(f"systemctl is-active {unit}").stdout.strip() != "active"
        assert env.run(f"systemctl is-enabled {unit}").stdout.strip() != "enabled"
        bob_unit = unit.replace(f"@{LOGIN}.", f"@{OTHER}.")
        assert _sh(env, f"systemctl is-active {bob_unit}").strip() == "active"
        assert _sh(env, f"stat -c '%U %a' {folder}").split() == [OTHER, "750"]
        until(lambda: set(_points_at(env).values()) == {"litellm"}
              and _agents(env)["kilo-code"]["whose"] == bob_home, 90,
              f"{OTHER}'s agents on the proxy")
        assert run_deploy(other, env.env).check().changed == 0  # idempotent
        for rel, (text, _) in FILES.items():
            assert _sh(env, f"cat {home}/{rel}") == text, f"{LOGIN}'s {rel} left alone"
    finally:
        # Nobody named again: the session's other modules expect the service account's host.
        nobody = _inventory(env, tmp_path / "nobody.py", None)
        run_deploy(nobody, env.env).check()
    assert env.run(f"systemctl is-enabled {unit}").stdout.strip() != "enabled"
    assert env.run(f"systemctl is-active {unit}").stdout.strip() != "active"
    assert env.run(f"test -e {env.layout.state(FOLLOWER_DIR)}").rc != 0
    # Nobody named: bob's files are his own again too.
    bob_home = _sh(env, f"getent passwd {OTHER} | cut -d: -f6").strip()
    for rel, (text, _) in FILES.items():
        assert _sh(env, f"cat {bob_home}/{rel}") == text.replace("alice", OTHER), rel
    until(lambda: env.run(f"test -e {env.layout.state(DECISION_FILE)}").rc != 0, 30,
          "the watchdog removing the decision nobody reads any more")
    assert _sh(env, f"stat -c %a {env.layout.state_dir}").strip() == "750"
