"""Every query of the dashboard returns data from a real Prometheus (Debian's) scraping a live
watchdog (`provider-fallback watch`) and the session's real LiteLLM proxy, with the scrape
jobs exactly as render writes them. The static tests prove each query parses and names known
metrics; this one proves the metrics and labels are the ones really exported, and that each
panel would show something once the proxy has seen traffic, a fallback and a cooldown."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitoring import metrics as m
from monitoring.content import prometheus as prometheus_config
from monitoring.host_config import Listen, WatchdogConfig
from monitoring.stack.layout import layout
from tasks.render.dashboard import build
from tests.monitoring.conftest import LiveStack
from tests.support.litellm_proxy import free_port
from tests.support.polling import until
from tests.support.watchdog_harness import fast_config, seed_agent_file

pytestmark = pytest.mark.live

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
#: Grafana's $__rate_interval at a 1 s scrape interval is 4 scrapes; a little more here.
RATE_INTERVAL = "20s"


@pytest.fixture
def watchdog(live: LiveStack, tmp_path: Path) -> Iterator[WatchdogConfig]:
    """The real watchdog process, its files in tmp_path, /metrics on a free port."""
    base = fast_config(live.config, tmp_path, listen=Listen(host="127.0.0.1", port=free_port()))
    paths = base.paths.model_copy(update={
        "cost_log": str(tmp_path / "log" / "costs.log"),
        "alert_log": str(tmp_path / "log" / "alerts.log"),
        "provider_config": str(tmp_path / "home" / "provider-config.json")})
    config = base.model_copy(update={"paths": paths})
    seed_agent_file(config)
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json())
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "watch", "--config",
                             str(path)], env={**os.environ, **live.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: httpx.get(f"http://127.0.0.1:{config.listen.port}/metrics",
                                timeout=2).status_code == 200, 60, "the watchdog's /metrics")
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def scrape_config(live: LiveStack, config: WatchdogConfig) -> dict[str, Any]:
    """The rendered prometheus.yml's watchdog and LiteLLM jobs (their names, which the
    dashboard's selectors use, and LiteLLM's metrics path), aimed at this test's processes,
    scraped every second; no rules or Alertmanager."""
    rendered = prometheus_config.build(live.stack, layout(live.stack, "linux"))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    watchdog_job = {**jobs[m.JOB_WATCHDOG],
                    "static_configs": [{"targets": [f"127.0.0.1:{config.listen.port}"]}]}
    litellm_job = jobs[m.JOB_LITELLM]
    assert litellm_job["static_configs"] == [
        {"targets": [f"127.0.0.1:{live.stack.litellm.listen.port}"]}]
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [watchdog_job, litellm_job]}


@pytest.fixture
def prometheus(live: LiveStack, watchdog: WatchdogConfig, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port; its URL."""
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(scrape_config(live, watchdog)))
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config_file}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60,
              "Prometheus ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def traffic(live: LiveStack) -> None:
    """A success, an in-proxy fallback (groq fails, openrouter answers) and a failed fallback
    with cooldowns (both paid deployments fail): what the LiteLLM panels count."""
    assert live.chat("groq-70b").status_code == 200
    live.upstream("groq").set_fault(500)
    assert live.chat("groq-70b").status_code == 200  # answered by a fallback of the chain
    live.upstream("openai").set_fault(500)
    assert live.chat("gpt-4").status_code >= 500
    live.reset()


def dashboard_queries(live: LiveStack) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) for every query, Grafana's interval variable resolved."""
    return [(panel["title"], target["refId"],
             re.sub(r"\$\{?__rate_interval\}?", RATE_INTERVAL, target["expr"]))
            for panel in build(live.stack)["panels"] for target in panel.get("targets", [])]


def empty_queries(prometheus: str, queries: list[tuple[str, str, str]]) -> list[str]:
    empty = []
    for title, ref, expr in queries:
        reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        reply.raise_for_status()
        if not reply.json()["data"]["result"]:
            empty.append(f"{title} ({ref}): {expr}")
    return empty


def test_every_panel_query_returns_data(live: LiveStack, prometheus: str) -> None:
    queries = dashboard_queries(live)
    assert len(queries) >= 20
    traffic(live)
    last: list[str] = []

    def all_answer() -> bool:
        nonlocal last
        last = empty_queries(prometheus, queries)
        return not last

    try:
        until(all_answer, 120, "every dashboard query returning data")
    except AssertionError:
        raise AssertionError("queries without data:\n" + "\n".join(last)) from None


def test_the_check_fails_for_a_metric_nobody_exports(live: LiveStack, prometheus: str) -> None:
    made_up = [("made up", "A", 'provider_made_up_total{job="provider-fallback-watchdog"}')]
    until(lambda: not empty_queries(prometheus, [("health", "A", m.HEALTH.name)]), 60,
          "the first scrape")
    assert empty_queries(prometheus, made_up) == [
        'made up (A): provider_made_up_total{job="provider-fallback-watchdog"}']
