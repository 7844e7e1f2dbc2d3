"""Whose agents: the person the deploy enrolls the agents of (``linux.agents_user``).

On a workstation the coding agents belong to the person at the keyboard, not to the service
account. Who that person is, in the order of what is certain:

1. ``linux.agents_user`` set to a login name: that user; ``null``: nobody (the service
   account's own files, for a server or CI).
2. ``auto`` (the default): the person who ran the local deploy. ``make deploy`` runs pyinfra
   as the user (it sudoes each operation), so that is the controller's user; under
   ``sudo make deploy`` it is ``SUDO_USER``. inventory/local.py passes it as host data
   ``deploy_person``; a remote inventory passes none (the controller's login means nothing
   on another machine).
3. ``auto`` as root with no ``SUDO_USER`` on WSL (``wsl -u root``): the distribution's default
   user from ``/etc/wsl.conf`` ``[user] default``, the one place inside the distribution that
   names it. Not guessed from ``loginctl`` (no sessions on WSL without systemd), the owner of
   the first ``/home`` directory or uid 1000: any of those may be someone else.
4. Otherwise nobody: the service account keeps its own files.

The person must exist on the host: a ``getent passwd`` fact, a clear error otherwise.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping

from pyinfra import host  # type: ignore[attr-defined]
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents

from monitoring.stack import Stack
from tasks.linux.facts import LinuxUser

#: Host data set by inventory/local.py: the login of the person who ran the local deploy.
PERSON_DATA = "deploy_person"
WSL_CONF = "/etc/wsl.conf"


def deploying_person(environ: Mapping[str, str], euid: int, login: str | None) -> str | None:
    """The person behind a deploy run on this machine: ``SUDO_USER`` under sudo (unless it
    is root itself), else the user running it; None for root with no sudo (CI, a container,
    a provisioning script): there is nobody's home to enroll."""
    sudo_user = environ.get("SUDO_USER", "")
    if sudo_user and sudo_user != "root":
        return sudo_user
    if euid != 0 and login and login != "root":
        return login
    return None


def wsl_default_user(wsl_conf: str | None) -> str | None:
    """``[user] default`` of ``/etc/wsl.conf``, or None when it has none."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(wsl_conf or "")
    except configparser.Error:
        return None
    value = parser.get("user", "default", fallback="").strip()
    return value or None


def resolve(setting: str | None, person: str | None, wsl_default: str | None,
            service_user: str) -> str | None:
    """The login whose agents are enrolled, None for the service account's own files."""
    if setting is None:
        return None
    chosen = (person or wsl_default) if setting == "auto" else setting
    return None if chosen in (None, service_user) else chosen


def agents_user(stack: Stack, *, wsl: bool) -> dict[str, str] | None:
    """The passwd entry of the person whose agents this host's deploy enrolls, or None.

    Raises :class:`DeployError` naming ``linux.agents_user`` when that user does not exist
    on the host, before anything is changed."""
    setting = stack.linux.agents_user
    person = host.data.get(PERSON_DATA) if setting == "auto" else None
    wsl_default = None
    if setting == "auto" and not person and wsl:
        lines = host.get_fact(FileContents, path=WSL_CONF)
        wsl_default = wsl_default_user("\n".join(lines) if lines else None)
    login = resolve(setting, str(person) if person else None, wsl_default, stack.linux.user)
    if login is None:
        return None
    entry: dict[str, str] | None = host.get_fact(LinuxUser, user=login)
    if entry is None:
        origin = ("as set" if setting != "auto" else
                  "who ran the deploy" if person else f"[user] default of {WSL_CONF}")
        raise DeployError(
            f"{host.name}: linux.agents_user: no user {login!r} on the host ({origin}). Set "
            "linux.agents_user (stack.yaml or host data) to an existing login, or to null to "
            "keep the service account's own agent files, and deploy again")
    return entry


def local_person() -> str | None:
    """:func:`deploying_person` of this process (inventory/local.py)."""
    login = os.environ.get("USER") or os.environ.get("LOGNAME")
    return deploying_person(os.environ, os.geteuid(), login)
