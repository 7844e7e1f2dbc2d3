"""Windows artifacts (runbook phase 10): PowerShell scripts and Task Scheduler definitions.

What is rendered, relative to ``build/windows/``:

``windows/scripts/manage-litellm.ps1``
    start, stop, status, restart or run the proxy (10.1), with the exact command line of
    :func:`monitoring.stack.layout.proxy_command`. ``stop`` ends only this proxy (its PID file and
    the processes whose command line names its config), never every ``python.exe`` as the
    runbook's ``taskkill /IM python.exe`` does; ``status`` asks ``/health/liveliness``, never
    ``/health`` (which makes a paid call to every model).
``windows/scripts/firewall.ps1``
    creates or updates the inbound rule for the proxy port (10.2), printing what changed.
``windows/scripts/eventlog.ps1``
    registers the Event Log source the watchdog writes to (10.4).
``windows/scripts/register-tasks.ps1``
    registers every task definition below with ``Register-ScheduledTask -Xml``.
``windows/tasks/<TaskName>.xml``
    Task Scheduler definitions (schema 1.2) for LiteLLM, the watchdog, Prometheus and
    Alertmanager (10.3).

Choices made here, and why:

* Run level ``LeastPrivilege``, where the runbook asks for ``Highest``: a proxy, a watchdog and
  two monitoring servers on loopback ports need no administrator token, and a compromised
  dependency of the proxy should not get one.
* Logon type ``S4U`` ("run whether the user is logged on or not", no password stored): the
  tasks run hidden, outside the desktop session, so no console window appears at logon and
  none can be closed by mistake, and they keep running after a logoff. They still run as the
  user (``register-tasks.ps1 -User``, the current user by default), with that user's
  environment variables, where Windows keeps the API keys, and home, where the agent configs
  are. S4U needs the "Log on as a batch job" right, which Administrators hold by default.
  The XML carries no user: ``register-tasks.ps1`` writes it into the principal and into the
  logon trigger, so the tasks start at THAT user's logon and not at anyone's.
* The proxy task runs ``manage-litellm.ps1 -Action run``: the script sets the proxy's
  environment and logs, and stays in the foreground so Task Scheduler tracks the proxy, stops
  it with the task and applies the restart-on-failure settings. ``start`` starts that task
  when it is registered (so a proxy started over WinRM outlives the session), else a hidden
  ``run`` of its own.
* Scripts are written as UTF-8 with a byte-order mark: Windows PowerShell 5.1 reads a file
  without one in the ANSI code page, which would garble any non-ASCII value (a typographic
  quote in a name, say). Every value from the stack enters a script only as a single-quoted
  literal (the ``ps`` filter), never inside a double-quoted string, a format string or a
  comment, so ``$(...)``, ``$env:X``, backticks, ``;`` and quotes in a value stay text.
* Command lines (the proxy's, and each task's ``Arguments``) are quoted here, by the rules of
  ``CommandLineToArgvW`` that Python, Go and PowerShell use to split them, so a path with spaces
  stays one argument. Task Scheduler expands ``%NAME%`` in a task's command and arguments: a
  path holding ``%`` signs is not supported.
* A crashed program comes back within ``windows.tasks.restart_interval``: every trigger
  repeats at that interval, indefinitely (repetitionType: "If no value is specified for the
  duration, the pattern is repeated indefinitely"), and ``MultipleInstancesPolicy
  IgnoreNew`` ("the Task Scheduler service will not run the new instance of the task" while
  one runs) makes a repetition a no-op while the program is up. ``RestartOnFailure`` alone
  would not do: it retries only a task that failed to START ([MS-TSCH] 2.5.4.2).
* A ``BootTrigger`` (``windows.tasks.start_at_boot``, on by default) starts the tasks at boot
  with nobody logged on, which an S4U principal allows; the ``LogonTrigger`` stays for a
  host where boot start is turned off. Only an administrator may register a boot trigger
  (BootTrigger element, Task Scheduler schema): the deploy is elevated.
* Task priority 5 (normal) instead of Task Scheduler's default 7 (below normal): the proxy is
  on the path of every interactive agent request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any, Final

from monitoring.stack.layout import (
    LEGACY_PROXY_MODULE,
    PROXY_MODULE,
    Layout,
    alertmanager_command,
    host_env_names,
    prometheus_command,
    proxy_command,
    proxy_env,
    watchdog_command,
)
from monitoring.stack.schema import Stack
from tasks.render.common import Artifact, Rendered, template
from tasks.windows.taskxml import RUN_STOP_SDDL

#: Windows PowerShell 5.1, found through %SystemRoot% (Task Scheduler expands it) so that a
#: PATH change cannot swap the program a task runs.
POWERSHELL = r"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe"
#: Seconds ``start`` waits for /health/liveliness by default (first starts import a lot).
START_TIMEOUT_S = 120
#: Seconds ``stop`` waits for the proxy processes to be gone.
STOP_TIMEOUT_S = 30
#: Seconds ``stop`` gives the proxy to finish its answers and exit after the stop file, before
#: it ends what is left by force (uvicorn's graceful shutdown waits for open answers).
GRACEFUL_STOP_TIMEOUT_S = 20
#: Timeout of one liveliness request, in milliseconds.
PROBE_TIMEOUT_MS = 3000
#: ``run`` moves a proxy log aside (to ``<name>.1``) when it is larger than this at start.
LOG_ROTATE_BYTES = 10 * 1024 * 1024
#: Task Scheduler priority (0 highest .. 10 lowest; 4-6 is the normal priority class).
TASK_PRIORITY = 5

SCRIPTS_REL = "windows/scripts"
TASKS_REL = "windows/tasks"
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FILE_NAME_INVALID = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


# --------------------------------------------------------------------------- formatting


def quote_arg(arg: str) -> str:
    """One argument quoted for a Windows command line (``CommandLineToArgvW`` rules).

    Quotes are added only when needed (empty, whitespace or ``"``); backslashes are doubled
    only where they precede a quote, so ``C:\\dir\\`` stays a path.
    """
    if arg and not any(c in arg for c in ' \t\n\v"'):
        return arg
    out = ['"']
    backslashes = 0
    for char in arg:
        if char == "\\":
            backslashes += 1
            continue
        if char == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + char)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def windows_cmdline(args: Sequence[str]) -> str:
    """Arguments joined into one Windows command line that splits back into ``args``."""
    return " ".join(quote_arg(a) for a in args)


def iso8601_duration(seconds: float) -> str:
    """Task Scheduler's duration syntax for whole seconds: ``60`` -> ``PT1M``, ``0`` -> ``PT0S``."""
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    date = f"{days}D" if days else ""
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    if not date and not time:
        return "PT0S"
    return "P" + date + ("T" + time if time else "")


def firewall_address(value: str) -> str:
    """A remote address as ``Get-NetFirewallAddressFilter`` reports it back (IPv4 prefixes as
    masks, single hosts bare; keywords and ranges unchanged), so firewall.ps1 can tell an
    unchanged rule from a changed one. A form it does not foresee only costs a redundant update.
    """
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return value
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    if net.version == 4:
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def task_file_name(name: str) -> str:
    """A file name for the XML of task ``name``: characters Windows forbids become ``_``."""
    safe = _FILE_NAME_INVALID.sub("_", name).rstrip(" .")
    return f"{safe or '_'}.xml"


def _xml_text(field: str, value: str) -> str:
    if _XML_INVALID.search(value):
        raise ValueError(f"{field} holds a character XML cannot carry (a control character): "
                         f"{value!r}")
    return value


def _dirname(path: str) -> str:
    return str(PureWindowsPath(path).parent)


def _command(path: str) -> str:
    """A task's ``Command``: quoted when it holds whitespace (a path cannot hold ``"``)."""
    return f'"{path}"' if any(c in path for c in " \t") else path


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskSpec:
    """One scheduled task: what it runs, and the file that must exist for it to be registered."""

    key: str
    name: str
    description: str
    command: str
    arguments: str
    working_directory: str
    program: str

    @property
    def file_name(self) -> str:
        return task_file_name(self.name)


def _scripts_dir(lay: Layout) -> str:
    if lay.scripts_dir is None:
        raise ValueError("the Windows artifacts need a layout with a scripts directory "
                         f"(this one is for {lay.os})")
    return lay.scripts_dir


def manage_script_path(lay: Layout) -> str:
    """Where manage-litellm.ps1 lives on the host (the proxy task and the watchdog run it)."""
    return lay.join(_scripts_dir(lay), "manage-litellm.ps1")


def task_xml_path(lay: Layout, spec: TaskSpec) -> str:
    """Where the XML of a task lives on the host."""
    return lay.join(lay.config_dir, "tasks", spec.file_name)


def task_specs(stack: Stack, lay: Layout) -> list[TaskSpec]:
    """The four scheduled tasks, each with its exact command line from the stack and layout."""
    names = stack.windows.tasks
    watchdog = watchdog_command(lay)
    prometheus = prometheus_command(stack, lay)
    alertmanager = alertmanager_command(stack, lay)
    specs = [
        TaskSpec(
            key="litellm",
            name=names.litellm,
            description="provider-fallback: the LiteLLM proxy (manage-litellm.ps1 -Action run).",
            command=POWERSHELL,
            arguments=windows_cmdline([
                "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                "-WindowStyle", "Hidden", "-File", manage_script_path(lay), "-Action", "run"]),
            working_directory=lay.state_dir,
            program=lay.python,
        ),
        TaskSpec(
            key="watchdog",
            name=names.watchdog,
            description="provider-fallback: the watchdog (probes, failover, restore, metrics).",
            command=_command(watchdog[0]),
            arguments=windows_cmdline(watchdog[1:]),
            working_directory=lay.state_dir,
            program=watchdog[0],
        ),
        TaskSpec(
            key="prometheus",
            name=names.prometheus,
            description="provider-fallback: Prometheus (scrapes the watchdog and LiteLLM).",
            command=_command(prometheus[0]),
            arguments=windows_cmdline(prometheus[1:]),
            working_directory=_dirname(prometheus[0]),
            program=prometheus[0],
        ),
        TaskSpec(
            key="alertmanager",
            name=names.alertmanager,
            description="provider-fallback: Alertmanager (routes the alerts of Prometheus).",
            command=_command(alertmanager[0]),
            arguments=windows_cmdline(alertmanager[1:]),
            working_directory=_dirname(alertmanager[0]),
            program=alertmanager[0],
        ),
    ]
    # Names are checked by the schema (no slashes, unique); distinct names can still map to
    # one file name once characters Windows forbids in file names are replaced.
    files: dict[str, str] = {}
    for spec in specs:
        other = files.setdefault(spec.file_name.casefold(), spec.key)
        if other != spec.key:
            raise ValueError(f"windows.tasks.{spec.key} and windows.tasks.{other} give the same "
                             f"file name {spec.file_name!r}; rename one of the tasks")
    return specs


def task_xml(stack: Stack, spec: TaskSpec) -> bytes:
    """The Task Scheduler definition of one task (for ``Register-ScheduledTask -Xml``)."""
    tasks = stack.windows.tasks
    values = {
        "task_name": spec.name, "folder": tasks.folder, "description": spec.description,
        "command": spec.command, "arguments": spec.arguments,
        "working_directory": spec.working_directory,
    }
    context: dict[str, Any] = {k: _xml_text(f"task {spec.key}: {k}", v) for k, v in values.items()}
    context.update(
        namespace=TASK_NAMESPACE,
        uri=tasks.folder + spec.name,
        restart_interval=iso8601_duration(tasks.restart_interval),
        repeat_interval=iso8601_duration(tasks.restart_interval),
        restart_count=tasks.restart_count,
        at_boot=tasks.start_at_boot,
        priority=TASK_PRIORITY,
    )
    return template("windows/task.xml.j2", **context)


# --------------------------------------------------------------------------- scripts


def _script(script: str, **context: Any) -> bytes:
    """A rendered PowerShell script, UTF-8 with the BOM Windows PowerShell 5.1 needs."""
    return "\ufeff".encode() + template(f"windows/{script}.j2", **context)


#: The modules a proxy of this host runs: this release's, and the one releases before it ran
#: (an upgrade's restart must still stop that proxy, not find it "already running"). ``stop``
#: ends only processes whose command line names one of them and the proxy's config.
PROXY_MODULES: Final = (PROXY_MODULE, LEGACY_PROXY_MODULE)


def manage_script(stack: Stack, lay: Layout) -> bytes:
    """manage-litellm.ps1 (see the module docstring; its help block lists the exit codes)."""
    command = proxy_command(stack, lay)
    tasks = stack.windows.tasks
    return _script(
        "manage-litellm.ps1",
        python=command[0],
        proxy_arguments=windows_cmdline(command[1:]),
        markers=[lay.litellm_config],
        modules=list(PROXY_MODULES),
        stop_file=lay.proxy_stop_file,
        graceful_stop_timeout=GRACEFUL_STOP_TIMEOUT_S,
        state_dir=lay.state_dir,
        log_dir=lay.log_dir,
        pid_file=lay.state("litellm.pid"),
        stdout_log=lay.log("litellm.out.log"),
        stderr_log=lay.log("litellm.err.log"),
        health_url=f"{stack.litellm.listen.url}/health/liveliness",
        task_folder=tasks.folder.rstrip("\\") or "\\",
        task_name=tasks.litellm,
        proxy_env=proxy_env(stack),
        secret_names=list(host_env_names(stack).values()),
        default_key_names=[n for n, h in host_env_names(stack).items() if n != h],
        start_timeout=START_TIMEOUT_S,
        stop_timeout=STOP_TIMEOUT_S,
        probe_timeout_ms=PROBE_TIMEOUT_MS,
        log_rotate_bytes=LOG_ROTATE_BYTES,
    )


def firewall_script(stack: Stack) -> bytes:
    """firewall.ps1: the inbound rule for the proxy port, created or brought back in line."""
    fw = stack.windows.firewall
    return _script(
        "firewall.ps1",
        loopback=stack.litellm.listen.loopback_only,
        listen_host=stack.litellm.listen.host,
        program=stack.windows.python,
        rule_name=fw.name,
        port=str(stack.litellm.listen.port),
        profiles=sorted(set(fw.profiles)),
        remote_addresses=fw.remote_addresses,
        expected_remote=sorted({firewall_address(a) for a in fw.remote_addresses}, key=str.lower),
    )


def eventlog_script(stack: Stack) -> bytes:
    """eventlog.ps1: the Event Log source of the watchdog, registered once."""
    ev = stack.windows.event_log
    return _script("eventlog.ps1", source=ev.source, log=ev.log)


def register_script(stack: Stack, lay: Layout, specs: Sequence[TaskSpec]) -> bytes:
    """register-tasks.ps1: every task XML registered in the stack's task folder."""
    tasks = [{"name": s.name, "xml": task_xml_path(lay, s), "program": s.program,
              "run_stop": s.key == "litellm"} for s in specs]
    return _script("register-tasks.ps1", folder=stack.windows.tasks.folder, tasks=tasks,
                   namespace=TASK_NAMESPACE, run_stop_sddl=RUN_STOP_SDDL.format(sid="{0}"))


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """Every Windows-only artifact, keyed by its path relative to ``build/windows/``."""
    scripts = _scripts_dir(lay)
    specs = task_specs(stack, lay)
    out: Rendered = {
        f"{SCRIPTS_REL}/manage-litellm.ps1": Artifact(manage_script(stack, lay),
                                                      manage_script_path(lay)),
        f"{SCRIPTS_REL}/firewall.ps1": Artifact(firewall_script(stack),
                                                lay.join(scripts, "firewall.ps1")),
        f"{SCRIPTS_REL}/eventlog.ps1": Artifact(eventlog_script(stack),
                                                lay.join(scripts, "eventlog.ps1")),
        f"{SCRIPTS_REL}/register-tasks.ps1": Artifact(register_script(stack, lay, specs),
                                                      lay.join(scripts, "register-tasks.ps1")),
    }
    for spec in specs:
        out[f"{TASKS_REL}/{spec.file_name}"] = Artifact(task_xml(stack, spec),
                                                        task_xml_path(lay, spec))
    return out
