"""Grafana: the dashboard JSON and the two provisioning files, for Linux and Windows alike.

The provisioning builders live in the ``monitoring`` package
(:mod:`monitoring.content.grafana`), the dashboard in :mod:`tasks.render.dashboard` (its
SDK is a controller dependency); this module only
dumps them with a stable key order and says where each file goes on the host (from
:class:`~monitoring.stack.layout.Layout`). The files are put in place whether or not the deploy
installs Grafana itself (``grafana.install``), so an existing Grafana picks them up too.
"""

from __future__ import annotations

from monitoring.content import grafana
from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.render import dashboard
from tasks.render.common import Artifact, Rendered, dump_json, dump_yaml

HEADER = "# Rendered from stack.yaml by provider-fallback: edit stack.yaml, not this file.\n"

DATASOURCE_REL = "grafana/provisioning/datasources/provider-fallback.yaml"
PROVIDER_REL = "grafana/provisioning/dashboards/provider-fallback.yaml"


def dashboard_rel(stack: Stack) -> str:
    """The dashboard's build-relative path, named by its uid like its host path."""
    return f"grafana/dashboards/{stack.grafana.dashboard.uid}.json"


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """The data source, the dashboard provider and the dashboard, each at its host path."""
    return {
        DATASOURCE_REL: Artifact(
            dump_yaml(grafana.datasource(stack), HEADER), lay.grafana_datasource),
        PROVIDER_REL: Artifact(
            dump_yaml(grafana.dashboards(stack, lay), HEADER),
            lay.grafana_dashboard_provider),
        dashboard_rel(stack): Artifact(dump_json(dashboard.build(stack)), lay.grafana_dashboard),
    }
