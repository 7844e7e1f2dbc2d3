"""The Grafana datasource, dashboard provider and dashboard; Grafana itself when asked.

Grafana is not in Debian: with ``grafana.install: true`` it comes from Grafana's own apt
repository (https://apt.grafana.com, its signing key put in /etc/apt/keyrings), which the
host must be able to reach. With ``install: false`` (the default) only the files are put
where an existing Grafana reads them.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.linux.files import put_artifact
from tasks.linux.services import ensure_service
from tasks.render.common import Rendered

GRAFANA_KEY_URL = "https://apt.grafana.com/gpg.key"
GRAFANA_KEYRING = "/etc/apt/keyrings/grafana.asc"
GRAFANA_REPO = f"deb [signed-by={GRAFANA_KEYRING}] https://apt.grafana.com stable main"


def grafana(stack: Stack, lay: Layout, rendered: Rendered, *, systemd_host: bool) -> None:
    if stack.grafana.install:
        files.directory(name="/etc/apt/keyrings", path="/etc/apt/keyrings", mode="755")
        key = files.download(name="Grafana's apt signing key", src=GRAFANA_KEY_URL,
                             dest=GRAFANA_KEYRING, mode="644")
        repo = apt.repo(name="Grafana's apt repository", src=GRAFANA_REPO,
                        filename="grafana")
        apt.update(name="apt update: Grafana's repository was added",
                   _if=lambda: key.did_change() or repo.did_change())
        apt.packages(name="Grafana", packages=["grafana"], no_recommends=True)
    dirs = sorted({a.dest.rsplit("/", 1)[0] for rel, a in rendered.items()
                   if rel.startswith("grafana/")})
    for path in dirs:
        files.directory(name=f"directory {path}", path=path, mode="755")
    puts: list[OperationMeta] = [put_artifact(stack, rel, a) for rel, a in rendered.items()
                                 if rel.startswith("grafana/")]
    if stack.grafana.install:
        ensure_service("grafana-server", systemd_host=systemd_host, restart_on=puts)
