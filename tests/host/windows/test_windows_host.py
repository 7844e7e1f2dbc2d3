"""What a deployed Windows host must be: files, firewall rule, tasks, event source, venv,
listeners, and a second deploy that changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitoring.layout import Layout
from monitoring.stack import Stack
from tasks.render.common import Rendered
from tasks.render.windows import TASKS_REL, firewall_address, task_specs
from tasks.windows import facts, taskxml
from tasks.windows import powershell as ps
from tasks.windows.environment import digest, salt_for
from tasks.windows.facts import task_folder_path

Fact = Callable[..., Any]
Run = Callable[[str], Any]


def test_every_rendered_file_is_in_place(fact: Fact, rendered: Rendered) -> None:
    for rel, artifact in rendered.items():
        info = fact(facts.File, path=artifact.dest)
        assert info.is_file, f"{rel}: {artifact.dest} is missing"
        assert info.sha256 == hashlib.sha256(artifact.data).hexdigest(), rel


def test_firewall_rule(fact: Fact, stack: Stack) -> None:
    rules = fact(facts.FirewallRule, rule=stack.windows.firewall.name)
    assert len(rules) == 1, rules
    [rule] = rules
    assert (rule.enabled, rule.direction, rule.action, rule.protocol) == \
        (True, "in", "allow", "tcp")
    assert rule.local_port == str(stack.litellm.listen.port)
    assert set(rule.profiles) == set(stack.windows.firewall.profiles)
    wanted = {firewall_address(a).casefold() for a in stack.windows.firewall.remote_addresses}
    assert {a.casefold() for a in rule.remote_addresses} == wanted


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


def test_a_killed_watchdog_is_restarted_by_task_scheduler(
        powershell: Run, fact: Fact, stack: Stack) -> None:
    """RestartOnFailure: what only a real Task Scheduler can show (polls with a deadline)."""
    values = {"TaskFolder": task_folder_path(stack.windows.tasks.folder),
              "TaskName": stack.windows.tasks.watchdog,
              "Seconds": int(stack.windows.tasks.restart_interval) + 60}
    script = ps.script("check watchdog restart", values, """
$service = New-Object -ComObject 'Schedule.Service'
$service.Connect()
$task = $service.GetFolder($TaskFolder).GetTask($TaskName)
Get-CimInstance Win32_Process |
    Where-Object { $_.CommandLine -like '*provider-fallback*watch*' } |
    ForEach-Object { Stop-Process -Id $_.ProcessId -Force }
$deadline = (Get-Date).AddSeconds($Seconds)
do {
    Start-Sleep -Seconds 5
} while ([int]$task.State -ne 4 -and (Get-Date) -lt $deadline)
ConvertTo-Json -Compress -InputObject ([ordered]@{ state = [int]$task.State })
""")
    result = powershell(script)
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["state"] == 4


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
