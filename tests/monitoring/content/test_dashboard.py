"""The Grafana dashboard model: identity, data source wiring, queries, layout, determinism."""

from __future__ import annotations

import ast
import copy
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from monitoring import metrics as m
from monitoring.stack.layout import layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import dashboard
from tasks.render.common import dump_json
from tasks.render.dashboard import DATASOURCE_REF, build
from tests.conftest import STACK_FILE

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# --------------------------------------------------------------------------- helpers


def known_series() -> set[str]:
    """Every series name a query may use: monitoring.metrics and nothing else."""
    names: set[str] = set()
    for spec in m.WATCHDOG_METRICS:
        names.add(spec.name)
        if spec.kind == "histogram":
            names.update(spec.series(s) for s in HISTOGRAM_SUFFIXES)
    names.update(m.LITELLM_METRICS)
    names.update(m.LITELLM_LATENCY + s for s in HISTOGRAM_SUFFIXES)
    return names


# Grafana's built-in interval variables ($__rate_interval, ${__interval}, ...) become a
# duration so the expression is plain PromQL; any other variable is left and fails to parse.
_GRAFANA_INTERVAL = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")


def parse_query(expr: str) -> Any:
    """The PromQL AST of a panel query, Grafana's interval variables substituted."""
    return promql_parser.parse(_GRAFANA_INTERVAL.sub("5m", expr))


def vector_selectors(expr: str) -> list[Any]:
    """Every vector selector node of ``expr``, in order."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(parse_query(expr), visit)
    return found


def selector_names(expr: str) -> list[str]:
    """The metric name of every vector selector in ``expr`` (``{__name__=...}`` included)."""
    names: list[str] = []
    for node in vector_selectors(expr):
        name = node.name
        if name is None:
            name = next((mt.value for mt in node.matchers.matchers if mt.name == "__name__"),
                        "<no metric name>")
        names.append(name)
    return names


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (...)`` clauses of ``expr``."""
    labels: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)

    promql_parser.walk(parse_query(expr), visit)
    return labels


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested (collapsed) panels included."""
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(dash):
        for target in panel.get("targets", []):
            yield panel, target


def unknown_metrics(dash: dict[str, Any]) -> dict[str, list[str]]:
    """Panel title -> metric names its queries use that monitoring.metrics does not define."""
    known = known_series()
    bad: dict[str, list[str]] = {}
    for panel, target in targets(dash):
        for name in selector_names(target["expr"]):
            if name not in known:
                bad.setdefault(panel["title"], []).append(name)
    return bad


def datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``datasource`` value anywhere in the model, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path + "." + key, value
            yield from datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasource_refs(value, f"{path}[{i}]")


def by_title(dash: dict[str, Any], title: str) -> dict[str, Any]:
    found = [p for p in panels(dash) if p["title"] == title]
    assert len(found) == 1, f"{len(found)} panels titled {title!r}"
    return found[0]


@pytest.fixture(scope="module")
def dash(stack: Stack) -> dict[str, Any]:
    return build(stack)


# --------------------------------------------------------------------------- identity


def test_uid_and_title_come_from_the_stack(stack: Stack, dash: dict[str, Any]) -> None:
    assert dash["uid"] == stack.grafana.dashboard.uid
    assert dash["title"] == stack.grafana.dashboard.title


def test_no_numeric_id_so_grafana_assigns_its_own(dash: dict[str, Any]) -> None:
    assert "id" not in dash


def test_current_schema_and_no_deprecated_panel_types(dash: dict[str, Any]) -> None:
    assert dash["schemaVersion"] == dashboard.SCHEMA_VERSION >= 39
    kinds = {p["type"] for p in panels(dash)}
    assert kinds <= {"row", "stat", "gauge", "timeseries", "heatmap", "state-timeline"}
    assert "graph" not in kinds


def test_read_only_because_stack_yaml_is_the_source(dash: dict[str, Any]) -> None:
    assert dash["editable"] is False


# --------------------------------------------------------------------------- data source


def test_datasource_variable_exists(stack: Stack, dash: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    var = variables["datasource"]
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"
    # Its default is the provisioned data source, by uid (Grafana resolves the value first).
    assert var["current"]["value"] == stack.grafana.datasource.uid
    assert var["current"]["text"] == stack.grafana.datasource.name
    assert DATASOURCE_REF == {"type": "prometheus", "uid": "${datasource}"}


def test_every_panel_uses_the_datasource_variable(dash: dict[str, Any]) -> None:
    for panel in panels(dash):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, \
            panel["title"]


def test_every_target_uses_the_datasource_variable(dash: dict[str, Any]) -> None:
    count = 0
    for panel, target in targets(dash):
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, \
            panel["title"]
        count += 1
    assert count >= 20


def test_no_other_datasource_reference_anywhere(dash: dict[str, Any]) -> None:
    refs = list(datasource_refs(dash))
    assert refs
    assert all(value == DATASOURCE_REF for _, value in refs), \
        [where for where, value in refs if value != DATASOURCE_REF]


def test_only_known_template_variables_are_referenced(dash: dict[str, Any]) -> None:
    # ${datasource} and Grafana's built-in $__rate_interval; a stray "$x" would be looked up.
    text = json.dumps(dash)
    found = set(re.findall(r"\$\{?(\w+)\}?", text))
    assert found <= {"datasource", "__rate_interval"}, found


# --------------------------------------------------------------------------- queries


def test_every_panel_but_rows_has_queries(dash: dict[str, Any]) -> None:
    for panel in panels(dash):
        if panel["type"] == "row":
            assert "targets" not in panel
        else:
            refs = [t["refId"] for t in panel["targets"]]
            assert refs, panel["title"]
            assert len(refs) == len(set(refs)), panel["title"]


def test_every_query_parses_as_promql(dash: dict[str, Any]) -> None:
    for panel, target in targets(dash):
        assert parse_query(target["expr"]) is not None, panel["title"]


def test_queries_name_only_metrics_from_monitoring_metrics(dash: dict[str, Any]) -> None:
    assert unknown_metrics(dash) == {}


def test_the_metric_check_catches_a_made_up_name(dash: dict[str, Any]) -> None:
    broken = copy.deepcopy(dash)
    panel = next(p for p in broken["panels"] if p["title"] == "Provider health status")
    panel["targets"][0]["expr"] = 'sum(provider_healthy_status{job="x"})'
    assert unknown_metrics(broken) == {"Provider health status": ["provider_healthy_status"]}


def test_the_metric_check_catches_a_name_hidden_in_a_matcher() -> None:
    assert selector_names('{__name__="made_up_total"} + provider_health_status') == [
        "made_up_total", "provider_health_status"]


def test_a_query_that_does_not_parse_fails() -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_query("sum by (le (rate(provider_request_latency_seconds_bucket[5m]))")


def test_every_metric_of_the_bundle_is_on_the_dashboard(dash: dict[str, Any]) -> None:
    used = {name for _, t in targets(dash) for name in selector_names(t["expr"])}
    for spec in m.WATCHDOG_METRICS:
        assert {spec.name, *(spec.series(s) for s in HISTOGRAM_SUFFIXES)} & used, spec.name
    for name in m.LITELLM_METRICS:
        assert {name, *(name + s for s in HISTOGRAM_SUFFIXES)} & used, name


def test_queries_are_scoped_to_their_scrape_job(dash: dict[str, Any]) -> None:
    watchdog = {s.name for s in m.WATCHDOG_METRICS}
    for panel, target in targets(dash):
        for sel in vector_selectors(target["expr"]):
            jobs = [mt.value for mt in sel.matchers.matchers if mt.name == "job"]
            base = re.sub(r"_(bucket|sum|count)$", "", sel.name)
            expected = m.JOB_WATCHDOG if base in watchdog else m.JOB_LITELLM
            assert jobs == [expected], (panel["title"], sel.name)


def test_those_jobs_are_the_ones_prometheus_scrapes(stack: Stack, dash: dict[str, Any]) -> None:
    prometheus_config = pytest.importorskip("monitoring.content.prometheus")
    scraped = {job["job_name"] for job in
               prometheus_config.build(stack, layout(stack, "linux"))["scrape_configs"]}
    used = {mt.value for _, t in targets(dash) for sel in vector_selectors(t["expr"])
            for mt in sel.matchers.matchers if mt.name == "job"}
    assert used
    assert used <= scraped


def test_watchdog_labels_in_legends_and_groupings_exist(dash: dict[str, Any]) -> None:
    specs = {s.name: s for s in m.WATCHDOG_METRICS}
    for panel, target in targets(dash):
        names = selector_names(target["expr"])
        bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
        if not bases <= specs.keys():
            continue  # LiteLLM's labels are not declared in monitoring.metrics
        allowed = {"le", "job", "instance"} | {lb for b in bases for lb in specs[b].labels}
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))
        used |= grouping_labels(target["expr"])
        assert used <= allowed, (panel["title"], used - allowed)


def test_no_metric_name_is_typed_as_a_string_literal() -> None:
    source = Path(dashboard.__file__).read_text(encoding="utf-8")
    literals = [node.value for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    names = known_series()
    offenders = [lit for lit in literals for name in names if name in lit]
    assert offenders == []


# --------------------------------------------------------------------------- panels


def test_provider_health_status(dash: dict[str, Any]) -> None:
    panel = by_title(dash, "Provider health status")
    assert panel["type"] == "stat"
    (target,) = panel["targets"]
    assert selector_names(target["expr"]) == [m.HEALTH.name]
    assert target["legendFormat"] == "{{provider}}"
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    assert mapping["options"]["1"]["text"] == "healthy"
    assert mapping["options"]["1"]["color"] == "green"
    assert mapping["options"]["0"]["text"] == "down"
    assert mapping["options"]["0"]["color"] == "red"


def test_fallback_events_24h(dash: dict[str, Any]) -> None:
    panel = by_title(dash, "Fallback events (24h)")
    assert panel["type"] == "timeseries"
    (target,) = panel["targets"]
    assert target["legendFormat"] == "{{from_provider}} → {{to_provider}}"
    assert f"increase({m.FALLBACK_EVENTS.name}" in target["expr"]
    assert "[24h]" in target["expr"]
    assert grouping_labels(target["expr"]) == {"from_provider", "to_provider"}


def test_request_latency_heatmap(dash: dict[str, Any]) -> None:
    panel = by_title(dash, "Request latency")
    assert panel["type"] == "heatmap"
    (target,) = panel["targets"]
    assert target["format"] == "heatmap"
    assert selector_names(target["expr"]) == [m.LATENCY.series("_bucket")]
    assert f"rate({m.LATENCY.series('_bucket')}" in target["expr"]
    assert "[5m]" in target["expr"]
    assert grouping_labels(target["expr"]) == {"le"}
    assert panel["options"]["calculate"] is False  # buckets come from Prometheus


def test_active_provider_shows_the_target_at_one(stack: Stack, dash: dict[str, Any]) -> None:
    panel = by_title(dash, "Active provider")
    assert panel["type"] == "stat"
    (target,) = panel["targets"]
    assert target["expr"].replace(" ", "").endswith("==1")
    assert selector_names(target["expr"]) == [m.ACTIVE_TARGET.name]
    assert panel["options"]["textMode"] == "name"
    renamed = {o["matcher"]["options"]: o["properties"][0]["value"]
               for o in panel["fieldConfig"]["overrides"]}
    assert renamed == {t.name: f"P{i} {t.label}" for i, t in enumerate(stack.targets, 1)}


def test_budget_gauge_thresholds_follow_the_stack(stack: Stack, dash: dict[str, Any]) -> None:
    panel = by_title(dash, "Budget used")
    assert panel["type"] == "gauge"
    assert selector_names(panel["targets"][0]["expr"]) == [m.BUDGET_USED_RATIO.name]
    assert selector_names(panel["targets"][1]["expr"]) == [m.BUDGET_PROJECTED.name,
                                                          m.BUDGET_LIMIT.name]
    levels = stack.budget.levels_percent
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == pytest.approx(
        [levels.warning / 100, levels.critical / 100, levels.exceeded / 100])
    assert steps[0]["value"] is None
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_budget_levels_from_host_data_move_the_thresholds() -> None:
    text = STACK_FILE.read_text(encoding="utf-8")
    other = parse_stack(text, overrides={"budget": {"levels_percent": {
        "warning": 50, "critical": 80, "exceeded": 110}}})
    steps = by_title(build(other), "Budget used")["fieldConfig"]["defaults"]["thresholds"]
    assert [s["value"] for s in steps["steps"][1:]] == [0.5, 0.8, 1.1]


def test_the_budget_amount_is_read_from_metrics_not_written_in(stack: Stack) -> None:
    text = STACK_FILE.read_text(encoding="utf-8")
    other = parse_stack(text, overrides={"budget": {"monthly_usd": 123.45}})
    assert dump_json(build(other)) == dump_json(build(stack))


def test_the_rest_of_the_panels_are_there(dash: dict[str, Any]) -> None:
    expected = {
        "Circuit state per route": {m.CIRCUIT_STATE.name},
        "Spend by provider": {m.SPEND.name},
        "Proxy restarts (1h)": {m.PROXY_RESTARTS.name},
        "Proxy crash loop": {m.PROXY_CRASH_LOOP.name},
        "Kill switch and degraded mode": {m.KILL_SWITCH.name, m.DEGRADED_MODE.name},
        "LiteLLM deployment state": {m.LITELLM_DEPLOYMENT_STATE},
        "LiteLLM requests by status code": {m.LITELLM_REQUESTS},
        "LiteLLM fallbacks (1h)": {m.LITELLM_SUCCESSFUL_FALLBACKS, m.LITELLM_FAILED_FALLBACKS},
        "LiteLLM cooldowns (1h)": {m.LITELLM_COOLED_DOWN},
    }
    for title, names in expected.items():
        panel = by_title(dash, title)
        used = {n for t in panel["targets"] for n in selector_names(t["expr"])}
        assert used == names, title
    restarts = by_title(dash, "Proxy restarts (1h)")["targets"][0]["expr"]
    assert restarts.startswith("increase(")
    assert restarts.endswith("[1h])")
    status = by_title(dash, "LiteLLM requests by status code")["targets"][0]["expr"]
    assert grouping_labels(status) == {"status_code"}


def test_stat_panels_show_only_the_latest_value(dash: dict[str, Any]) -> None:
    for panel in panels(dash):
        if panel["type"] in ("stat", "gauge"):
            assert all(t["instant"] and not t["range"] for t in panel["targets"]), \
                panel["title"]


# --------------------------------------------------------------------------- layout


def test_panel_ids_are_unique_positive_ints(dash: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dash)]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))


def test_grid_positions_fit_and_never_overlap(dash: dict[str, Any]) -> None:
    boxes = []
    for panel in panels(dash):
        g = panel["gridPos"]
        assert min(g["w"], g["h"], g["x"], g["y"]) >= 0, panel["title"]
        assert g["w"] * g["h"] > 0, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        boxes.append((panel["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for a, b in itertools.combinations(boxes, 2):
        overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
        assert not overlap, (a[0], b[0])


def test_each_line_of_a_row_fills_the_grid(dash: dict[str, Any]) -> None:
    """The SDK flows panels left to right: a line that does not add up to 24 would leave a
    hole or push a panel onto a line of its own."""
    lines: dict[int, int] = {}
    for panel in panels(dash):
        if panel["type"] != "row":
            lines[panel["gridPos"]["y"]] = lines.get(panel["gridPos"]["y"], 0) \
                + panel["gridPos"]["w"]
    assert set(lines.values()) == {24}, lines


def test_rows_come_before_their_panels_in_order(dash: dict[str, Any]) -> None:
    titles = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert titles == ["Failover", "Budget", "Proxy", "LiteLLM's own view"]
    ys = [p["gridPos"]["y"] for p in dash["panels"]]
    assert ys == sorted(ys)


# --------------------------------------------------------------------------- Grafana's schema


def test_the_dashboard_matches_grafanas_schema(dash: dict[str, Any]) -> None:
    """Read back through the SDK's types (generated from Grafana's schema for 10.4), with
    the typed options of each panel plugin and the Prometheus query type: nothing is lost."""
    assert dashboard.schema_problems(dash) == []


@pytest.mark.parametrize(("where", "key"), [
    (("options",), "colourMode"),
    (("fieldConfig", "defaults"), "unitt"),
    (("targets", 0), "exprr"),
])
def test_the_schema_check_catches_an_unknown_key(dash: dict[str, Any], where: tuple[Any, ...],
                                                 key: str) -> None:
    broken = copy.deepcopy(dash)
    node: Any = next(p for p in broken["panels"] if p["title"] == "Provider health status")
    for step in where:
        node = node[step]
    node[key] = "x"
    problems = dashboard.schema_problems(broken)
    assert len(problems) == 1
    assert problems[0].endswith(f".{key}: not in the schema"), problems


# --------------------------------------------------------------------------- determinism


def test_same_stack_same_bytes(stack: Stack) -> None:
    fresh = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    assert dump_json(build(stack)) == dump_json(build(stack)) == dump_json(build(fresh))


def test_dashboard_is_plain_json_data(dash: dict[str, Any]) -> None:
    assert json.loads(dump_json(dash)) == dash


def test_title_override_changes_the_title_and_nothing_else(stack: Stack) -> None:
    text = STACK_FILE.read_text(encoding="utf-8")
    other = parse_stack(text, overrides={"grafana": {"dashboard": {"title": "Workstation 7"}}})
    before, after = build(stack), build(other)
    assert after["title"] == "Workstation 7"
    assert after["uid"] == before["uid"]
    before.pop("title")
    after.pop("title")
    assert after == before
