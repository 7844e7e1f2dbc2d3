"""Debian's Prometheus and Alertmanager with the bundle's configs.

Each config is validated on the host (promtool, amtool) before it replaces the live one; a
changed config is applied by a reload (SIGHUP), a changed ``/etc/default`` file (flags) by
a restart; nothing else touches the running services.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.linux.files import put_artifact
from tasks.linux.services import ensure_service
from tasks.render.common import Rendered

#: service -> (its config, its flags file), as render names them.
SERVICES = {"prometheus": ("prometheus/prometheus.yml", "default/prometheus"),
            "prometheus-alertmanager": ("alertmanager/alertmanager.yml",
                                        "default/prometheus-alertmanager")}


def _put(stack: Stack, rendered: Rendered, rel: str) -> list[OperationMeta]:
    return [put_artifact(stack, rel, rendered[rel])] if rel in rendered else []


def monitoring_services(stack: Stack, lay: Layout, rendered: Rendered, *,
                        systemd_host: bool) -> None:
    files.directory(name="directory for the alert rules",
                    path=lay.prometheus_rules.rsplit("/", 1)[0], user="root", group="root",
                    mode="755")
    # Rules first: promtool's check of prometheus.yml reads the rule files it names.
    rules = [put_artifact(stack, rel, a) for rel, a in rendered.items()
             if rel.startswith("prometheus/rules/")]
    for service, (config_rel, flags_rel) in SERVICES.items():
        config = _put(stack, rendered, config_rel)
        flags = _put(stack, rendered, flags_rel)
        reload_on = config + (rules if service == "prometheus" else [])
        ensure_service(service, systemd_host=systemd_host, restart_on=flags,
                       reload_on=reload_on)
