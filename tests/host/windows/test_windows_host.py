"""What a deployed Windows host must be: files, firewall rule, tasks, event source, venv,
listeners, and a second deploy that changes nothing."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.render.common import Rendered
from tasks.render.windows import TASKS_REL, firewall_address, task_specs
from tasks.windows import facts, files, taskxml
from tasks.windows import powershell as ps
from tasks.windows.environment import digest, salt_for
from tests.support.polling import until

Fact = Callable[..., Any]
Run = Callable[[str], Any]


def test_every_rendered_file_is_in_place(fact: Fact, rendered: Rendered) -> None:
    for rel, artifact in rendered.items():
        info = fact(facts.File, path=artifact.dest)
        assert info.is_file, f"{rel}: {artifact.dest} is missing"
        assert info.sha256 == hashlib.sha256(artifact.data).hexdigest(), rel


def test_firewall_rule_only_beyond_loopback(fact: Fact, stack: Stack) -> None:
    rules = fact(facts.FirewallRule, rule=stack.windows.firewall.name)
    if ipaddress.ip_address(stack.litellm.listen.host).is_loopback:
        assert rules == [], "LiteLLM listens on loopback: no rule, as on Linux"
        return
    assert len(rules) == 1, rules
    [rule] = rules
    assert (rule.enabled, rule.direction, rule.action, rule.protocol) == \
        (True, "in", "allow", "tcp")
    assert rule.local_port == str(stack.litellm.listen.port)
    assert rule.program.casefold() == stack.windows.python.casefold()
    assert set(rule.profiles) == set(stack.windows.firewall.profiles)
    wanted = {firewall_address(a).casefold() for a in stack.windows.firewall.remote_addresses}
    assert {a.casefold() for a in rule.remote_addresses} == wanted


def test_install_root_is_private(fact: Fact, stack: Stack, lay: Layout) -> None:
    """H3: no inherited "Users may create" entry; SYSTEM, Administrators, the account only,
    and what the tree holds inherits just that."""
    account = fact(facts.CurrentUser)
    root = fact(facts.DirectoryAcl, path=stack.windows.install_root)
    assert root.protected
    assert root.owner in (facts.SYSTEM_SID, facts.ADMINISTRATORS_SID, account.sid.upper())
    assert {(r.sid, r.rights, r.inheritance) for r in root.rules if not r.inherited} == \
        set(files.private_rules(account.sid))
    allowed = {facts.SYSTEM_SID, facts.ADMINISTRATORS_SID, account.sid.upper()}
    for inner in (lay.venv, lay.state_dir, lay.log_dir, lay.config_dir):
        info = fact(facts.DirectoryAcl, path=inner)
        assert {r.sid for r in info.rules} <= allowed, (inner, info.rules)


def test_the_watchdog_account_may_run_and_stop_the_proxy_task(fact: Fact,
                                                              stack: Stack) -> None:
    account = fact(facts.CurrentUser)
    info = fact(facts.ScheduledTask, task=stack.windows.tasks.litellm,
                folder=stack.windows.tasks.folder)
    assert taskxml.grants_run_stop(info.sddl, account.sid), info.sddl


def test_scheduled_tasks_are_registered_as_rendered_and_running(
        fact: Fact, stack: Stack, lay: Layout, rendered: Rendered) -> None:
    account = fact(facts.CurrentUser)
    for spec in task_specs(stack, lay):
        info = fact(facts.ScheduledTask, task=spec.name, folder=stack.windows.tasks.folder)
        assert info.exists, spec.name
        assert info.enabled, spec.name
        assert info.running, f"{spec.name} is {info.state} (last result {info.last_result})"
        xml = rendered[f"{TASKS_REL}/{spec.file_name}"].data.decode("utf-8")
        wanted = taskxml.parse(taskxml.with_user(xml, account.name))
        assert taskxml.differences(wanted, info.definition(),
                                   (account.sid, account.name)) == [], spec.name


#: Seconds past ``windows.tasks.restart_interval`` a killed program may take to be back: the
#: next repetition of its trigger, then the program's own start (the proxy imports LiteLLM).
RECOVERY_SLACK_S = 120
#: Seconds a rebooted host may take to answer WinRM and start every task again.
REBOOT_DEADLINE_S = 900

_PIDS = """\
$found = @(Get-CimInstance -ClassName Win32_Process | Where-Object {
    $line = [string]$_.CommandLine
    $line.IndexOf($Marker, [System.StringComparison]::OrdinalIgnoreCase) -ge 0 -and
        $_.ProcessId -ne $PID
} | ForEach-Object { [int]$_.ProcessId })
ConvertTo-Json -Compress -InputObject $found"""


def _markers(stack: Stack, lay: Layout) -> dict[str, str]:
    """A string only the command line of each task's long-running program holds."""
    return {"litellm": lay.litellm_config, "watchdog": lay.watchdog_config,
            "prometheus": lay.prometheus_bin, "alertmanager": lay.alertmanager_bin}


def _pids(powershell: Run, marker: str) -> set[int]:
    result = powershell(ps.script("pids", {"Marker": marker}, _PIDS))
    assert result.rc == 0, result.stderr
    return set(json.loads(result.stdout or "[]"))


@pytest.mark.parametrize("key", ["watchdog", "prometheus", "alertmanager", "litellm"])
def test_a_killed_program_comes_back_without_a_logon(
        powershell: Run, stack: Stack, lay: Layout, key: str) -> None:
    """Repetition + IgnoreNew: what only a real Task Scheduler can show. RestartOnFailure
    alone would leave it down ([MS-TSCH] 2.5.4.2)."""
    marker = _markers(stack, lay)[key]
    before = until(lambda: _pids(powershell, marker), 120, f"{key} runs before the kill")
    kill = ps.script("kill", {"Ids": [str(p) for p in before]},
                     "foreach ($id in $Ids) { Stop-Process -Id ([int]$id) -Force "
                     "-ErrorAction SilentlyContinue }")
    assert powershell(kill).rc == 0
    deadline = stack.windows.tasks.restart_interval + RECOVERY_SLACK_S
    until(lambda: _pids(powershell, marker) - before, deadline,
          f"{key} back within restart_interval + {RECOVERY_SLACK_S} s", interval=5)


@pytest.mark.skipif(os.environ.get("PF_WINDOWS_REBOOT") != "1",
                    reason="set PF_WINDOWS_REBOOT=1 to reboot the host and check that every "
                           "task starts at boot, with nobody logged on")
def test_every_task_starts_at_boot(windows_host: Any, powershell: Run, stack: Stack,
                                   lay: Layout) -> None:
    boot = "ConvertTo-Json -InputObject ((Get-CimInstance Win32_OperatingSystem)" \
        ".LastBootUpTime.ToUniversalTime().ToString('o'))"
    first = powershell(boot).stdout.strip()
    # The reboot may drop the connection before an answer: either way it is polled below.
    with contextlib.suppress(Exception):
        powershell("Restart-Computer -Force")

    def rebooted() -> bool:
        result = powershell(boot)
        return bool(result.rc == 0 and result.stdout.strip() != first)

    until(rebooted, REBOOT_DEADLINE_S, "the host is back after the reboot", interval=10)
    for key, marker in _markers(stack, lay).items():
        until(functools.partial(_pids, powershell, marker), REBOOT_DEADLINE_S,
              f"{key} running after the boot, before any logon", interval=10)


def test_event_source_and_an_event_from_the_venv(powershell: Run, fact: Fact, stack: Stack,
                                                 lay: Layout) -> None:
    ev = stack.windows.event_log
    info = fact(facts.EventLogSource, source=ev.source)
    assert info.exists
    assert info.log == ev.log
    values = {"Python": lay.python, "Source": ev.source, "LogName": ev.log,
              "Id": ev.ids.fallback, "Marker": f"host-suite-{os.getpid()}"}
    write = ps.script("check event", values, """
$code = 'import sys; from monitoring.events import windows_event_writer as w; ' +
    'w(sys.argv[1])(int(sys.argv[2]), 2, sys.argv[3])'
& $Python -c $code $Source $Id $Marker
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$filter = @{ LogName = $LogName; ProviderName = $Source; Id = $Id }
$events = @(Get-WinEvent -FilterHashtable $filter -MaxEvents 20 |
    Where-Object { $_.Message -like ('*' + $Marker + '*') })
ConvertTo-Json -Compress -InputObject ([ordered]@{ count = $events.Count })
""")
    result = powershell(write)
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 1


def test_venv_holds_the_pinned_litellm_and_the_watchdog(powershell: Run, fact: Fact,
                                                        stack: Stack, lay: Layout) -> None:
    venv = fact(facts.Venv, path=lay.venv)
    assert venv.exists
    assert venv.marker is not None
    script = ps.script("check venv", {"Python": lay.python}, """
$code = 'import importlib.metadata as m, json; ' +
    'print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))'
& $Python -c ('import sys; ' + $code) litellm provider-fallback pywin32
exit $LASTEXITCODE
""")
    result = powershell(script)
    assert result.rc == 0, result.stderr
    versions = json.loads(result.stdout)
    assert versions["litellm"] == stack.litellm.version
    check = powershell(ps.script("pip check", {"Python": lay.python},
                                 "& $Python -m pip check\nexit $LASTEXITCODE"))
    assert check.rc == 0, check.stdout


def test_services_listen_where_the_stack_says(fact: Fact, stack: Stack) -> None:
    for label, listen in (("litellm", stack.litellm.listen), ("watchdog", stack.watchdog.listen),
                          ("prometheus", stack.prometheus.listen),
                          ("alertmanager", stack.alertmanager.listen)):
        listeners = fact(facts.ListeningPorts, port=listen.port)
        assert any(x.address == listen.host for x in listeners), (label, listeners)


def test_proxy_answers_liveliness_and_the_manage_script_agrees(powershell: Run, stack: Stack,
                                                               lay: Layout) -> None:
    url = f"{stack.litellm.listen.url}/health/liveliness"
    result = powershell(ps.script("check liveliness", {"Url": url}, """
$r = Invoke-WebRequest -UseBasicParsing -Uri $Url -TimeoutSec 10
ConvertTo-Json -Compress -InputObject ([ordered]@{ status = [int]$r.StatusCode })
"""))
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["status"] == 200
    status = powershell(ps.script("manage status",
                                  {"Script": f"{lay.scripts_dir}\\manage-litellm.ps1"},
                                  "& $Script -Action status\nexit $LASTEXITCODE"))
    assert status.rc == 0, status.stdout


def test_a_restart_stops_the_proxy_cleanly_by_its_stop_file(powershell: Run, stack: Stack,
                                                             lay: Layout) -> None:
    """Windows has no SIGTERM: ``restart`` asks the proxy to exit through its stop file
    (monitoring.proxy.serve) and must not need the force it keeps for a hung one."""
    result = powershell(ps.script("manage restart",
                                  {"Script": f"{lay.scripts_dir}\\manage-litellm.ps1"},
                                  "& $Script -Action restart\nexit $LASTEXITCODE"))
    assert result.rc == 0, (result.stdout, result.stderr)
    assert "exited cleanly" in result.stdout, result.stdout
    assert "by force" not in result.stdout + result.stderr, result.stderr


def test_keys_set_on_the_controller_are_the_hosts(fact: Fact, stack: Stack) -> None:
    host = os.environ["WINRM_HOST"]
    for name in stack.secret_env_names():
        value = os.environ.get(name)
        if not value:
            continue
        salt = salt_for(f"@winrm/{host}", name)
        info = fact(facts.UserEnvironmentVariable, variable=name, salt=salt)
        assert info.present, name
        assert info.digest == digest(salt, value), name


@pytest.mark.skipif(not os.environ.get("PF_WINDOWS_INVENTORY"),
                    reason="set PF_WINDOWS_INVENTORY to an inventory of this host to deploy "
                           "it again and prove a second deploy changes nothing")
def test_a_second_deploy_changes_nothing() -> None:
    repo = Path(__file__).resolve().parents[3]
    pyinfra = Path(sys.executable).with_name("pyinfra")
    result = subprocess.run(
        [str(pyinfra), "-y", os.environ["PF_WINDOWS_INVENTORY"], "deploy.py"],
        cwd=repo, capture_output=True, text=True, timeout=3600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    # Results table: Operation | Hosts | Success | Error | No Change; Success counts changes.
    grand = [line.split() for line in result.stdout.splitlines() if "Grand total" in line]
    assert grand, result.stdout[-2000:]
    _, _, _hosts, changed, errors, _unchanged = grand[-1]
    assert changed in ("-", "0"), result.stdout[-4000:]
    assert errors in ("-", "0"), result.stdout[-4000:]
