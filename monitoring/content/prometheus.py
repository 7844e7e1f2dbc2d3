"""prometheus.yml as data: intervals, the rule file, Alertmanager and the four scrape jobs.

Built from stack.yaml and the host :class:`~monitoring.stack.layout.Layout`, never typed by hand, so
the exporter port the watchdog binds, the proxy port LiteLLM binds and the ports Prometheus
and Alertmanager listen on are the same numbers Prometheus scrapes. Job names come from
:mod:`monitoring.metrics`, where the alert rules (``up{job=...}``) and the dashboard read them.

The rule file is named RELATIVE to the directory of prometheus.yml: Prometheus resolves
``rule_files`` against that directory, so the same text works at the Debian path, under the
Windows install root, and in a temporary directory where ``promtool check config`` runs.
"""

from __future__ import annotations

import ntpath
import posixpath
from typing import Any

from monitoring import metrics
from monitoring.stack.layout import Layout
from monitoring.stack.schema import Listen, Stack, prom_duration


def rule_file_ref(lay: Layout) -> str:
    """The rule file as Prometheus should find it: relative to prometheus.yml's directory.

    Derived from the layout (so it follows any change there) and written with ``/``, which
    Prometheus accepts on Windows too (Go's ``filepath.Join`` cleans it to ``\\``), so the
    Windows render can be checked by promtool on Linux.
    """
    if lay.os == "linux":
        return posixpath.relpath(lay.prometheus_rules, posixpath.dirname(lay.prometheus_config))
    rel = ntpath.relpath(lay.prometheus_rules, ntpath.dirname(lay.prometheus_config))
    return rel.replace("\\", "/")


def _job(name: str, listen: Listen, metrics_path: str | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"job_name": name}
    if metrics_path is not None:
        job["metrics_path"] = metrics_path
    job["static_configs"] = [{"targets": [listen.connect]}]
    return job


def build(stack: Stack, lay: Layout) -> dict[str, Any]:
    """prometheus.yml for ``stack`` on a host laid out as ``lay``.

    LiteLLM's job carries no credentials: the proxy is rendered with
    ``require_auth_for_metrics_endpoint: false`` and listens on loopback, so its /metrics is
    scraped like any local exporter, and no key ever has to be written into this file.
    """
    prom = stack.prometheus
    return {
        "global": {
            "scrape_interval": prom_duration(prom.scrape_interval),
            "evaluation_interval": prom_duration(prom.evaluation_interval),
        },
        "rule_files": [rule_file_ref(lay)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [stack.alertmanager.listen.connect]}]},
            ],
        },
        "scrape_configs": [
            _job(metrics.JOB_WATCHDOG, stack.watchdog.listen),
            _job(metrics.JOB_LITELLM, stack.litellm.listen, metrics.LITELLM_METRICS_PATH),
            _job(metrics.JOB_PROMETHEUS, prom.listen),
            _job(metrics.JOB_ALERTMANAGER, stack.alertmanager.listen),
        ],
    }
