"""Packages, the service account and the bundle's directories."""

from __future__ import annotations

from pyinfra import host  # type: ignore[attr-defined]
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.linux.facts import LinuxUser

#: Debian packages of the stack: the venv module for LiteLLM's venv, and Debian's own
#: Prometheus and Alertmanager (promtool and amtool validate configs on the host).
PACKAGES = ("python3", "python3-venv", "ca-certificates", "prometheus",
            "prometheus-alertmanager")
#: Where the wheelhouse is unpacked while installing (root only, emptied afterwards).
STAGING_DIR = "/var/cache/provider-fallback"


def packages() -> None:
    """Install what is missing, ``apt-get update`` first only then (so a second deploy, a day
    later, still changes nothing); no recommends (Prometheus would pull node-exporter)."""
    installed = host.get_fact(DebPackages) or {}
    missing = [p for p in PACKAGES if p not in installed]
    apt.packages(name=f"Debian packages: {', '.join(PACKAGES)}", packages=list(PACKAGES),
                 no_recommends=True, update=bool(missing))


def service_account(stack: Stack, lay: Layout) -> None:
    """The service user and group: created as system accounts when missing (home = the state
    directory, no login). An existing user (e.g. your own login in ``linux.user``) is left
    exactly as it is."""
    lx = stack.linux
    server.group(name=f"group {lx.group}", group=lx.group, system=True)
    if host.get_fact(LinuxUser, user=lx.user) is None:
        server.user(  # noqa: S604 - a login shell, not a subprocess shell
            name=f"system user {lx.user}", user=lx.user, group=lx.group, system=True,
            home=lay.state_dir, shell="/usr/sbin/nologin", create_home=False)
    else:
        host.noop(f"user {lx.user} exists: left as it is")


def directories(stack: Stack, lay: Layout, *, traversable: bool = False) -> None:
    """Owners and modes: code and config root's (config readable by the service group),
    state and logs the service user's. ``traversable``: a person's agents follower reaches
    its own directory and the watchdog's decision in the state directory (others may pass
    through it, not list it: 0751)."""
    lx = stack.linux
    wanted = [
        (lx.install_dir, "root", "root", 0o755),
        (lx.config_dir, "root", lx.group, 0o750),
        (lx.state_dir, lx.user, lx.group, 0o751 if traversable else 0o750),
        (lx.log_dir, lx.user, lx.group, 0o750),
        (STAGING_DIR, "root", "root", 0o700),
    ]
    for path, user, group, mode in wanted:
        files.directory(name=f"directory {path}", path=path, user=user, group=group,
                        mode=f"{mode:o}")
