"""Grafana's provisioning files for the bundle: the Prometheus data source and the dashboard
provider, as data in Grafana's documented ``apiVersion: 1`` format.

Why provisioning and not the HTTP API: Grafana reads these files at start-up and rescans the
dashboard folder on its own, so a deploy only puts files in place (no admin password, no
running Grafana needed), and an existing Grafana picks them up the same way.

Choices worth knowing:

- The data source has a fixed ``uid`` (``grafana.datasource.uid``): the dashboard's
  ``datasource`` variable defaults to it, so panels never depend on a uid Grafana made up. It
  is read-only in the UI (``editable: false``) and never the org's default data source, so it
  cannot hijack other dashboards of an existing Grafana.
- Its URL is Prometheus' own listen address; a wildcard bind (``0.0.0.0`` / ``::``) is reached
  over loopback, as Grafana runs on the same host. Its scrape interval is set
  (``jsonData.timeInterval``) so ``$__rate_interval`` spans at least four scrapes.
- The dashboard provider reads only the bundle's dashboard directory into the folder
  "Provider Fallback", refuses UI saves (``allowUiUpdates: false``) and deletion from the UI
  (``disableDeletion: true``): stack.yaml is the one source.
- Grafana expands ``$NAME`` and ``${NAME}`` (environment variables) in every string value of
  these files and reads ``$$`` as a literal ``$``; every ``$`` in a value taken from the stack is
  written as ``$$``, so a title or path keeps its exact text.
"""

from __future__ import annotations

from typing import Any

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack

JSON = dict[str, Any]

API_VERSION = 1
FOLDER = "Provider Fallback"
#: How often Grafana rescans the dashboard directory; files only change on a deploy.
UPDATE_INTERVAL_SECONDS = 30


def grafana_literal(value: str) -> str:
    """``value`` as Grafana's provisioning reader will see it verbatim (``$`` -> ``$$``)."""
    return value.replace("$", "$$")


def _seconds(value: float) -> str:
    """A Grafana interval such as ``15s`` (``1.5s`` is written ``1500ms``)."""
    millis = round(value * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def datasource(stack: Stack) -> JSON:
    """The data source provisioning file: the bundle's Prometheus, fixed uid, read-only."""
    ds = stack.grafana.datasource
    return {
        "apiVersion": API_VERSION,
        "datasources": [{
            "name": grafana_literal(ds.name),
            "uid": grafana_literal(ds.uid),
            "type": "prometheus",
            "access": "proxy",
            "orgId": 1,
            "url": grafana_literal(stack.prometheus.listen.url),
            "isDefault": False,
            "editable": False,
            "jsonData": {
                "httpMethod": "POST",
                "timeInterval": _seconds(stack.prometheus.scrape_interval),
            },
        }],
    }


def dashboards(stack: Stack, lay: Layout) -> JSON:
    """The dashboard provider file: the bundle's dashboard directory, read-only in the UI."""
    return {
        "apiVersion": API_VERSION,
        "providers": [{
            "name": grafana_literal(stack.grafana.dashboard.uid),
            "orgId": 1,
            "type": "file",
            "folder": grafana_literal(FOLDER),
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": UPDATE_INTERVAL_SECONDS,
            "options": {
                "path": grafana_literal(lay.grafana_dashboards_dir),
                "foldersFromFilesStructure": False,
            },
        }],
    }
