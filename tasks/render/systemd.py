"""Service definitions for Linux: systemd units, and an init script for hosts without systemd.

Text formats, so Jinja templates; every value comes from the stack or the layout. Secrets
reach the services through the 0600 EnvironmentFile, never through the unit itself (units
are world-readable and shown by ``systemctl cat``).

On a host whose PID 1 is not systemd (a container, WSL before ``systemd=true``) the deploy
installs ``/etc/init.d/<watchdog unit name>`` instead: the watchdog runs detached and
supervises the proxy itself (its process backend), as DESIGN.md decides.
"""

from __future__ import annotations

from monitoring.agents.follower import DECISION_FILE, FOLLOWER_DIR
from monitoring.stack.layout import Layout, proxy_command, proxy_env, watchdog_command
from monitoring.stack.schema import Stack
from monitoring.watchdog.recovery import PROXY_PID_FILE
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
        **follower_artifacts(stack, lay),
        f"sysvinit/{init_name}": Artifact(init_script, f"/etc/init.d/{init_name}", mode=0o755),
        f"systemd/{lx.units.litellm}": Artifact(litellm_unit,
                                                lay.join(lay.units_dir, lx.units.litellm)),
        f"systemd/{lx.units.watchdog}": Artifact(watchdog_unit,
                                                 lay.join(lay.units_dir, lx.units.watchdog)),
    }


#: The follower's log without systemd (in its own directory, written by the person).
FOLLOWER_LOG = "follower.log"


def follower_names(stack: Stack) -> tuple[str, str]:
    """(template unit, init script name) of a person's agents follower:
    ``provider-fallback-agents@.service`` and ``provider-fallback-agents``."""
    unit = stack.linux.units.agents
    return unit, unit.removesuffix("@.service")


def follower_rels(stack: Stack) -> tuple[str, str]:
    """The rendered names of the follower's unit and script (put by tasks/linux/agents.py)."""
    unit, name = follower_names(stack)
    return f"systemd/{unit}", f"sysvinit/{name}"


def follower_defaults(stack: Stack) -> str:
    """``/etc/default/<name>``: AGENTS_USER for the init script (no systemd)."""
    return f"/etc/default/{follower_names(stack)[1]}"


def follower_command(lay: Layout) -> list[str]:
    """``provider-fallback agents follow --state-dir <state_dir>`` (``--by`` is the unit's
    own name, added by the unit or the script)."""
    return [lay.watchdog_bin, "agents", "follow", "--state-dir", lay.state_dir]


def follower_artifacts(stack: Stack, lay: Layout) -> Rendered:
    """The template unit and the init script of a person's agents follower. The same for
    every person (``%i`` is the login; the script reads it from its defaults file): the
    deploy enables an instance only when ``linux.agents_user`` names someone."""
    assert lay.units_dir is not None
    assert lay.secrets_env is not None
    lx = stack.linux
    unit, name = follower_names(stack)
    folder = lay.state(FOLLOWER_DIR)
    context = {"unit_prefix": unit.removesuffix("@.service"), "command": follower_command(lay),
               "secrets_env": lay.secrets_env, "follower_dir": folder,
               "decision": lay.state(DECISION_FILE)}
    service = template("linux/agents-follower.service.j2", watchdog_unit=lx.units.watchdog,
                       **context)
    script = template("linux/agents-follower.init.j2", service=name,
                      watchdog_service=lx.units.watchdog.removesuffix(".service"),
                      defaults=follower_defaults(stack),
                      log_file=lay.join(folder, FOLLOWER_LOG), **context)
    unit_rel, script_rel = follower_rels(stack)
    return {unit_rel: Artifact(service, lay.join(lay.units_dir, unit)),
            script_rel: Artifact(script, f"/etc/init.d/{name}", mode=0o755)}
