"""Put rendered artifacts on a Linux host with the owner each kind of file needs."""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta

from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from tasks.linux.operations import put_bytes
from tasks.render.common import Artifact, Rendered

#: Validators run on the host against the new file before it replaces the live one.
VALIDATORS = {
    "prometheus/prometheus.yml": "promtool check config {path}",
    "alertmanager/alertmanager.yml": "amtool check-config {path}",
}
RULES_VALIDATOR = "promtool check rules {path}"


def validator(rel: str) -> str | None:
    if rel.startswith("prometheus/rules/"):
        return RULES_VALIDATOR
    return VALIDATORS.get(rel)


#: Debian's Prometheus and Alertmanager run as this user and group.
PROMETHEUS_GROUP = "prometheus"


def owner(stack: Stack, artifact: Artifact) -> tuple[str, str]:
    """(user, group) of a file on the host. Under the bundle's config dir: root and the
    service group (the services read it, only root writes it); secrets root-only (systemd
    and the init script read them as root); alertmanager.yml root:prometheus (render makes it
    0640: a webhook URL may hold a token); anything else root's, as Debian expects."""
    if artifact.dest == layout(stack, "linux").alertmanager_config:
        return "root", PROMETHEUS_GROUP
    in_config = artifact.dest.startswith(stack.linux.config_dir.rstrip("/") + "/")
    return "root", stack.linux.group if in_config and not artifact.secret else "root"


def put_artifact(stack: Stack, rel: str, artifact: Artifact) -> OperationMeta:
    """Put one artifact with its owner and mode, validated first where a validator exists."""
    user, group = owner(stack, artifact)
    op: OperationMeta = put_bytes(name=f"{rel} -> {artifact.dest}", data=artifact.data,
                                  dest=artifact.dest, user=user, group=group,
                                  mode=artifact.mode, validate=validator(rel))
    return op


def deployed(rendered: Rendered, *, systemd_host: bool) -> Rendered:
    """The artifacts a host of this kind gets: units with systemd, else the init script."""
    skip = "sysvinit/" if systemd_host else "systemd/"
    return {rel: a for rel, a in rendered.items()
            if not rel.startswith(skip) and a.dest.startswith("/")}
