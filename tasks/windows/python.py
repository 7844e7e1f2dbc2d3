"""Python on Windows hosts: an interpreter, a venv, and a hash-checked install into it.

The install is offline and pinned: pip reads only the wheelhouse pushed to the host
(``--no-index --find-links``), refuses anything without its hash in the lock file
(``--require-hashes``) and builds nothing (``--only-binary=:all:``). The project's own wheel is
installed after it with ``--no-deps`` (its dependencies are in the lock). A marker in the venv
records the SHA256 of the lock and of the wheel a good install used; the same pair next time
is a no-op, any change installs again.
"""

from __future__ import annotations

import json
from pathlib import PureWindowsPath

from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.context import host

from tasks.windows import powershell as ps
from tasks.windows.facts import INSTALL_MARKER, PythonInterpreter, Venv
from tasks.windows.powershell import Commands

_STOP_ON_FAILURE = "if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }"
_PIP = ("-m pip install --disable-pip-version-check --no-input --no-index "
        "'--only-binary=:all:'")

#: The python.org installer's exit codes that mean success (3010: a restart is pending).
INSTALLER_OK = (0, 3010)


def venv_python(venv: str) -> str:
    return str(PureWindowsPath(venv, "Scripts", "python.exe"))


@operation()
def interpreter(path: str, installer: str | None = None) -> Commands:
    """
    Make sure a Python interpreter exists at ``path``: keep an existing one, or run a python.org
    installer (already on the host) quietly for all users into ``path``'s directory.

    + path: the interpreter, e.g. ``C:\\Program Files\\Python311\\python.exe`` (the
      python.org installer's default for all users, writable by administrators only)
    + installer: the installer's path on the host (None: an existing interpreter is required)
    """
    info = host.get_fact(PythonInterpreter, path=path)
    if info.exists:
        host.noop(f"Python {info.version or '(version unknown)'} is at {path}")
        return
    if installer is None:
        raise OperationError(
            f"there is no Python at {path} (windows.python): install Python there, point "
            "windows.python at an installed python.exe, or set windows.python_installer to a "
            "python.org installer (url and sha256) for the deploy to run")
    target = str(PureWindowsPath(path).parent)
    values = {"Installer": installer, "TargetDir": f"TargetDir={target}"}
    yield ps.script(
        "op python.install", values,
        "& $Installer /quiet InstallAllUsers=1 $TargetDir PrependPath=0 Include_test=0 "
        "Include_launcher=0 Shortcuts=0 AssociateFiles=0\n"
        f"if ({' -and '.join(f'$LASTEXITCODE -ne {c}' for c in INSTALLER_OK)}) "
        "{ exit $LASTEXITCODE }")


@operation()
def venv(path: str, python: str, python_version: str | None = None) -> Commands:
    """
    Create a virtual environment, or create it anew (``--clear``) when it was made by another
    Python minor version than ``python_version`` (its compiled packages would not load).

    + path: the venv directory
    + python: the interpreter that creates it
    + python_version: that interpreter's version (``3.11.9``), when known
    """
    info = host.get_fact(Venv, path=path)
    wanted_minor = ".".join(python_version.split(".")[:2]) if python_version else None
    if info.exists and (wanted_minor is None or info.minor == wanted_minor):
        host.noop(f"venv {path} exists (Python {info.version})")
        return
    clear = " --clear" if info.exists else ""
    yield ps.script("op python.venv", {"Python": python, "Venv": path},
                    f"& $Python -m venv{clear} $Venv\n{_STOP_ON_FAILURE}")


def install_marker(lock_sha256: str, wheel_sha256: str) -> dict[str, str]:
    return {"lock_sha256": lock_sha256, "wheel_sha256": wheel_sha256}


@operation()
def pip_install(
    venv: str,
    wheelhouse: str,
    lock: str,
    wheel: str,
    lock_sha256: str,
    wheel_sha256: str,
) -> Commands:
    """
    Install the lock file's pins from the wheelhouse, then the project's wheel, into a venv.

    + venv: the venv directory
    + wheelhouse: the directory of wheels on the host
    + lock: the lock file on the host (``name==version --hash=sha256:...`` for every package)
    + wheel: the project's wheel on the host
    + lock_sha256, wheel_sha256: their SHA256 (recorded in the venv after a good install)
    """
    wanted = install_marker(lock_sha256, wheel_sha256)
    info = host.get_fact(Venv, path=venv)
    if info.exists and info.marker == wanted:
        host.noop(f"venv {venv} holds this lock and wheel already")
        return
    values = {
        "Python": venv_python(venv),
        "Wheelhouse": wheelhouse,
        "Lock": lock,
        "Wheel": wheel,
        "Marker": str(PureWindowsPath(venv, INSTALL_MARKER)),
        "MarkerText": json.dumps(wanted, sort_keys=True),
    }
    body = "\n".join([
        f"& $Python {_PIP} --find-links $Wheelhouse --require-hashes -r $Lock",
        _STOP_ON_FAILURE,
        f"& $Python {_PIP} --no-deps --force-reinstall $Wheel",
        _STOP_ON_FAILURE,
        "[System.IO.File]::WriteAllText($Marker, $MarkerText)",
    ])
    yield ps.script("op python.pip_install", values, body)
