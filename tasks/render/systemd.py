"""Service definitions for Linux: systemd units, and an init script for hosts without systemd.

Text formats, so Jinja templates; every value comes from the stack or the layout. Secrets
reach the services through the 0600 EnvironmentFile, never through the unit itself (units
are world-readable and shown by ``systemctl cat``).

On a host whose PID 1 is not systemd (a container, WSL before ``systemd=true``) the deploy
installs ``/etc/init.d/<watchdog unit name>`` instead: the watchdog runs detached and
supervises the proxy itself (its process backend), as DESIGN.md decides.
"""

from __future__ import annotations

from monitoring.layout import Layout, proxy_command, proxy_env, watchdog_command
from monitoring.recovery import PROXY_PID_FILE
from monitoring.stack import Stack
from tasks.render.common import Artifact, Rendered, template


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """``systemd/<unit>`` for the proxy and the watchdog, ``sysvinit/<name>`` for hosts without
    systemd."""
    assert lay.units_dir is not None
    assert lay.secrets_env is not None
    lx = stack.linux
    common = {"user": lx.user, "group": lx.group, "secrets_env": lay.secrets_env,
              "state_dir": lay.state_dir, "log_dir": lay.log_dir}
    litellm_unit = template("linux/litellm.service.j2", version=stack.litellm.version,
                            env=proxy_env(stack), command=proxy_command(stack, lay), **common)
    watchdog_unit = template("linux/watchdog.service.j2", litellm_unit=lx.units.litellm,
                             command=watchdog_command(lay), **common)
    init_name = lx.units.watchdog.removesuffix(".service")
    init_script = template("linux/watchdog.init.j2", service=init_name,
                           command=watchdog_command(lay), proxy_pid_file=lay.state(PROXY_PID_FILE),
                           log_file=lay.log("watchdog.log"), **common)
    return {
        f"sysvinit/{init_name}": Artifact(init_script, f"/etc/init.d/{init_name}", mode=0o755),
        f"systemd/{lx.units.litellm}": Artifact(litellm_unit,
                                                lay.join(lay.units_dir, lx.units.litellm)),
        f"systemd/{lx.units.watchdog}": Artifact(watchdog_unit,
                                                 lay.join(lay.units_dir, lx.units.watchdog)),
    }
