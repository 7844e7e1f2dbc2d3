"""The Windows branch of deploy.py: the whole bundle on one Windows host, over WinRM.

In order (each step a pyinfra operation that changes only what differs):

1. the account: WinRM must run as an elevated administrator (tasks, firewall and event
   sources need it); the scheduled tasks run as that same account, whose user environment
   holds the API keys;
2. ``windows.install_root``, private to SYSTEM, Administrators and that account (inheritance
   removed; a root another account owns is refused), then the directories under it and for
   every rendered file;
3. Python: the interpreter at ``windows.python``, or ``windows.python_installer`` run quietly;
   the venv; the wheelhouse and lock pushed; LiteLLM, its companions and the watchdog installed
   from them, offline, with hashes (:func:`tasks.windows.python.pip_install`);
4. the API keys as user environment variables, from the controller's environment, never
   echoed (:mod:`tasks.windows.environment`);
5. the Event Log source the watchdog writes its events 1001-1004 to (runbook 10.4);
6. every rendered file: LiteLLM and watchdog configs, manage-litellm.ps1 (10.1) and the other
   scripts, the task XML, Prometheus' and Alertmanager's configs and rules, the Grafana
   dashboard and provisioning;
7. prometheus.exe and alertmanager.exe from their release zips (URL and SHA256 in stack.yaml,
   verified on the controller before use);
8. the inbound firewall rule for the proxy port (10.2), only when LiteLLM listens beyond
   loopback, scoped to the interpreter that owns the socket (:func:`proxy_firewall`);
9. the scheduled tasks (10.3): LiteLLM-AutoStart, the watchdog, Prometheus, Alertmanager,
   registered from the rendered XML (restart on failure), enabled and started; a running task
   whose files changed is restarted (the proxy through manage-litellm.ps1).

Controller-side inputs are checked before any operation is added, so a missing wheelhouse or
release hash stops the deploy with the field to fix and nothing changed on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

from pyinfra import logger
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.context import host

from monitoring.proxy.policy import CONFIG_ENV
from monitoring.stack.layout import Layout, host_env_names, layout
from monitoring.stack.schema import Stack
from tasks.render.common import Rendered
from tasks.render.windows import TASKS_REL, manage_script_path, task_specs
from tasks.wheelhouse import WINDOWS_MARKERS, WINDOWS_PLATFORMS, wheel_directory
from tasks.windows import (
    environment,
    eventlog,
    files,
    firewall,
    python,
    releases,
    scheduled_tasks,
)
from tasks.windows.facts import AccountInfo, CurrentUser, PythonInterpreter
from tasks.windows.releases import file_sha256

#: The project's wheel in the wheelhouse (its distribution name, normalized as wheels are).
PROJECT_WHEEL_GLOB = "provider_fallback-*.whl"
LOCK_NAME = "requirements.lock"
FIREWALL_DESCRIPTION = "LiteLLM proxy (provider-fallback); managed from stack.yaml"


class Data(Protocol):
    """Host data (pyinfra's HostData, or a dict in tests)."""

    def get(self, key: str, default: Any = None) -> Any: ...


class WindowsDeployError(PyinfraError):
    """A controller-side input is missing or wrong; the message names it and the fix."""


@dataclass(frozen=True)
class Inputs:
    """Everything the deploy reads on the controller, checked before any operation."""

    wheels: tuple[Path, ...]
    lock: Path
    project_wheel: Path
    prometheus_exe: Path
    alertmanager_exe: Path


def wheelhouse_inputs(data: Data,
                      stack: Stack | None = None) -> tuple[tuple[Path, ...], Path, Path]:
    """(wheels, lock, project wheel) from host data ``wheelhouse_dir`` and ``lock_file``, or,
    when neither is set, the project's own wheelhouse for ``stack``."""
    missing = [key for key in ("wheelhouse_dir", "lock_file") if not data.get(key)]
    if len(missing) == 2 and stack is not None:
        # Neither given: built from the project's lock for CPython 3.11 on 64-bit Windows
        # (tasks/wheelhouse.py; cached; the controller needs the package index once).
        built, built_lock = wheel_directory(stack, WINDOWS_MARKERS, WINDOWS_PLATFORMS)
        return _wheel_files(built, built_lock)
    if missing:
        raise WindowsDeployError(
            f"host data {' and '.join(missing)} not set: a Windows deploy installs LiteLLM and "
            "the watchdog offline from a wheelhouse (a directory of wheels for the host's "
            "Python, including this project's provider_fallback-*.whl) and the hash-pinned "
            "lock it was built from. Set wheelhouse_dir and lock_file in the inventory's host "
            "data")
    folder = Path(str(data.get("wheelhouse_dir"))).expanduser()
    lock = Path(str(data.get("lock_file"))).expanduser()
    if not folder.is_dir():
        raise WindowsDeployError(f"host data wheelhouse_dir: {folder} is not a directory")
    if not lock.is_file():
        raise WindowsDeployError(f"host data lock_file: {lock} is not a file")
    return _wheel_files(folder, lock)


def _wheel_files(folder: Path, lock: Path) -> tuple[tuple[Path, ...], Path, Path]:
    wheels = tuple(sorted(folder.glob("*.whl")))
    projects = [w for w in wheels if w.match(PROJECT_WHEEL_GLOB)]
    if len(projects) != 1:
        raise WindowsDeployError(
            f"host data wheelhouse_dir: {folder} holds {len(projects)} {PROJECT_WHEEL_GLOB} "
            "files, expected exactly one (build it with `pip wheel --no-deps .`)")
    return wheels, lock, projects[0]


def controller_inputs(stack: Stack, data: Data) -> Inputs:
    """Check and gather the controller-side inputs (raises WindowsDeployError)."""
    wheels, lock, project = wheelhouse_inputs(data, stack)
    win = stack.windows
    try:
        prom = releases.required(win.prometheus_release, "windows.prometheus_release",
                                 "Prometheus")
        am = releases.required(win.alertmanager_release, "windows.alertmanager_release",
                               "Alertmanager")
        prom_zip = releases.fetch(prom, "windows.prometheus_release")
        am_zip = releases.fetch(am, "windows.alertmanager_release")
        prom_exe = releases.extract_program(prom_zip, "prometheus.exe",
                                            "windows.prometheus_release")
        am_exe = releases.extract_program(am_zip, "alertmanager.exe",
                                          "windows.alertmanager_release")
    except releases.ReleaseError as exc:
        raise WindowsDeployError(str(exc)) from None
    return Inputs(wheels, lock, project, prom_exe, am_exe)


def directories(lay: Layout, rendered: Rendered, extra: tuple[str, ...]) -> list[str]:
    """The directories to create: every rendered file's, the layout's, and ``extra``; a
    directory another one lies in is left out (creating the deeper one creates it)."""
    wanted = {str(PureWindowsPath(a.dest).parent) for a in rendered.values()}
    wanted |= {lay.config_dir, lay.state_dir, lay.log_dir, lay.prometheus_data,
               lay.alertmanager_data, *extra}
    if lay.scripts_dir:
        wanted.add(lay.scripts_dir)
    keys = {d.casefold().rstrip("\\"): d for d in wanted}
    leaves = [d for k, d in keys.items()
              if not any(o != k and o.startswith(k + "\\") for o in keys)]
    return sorted(leaves, key=str.casefold)


def proxy_firewall(stack: Stack) -> None:
    """The inbound rule for the proxy port (runbook 10.2), only where something off the host
    may connect, as on Linux: LiteLLM on loopback needs none (and an earlier deploy's rule is
    removed), which the output says.

    A needed rule is scoped to the program that owns the listening socket: the BASE
    interpreter (``windows.python``), not the venv's ``Scripts\\python.exe``. On Windows that
    one is a redirector that starts the base interpreter as a child process (CPython
    PC/launcher.c, VENV_REDIRECT; bpo-35797: "bypass the redirect executor and launch our base
    Python"), so a rule naming it would match no socket.
    """
    fw = stack.windows.firewall
    listen = stack.litellm.listen
    if listen.loopback_only:
        logger.info(f"{host.name}: firewall: LiteLLM listens on {listen.host} only, no rule "
                    "is needed")
        firewall.rule(name=f"Firewall rule {fw.name}: none needed (LiteLLM listens on "
                           f"{listen.host} only)", rule=fw.name, present=False)
        return
    firewall.rule(name=f"Firewall rule {fw.name}", rule=fw.name, present=True, enabled=True,
                  direction="in", action="allow", protocol="tcp",
                  local_port=str(listen.port), profiles=fw.profiles,
                  remote_addresses=fw.remote_addresses, program=stack.windows.python,
                  description=FIREWALL_DESCRIPTION)


def _account() -> AccountInfo:
    account = host.get_fact(CurrentUser)
    if account is None:
        raise WindowsDeployError(f"{host.name}: cannot tell which account WinRM runs as")
    if not account.elevated:
        raise WindowsDeployError(
            f"{host.name}: WinRM runs as {account.name} without administrator rights; "
            "scheduled tasks, the firewall rule and the event source need them. Connect as an "
            "administrator (for a local account, remote UAC filtering must be off: see "
            "docs/windows.md, 'Enable WinRM over HTTPS')")
    return account


@deploy("provider-fallback (Windows)")
def windows_stack(stack: Stack, rendered: Rendered) -> None:
    """Provision the Windows host in context from the validated stack and its rendered files."""
    inputs = controller_inputs(stack, host.data)
    lay = layout(stack, "windows")
    win = stack.windows
    root = win.install_root
    wheelhouse = str(PureWindowsPath(root, "wheelhouse"))
    downloads = str(PureWindowsPath(root, "downloads"))
    for rel, artifact in rendered.items():
        if artifact.secret:
            raise WindowsDeployError(f"{rel} holds secrets; Windows keeps them in user "
                                     "environment variables, never in a file")

    account = _account()

    # The root first, made private before anything is put in it (security review H3).
    files.directory(name=f"Directory {root}", path=root)
    files.private_directory(name=f"{root}: SYSTEM, Administrators and {account.name} only",
                            path=root, account_sid=account.sid, account=account.name)
    for folder in directories(lay, rendered, (wheelhouse, downloads,
                                              str(PureWindowsPath(lay.prometheus_bin).parent),
                                              str(PureWindowsPath(lay.alertmanager_bin).parent))):
        files.directory(name=f"Directory {folder}", path=folder)

    # Python, the venv and the offline install.
    interpreter = host.get_fact(PythonInterpreter, path=win.python)
    installer = None
    if not interpreter.exists and win.python_installer is not None:
        try:
            local = releases.fetch(win.python_installer, "windows.python_installer")
        except releases.ReleaseError as exc:
            raise WindowsDeployError(str(exc)) from None
        installer = str(PureWindowsPath(downloads, PurePosixPath(local.name).name))
        files.put(name="Python installer", src=str(local), dest=installer,
                  create_remote_dir=False)
    python.interpreter(name=f"Python at {win.python}", path=win.python, installer=installer)
    python.venv(name=f"venv {lay.venv}", path=lay.venv, python=win.python,
                python_version=interpreter.version)
    for wheel in inputs.wheels:
        files.put(name=f"Wheel {wheel.name}", src=str(wheel),
                  dest=str(PureWindowsPath(wheelhouse, wheel.name)), create_remote_dir=False)
    lock_dest = str(PureWindowsPath(wheelhouse, LOCK_NAME))
    files.put(name="Lock file", src=str(inputs.lock), dest=lock_dest, create_remote_dir=False)
    installed = python.pip_install(
        name="LiteLLM and the watchdog (offline, hashes required)",
        venv=lay.venv, wheelhouse=wheelhouse, lock=lock_dest,
        wheel=str(PureWindowsPath(wheelhouse, inputs.project_wheel.name)),
        lock_sha256=file_sha256(inputs.lock), wheel_sha256=file_sha256(inputs.project_wheel))

    # Under the host's names (provider keys PF_-prefixed, see
    # monitoring.stack.layout.host_env_names), each read from the controller's variable of the
    # stack's name.
    for variable, host_variable in host_env_names(stack).items():
        environment.user_variable(name=f"User variable {host_variable}", variable=host_variable,
                                  from_env=variable)
    # So `provider-fallback status` works in the user's shells without --config (its default
    # is the Linux path); the proxy's hooks read the same variable.
    environment.user_variable(name=f"User variable {CONFIG_ENV}", variable=CONFIG_ENV,
                              value=lay.watchdog_config)

    eventlog.source(name=f"Event Log source {win.event_log.source}",
                    source=win.event_log.source, log=win.event_log.log)

    puts: dict[str, OperationMeta] = {}
    for rel, artifact in rendered.items():
        puts[artifact.dest] = files.put(name=f"File {rel}", src=BytesIO(artifact.data),
                                        dest=artifact.dest, create_remote_dir=False)
    puts[lay.prometheus_bin] = files.put(name="prometheus.exe", src=str(inputs.prometheus_exe),
                                         dest=lay.prometheus_bin, create_remote_dir=False)
    puts[lay.alertmanager_bin] = files.put(name="alertmanager.exe",
                                           src=str(inputs.alertmanager_exe),
                                           dest=lay.alertmanager_bin, create_remote_dir=False)

    proxy_firewall(stack)

    inputs_of = {
        "litellm": [puts[lay.litellm_config], puts[manage_script_path(lay)], installed],
        "watchdog": [puts[lay.watchdog_config], installed],
        "prometheus": [puts[lay.prometheus_config], puts[lay.prometheus_rules],
                       puts[lay.prometheus_bin]],
        "alertmanager": [puts[lay.alertmanager_config], puts[lay.alertmanager_bin]],
    }
    folder_name = win.tasks.folder
    for spec in task_specs(stack, lay):
        definition = rendered[f"{TASKS_REL}/{spec.file_name}"].data.decode("utf-8")
        scheduled_tasks.restarted(
            name=f"Restart {spec.name} if its files changed", task=spec.name,
            folder=folder_name, script=manage_script_path(lay) if spec.key == "litellm" else None,
            after=inputs_of[spec.key])
        scheduled_tasks.task(
            name=f"Scheduled task {spec.name}", task=spec.name, folder=folder_name,
            definition=definition, user=account.name, user_aliases=(account.sid,),
            enabled=True, started=True,
            # The watchdog (this account, filtered token) restarts the proxy's task.
            run_stop_sid=account.sid if spec.key == "litellm" else None)
