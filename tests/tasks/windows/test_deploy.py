"""deploy.py's Windows branch end to end: pyinfra loads deploy.py for an ``@winrm`` host,
prepares and runs every operation through the real connector, whose pywinrm session is the
fake of fakewinrm.py in front of the simulated host of fakehost.py.

First run on a fresh host: the exact ordered changes of sessions/first-run.txt. Second run on
the host as the first run left it: no change at all. Set ``PF_UPDATE_SESSIONS=1`` to rewrite
the expected file after a deliberate change (and review the diff).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import OperationError
from pyinfra.api.inventory import Inventory
from pyinfra.api.operations import run_ops
from pyinfra.api.state import State, StateStage
from pyinfra.context import ctx_config, ctx_host, ctx_state

from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from tasks.render import render
from tasks.windows import taskxml
from tasks.windows.connector import WinRMConnector
from tasks.windows.deploy import WindowsDeployError, controller_inputs, directories
from tests.conftest import REPO, STACK_FILE
from tests.support.powershell import assert_parses
from tests.tasks.windows.fakehost import (
    DEFAULT_TASK_SDDL,
    FakeWindows,
    inherited_acl,
    summary,
)
from tests.tasks.windows.fakewinrm import FakeSessionFactory

SESSIONS = Path(__file__).resolve().parent / "sessions"
HOST = "@winrm/win-test"
SECRET = "test-master-key-value-0123456789"


def release_zip(folder: Path, name: str, program: str) -> dict[str, str]:
    """A release zip as the project publishes it (one top directory), put in the cache."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/{program}", b"MZ fake " + program.encode())
        zf.writestr(f"{name}/LICENSE", b"Apache-2.0")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    cache = folder / "releases"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{sha[:16]}-{name}.zip").write_bytes(data)
    return {"url": f"https://example.invalid/{name}.zip", "sha256": sha}


@dataclass
class Controller:
    data: dict[str, Any]
    cache: Path


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Controller:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PF_CACHE", str(cache))
    monkeypatch.setenv("WINRM_USER", "WIN-TEST\\pavel")
    monkeypatch.setenv("WINRM_PASSWORD", "winrm-password-not-shown")
    stack = load_stack(STACK_FILE)
    for name in stack.secret_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(stack.litellm.master_key_env, SECRET)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "provider_fallback-0.1.0-py3-none-any.whl").write_bytes(b"PK project")
    (wheelhouse / "httpx-0.28.1-py3-none-any.whl").write_bytes(b"PK httpx")
    lock = tmp_path / "requirements.lock"
    lock.write_text("httpx==0.28.1 --hash=sha256:" + "0" * 64 + "\n")
    windows = {
        "prometheus_release": release_zip(cache, "prometheus-3.5.0.windows-amd64",
                                          "prometheus.exe"),
        "alertmanager_release": release_zip(cache, "alertmanager-0.28.1.windows-amd64",
                                            "alertmanager.exe"),
    }
    data = {"target_os": "windows", "stack_file": str(STACK_FILE),
            "stack": {"windows": windows}, "wheelhouse_dir": str(wheelhouse),
            "lock_file": str(lock)}
    return Controller(data, cache)


def deploy(host: FakeWindows, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
           ) -> State:
    """One ``pyinfra inventory deploy.py`` run, through pyinfra's API."""
    factory = FakeSessionFactory(host)
    monkeypatch.setattr(WinRMConnector, "session_factory", factory)
    monkeypatch.chdir(REPO)
    inventory = Inventory(([(HOST, data)], {}))  # type: ignore[no-untyped-call]
    state = State()
    state.init(inventory, Config())  # type: ignore[no-untyped-call]
    with ctx_state.use(state):
        state.set_stage(StateStage.Connect)
        connect_all(state)
        state.set_stage(StateStage.Prepare)
        load_deploy_file(state, REPO / "deploy.py")
        state.set_stage(StateStage.Execute)
        run_ops(state)
        state.set_stage(StateStage.Disconnect)
        disconnect_all(state)
    assert not state.failed_hosts, [e.stdout for e in host.exchanges if e.code][:3]
    return state


def load_deploy_file(state: State, path: Path) -> None:
    """What ``pyinfra INVENTORY deploy.py`` does with the file, for each host (pyinfra_cli's
    own loader is not imported: importing pyinfra_cli monkey-patches the whole test process
    with gevent)."""
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    for host in state.inventory.get_active_hosts():
        with ctx_config.use(state.config.copy()), ctx_host.use(host):
            exec(code, {"__file__": str(path)})  # noqa: S102 (the project's own deploy.py)


def fresh_host() -> FakeWindows:
    return FakeWindows(pythons={"c:\\program files\\python311\\python.exe": "3.11.9"})


def test_first_run_makes_the_expected_changes_and_a_second_run_none(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fresh_host()
    deploy(host, controller.data, monkeypatch)
    changes = [summary(e) for e in host.changes()]
    expected_file = SESSIONS / "first-run.txt"
    if os.environ.get("PF_UPDATE_SESSIONS"):
        expected_file.write_text("\n".join(changes) + "\n", encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    assert changes == expected, "\n".join(difflib.unified_diff(
        expected, changes, "sessions/first-run.txt", "this run", lineterm=""))
    for exchange in host.exchanges:
        assert_parses(exchange.script, exchange.label)

    # What the first run left is what the stack says.
    stack = load_stack(STACK_FILE, controller.data["stack"])
    rendered = render(stack, "windows")
    for artifact in rendered.values():
        assert host.files[artifact.dest.casefold()] == artifact.data, artifact.dest
    assert {t[1] for t in host.tasks} == {n.casefold() for n in (
        stack.windows.tasks.litellm, stack.windows.tasks.watchdog,
        stack.windows.tasks.prometheus, stack.windows.tasks.alertmanager)}
    assert all(t["state"] == 4 and t["enabled"] for t in host.tasks.values())
    assert host.rules == []  # LiteLLM listens on loopback: no rule (as on Linux)
    assert host.sources == {stack.windows.event_log.source.casefold(): "Application"}
    lay = layout(stack, "windows")
    assert host.env == {stack.litellm.master_key_env: SECRET,
                        "PROVIDER_FALLBACK_CONFIG": lay.watchdog_config}

    # Second run: facts reflect the first run, nothing changes.
    before = len(host.exchanges)
    state = deploy(host, controller.data, monkeypatch)
    assert [summary(e) for e in host.changes()[len(changes):]] == []
    meta = state.get_meta_for_host(state.inventory.get_host(HOST))
    assert meta.ops > 40
    assert meta.ops_change == 0
    assert len(host.exchanges) > before


def test_the_pyinfra_cli_deploys_an_at_winrm_host(controller: Controller, tmp_path: Path
                                                  ) -> None:
    """``pyinfra -y INVENTORY deploy.py`` in a subprocess: the entry point, the @winrm name,
    CLI mode's operation order; twice, and the second run changes nothing."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = [({HOST!r}, {controller.data!r})]\n", encoding="utf-8")
    state_file = tmp_path / "host.pickle"
    state_file.write_bytes(pickle.dumps(fresh_host()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "tests.tasks.windows.cli_runner", str(state_file), "--",
             "-y", "-v", str(inventory), "deploy.py"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout + result.stderr)
    host = pickle.loads(state_file.read_bytes())  # noqa: S301 (written above)
    expected = (SESSIONS / "first-run.txt").read_text(encoding="utf-8").splitlines()
    assert [summary(e) for e in host.changes()] == expected
    totals = [line.split() for out in outputs for line in out.splitlines()
              if "Grand total" in line]
    # Grand total | hosts (operations) | success (changed) | error | no change
    first, second = totals
    assert int(first[3]) > 40
    assert (first[4], second[3], second[4]) == ("-", "-", "-")
    for out in outputs:
        assert SECRET not in out
        assert "winrm-password-not-shown" not in out


def test_a_changed_config_is_put_and_its_task_restarted(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fresh_host()
    deploy(host, controller.data, monkeypatch)
    done = len(host.changes())
    stack = load_stack(STACK_FILE, controller.data["stack"])
    lay = layout(stack, "windows")
    host.files[lay.litellm_config.casefold()] = b"edited by hand\n"
    deploy(host, controller.data, monkeypatch)
    assert [summary(e) for e in host.changes()[done:]] == [
        f"put_file {lay.litellm_config}",
        f"op scheduled_task.restart_script {lay.scripts_dir}\\manage-litellm.ps1",
    ]


def test_secrets_never_reach_a_script_or_a_log(controller: Controller,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    with caplog.at_level("DEBUG"):
        deploy(host, controller.data, monkeypatch)
    assert SECRET not in caplog.text
    assert "winrm-password-not-shown" not in caplog.text
    for exchange in host.exchanges:
        assert SECRET not in exchange.script
    assert all(SECRET.encode() not in data for data in host.files.values())


def test_missing_wheelhouse_or_release_stops_before_any_change(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = load_stack(STACK_FILE, controller.data["stack"])
    without = {k: v for k, v in controller.data.items() if k != "wheelhouse_dir"}
    with pytest.raises(WindowsDeployError, match="wheelhouse_dir not set"):
        controller_inputs(stack, without)
    null_release = load_stack(STACK_FILE, {"windows": {"prometheus_release": None}})
    with pytest.raises(WindowsDeployError, match=r"windows\.prometheus_release is null"):
        controller_inputs(null_release, controller.data)
    wrong = load_stack(STACK_FILE, {"windows": {
        **controller.data["stack"]["windows"],
        "alertmanager_release": {"url": "https://example.invalid/am.zip", "sha256": "f" * 64}}})
    monkeypatch.setattr("tasks.windows.releases._open", _refuse)
    with pytest.raises(WindowsDeployError, match=r"windows\.alertmanager_release: cannot "):
        controller_inputs(wrong, controller.data)
    host = fresh_host()
    with pytest.raises(WindowsDeployError):
        deploy(host, {**controller.data, "stack": {"windows": {"prometheus_release": None}}},
               monkeypatch)
    assert host.changes() == []


def test_a_non_elevated_account_is_refused_before_any_change(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fresh_host()
    host.account = ("WIN-TEST\\guest", "S-1-5-21-1-2-3-1005", False)
    with pytest.raises(WindowsDeployError, match="without administrator rights"):
        deploy(host, controller.data, monkeypatch)
    assert host.changes() == []


def test_directories_leave_out_parents_of_others(controller: Controller) -> None:
    stack = load_stack(STACK_FILE, controller.data["stack"])
    lay = layout(stack, "windows")
    found = directories(lay, render(stack, "windows"), ())
    keys = [d.casefold() for d in found]
    assert lay.state_dir.casefold() in keys
    assert stack.windows.install_root.casefold() not in keys  # config_dir creates it
    assert not any(o != k and o.startswith(k + "\\") for k in keys for o in keys)


def test_no_firewall_rule_for_a_loopback_proxy_and_a_stale_one_is_removed(
        controller: Controller, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    stack = load_stack(STACK_FILE, controller.data["stack"])
    host.rules.append({"name": stack.windows.firewall.name, "enabled": True, "direction": 1,
                       "action": 1, "protocol": 6, "local_port": "4000", "remote_port": "*",
                       "profiles": 2, "remote_addresses": "LocalSubnet",
                       "local_addresses": "*", "program": None, "description": "old"})
    with caplog.at_level("INFO"):
        deploy(host, controller.data, monkeypatch)
    assert host.rules == []
    assert f"op firewall.delete {stack.windows.firewall.name}" in \
        [summary(e) for e in host.changes()]
    assert "LiteLLM listens on 127.0.0.1 only, no rule is needed" in caplog.text


def test_a_proxy_beyond_loopback_gets_a_rule_scoped_to_the_base_interpreter(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {**controller.data, "stack": {**controller.data["stack"],
                                         "litellm": {"listen": {"host": "192.168.1.10"}}}}
    host = fresh_host()
    deploy(host, data, monkeypatch)
    stack = load_stack(STACK_FILE, data["stack"])
    [rule] = host.rules
    assert rule["program"] == stack.windows.python  # not the venv's redirector
    assert (rule["local_port"], rule["profiles"], rule["remote_addresses"]) == (
        str(stack.litellm.listen.port), 2, "LocalSubnet")
    changes = len(host.changes())
    deploy(host, data, monkeypatch)
    assert host.changes()[changes:] == []


def test_the_watchdog_account_may_run_and_stop_the_proxy_task_only(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fresh_host()
    deploy(host, controller.data, monkeypatch)
    stack = load_stack(STACK_FILE, controller.data["stack"])
    sid = host.account[1]
    tasks = {name: task for (_, name), task in host.tasks.items()}
    proxy = tasks[stack.windows.tasks.litellm.casefold()]
    assert proxy["sddl"] == taskxml.run_stop_sddl(sid)
    assert taskxml.grants_run_stop(proxy["sddl"], sid)
    others = [t for n, t in tasks.items() if n != stack.windows.tasks.litellm.casefold()]
    assert all(t["sddl"] == DEFAULT_TASK_SDDL for t in others)
    # A proxy task registered earlier without the grant gets it, and nothing else changes.
    proxy["sddl"] = DEFAULT_TASK_SDDL
    done = len(host.changes())
    deploy(host, controller.data, monkeypatch)
    folder = stack.windows.tasks.folder.rstrip("\\")
    assert [summary(e) for e in host.changes()[done:]] == [
        f"op scheduled_task.security {folder}\\{stack.windows.tasks.litellm}"]
    assert taskxml.grants_run_stop(proxy["sddl"], sid)


def test_the_install_root_is_private_and_a_foreign_root_is_refused(
        controller: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = load_stack(STACK_FILE, controller.data["stack"])
    root = stack.windows.install_root
    host = fresh_host()
    deploy(host, controller.data, monkeypatch)
    acl = host.acls[root.casefold()]
    assert acl["protected"]
    assert {(r["sid"], r["rights"], r["inheritance"]) for r in acl["rules"]} == {
        ("S-1-5-18", 0x1F01FF, 3), ("S-1-5-32-544", 0x1F01FF, 3), (host.account[1], 0x1301BF, 3)}

    squatted = fresh_host()
    squatted.dirs.add(root.casefold())
    squatted.acls[root.casefold()] = inherited_acl(owner="S-1-5-21-1111-2222-3333-1005")
    with pytest.raises(OperationError, match=r"owned by S-1-5-21-1111-2222-3333-1005.*takeown"):
        deploy(squatted, controller.data, monkeypatch)
    assert squatted.changes() == []


def _refuse(url: str) -> Any:
    raise OSError("network is off in tests")
