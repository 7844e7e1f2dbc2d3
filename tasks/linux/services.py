"""Start, enable, restart and reload a service the way this host's init system does it.

systemd when it is PID 1; otherwise Debian's sysvinit scripts, called directly (the way
pyinfra's ``sysvinit.service`` does, so a container's policy-rc.d does not refuse them).
Restarts and reloads are gated with ``_if`` on the operations that changed the service's
own inputs: nothing else restarts it, and a second deploy restarts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import systemd, sysvinit


def any_changed(ops: Sequence[OperationMeta]) -> Callable[[], bool]:
    """An ``_if`` that holds when at least one of ``ops`` changed the host (pyinfra's own
    list form means "all of them")."""
    return lambda: any(op.did_change() for op in ops)


#: The longest process name start-stop-daemon can match with --name (the kernel's comm field).
SSD_NAME_MAX = 15


def ensure_service(name: str, *, systemd_host: bool, restart_on: Sequence[OperationMeta] = (),
                   reload_on: Sequence[OperationMeta] = ()) -> None:
    """``name`` enabled and running; restarted when ``restart_on`` changed something,
    reloaded (SIGHUP) when only ``reload_on`` did."""
    op: Callable[..., OperationMeta]
    if systemd_host:
        unit = name if name.endswith(".service") else f"{name}.service"
        systemd.service(name=f"{unit} enabled", service=unit, enabled=True)
        started = systemd.service(name=f"{unit} running", service=unit, running=True)
        op, label = systemd.service, unit
    else:
        label = name.removesuffix(".service")
        sysvinit.service(name=f"{label} enabled (no systemd: /etc/init.d)", service=label,
                         enabled=True)
        started = sysvinit.service(name=f"{label} running", service=label, running=True)
        op = sysvinit.service
        if len(label) > SSD_NAME_MAX:
            # Debian's init-d-script reloads with `start-stop-daemon --name`, which cannot
            # match a process name longer than 15 characters ("not able to track process
            # names longer than 15 characters"): the reload fails and the deploy stops.
            # Its stop matches by --exec, so a restart works: the config change restarts it.
            restart_on, reload_on = [*restart_on, *reload_on], ()
    # A service started just now already runs the new inputs: no restart or reload then.
    # (Enabling is a separate operation: enabling a running service must not hide a restart.)
    not_just_started = lambda: not started.did_change()  # noqa: E731
    if restart_on:
        op(name=f"restart {label}: its inputs changed", service=label, restarted=True,
           _if=[any_changed(restart_on), not_just_started])
    if reload_on:
        op(name=f"reload {label}: its config changed", service=label, reloaded=True,
           _if=[any_changed(reload_on), not_just_started,
                lambda: not any_changed(restart_on)()])
