"""Scheduled tasks from a definition (task XML): create, update, delete, enable, start, restart.

A task is found by folder and name through the Task Scheduler COM API (exact: the
ScheduledTasks cmdlets read wildcards in names). The wanted definition is compared with the
registered one field by field (:mod:`tasks.windows.taskxml`), so a task Windows has
re-serialized is not registered again. A task that changes while it runs is restarted, so the
new definition is the one running.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.context import host

from tasks.windows import powershell as ps
from tasks.windows import taskxml
from tasks.windows.facts import ScheduledTask, ScheduledTaskInfo, task_folder_path
from tasks.windows.powershell import Commands

#: Seconds a restart waits for the stopped task to end before starting it again.
STOP_TIMEOUT_S = 30

_LOOKUP = """\
$service = New-Object -ComObject 'Schedule.Service'
$service.Connect()
$registered = $service.GetFolder($TaskFolder).GetTask($TaskName)"""

_WAIT_STOPPED = f"""\
$clock = [System.Diagnostics.Stopwatch]::StartNew()
while ([int]$registered.State -eq 4) {{
    if ($clock.Elapsed.TotalSeconds -ge {STOP_TIMEOUT_S}) {{
        throw ('task {{0}} still runs {STOP_TIMEOUT_S}s after it was stopped' -f $TaskName)
    }}
    Start-Sleep -Milliseconds 250
}}"""


def _values(task: str, folder: str) -> dict[str, object]:
    return {"TaskName": task, "TaskFolder": task_folder_path(folder)}


def register_command(task: str, folder: str, definition: str) -> str:
    values = {"TaskName": task, "TaskPath": folder, "Definition": definition}
    return ps.script("op scheduled_task.register", values,
                     "Register-ScheduledTask -Xml $Definition -TaskName $TaskName "
                     "-TaskPath $TaskPath -Force | Out-Null")


def run_command(task: str, folder: str) -> str:
    return ps.script("op scheduled_task.run", _values(task, folder),
                     f"{_LOOKUP}\n[void]$registered.Run($null)")


def stop_command(task: str, folder: str) -> str:
    return ps.script("op scheduled_task.stop", _values(task, folder),
                     f"{_LOOKUP}\n$registered.Stop(0)\n{_WAIT_STOPPED}")


def restart_command(task: str, folder: str) -> str:
    return ps.script("op scheduled_task.restart", _values(task, folder),
                     f"{_LOOKUP}\n$registered.Stop(0)\n{_WAIT_STOPPED}\n"
                     "[void]$registered.Run($null)")


def _wanted_enabled(definition: taskxml.Definition) -> bool:
    return taskxml.normalize(definition.settings.get("Enabled", "true")) == "true"


@operation()
def task(
    task: str,
    folder: str = "\\",
    definition: str | None = None,
    user: str | None = None,
    user_aliases: Sequence[str] = (),
    present: bool = True,
    enabled: bool | None = None,
    started: bool | None = None,
    run_stop_sid: str | None = None,
) -> Commands:
    """
    Register, update or delete a scheduled task, and enable, start or stop it.

    + task: the task's name
    + folder: its Task Scheduler folder, e.g. ``\\ProviderFallback\\``
    + definition: the task XML (needed to create or update it)
    + user: the account it runs as, written into the principal and logon triggers
    + user_aliases: other ids of that account (its SID), so a registered task naming it
      another way is not seen as a change
    + present: whether the task should exist
    + enabled: whether it should be enabled (None: as the definition says)
    + started: True to start it when it is not running, False to stop it when it is
    + run_stop_sid: an account (SID) to allow exactly to read, run and stop the task, in the
      task's security descriptor (:func:`tasks.windows.taskxml.run_stop_sddl`): the watchdog's
      account, which restarts the proxy's task with a filtered token
    """
    info: ScheduledTaskInfo = host.get_fact(ScheduledTask, task=task, folder=folder)
    label = f"{folder.rstrip(chr(92))}\\{task}"

    if not present:
        if not info.exists:
            host.noop(f"scheduled task {label} does not exist")
            return
        body = f"{_LOOKUP}\nif ([int]$registered.State -eq 4) {{ $registered.Stop(0) }}\n" \
               "$service.GetFolder($TaskFolder).DeleteTask($TaskName, 0)"
        yield ps.script("op scheduled_task.delete", _values(task, folder), body)
        return

    registered = False
    running = info.running
    is_enabled = info.enabled
    commands: list[str] = []
    sddl = taskxml.run_stop_sddl(run_stop_sid) if run_stop_sid else None
    if definition is not None:
        wanted_xml = taskxml.with_user(definition, user) if user else definition
        if sddl is not None:
            wanted_xml = taskxml.with_security(wanted_xml, sddl)
        wanted = taskxml.parse(wanted_xml)
        changes = (["new task"] if not info.exists else
                   taskxml.differences(wanted, info.definition(),
                                       tuple(user_aliases) + ((user,) if user else ())))
        if changes:
            commands.append(register_command(task, folder, wanted_xml))
            registered = True
            is_enabled = _wanted_enabled(wanted)
    elif not info.exists:
        raise OperationValueError(f"scheduled task {label} does not exist and no definition "
                                  "was given to create it")

    if (sddl is not None and run_stop_sid is not None and info.exists and not registered
            and not taskxml.grants_run_stop(info.sddl, run_stop_sid)):
        commands.append(ps.script("op scheduled_task.security",
                                  {**_values(task, folder), "Sddl": sddl},
                                  f"{_LOOKUP}\n$registered.SetSecurityDescriptor($Sddl, 0)"))

    if enabled is not None and enabled != is_enabled:
        commands.append(ps.script("op scheduled_task.enable",
                                  {**_values(task, folder), "Enabled": enabled},
                                  f"{_LOOKUP}\n$registered.Enabled = $Enabled"))

    if registered and running:
        # The running instance still runs the old definition.
        commands.append(restart_command(task, folder))
    elif started is True and not running:
        commands.append(run_command(task, folder))
    elif started is False and running:
        commands.append(stop_command(task, folder))

    if not commands:
        host.noop(f"scheduled task {label} is as wanted" + (" and running" if running else ""))
    yield from commands


def _changed(meta: OperationMeta) -> bool:
    """Whether an earlier operation changes (prepare: will change; execute: did change)."""
    return meta.did_change() if meta.is_complete() else bool(meta.will_change)


@operation()
def restarted(task: str, folder: str = "\\", script: str | None = None,
              after: Sequence[OperationMeta] | None = None) -> Commands:
    """
    Restart a running task (a task that is not running is left to :func:`task` to start).

    + task, folder: the task
    + script: a management script to run with ``-Action restart`` instead of stopping and
      starting the task (manage-litellm.ps1 also ends the proxy's own processes)
    + after: restart only when one of these earlier operations changes something (its files,
      its venv); None: always. Unlike ``_if``, this is also right when pyinfra predicts the
      changes, so an unchanged host shows no change.
    """
    if after is not None and not any(_changed(meta) for meta in after):
        host.noop(f"scheduled task {task}: nothing it runs has changed")
        return
    info: ScheduledTaskInfo = host.get_fact(ScheduledTask, task=task, folder=folder)
    if not info.running:
        host.noop(f"scheduled task {task} is not running; nothing to restart")
        return
    if script is None:
        yield restart_command(task, folder)
        return
    yield ps.script("op scheduled_task.restart_script", {"Script": script},
                    "& $Script -Action restart\n"
                    "if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }")
