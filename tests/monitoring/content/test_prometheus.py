"""prometheus.yml, checked by the real ``promtool check config`` (Prometheus 2.42).

The config is written with the rest of the render's tree to a temporary directory, so the
relative ``rule_files`` entry must resolve there exactly as it does on a host: promtool loads
and checks the rule file it names, and says how many it found.
"""

from __future__ import annotations

import ntpath
import posixpath
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import metrics
from monitoring.content import prometheus as prometheus_config
from monitoring.content import rules
from monitoring.stack.layout import TARGET_OSES, TargetOS, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import prometheus
from tests.conftest import STACK_FILE, write_tree

PROMTOOL = "/usr/bin/promtool"


def stack_with(overrides: dict[str, Any]) -> Stack:
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


def check_config(stack: Stack, target: TargetOS, root: Path) -> subprocess.CompletedProcess[str]:
    write_tree(prometheus.artifacts(stack, layout(stack, target)), root)
    return subprocess.run([PROMTOOL, "check", "config", str(root / prometheus.PROMETHEUS_REL)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("target", TARGET_OSES)
def test_promtool_check_config_passes_and_finds_the_rule_file(
        stack: Stack, target: TargetOS, tmp_path: Path) -> None:
    result = check_config(stack, target, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out
    assert f"SUCCESS: {len(rules.ALERT_NAMES)} rules found" in out  # the rule file was checked


def test_promtool_check_config_can_fail(stack: Stack, tmp_path: Path) -> None:
    data = prometheus_config.build(stack, layout(stack, "linux"))
    data["global"]["scrape_interval"] = "15"  # no unit: Prometheus refuses it
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0


def test_a_rule_file_that_does_not_resolve_fails_the_check(stack: Stack,
                                                            tmp_path: Path) -> None:
    # prometheus.yml alone: its relative rule file is not beside it, and promtool says so.
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(prometheus_config.build(stack, layout(stack, "linux"))))
    result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "does not point to an existing file" in result.stdout + result.stderr


@pytest.mark.parametrize("target", TARGET_OSES)
def test_rule_file_is_relative_and_resolves_to_the_layout_path(stack: Stack,
                                                                target: TargetOS) -> None:
    lay = layout(stack, target)
    ref = prometheus_config.build(stack, lay)["rule_files"]
    assert ref == ["rules/provider-fallback.rules.yml"]
    pathmod = posixpath if target == "linux" else ntpath
    resolved = pathmod.normpath(pathmod.join(pathmod.dirname(lay.prometheus_config), ref[0]))
    assert resolved == pathmod.normpath(lay.prometheus_rules)


def _targets(job: dict[str, Any]) -> list[str]:
    return [t for sc in job["static_configs"] for t in sc["targets"]]


def test_scrape_jobs_and_targets_come_from_the_stack(stack: Stack) -> None:
    data = prometheus_config.build(stack, layout(stack, "linux"))
    jobs = {job["job_name"]: job for job in data["scrape_configs"]}
    assert tuple(jobs) == metrics.SCRAPE_JOBS
    listens = {
        metrics.JOB_WATCHDOG: stack.watchdog.listen,
        metrics.JOB_LITELLM: stack.litellm.listen,
        metrics.JOB_PROMETHEUS: stack.prometheus.listen,
        metrics.JOB_ALERTMANAGER: stack.alertmanager.listen,
    }
    for name, listen in listens.items():
        assert _targets(jobs[name]) == [f"{listen.host}:{listen.port}"]
    assert jobs[metrics.JOB_LITELLM]["metrics_path"] == metrics.LITELLM_METRICS_PATH
    for name, job in jobs.items():
        if name != metrics.JOB_LITELLM:
            assert "metrics_path" not in job  # the default /metrics
    am = stack.alertmanager.listen
    assert data["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{am.host}:{am.port}"]


def test_no_credentials_in_any_job(stack: Stack) -> None:
    data = prometheus_config.build(stack, layout(stack, "linux"))
    text = yaml.safe_dump(data)
    for key in ("basic_auth", "authorization", "bearer_token", "oauth2", "password",
                "credentials"):
        assert key not in text


def test_intervals_and_ports_follow_the_stack(tmp_path: Path) -> None:
    other = stack_with({
        "prometheus": {"scrape_interval": "30s", "evaluation_interval": "1m"},
        "alerts": {"all_providers_down_for": "1m"},
        "watchdog": {"listen": {"port": 9555}},
        "litellm": {"listen": {"port": 4100}},
    })
    data = prometheus_config.build(other, layout(other, "linux"))
    assert data["global"] == {"scrape_interval": "30s", "evaluation_interval": "1m"}
    jobs = {job["job_name"]: _targets(job) for job in data["scrape_configs"]}
    assert jobs[metrics.JOB_WATCHDOG] == ["127.0.0.1:9555"]
    assert jobs[metrics.JOB_LITELLM] == ["127.0.0.1:4100"]
    assert check_config(other, "linux", tmp_path).returncode == 0


@pytest.mark.parametrize(("host", "target"), [("0.0.0.0", "127.0.0.1:4000"),  # noqa: S104
                                              ("::", "[::1]:4000"),
                                              ("::1", "[::1]:4000")])
def test_services_bound_everywhere_are_scraped_on_loopback(host: str, target: str,
                                                           tmp_path: Path) -> None:
    other = stack_with({"litellm": {"listen": {"host": host}}})
    data = prometheus_config.build(other, layout(other, "windows"))
    jobs = {job["job_name"]: _targets(job) for job in data["scrape_configs"]}
    assert jobs[metrics.JOB_LITELLM] == [target]
    assert check_config(other, "windows", tmp_path).returncode == 0
