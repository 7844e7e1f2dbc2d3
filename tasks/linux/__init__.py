"""The Linux/WSL deploy: one packaged ``@deploy`` and one module per component.

``linux_stack(stack, rendered)`` takes a bare Debian/Ubuntu host (WSL included) to a
running, monitored stack: packages, service account and directories (:mod:`.base`), the
hash-pinned venv and the proxy and watchdog services (:mod:`.proxy`), Prometheus and
Alertmanager (:mod:`.prometheus`), Grafana's files (:mod:`.grafana`), the firewall rule
(:mod:`.firewall`) and WSL's systemd switch (:mod:`.wsl`). Every step compares the host with
the desired state, so a second run changes nothing.
"""

from __future__ import annotations

from pyinfra import host, logger  # type: ignore[attr-defined]
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import DeployError

from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from tasks.linux import agents, base, firewall, grafana, prometheus, proxy, wsl
from tasks.linux.facts import HostPlatform, PythonMarkers
from tasks.render.common import Rendered
from tasks.wheelhouse import Wheelhouse, build_wheelhouse, linux_platforms

#: Host data this deploy reads, with its defaults (pyinfra's ``data_defaults``):
#: ``system_python``, the interpreter the venv is made from: Debian's python3 (the packages
#: step installs it with its venv module), never whatever ``python3`` comes first on PATH
#: (pyenv, a user's venv).
DATA_DEFAULTS = {"system_python": "/usr/bin/python3"}


def _wheelhouse_for_host(stack: Stack) -> tuple[Wheelhouse, str]:
    python = str(host.data.get("system_python"))
    markers = host.get_fact(PythonMarkers, python=python)
    if markers is None:
        # The wheels are chosen for the host's own Python (version, machine, glibc); without
        # it they would be a guess that pip on the host may refuse.
        raise DeployError(f"{host.name}: no {python} on the host. Install Python 3 first "
                          "(apt-get install python3), or set host data system_python to "
                          "the interpreter to build the venv from, and deploy again")
    glibc = tuple(int(x) for x in (markers.pop("glibc", "") or "2.17").split(".")[:2])
    platforms = linux_platforms(markers["platform_machine"], (glibc[0], glibc[1]))
    return build_wheelhouse(stack, markers, platforms), python


@deploy("provider-fallback (Linux/WSL)", data_defaults=DATA_DEFAULTS)
def linux_stack(stack: Stack, rendered: Rendered) -> None:
    lay = layout(stack, "linux")
    platform = host.get_fact(HostPlatform)
    systemd_host = platform["systemd"]
    if not systemd_host:
        logger.warning(f"{host.name}: systemd is not PID 1 here: the watchdog runs from "
                       "/etc/init.d and supervises the LiteLLM proxy itself")
    person = agents.agents_user(stack, wsl=platform["wsl"])  # checked before any change
    agents.windows_profile(stack, person)
    if person is not None:
        logger.info(f"{host.name}: the agents of {person['name']} ({person['home']}) follow "
                    f"the switch, through {agents.follower_instance(stack, person['name'])}")
    if platform["wsl"]:
        wsl.wsl_systemd()
    wheelhouse, python = _wheelhouse_for_host(stack)
    base.packages()
    base.service_account(stack, lay)
    base.directories(stack, lay, traversable=person is not None)
    venv_op = proxy.venv(stack, lay, wheelhouse, python)
    proxy_inputs, watchdog_inputs = proxy.configs(stack, rendered)
    prometheus.monitoring_services(stack, lay, rendered, systemd_host=systemd_host)
    grafana.grafana(stack, lay, rendered, systemd_host=systemd_host)
    proxy.services(stack, rendered, systemd_host=systemd_host, venv_op=venv_op,
                   proxy_inputs=proxy_inputs, watchdog_inputs=watchdog_inputs)
    agents.follower(stack, lay, rendered, person, systemd_host=systemd_host,
                    restart_on=[venv_op, *watchdog_inputs])
    firewall.firewall(stack, platform)
