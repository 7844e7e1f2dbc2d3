"""A real scrape of the real watchdog's exporter, for tests that must not drift from it.

The rule tests once wrote their input series by hand, and ``AllProvidersDown`` passed them
while it could never fire on a real stack: the exporter also serves the proxy's own
``provider_health_status{provider="litellm"}``, which no hand-written series had (issue 11,
item 10). Here ``provider-fallback watch`` runs as a process, as on a freshly deployed host
with no provider keys and no proxy (a closed port), and its ``/metrics`` is read over HTTP.
The label sets it serves, plus the ``job`` and ``instance`` labels Prometheus attaches by the
rendered scrape config, are what a rule will really see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics
from monitoring.host_config import Listen
from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from tasks.render import watchdog
from tests.support.litellm_proxy import free_port
from tests.support.watchdog_harness import fast_config

Labels = dict[str, str]


@dataclass(frozen=True)
class Scrape:
    """Every sample name the exporter served, with its label sets (scrape labels added)."""

    series: dict[str, list[Labels]]

    def label_sets(self, name: str) -> list[Labels]:
        """The label sets of sample ``name`` (e.g. ``provider_proxy_restarts_total``)."""
        found = self.series.get(name)
        assert found, f"the exporter serves no {name!r} (it serves {sorted(self.series)})"
        return found

    def one(self, name: str) -> Labels:
        """The one label set of an unlabelled metric (only the scrape's job and instance)."""
        (labels,) = self.label_sets(name)
        return labels

    def has(self, name: str, labels: Labels) -> bool:
        return labels in self.series.get(name, [])


def scrape_watchdog(stack: Stack, workdir: Path, timeout: float = 90.0) -> Scrape:
    """Run ``provider-fallback watch`` for ``stack`` in ``workdir`` and scrape it once every
    route's health series is there; the process is always stopped."""
    base = watchdog.build(stack, layout(stack, "linux"))
    config = fast_config(base, workdir, listen=Listen(host="127.0.0.1", port=free_port()))
    logs, state = Path(config.paths.log_dir), Path(config.paths.state_dir)
    paths = config.paths.model_copy(update={
        "cost_log": str(logs / "cost.log"), "alert_log": str(logs / "cost-alerts.log"),
        "provider_config": str(workdir / "home" / "provider-config.json")})
    proxy = config.proxy.model_copy(update={
        "url": f"http://127.0.0.1:{free_port()}",  # nothing listens: no proxy, as after a
        "command": [sys.executable, "-c", "pass"],  # deploy that has not started it yet
        "systemd_unit": None, "restart_command": None})
    update: dict[str, object] = {"paths": paths, "proxy": proxy}
    if config.degraded is not None:
        update["degraded"] = config.degraded.model_copy(update={
            "cache_dir": str(state / "degraded-cache")})
    config = config.model_copy(update=update)
    path = workdir / "watchdog.json"
    path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
    secrets = {config.proxy.master_key_env, *(p.api_key_env for p in config.providers)}
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    url = f"http://127.0.0.1:{config.listen.port}/metrics"
    routes = [metrics.PROXY_ROUTE, *(p.name for p in config.providers)]
    process = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "watch", "--config",
                                str(path)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, "the watchdog exited"
            assert time.monotonic() < deadline, f"no health series at {url} in {timeout} s"
            try:
                text = httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            scrape = parse(text, {"job": metrics.JOB_WATCHDOG,
                                  "instance": stack.watchdog.listen.connect})
            served = {labels.get("provider") for labels in
                      scrape.series.get(metrics.HEALTH.name, [])}
            if served >= set(routes):
                return scrape
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def parse(text: str, target: Labels) -> Scrape:
    """Sample names and label sets of an exposition, with the scrape's ``target`` labels."""
    series: dict[str, list[Labels]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**dict(sample.labels), **target}
            if labels not in series.setdefault(sample.name, []):
                series[sample.name].append(labels)
    return Scrape(series)
