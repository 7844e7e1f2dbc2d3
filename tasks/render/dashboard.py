"""The Grafana dashboard of the bundle, built from stack.yaml (runbook 8.2, extended).

Why ``grafana-foundation-sdk``: Grafana Labs' typed builders, generated from Grafana's own
schema (the build for Grafana 10.4), so a misspelt option or a wrong type fails mypy, not a
Grafana start; the SDK also lays the panels out on the grid. Why not a template: a dashboard is
JSON full of ``{{provider}}`` legends and ``${datasource}`` references that must never meet
Jinja. :func:`build` returns the JSON model as plain data; render dumps it with
:func:`tasks.render.common.dump_json`: same stack, same bytes. :func:`schema_problems` reads a
model back through the SDK's schema types: anything they do not know is reported.

It lives with the renderers, not in ``monitoring``: the SDK is a controller dependency, and the
wheel shipped to hosts must not need it.

Choices worth knowing:

- Every panel and every query names the data source through the dashboard variable
  ``${datasource}`` (type ``datasource``, plugin ``prometheus``), whose default is the data
  source provisioned from ``grafana.datasource``. Nothing is bound to a uid Grafana would have to
  guess, and a user can point the same dashboard at another Prometheus.
- Metric names come from :mod:`monitoring.metrics` only; each selector is scoped to the scrape
  job that exports it (``metrics.JOB_WATCHDOG`` / ``metrics.JOB_LITELLM``), so a shared
  Prometheus with look-alike series cannot leak into a panel.
- Windows the runbook fixes are kept (fallback events over 24h, latency rate over 5m); proxy
  restarts, stale answers and LiteLLM's rare events are counted over 1h; LiteLLM's request and
  failure rates use ``$__rate_interval`` (which Grafana derives from the data source's scrape
  interval, provisioned from ``prometheus.scrape_interval``).
- Thresholds come from the stack: budget levels (the budget in USD is read from the watchdog's
  metrics, so changing it changes no dashboard), the proxy restart cap, the provider probe
  interval and the ProviderDown delay. The legend of the active target shows the stack's
  priority order and labels (``P1 LiteLLM``).
- The dashboard is read-only in Grafana (``editable: false``; the provider refuses UI saves):
  stack.yaml is the one source, an edit in the UI would be lost on the next deploy.
- ``schemaVersion`` 39, Grafana 10.4's (the SDK writes the older 36 by default; the model is
  already in 39's shape, so Grafana migrates nothing) and current panel types only:
  ``timeseries``, ``stat``, ``gauge``, ``heatmap``, ``state-timeline``; never the deprecated
  ``graph``. No dashboard ``id``: Grafana assigns it; panels are numbered in order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    gauge,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

from monitoring import metrics as m
from monitoring.stack.schema import Stack

JSON = dict[str, Any]

SCHEMA_VERSION = 39
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_TYPE = "prometheus"
#: What every panel and every target carries as its ``datasource``.
DATASOURCE_REF: dict[str, str] = {"type": DATASOURCE_TYPE, "uid": f"${{{DATASOURCE_VARIABLE}}}"}

#: Grafana refuses refresh intervals below its ``min_refresh_interval`` (5s by default).
MIN_REFRESH_SECONDS = 5

# Colours from Grafana's named palette.
GREEN, YELLOW, ORANGE, RED, BLUE, TEXT = "green", "yellow", "orange", "red", "blue", "text"

#: Every panel builder used here (the SDK has one class per panel plugin).
P = TypeVar("P", stat.Panel, timeseries.Panel, gauge.Panel, heatmap.Panel, statetimeline.Panel)


def _ds() -> dm.DataSourceRef:
    """A fresh data source reference (no shared objects inside the model)."""
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_REF["uid"])


def _num(value: float) -> int | float:
    """An int when the value is whole, so JSON shows ``30`` rather than ``30.0``."""
    return int(value) if float(value).is_integer() else round(value, 6)


def _watchdog(spec: m.MetricSpec, suffix: str = "") -> str:
    """A selector for one of the watchdog's series, scoped to its scrape job."""
    return f'{spec.series(suffix)}{{job="{m.JOB_WATCHDOG}"}}'


def _litellm(name: str, suffix: str = "") -> str:
    """A selector for one of LiteLLM's series, scoped to its scrape job."""
    return f'{name}{suffix}{{job="{m.JOB_LITELLM}"}}'


# --------------------------------------------------------------------------- building blocks


def _target(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False,
            fmt: pm.PromQueryFormat = pm.PromQueryFormat.TIME_SERIES) -> prometheus.Dataquery:
    """One Prometheus query; instant for panels that show only the latest value."""
    query = (prometheus.Dataquery().datasource(_ds()).ref_id(ref)
             .editor_mode(pm.QueryEditorMode.CODE).expr(expr).legend_format(legend).format(fmt))
    return query.instant() if instant else query.range()


def _thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` below the first step, then each (value, colour)."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(color=base, value=None)]
        + [dm.Threshold(color=color, value=_num(value)) for value, color in steps])


def _value_mappings(*states: tuple[int, str, str]) -> list[dm.ValueMapping]:
    """Value -> text and colour, for panels that encode a state as a number."""
    return [dm.ValueMap(options={str(value): dm.ValueMappingResult(text=text, color=color,
                                                                   index=index)
                                 for index, (value, text, color) in enumerate(states)})]


def _fixed_color(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"})


def _reduce_last() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def _legend(*, table: bool = False, calcs: Sequence[str] = ()) -> cb.VizLegendOptions:
    mode = cm.LegendDisplayMode.TABLE if table else cm.LegendDisplayMode.LIST
    return (cb.VizLegendOptions().calcs(list(calcs)).display_mode(mode)
            .placement(cm.LegendPlacement.BOTTOM).show_legend(True))


def _tooltip(mode: cm.TooltipDisplayMode = cm.TooltipDisplayMode.MULTI,
             sort: cm.SortOrder = cm.SortOrder.DESCENDING) -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(mode).sort(sort)


def _panel(panel: P, title: str, description: str,
           targets: Sequence[prometheus.Dataquery], size: tuple[int, int], *,
           unit: str = "none", thresholds: db.ThresholdsConfig | None = None,
           mappings: list[dm.ValueMapping] | None = None, decimals: int | None = None,
           minimum: float | None = None, maximum: float | None = None,
           no_value: str | None = None, palette: bool = False) -> P:
    """What every panel has: title, description, data source, queries, size (w, h), and the
    field defaults (colour by threshold, or one colour per series with ``palette``)."""
    width, height = size
    panel = (panel.title(title).description(description).datasource(_ds())
             .targets(list(targets)).span(width).height(height).unit(unit)
             .mappings(mappings or []).thresholds(thresholds or _thresholds(GREEN))
             .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC if palette
                                                else dm.FieldColorModeId.THRESHOLDS)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if minimum is not None:
        panel = panel.min(_num(minimum))
    if maximum is not None:
        panel = panel.max(_num(maximum))
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def _stat(title: str, description: str, targets: Sequence[prometheus.Dataquery],
          size: tuple[int, int], *, text_mode: cm.BigValueTextMode =
          cm.BigValueTextMode.VALUE_AND_NAME,
          color_mode: cm.BigValueColorMode = cm.BigValueColorMode.BACKGROUND,
          **field: Any) -> stat.Panel:
    return (_panel(stat.Panel(), title, description, targets, size, **field)
            .color_mode(color_mode).graph_mode(cm.BigValueGraphMode.NONE)
            .justify_mode(cm.BigValueJustifyMode.AUTO).orientation(cm.VizOrientation.AUTO)
            .reduce_options(_reduce_last()).show_percent_change(False).text_mode(text_mode)
            .wide_layout(True))


def _timeseries(title: str, description: str, targets: Sequence[prometheus.Dataquery],
                size: tuple[int, int], *, legend: cb.VizLegendOptions | None = None,
                **field: Any) -> timeseries.Panel:
    return (_panel(timeseries.Panel(), title, description, targets, size, palette=True,
                   **field)
            .legend(legend or _legend()).tooltip(_tooltip()))


def _state_timeline(title: str, description: str, targets: Sequence[prometheus.Dataquery],
                    size: tuple[int, int], **field: Any) -> statetimeline.Panel:
    return (_panel(statetimeline.Panel(), title, description, targets, size, **field)
            .align_value(cm.TimelineValueAlignment.CENTER).legend(_legend()).merge_values(True)
            .row_height(0.9).show_value(cm.VisibilityMode.AUTO)
            .tooltip(_tooltip(cm.TooltipDisplayMode.SINGLE, cm.SortOrder.NONE)))


# --------------------------------------------------------------------------- panels

Size = tuple[int, int]
STAT, GRAPH = (8, 5), (12, 8)


def _provider_health(size: Size) -> stat.Panel:
    return _stat(
        "Provider health status",
        "The watchdog's verdict on each provider (runbook 8.2): its /models endpoint answers "
        "with the configured key.",
        [_target(_watchdog(m.HEALTH), "{{provider}}", instant=True)], size,
        thresholds=_thresholds(RED, (1, GREEN)),
        mappings=_value_mappings((1, "healthy", GREEN), (0, "down", RED)),
        no_value="no data from the watchdog")


def _active_target(stack: Stack, size: Size) -> stat.Panel:
    """The target whose gauge is 1, named ``P<n> <label>``; green for P1, orange otherwise."""
    order = ", ".join(f"P{i} {t.label} ({t.name})" for i, t in enumerate(stack.targets, 1))
    panel = _stat(
        "Active provider",
        f"The failover target the agents are switched to now. Priority order: {order}. "
        "Orange means a fallback is active.",
        [_target(f"{_watchdog(m.ACTIVE_TARGET)} == 1", "{{target}}", instant=True)], size,
        text_mode=cm.BigValueTextMode.NAME, no_value="no target reported")
    for priority, target in enumerate(stack.targets, start=1):
        panel = panel.override_by_name(target.name, [
            dm.DynamicConfigValue(id_val="displayName", value=f"P{priority} {target.label}"),
            _fixed_color(GREEN if priority == 1 else ORANGE)])
    return panel


def _kill_switch_degraded(size: Size) -> stat.Panel:
    return _stat(
        "Kill switch and degraded mode",
        "Kill switch: the budget is exceeded and only free providers are allowed (phase 9). "
        "Degraded mode: every provider fails and cached answers are served (phase 7).",
        [_target(_watchdog(m.KILL_SWITCH), "Kill switch", "A", instant=True),
         _target(_watchdog(m.DEGRADED_MODE), "Degraded mode", "B", instant=True)], size,
        thresholds=_thresholds(GREEN, (1, RED)),
        mappings=_value_mappings((0, "off", GREEN), (1, "ACTIVE", RED)))


def _last_success(stack: Stack, size: Size) -> stat.Panel:
    probe = stack.watchdog.provider_probe_interval
    warn = 2 * probe
    late = max(stack.alerts.provider_down_for, 3 * probe)
    return _stat(
        "Since last successful probe",
        "Seconds since each provider last answered a probe. Yellow after two missed probes, "
        "red once ProviderDown would fire.",
        [_target(f"time() - {_watchdog(m.LAST_SUCCESS)}", "{{provider}}", instant=True)], size,
        unit="s", decimals=0, thresholds=_thresholds(GREEN, (warn, YELLOW), (late, RED)),
        color_mode=cm.BigValueColorMode.VALUE)


def _fallback_events(size: Size) -> timeseries.Panel:
    expr = (f"sum by (from_provider, to_provider) "
            f"(increase({_watchdog(m.FALLBACK_EVENTS)}[24h]))")
    return _timeseries(
        "Fallback events (24h)",
        "Switches of the agents from one provider to another over the last 24 hours "
        "(runbook 8.2).",
        [_target(expr, "{{from_provider}} → {{to_provider}}")], size,
        decimals=0, minimum=0, legend=_legend(table=True, calcs=["lastNotNull", "max"]))


def _circuit_state(size: Size) -> statetimeline.Panel:
    return _state_timeline(
        "Circuit state per route",
        "The watchdog's state machine per route: healthy, suspect (failures below the "
        "threshold), failed (fallback active) and half-open (probing for recovery).",
        [_target(_watchdog(m.CIRCUIT_STATE), "{{provider}}")], size,
        mappings=_value_mappings((0, "healthy", GREEN), (1, "suspect", YELLOW),
                                 (2, "failed (fallback)", RED), (3, "half-open", BLUE)))


def _latency_heatmap(size: Size) -> heatmap.Panel:
    expr = f"sum by (le) (rate({_watchdog(m.LATENCY, '_bucket')}[5m]))"
    return (heatmap.Panel().title("Request latency")
            .description("Distribution of probe latency over all providers (runbook 8.2): the "
                         "rate of each histogram bucket over 5m.")
            .datasource(_ds()).span(size[0]).height(size[1])
            .with_target(_target(expr, "{{le}}", fmt=pm.PromQueryFormat.HEATMAP))
            .calculate(False).cell_gap(1)
            .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").fill("dark-orange").scale(hm.HeatmapColorScale.EXPONENTIAL)
                   .exponent(0.5).steps(64).reverse(False))
            .exemplars_color("rgba(255,0,255,0.7)")
            .filter_values(heatmap.FilterValueRange().le(1e-9))
            .show_legend()
            .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO))
            .mode(cm.TooltipDisplayMode.SINGLE).hide_y_histogram().show_color_scale(False)
            .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT)
                    .reverse(False).unit("s"))
            .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
            .hide_from(cb.HideSeriesConfig().legend(False).tooltip(False).viz(False)))


def _latency_p95(size: Size) -> timeseries.Panel:
    expr = (f"histogram_quantile(0.95, sum by (provider, le) "
            f"(rate({_watchdog(m.LATENCY, '_bucket')}[5m])))")
    return _timeseries("Request latency p95 by provider",
                       "95th percentile of probe latency per provider over 5m.",
                       [_target(expr, "{{provider}}")], size, unit="s")


def _budget_used(stack: Stack, size: Size) -> gauge.Panel:
    """Used and projected spend as fractions of the budget, coloured at the stack's levels.

    The budget itself is read from the watchdog's metrics, not written in here: the dashboard
    shows what the watchdog enforces, and a budget change needs no new dashboard.
    """
    levels = stack.budget.levels_percent
    steps = ((levels.warning / 100, YELLOW), (levels.critical / 100, ORANGE),
             (levels.exceeded / 100, RED))
    projected = f"{_watchdog(m.BUDGET_PROJECTED)} / {_watchdog(m.BUDGET_LIMIT)}"
    return (_panel(
        gauge.Panel(), "Budget used",
        "Spend this calendar month, and the month-end spend projected from its burn rate, "
        f"as a share of the monthly budget. Warning at {_num(levels.warning)}%, critical at "
        f"{_num(levels.critical)}%, exceeded (kill switch) at {_num(levels.exceeded)}%.",
        [_target(_watchdog(m.BUDGET_USED_RATIO), "Used", "A", instant=True),
         _target(projected, "Projected (month end)", "B", instant=True)], size,
        unit="percentunit", minimum=0,
        maximum=math.ceil(max(1.0, levels.exceeded / 100) * 12) / 10,
        thresholds=_thresholds(GREEN, *steps))
        .min_viz_height(75).min_viz_width(75).orientation(cm.VizOrientation.AUTO)
        .reduce_options(_reduce_last()).show_threshold_labels(False)
        .show_threshold_markers(True).sizing(cm.BarGaugeSizing.AUTO))


def _budget_usd(size: Size) -> stat.Panel:
    return _stat(
        "Spend and budget (USD)",
        "Spend this calendar month, the month-end projection and the monthly budget.",
        [_target(f"sum({_watchdog(m.SPEND)})", "Spent", "A", instant=True),
         _target(_watchdog(m.BUDGET_PROJECTED), "Projected", "B", instant=True),
         _target(_watchdog(m.BUDGET_LIMIT), "Budget", "C", instant=True)], size,
        unit="currencyUSD", decimals=2, thresholds=_thresholds(TEXT),
        color_mode=cm.BigValueColorMode.VALUE)


def _spend_by_provider(size: Size) -> timeseries.Panel:
    return (_timeseries(
        "Spend by provider",
        "Spend this calendar month per provider, stacked: the top line is the month's total.",
        [_target(_watchdog(m.SPEND), "{{provider}}")], size,
        unit="currencyUSD", decimals=2, minimum=0,
        legend=_legend(table=True, calcs=["lastNotNull"]))
        .fill_opacity(20).stacking(cb.StackingConfig().group("A").mode(cm.StackingMode.NORMAL)))


def _proxy_restarts(stack: Stack, size: Size) -> stat.Panel:
    cap = stack.watchdog.restart.max_per_hour
    return _stat(
        "Proxy restarts (1h)",
        f"Restarts of the LiteLLM proxy by the watchdog in the last hour. At {cap} the "
        "watchdog stops restarting it (crash loop).",
        [_target(f"increase({_watchdog(m.PROXY_RESTARTS)}[1h])", "Restarts", instant=True)],
        size, decimals=0, thresholds=_thresholds(GREEN, (1, YELLOW), (cap, RED)))


def _crash_loop(size: Size) -> stat.Panel:
    return _stat(
        "Proxy crash loop",
        "The restart cap was hit and the watchdog stopped restarting the proxy: it needs a "
        "person (see the event log).",
        [_target(_watchdog(m.PROXY_CRASH_LOOP), "Crash loop", instant=True)], size,
        thresholds=_thresholds(GREEN, (1, RED)),
        mappings=_value_mappings((0, "no", GREEN), (1, "CRASH LOOP", RED)))


def _stale_answers(size: Size) -> stat.Panel:
    return _stat(
        "Stale answers (1h)",
        "Answers served from the degraded-mode cache instead of a provider in the last hour.",
        [_target(f"increase({_watchdog(m.STALE_ANSWERS)}[1h])", "Stale answers",
                 instant=True)], size,
        decimals=0, thresholds=_thresholds(GREEN, (1, ORANGE)))


def _litellm_deployment_state(size: Size) -> statetimeline.Panel:
    expr = f"max by (litellm_model_name, api_provider) ({_litellm(m.LITELLM_DEPLOYMENT_STATE)})"
    return _state_timeline(
        "LiteLLM deployment state",
        "LiteLLM's own view of each deployment: healthy, partial outage or complete outage.",
        [_target(expr, "{{litellm_model_name}} ({{api_provider}})")], size,
        mappings=_value_mappings((0, "healthy", GREEN), (1, "partial", YELLOW),
                                 (2, "outage", RED)))


def _litellm_requests(size: Size) -> timeseries.Panel:
    expr = (f"sum by (status_code) "
            f"(rate({_litellm(m.LITELLM_REQUESTS)}[$__rate_interval]))")
    return _timeseries(
        "LiteLLM requests by status code",
        "Requests answered by the proxy per second, by the HTTP status the client got.",
        [_target(expr, "{{status_code}}")], size, unit="reqps", minimum=0)


def _litellm_failures(size: Size) -> timeseries.Panel:
    failed = (f"sum by (api_provider, exception_status) "
              f"(rate({_litellm(m.LITELLM_FAILURES)}[$__rate_interval]))")
    succeeded = (f"sum by (api_provider) "
                 f"(rate({_litellm(m.LITELLM_SUCCESSES)}[$__rate_interval]))")
    return _timeseries(
        "LiteLLM upstream responses",
        "Calls from the proxy to each provider per second: successes, and failures by "
        "upstream status.",
        [_target(succeeded, "{{api_provider}} ok"),
         _target(failed, "{{api_provider}} {{exception_status}}", "B")], size,
        unit="reqps", minimum=0)


def _litellm_fallbacks(size: Size) -> timeseries.Panel:
    by = "sum by (requested_model, fallback_model)"
    ok = f"{by} (increase({_litellm(m.LITELLM_SUCCESSFUL_FALLBACKS)}[1h]))"
    failed = f"{by} (increase({_litellm(m.LITELLM_FAILED_FALLBACKS)}[1h]))"
    return _timeseries(
        "LiteLLM fallbacks (1h)",
        "In-proxy fallbacks (router_settings.fallbacks) in the last hour: the requested "
        "model failed and the request went to the next one of its chain.",
        [_target(ok, "ok: {{requested_model}} → {{fallback_model}}", "A"),
         _target(failed, "failed: {{requested_model}} → {{fallback_model}}", "B")], size,
        decimals=0, minimum=0).override_by_query("B", [_fixed_color(RED)])


def _litellm_cooldowns(size: Size) -> timeseries.Panel:
    expr = (f"sum by (litellm_model_name, exception_status) "
            f"(increase({_litellm(m.LITELLM_COOLED_DOWN)}[1h]))")
    return _timeseries(
        "LiteLLM cooldowns (1h)",
        "Deployments LiteLLM put in cooldown in the last hour, by the status that caused it.",
        [_target(expr, "{{litellm_model_name}} ({{exception_status}})")], size,
        decimals=0, minimum=0)


def _litellm_latency(size: Size) -> timeseries.Panel:
    buckets = f"sum by (le) (rate({_litellm(m.LITELLM_LATENCY, '_bucket')}[$__rate_interval]))"
    return _timeseries(
        "LiteLLM request latency",
        "End-to-end latency of requests through the proxy (fallbacks and retries included).",
        [_target(f"histogram_quantile(0.5, {buckets})", "p50", "A"),
         _target(f"histogram_quantile(0.95, {buckets})", "p95", "B")], size, unit="s")


# --------------------------------------------------------------------------- the dashboard

def _sections(stack: Stack) -> list[tuple[str, list[Any]]]:
    """Each row and its panels (w, h); the SDK flows them left to right, a line at a time,
    so each line's widths add up to the grid's 24."""
    return [
        ("Failover", [
            _provider_health((8, 5)), _active_target(stack, (6, 5)),
            _kill_switch_degraded((5, 5)), _last_success(stack, (5, 5)),
            _fallback_events(GRAPH), _circuit_state(GRAPH),
            _latency_heatmap(GRAPH), _latency_p95(GRAPH),
        ]),
        ("Budget", [_budget_used(stack, (6, 8)), _budget_usd((6, 8)),
                    _spend_by_provider(GRAPH)]),
        ("Proxy", [_proxy_restarts(stack, STAT), _crash_loop(STAT), _stale_answers(STAT)]),
        ("LiteLLM's own view", [
            _litellm_deployment_state(GRAPH), _litellm_requests(GRAPH),
            _litellm_fallbacks(GRAPH), _litellm_cooldowns(GRAPH),
            _litellm_failures(GRAPH), _litellm_latency(GRAPH),
        ]),
    ]


def datasource_variable(stack: Stack) -> db.DatasourceVariable:
    """The ``datasource`` variable; its default is the data source provisioned for the bundle."""
    ds = stack.grafana.datasource
    return (db.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type(DATASOURCE_TYPE)
            .current(dm.VariableOption(selected=False, text=ds.name, value=ds.uid))
            .hide(dm.VariableHide.DONT_HIDE).multi(False).include_all(False).regex(""))


def model(stack: Stack) -> dm.Dashboard:
    """The dashboard as the SDK's typed model."""
    dash = stack.grafana.dashboard
    refresh = max(MIN_REFRESH_SECONDS, math.ceil(stack.prometheus.scrape_interval))
    builder = (db.Dashboard(dash.title).uid(dash.uid)
               .description("Provider fallback: health, failover, budget and the LiteLLM "
                            "proxy. Rendered from stack.yaml; edit that file, not this "
                            "dashboard.")
               .tags(["provider-fallback", "litellm"]).version(1).readonly()
               .tooltip(dm.DashboardCursorSync.CROSSHAIR).fiscal_year_start_month(0)
               .live_now(False).timezone("browser").week_start("")
               .time("now-24h", "now").refresh(f"{refresh}s")
               .with_variable(datasource_variable(stack)))
    for title, panels in _sections(stack):
        builder = builder.with_row(db.Row(title).datasource(_ds()))
        for panel in panels:
            builder = builder.with_panel(panel)
    built = builder.build()
    built.schema_version = SCHEMA_VERSION
    # The data source list is read when the dashboard loads (no builder method for it).
    for variable in (built.templating.list_val or []):
        variable.refresh = dm.VariableRefresh.ON_DASHBOARD_LOAD
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def to_data(value: object) -> Any:
    """An SDK model as plain JSON data (dicts, lists, str, numbers)."""
    return json.loads(json.dumps(value, cls=JSONEncoder))


def build(stack: Stack) -> JSON:
    """The dashboard JSON model for ``stack``: stable uid and title from ``grafana.dashboard``.

    Deterministic: the same stack gives the same structure, key order included.
    """
    data: JSON = to_data(model(stack))
    return data


def schema_problems(data: JSON) -> list[str]:
    """What Grafana's schema (the SDK's types, generated from it) does not accept in the
    dashboard ``data``: every key it drops or value it changes when read back, by path."""
    register_default_plugins()  # typed options and queries per panel and data source type
    back = to_data(dm.Dashboard.from_json(json.loads(json.dumps(data))))
    problems: list[str] = []

    def compare(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() | b.keys():
                if key not in b:
                    problems.append(f"{path}.{key}: not in the schema")
                elif key not in a:
                    continue  # a default the schema fills in
                else:
                    compare(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                compare(x, y, f"{path}[{i}]")
        elif a != b:
            problems.append(f"{path}: {a!r} read back as {b!r}")

    compare(data, back, "dashboard")
    return sorted(problems)
