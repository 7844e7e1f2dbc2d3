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

Their agents are switched by a follower running AS THEM (monitoring/agents/follower.py):
:func:`follower` enables ``provider-fallback-agents@<login>`` (or, without systemd, the
``provider-fallback-agents`` init script for the login in ``/etc/default``) and creates the
follower's directory in the state directory, owned by them; with nobody it removes both,
and the watchdog switches the service account's own files again.

When ``linux.agents_user`` stops naming someone (another person, or nobody), their follower is
stopped and their agents are given their own values back (``provider-fallback agents release
--all``, from the takeover records) BEFORE the follower's directory is removed: otherwise their
files would keep pointing where the last switch put them, and their records, which the next
person's follower cannot read or replace (they are 0600, theirs), would block that follower.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import posixpath
import shlex
from collections.abc import Mapping, Sequence

from pyinfra import host  # type: ignore[attr-defined]
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Directory, File, FileContents, FindLinks
from pyinfra.operations import files, server, systemd, sysvinit

from monitoring.agents.follower import FOLLOWER_DIR
from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.linux.facts import LinuxUser
from tasks.linux.files import put_artifact
from tasks.linux.operations import put_bytes
from tasks.linux.services import any_changed, ensure_service
from tasks.render.common import Rendered
from tasks.render.systemd import follower_defaults, follower_names, follower_rels

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


def windows_profile(stack: Stack, person: Mapping[str, str] | None) -> str | None:
    """``linux.windows_profile`` checked against the host, or None when not set.

    Named, never guessed (a WSL distribution may see several Windows profiles, and the
    Windows user name need not match the login). Refused, before any change, when nobody's
    follower would edit it, when the folder does not exist, or when the proxy listens where
    Windows cannot reach it (WSL forwards binds on 127.0.0.1 or 0.0.0.0 only, never ::1)."""
    profile = stack.linux.windows_profile
    if profile is None:
        return None
    fix = ("set linux.windows_profile to your Windows profile as WSL sees it "
           "(/mnt/c/Users/<name>: `wslpath \"$(cmd.exe /c echo %USERPROFILE%)\"` prints it), "
           "or to null, and deploy again")
    if person is None:
        raise DeployError(
            f"{host.name}: linux.windows_profile: {profile} is set but linux.agents_user "
            "names nobody: the person's follower (it runs as them) edits those files. Set "
            "linux.agents_user to your WSL login, or linux.windows_profile to null, and "
            "deploy again")
    if not host.get_fact(Directory, path=profile):
        raise DeployError(f"{host.name}: linux.windows_profile: no folder {profile} on the "
                          f"host: {fix}")
    listen = ipaddress.ip_address(stack.litellm.listen.host)
    if not (listen.version == 4 and (listen.is_unspecified or str(listen) == "127.0.0.1")):
        raise DeployError(
            f"{host.name}: litellm.listen.host: {stack.litellm.listen.host} is not reached "
            "from Windows: WSL forwards only binds on 127.0.0.1 or 0.0.0.0 (IPv4) to Windows "
            "(linux.windows_profile): use 127.0.0.1, or set linux.windows_profile to null, "
            "and deploy again")
    return profile


def local_person() -> str | None:
    """:func:`deploying_person` of this process (inventory/local.py)."""
    login = os.environ.get("USER") or os.environ.get("LOGNAME")
    return deploying_person(os.environ, os.geteuid(), login)


#: The drop-in of an instance that makes the person's home writable for it.
HOME_DROPIN = "home.conf"


def home_dropin(*paths: str) -> bytes:
    """``[Service] ReadWritePaths="<home>" ["<Windows profile>"]`` (quoted: a path may hold a
    space; ``%`` is a specifier there)."""
    quoted = " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
                      + '"' for p in paths)
    return ("# Written by the provider-fallback deploy: the person's home (and Windows "
            f"profile), writable for their agents follower.\n[Service]\n"
            f"ReadWritePaths={quoted}\n").encode()


def follower_instance(stack: Stack, login: str) -> str:
    """``provider-fallback-agents@<login>.service``."""
    return stack.linux.units.agents.replace("@.service", f"@{login}.service")


def _previous_person(folder: str, login: str | None) -> str | None:
    """The owner of an existing follower's directory when it is not ``login``: the person
    ``linux.agents_user`` named before (a number when that user was deleted since)."""
    info = host.get_fact(Directory, path=folder)
    owner = str(info["user"]) if info else None
    return owner if owner is not None and owner != login else None


def _stop_unwanted(stack: Stack, lay: Layout, login: str | None, *, systemd_host: bool) -> None:
    """Stop (and disable) a follower that runs for someone ``linux.agents_user`` no longer
    names, before anything of theirs is given back or removed."""
    unit, name = follower_names(stack)
    if systemd_host:
        wanted = follower_instance(stack, login) if login is not None else None
        wants = posixpath.join(str(lay.units_dir), "multi-user.target.wants")
        links = host.get_fact(FindLinks, path=wants, fname=unit.replace("@.", "@*.")) or []
        for link in sorted(links):
            instance = posixpath.basename(link)
            if instance != wanted:
                systemd.service(name=f"{instance} stopped and disabled: linux.agents_user "
                                "no longer names its user", service=instance, running=False,
                                enabled=False)
                files.directory(name=f"{instance}'s drop-in removed", present=False,
                                path=posixpath.join(str(lay.units_dir), f"{instance}.d"))
        return
    before = host.get_fact(FileContents, path=follower_defaults(stack))
    if login is None and before is not None:
        sysvinit.service(name=f"{name} stopped: linux.agents_user names nobody",
                         service=name, running=False, enabled=False)
    elif before and f"AGENTS_USER={shlex.quote(login or '')}" not in before:
        # Stopped while the script still names the previous person: its stop matches the
        # running follower by that user.
        sysvinit.service(name=f"{name} stopped: linux.agents_user names someone else now",
                         service=name, running=False)


def _give_back(lay: Layout, folder: str, previous: str) -> None:
    """``previous``'s agents given their own values back, then their follower's directory
    removed (see the module docstring; their follower is stopped by then). A user deleted
    since (``stat`` says UNKNOWN or a uid) has no home to give anything back to: only the
    directory goes. (The watchdog removes its decision file itself once nobody is named.)"""
    if not (previous.isdigit() or previous == "UNKNOWN"):
        server.shell(name=f"{previous}'s agents given their own values back "
                     "(provider-fallback agents release --all)",
                     commands=[shlex.join([lay.watchdog_bin, "agents", "release", "--all",
                                           "--config", lay.watchdog_config])])
    files.directory(name=f"{folder} removed: it held {previous}'s takeover records",
                    path=folder, present=False)


def follower(stack: Stack, lay: Layout, rendered: Rendered, person: Mapping[str, str] | None,
             *, systemd_host: bool, restart_on: Sequence[OperationMeta]) -> None:
    """The person's agents follower, or none (``person`` None): see the module docstring.

    In order: a follower for someone no longer named is stopped, that person's files are
    given back and their directory removed, then the person named now gets theirs. The
    template unit (or the init script) is put on every host of its kind, like the other
    rendered files; an instance runs only for a person. ``restart_on``: the operations that
    changed its inputs (the venv, the secrets file). Idempotent: each step compares, the unit
    files are reloaded only when the template changed."""
    unit, name = follower_names(stack)
    unit_rel, script_rel = follower_rels(stack)
    folder = lay.state(FOLLOWER_DIR)
    defaults = follower_defaults(stack)
    login = person["name"] if person is not None else None
    _stop_unwanted(stack, lay, login, systemd_host=systemd_host)
    previous = _previous_person(folder, login)
    if previous is not None:
        _give_back(lay, folder, previous)
    if login is not None:
        # Owned by the person (the follower writes its records and report there), readable
        # by the service group (the watchdog reads the report); its owner says whose agents.
        files.directory(name=f"directory {folder} (the agents follower of {login})",
                        path=folder, user=login, group=stack.linux.group, mode="750")
    if systemd_host:
        wanted = follower_instance(stack, login) if login is not None else None
        changed = [put_artifact(stack, unit_rel, rendered[unit_rel])]
        if wanted is not None and person is not None:
            # The person's home, writable for this instance only (%h in a system unit is
            # root's home, so the template cannot name it).
            files.directory(name=f"directory {wanted}.d", mode="755",
                            path=posixpath.join(str(lay.units_dir), f"{wanted}.d"))
            changed.append(put_bytes(
                name=f"{wanted}: ReadWritePaths={person['home']}",
                data=home_dropin(person["home"], *([stack.linux.windows_profile]
                                                   if stack.linux.windows_profile else [])),
                mode=0o644,
                dest=posixpath.join(str(lay.units_dir), f"{wanted}.d", HOME_DROPIN)))
        systemd.daemon_reload(name=f"systemd daemon-reload: {unit} or its drop-in changed",
                              _if=any_changed(changed))
        if wanted is not None:
            ensure_service(wanted, systemd_host=True, restart_on=[*changed, *restart_on])
    else:
        script = put_artifact(stack, script_rel, rendered[script_rel])
        if login is not None:
            named = put_bytes(name=f"{defaults}: AGENTS_USER={login}",
                              data=f"AGENTS_USER={shlex.quote(login)}\n".encode(),
                              dest=defaults, mode=0o644)
            ensure_service(name, systemd_host=False, restart_on=[script, named, *restart_on])
        elif host.get_fact(File, path=defaults):
            files.file(name=f"{defaults} removed", path=defaults, present=False)
