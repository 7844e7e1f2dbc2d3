"""The LiteLLM proxy and the watchdog: the venv, their configs and their services.

With systemd: two units, each restarted only when its own inputs changed. Without systemd
as PID 1: one init script for the watchdog, which supervises the proxy (its process
backend); any change to either restarts the pair.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, systemd

from monitoring.stack.layout import Layout, layout
from monitoring.stack.schema import Stack
from tasks.linux.base import STAGING_DIR
from tasks.linux.files import put_artifact
from tasks.linux.operations import venv_from_wheelhouse
from tasks.linux.services import any_changed, ensure_service
from tasks.render.common import Rendered
from tasks.render.systemd import follower_rels
from tasks.wheelhouse import Wheelhouse

#: Which rendered files each service reads (by render's prefix); both read the secrets.
PROXY_PREFIX = "litellm/"
WATCHDOG_PREFIX = "watchdog/"


def venv(stack: Stack, lay: Layout, wheelhouse: Wheelhouse, python: str) -> OperationMeta:
    op: OperationMeta = venv_from_wheelhouse(
        name=f"venv {lay.venv}: litellm[proxy]=={stack.litellm.version} + watchdog",
        venv=lay.venv, python=python, wheelhouse=wheelhouse, staging_dir=STAGING_DIR)
    return op


def configs(stack: Stack, rendered: Rendered) -> tuple[list[OperationMeta], list[OperationMeta]]:
    """Put the bundle's config files; returns (proxy inputs, watchdog inputs)."""
    config_dir = stack.linux.config_dir.rstrip("/") + "/"
    proxy: list[OperationMeta] = []
    watchdog: list[OperationMeta] = []
    for rel, artifact in rendered.items():
        if not artifact.dest.startswith(config_dir):
            continue
        op = put_artifact(stack, rel, artifact)
        if artifact.secret or rel.startswith(PROXY_PREFIX):
            proxy.append(op)
        if artifact.secret or rel.startswith(WATCHDOG_PREFIX):
            watchdog.append(op)
    return proxy, watchdog


def services(stack: Stack, rendered: Rendered, *, systemd_host: bool, venv_op: OperationMeta,
             proxy_inputs: list[OperationMeta], watchdog_inputs: list[OperationMeta]) -> None:
    units = stack.linux.units
    # A person's agents follower has its own service (tasks/linux/agents.py).
    rendered = {rel: a for rel, a in rendered.items() if rel not in follower_rels(stack)}
    if not systemd_host:
        init = {rel: a for rel, a in rendered.items() if rel.startswith("sysvinit/")}
        script_ops = [put_artifact(stack, rel, a) for rel, a in init.items()]
        # The init script opens its log as the service user (never as root: a symlink in
        # that directory would make root write anywhere), so an older deploy's root-owned
        # log would keep the watchdog from starting: the log is the service user's.
        log = layout(stack, "linux").log("watchdog.log")
        owned = files.file(name=f"{log} belongs to {stack.linux.user}", path=log,
                           user=stack.linux.user, group=stack.linux.group, mode="640")
        name = units.watchdog.removesuffix(".service")
        ensure_service(name, systemd_host=False,
                       restart_on=[venv_op, *script_ops, owned, *proxy_inputs,
                                   *watchdog_inputs])
        return
    unit_ops = {rel: put_artifact(stack, rel, a) for rel, a in rendered.items()
                if rel.startswith("systemd/")}
    systemd.daemon_reload(name="systemd daemon-reload: a unit changed",
                          _if=any_changed(list(unit_ops.values())))
    ensure_service(units.litellm, systemd_host=True,
                   restart_on=[venv_op, unit_ops[f"systemd/{units.litellm}"], *proxy_inputs])
    ensure_service(units.watchdog, systemd_host=True,
                   restart_on=[venv_op, unit_ops[f"systemd/{units.watchdog}"],
                               *watchdog_inputs])
