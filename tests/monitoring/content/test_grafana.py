"""Grafana provisioning: keys in Grafana's documented apiVersion 1 format, values from the stack.

The key sets below are those of Grafana's provisioning reference ("Provision Grafana":
data sources and dashboard providers) and of the structs its reader unmarshals them into
(pkg/services/provisioning/{datasources,dashboards}/types.go, configs V1). Grafana ignores an
unknown key silently, so a typo here would be a setting that never applies: the test refuses it.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import pytest
import yaml

from monitoring.content import grafana as gp
from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render.common import dump_yaml
from tasks.render.dashboard import build
from tests.conftest import STACK_FILE

DATASOURCE_FILE_KEYS = {"apiVersion", "datasources", "deleteDatasources", "prune"}
DATASOURCE_KEYS = {
    "orgId", "orgName", "version", "name", "type", "access", "url", "user", "database",
    "basicAuth", "basicAuthUser", "withCredentials", "isDefault", "correlations", "jsonData",
    "secureJsonData", "editable", "uid",
}
PROVIDER_FILE_KEYS = {"apiVersion", "providers"}
PROVIDER_KEYS = {
    "name", "type", "orgId", "folder", "folderUid", "editable", "options", "disableDeletion",
    "updateIntervalSeconds", "allowUiUpdates",
}
FILE_PROVIDER_OPTIONS = {"path", "foldersFromFilesStructure"}
PROMETHEUS_JSON_DATA = {"httpMethod", "timeInterval", "queryTimeout", "manageAlerts",
                        "prometheusType", "prometheusVersion", "cacheLevel"}


def grafana_expand(value: str, env: dict[str, str]) -> str:
    """What Grafana reads from a provisioning string: ``$$`` is ``$``, ``$X``/``${X}`` expand."""
    def one(part: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda mt: env.get(mt.group(1) or mt.group(2), ""), part)
    return "$".join(one(part) for part in value.split("$$"))


def _stack(overrides: dict[str, Any]) -> Stack:
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


def _roundtrip(data: dict[str, Any]) -> Any:
    """The data as Grafana's YAML reader sees it after render dumps it."""
    return yaml.safe_load(dump_yaml(data))


# --------------------------------------------------------------------------- data source


def test_datasource_keys_are_grafanas(stack: Stack) -> None:
    doc = _roundtrip(gp.datasource(stack))
    assert set(doc) <= DATASOURCE_FILE_KEYS
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert set(ds) <= DATASOURCE_KEYS
    assert set(ds["jsonData"]) <= PROMETHEUS_JSON_DATA


def test_datasource_values_come_from_the_stack(stack: Stack) -> None:
    (ds,) = _roundtrip(gp.datasource(stack))["datasources"]
    assert ds["uid"] == stack.grafana.datasource.uid
    assert ds["name"] == stack.grafana.datasource.name
    assert ds["type"] == "prometheus"
    assert ds["access"] == "proxy"
    listen = stack.prometheus.listen
    assert ds["url"] == f"http://{listen.host}:{listen.port}"
    assert ds["isDefault"] is False
    assert ds["editable"] is False
    assert "secureJsonData" not in ds
    assert "basicAuth" not in ds
    assert ds["jsonData"]["timeInterval"] == "15s"  # stack.yaml's scrape_interval


def test_provisioned_uid_is_the_dashboards_default(stack: Stack) -> None:
    (ds,) = gp.datasource(stack)["datasources"]
    dash = build(stack)
    (var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert var["current"]["value"] == ds["uid"]
    assert var["query"] == ds["type"]
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {"${" + var["name"] + "}"}


@pytest.mark.parametrize(("host", "url"), [
    ("0.0.0.0", "http://127.0.0.1:9099"),  # noqa: S104 (a bind address, reached on loopback)
    ("::", "http://[::1]:9099"),
    ("::1", "http://[::1]:9099"),
    ("10.1.2.3", "http://10.1.2.3:9099"),
])
def test_datasource_url_reaches_prometheus_from_the_same_host(host: str, url: str) -> None:
    stack = _stack({"prometheus": {"listen": {"host": host, "port": 9099}}})
    assert gp.datasource(stack)["datasources"][0]["url"] == url


@pytest.mark.parametrize(("seconds", "interval"), [("30s", "30s"), ("20s", "20s"),
                                                   ("1500ms", "1500ms")])
def test_scrape_interval_becomes_the_datasource_time_interval(seconds: str,
                                                              interval: str) -> None:
    stack = _stack({"prometheus": {"scrape_interval": seconds}})
    assert gp.datasource(stack)["datasources"][0]["jsonData"]["timeInterval"] == interval


def test_a_dollar_in_a_name_survives_grafanas_env_expansion() -> None:
    stack = _stack({"grafana": {"datasource": {"name": "Prom $HOME ${USER}"}}})
    (ds,) = _roundtrip(gp.datasource(stack))["datasources"]
    assert ds["name"] == "Prom $$HOME $${USER}"
    assert grafana_expand(ds["name"], {"HOME": "/root", "USER": "x"}) == "Prom $HOME ${USER}"


# --------------------------------------------------------------------------- dashboard provider


@pytest.mark.parametrize("target", ["linux", "windows"])
def test_provider_keys_are_grafanas(stack: Stack, target: str) -> None:
    doc = _roundtrip(gp.dashboards(stack, layout(stack, target)))  # type: ignore[arg-type]
    assert set(doc) <= PROVIDER_FILE_KEYS
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert set(provider) <= PROVIDER_KEYS
    assert set(provider["options"]) <= FILE_PROVIDER_OPTIONS


@pytest.mark.parametrize("target", ["linux", "windows"])
def test_provider_reads_the_bundles_dashboard_dir(stack: Stack, target: str) -> None:
    lay = layout(stack, target)  # type: ignore[arg-type]
    (provider,) = _roundtrip(gp.dashboards(stack, lay))["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == lay.grafana_dashboards_dir
    assert provider["folder"] == "Provider Fallback"
    assert provider["disableDeletion"] is True
    assert provider["allowUiUpdates"] is False
    assert isinstance(provider["updateIntervalSeconds"], int)
    assert provider["updateIntervalSeconds"] > 0
    assert provider["options"]["foldersFromFilesStructure"] is False


def test_the_dashboard_file_sits_in_the_provider_path(linux_layout: Layout,
                                                      windows_layout: Layout) -> None:
    assert str(PurePosixPath(linux_layout.grafana_dashboard).parent) == \
        linux_layout.grafana_dashboards_dir
    assert str(PureWindowsPath(windows_layout.grafana_dashboard).parent) == \
        windows_layout.grafana_dashboards_dir


def test_windows_path_is_written_verbatim(stack: Stack, windows_layout: Layout) -> None:
    text = dump_yaml(gp.dashboards(stack, windows_layout)).decode("utf-8")
    (provider,) = yaml.safe_load(text)["providers"]
    assert provider["options"]["path"] == windows_layout.grafana_dashboards_dir
    assert "\\" in provider["options"]["path"]


def test_grafana_literal_round_trips_through_expansion() -> None:
    env = dict(os.environ, A="expanded")
    for value in ("plain", "$A", "${A}", "a$$b", "$", "C:\\x\\$A"):
        assert grafana_expand(gp.grafana_literal(value), env) == value
