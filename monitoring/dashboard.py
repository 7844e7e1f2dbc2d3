"""The Grafana dashboard of the bundle, built as data from stack.yaml (runbook 8.2, extended).

Why data and not a template: a dashboard is JSON full of ``{{provider}}`` legends and
``${datasource}`` references that must never meet Jinja, and data can be tested panel by panel.
Render dumps :func:`build` with :func:`tasks.render.common.dump_json`; same stack, same bytes.

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
- The current schema (``schemaVersion`` 39, Grafana 10.4 and later migrate it forward) and
  current panel types only: ``timeseries``, ``stat``, ``gauge``, ``heatmap``,
  ``state-timeline``; never the deprecated ``graph``. No ``id``: Grafana assigns it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitoring import metrics as m
from monitoring.stack import Stack

JSON = dict[str, Any]

SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_TYPE = "prometheus"
#: What every panel and every target carries as its ``datasource``.
DATASOURCE_REF: dict[str, str] = {"type": DATASOURCE_TYPE, "uid": f"${{{DATASOURCE_VARIABLE}}}"}

#: Grafana refuses refresh intervals below its ``min_refresh_interval`` (5s by default).
MIN_REFRESH_SECONDS = 5

# Colours from Grafana's named palette.
GREEN, YELLOW, ORANGE, RED, BLUE, TEXT = "green", "yellow", "orange", "red", "blue", "text"


def _ds() -> dict[str, str]:
    """A fresh copy of the data source reference (no shared objects inside the model)."""
    return dict(DATASOURCE_REF)


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
            fmt: str = "time_series") -> JSON:
    """One Prometheus query; instant for panels that show only the latest value."""
    return {
        "datasource": _ds(),
        "refId": ref,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "format": fmt,
        "instant": instant,
        "range": not instant,
    }


def _thresholds(base: str, *steps: tuple[float, str]) -> JSON:
    """Absolute thresholds: ``base`` below the first step, then each (value, colour)."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": color, "value": _num(value)} for value, color in steps],
    }


def _value_mappings(*states: tuple[int, str, str]) -> list[JSON]:
    """Value -> text and colour, for gauges that encode a state as a number."""
    return [{
        "type": "value",
        "options": {str(value): {"color": color, "index": index, "text": text}
                    for index, (value, text, color) in enumerate(states)},
    }]


def _field_config(*, unit: str = "none", thresholds: JSON | None = None,
                  mappings: list[JSON] | None = None, decimals: int | None = None,
                  minimum: float | None = None, maximum: float | None = None,
                  custom: JSON | None = None, overrides: list[JSON] | None = None,
                  no_value: str | None = None) -> JSON:
    defaults: JSON = {"color": {"mode": "thresholds"}}
    if custom is not None:
        defaults["custom"] = custom
    defaults["mappings"] = mappings or []
    defaults["thresholds"] = thresholds or _thresholds(GREEN)
    defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = _num(minimum)
    if maximum is not None:
        defaults["max"] = _num(maximum)
    if no_value is not None:
        defaults["noValue"] = no_value
    return {"defaults": defaults, "overrides": overrides or []}


def _palette_field_config(**kwargs: Any) -> JSON:
    """Field config for series graphs: one colour per series, not per threshold."""
    config = _field_config(**kwargs)
    config["defaults"]["color"] = {"mode": "palette-classic"}
    return config


def _by_ref(ref: str, *properties: JSON) -> JSON:
    return {"matcher": {"id": "byFrameRefID", "options": ref}, "properties": list(properties)}


def _fixed_color(color: str) -> JSON:
    return {"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}


def _reduce_last() -> JSON:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _legend(*, table: bool = False, calcs: Sequence[str] = ()) -> JSON:
    return {"calcs": list(calcs), "displayMode": "table" if table else "list",
            "placement": "bottom", "showLegend": True}


def _tooltip() -> JSON:
    return {"mode": "multi", "sort": "desc"}


def _panel(kind: str, title: str, description: str, targets: list[JSON],
           field_config: JSON, options: JSON) -> JSON:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": _ds(),
        "targets": targets,
        "fieldConfig": field_config,
        "options": options,
    }


def _stat(title: str, description: str, targets: list[JSON], field_config: JSON, *,
          text_mode: str = "value_and_name", color_mode: str = "background") -> JSON:
    options = {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": _reduce_last(),
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return _panel("stat", title, description, targets, field_config, options)


def _timeseries(title: str, description: str, targets: list[JSON], field_config: JSON, *,
                legend: JSON | None = None) -> JSON:
    options = {"legend": legend or _legend(), "tooltip": _tooltip()}
    return _panel("timeseries", title, description, targets, field_config, options)


def _state_timeline(title: str, description: str, targets: list[JSON],
                    field_config: JSON) -> JSON:
    options = {
        "alignValue": "center",
        "legend": _legend(),
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return _panel("state-timeline", title, description, targets, field_config, options)


# --------------------------------------------------------------------------- panels


def _provider_health() -> JSON:
    return _stat(
        "Provider health status",
        "The watchdog's verdict on each provider (runbook 8.2): its /models endpoint answers "
        "with the configured key.",
        [_target(_watchdog(m.HEALTH), "{{provider}}", instant=True)],
        _field_config(thresholds=_thresholds(RED, (1, GREEN)),
                      mappings=_value_mappings((1, "healthy", GREEN), (0, "down", RED)),
                      no_value="no data from the watchdog"),
    )


def _active_target(stack: Stack) -> JSON:
    """The target whose gauge is 1, named ``P<n> <label>``; green for P1, orange otherwise."""
    overrides = []
    for priority, target in enumerate(stack.targets, start=1):
        overrides.append({
            "matcher": {"id": "byName", "options": target.name},
            "properties": [
                {"id": "displayName", "value": f"P{priority} {target.label}"},
                _fixed_color(GREEN if priority == 1 else ORANGE),
            ],
        })
    order = ", ".join(f"P{i} {t.label} ({t.name})" for i, t in enumerate(stack.targets, 1))
    return _stat(
        "Active provider",
        f"The failover target the agents are switched to now. Priority order: {order}. "
        "Orange means a fallback is active.",
        [_target(f"{_watchdog(m.ACTIVE_TARGET)} == 1", "{{target}}", instant=True)],
        _field_config(overrides=overrides, no_value="no target reported"),
        text_mode="name",
    )


def _kill_switch_degraded() -> JSON:
    return _stat(
        "Kill switch and degraded mode",
        "Kill switch: the budget is exceeded and only free providers are allowed (phase 9). "
        "Degraded mode: every provider fails and cached answers are served (phase 7).",
        [_target(_watchdog(m.KILL_SWITCH), "Kill switch", "A", instant=True),
         _target(_watchdog(m.DEGRADED_MODE), "Degraded mode", "B", instant=True)],
        _field_config(thresholds=_thresholds(GREEN, (1, RED)),
                      mappings=_value_mappings((0, "off", GREEN), (1, "ACTIVE", RED))),
    )


def _last_success(stack: Stack) -> JSON:
    probe = stack.watchdog.provider_probe_interval
    warn = 2 * probe
    late = max(stack.alerts.provider_down_for, 3 * probe)
    return _stat(
        "Since last successful probe",
        "Seconds since each provider last answered a probe. Yellow after two missed probes, "
        "red once ProviderDown would fire.",
        [_target(f"time() - {_watchdog(m.LAST_SUCCESS)}", "{{provider}}", instant=True)],
        _field_config(unit="s", decimals=0,
                      thresholds=_thresholds(GREEN, (warn, YELLOW), (late, RED))),
        color_mode="value",
    )


def _fallback_events() -> JSON:
    expr = (f"sum by (from_provider, to_provider) "
            f"(increase({_watchdog(m.FALLBACK_EVENTS)}[24h]))")
    return _timeseries(
        "Fallback events (24h)",
        "Switches of the agents from one provider to another over the last 24 hours "
        "(runbook 8.2).",
        [_target(expr, "{{from_provider}} → {{to_provider}}")],
        _palette_field_config(decimals=0, minimum=0),
        legend=_legend(table=True, calcs=["lastNotNull", "max"]),
    )


def _circuit_state() -> JSON:
    return _state_timeline(
        "Circuit state per route",
        "The watchdog's state machine per route: healthy, suspect (failures below the "
        "threshold), failed (fallback active) and half-open (probing for recovery).",
        [_target(_watchdog(m.CIRCUIT_STATE), "{{provider}}")],
        _field_config(mappings=_value_mappings((0, "healthy", GREEN), (1, "suspect", YELLOW),
                                               (2, "failed (fallback)", RED),
                                               (3, "half-open", BLUE)),
                      thresholds=_thresholds(GREEN)),
    )


def _latency_heatmap() -> JSON:
    expr = f"sum by (le) (rate({_watchdog(m.LATENCY, '_bucket')}[5m]))"
    options = {
        "calculate": False,
        "cellGap": 1,
        "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False,
                  "scale": "exponential", "scheme": "Oranges", "steps": 64},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"},
    }
    return _panel(
        "heatmap", "Request latency",
        "Distribution of probe latency over all providers (runbook 8.2): the rate of each "
        "histogram bucket over 5m.",
        [_target(expr, "{{le}}", fmt="heatmap")],
        {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False,
                                              "viz": False},
                                 "scaleDistribution": {"type": "linear"}}},
         "overrides": []},
        options,
    )


def _latency_p95() -> JSON:
    expr = (f"histogram_quantile(0.95, sum by (provider, le) "
            f"(rate({_watchdog(m.LATENCY, '_bucket')}[5m])))")
    return _timeseries(
        "Request latency p95 by provider",
        "95th percentile of probe latency per provider over 5m.",
        [_target(expr, "{{provider}}")],
        _palette_field_config(unit="s"),
    )


def _budget_used(stack: Stack) -> JSON:
    """Used and projected spend as fractions of the budget, coloured at the stack's levels.

    The budget itself is read from the watchdog's metrics, not written in here: the dashboard
    shows what the watchdog enforces, and a budget change needs no new dashboard.
    """
    levels = stack.budget.levels_percent
    steps = ((levels.warning / 100, YELLOW), (levels.critical / 100, ORANGE),
             (levels.exceeded / 100, RED))
    projected = f"{_watchdog(m.BUDGET_PROJECTED)} / {_watchdog(m.BUDGET_LIMIT)}"
    return _panel(
        "gauge", "Budget used",
        "Spend this calendar month, and the month-end spend projected from its burn rate, "
        f"as a share of the monthly budget. Warning at {_num(levels.warning)}%, critical at "
        f"{_num(levels.critical)}%, exceeded (kill switch) at {_num(levels.exceeded)}%.",
        [_target(_watchdog(m.BUDGET_USED_RATIO), "Used", "A", instant=True),
         _target(projected, "Projected (month end)", "B", instant=True)],
        _field_config(unit="percentunit", minimum=0,
                      maximum=math.ceil(max(1.0, levels.exceeded / 100) * 12) / 10,
                      thresholds=_thresholds(GREEN, *steps)),
        {"minVizHeight": 75, "minVizWidth": 75, "orientation": "auto",
         "reduceOptions": _reduce_last(), "showThresholdLabels": False,
         "showThresholdMarkers": True, "sizing": "auto"},
    )


def _budget_usd() -> JSON:
    return _stat(
        "Spend and budget (USD)",
        "Spend this calendar month, the month-end projection and the monthly budget.",
        [_target(f"sum({_watchdog(m.SPEND)})", "Spent", "A", instant=True),
         _target(_watchdog(m.BUDGET_PROJECTED), "Projected", "B", instant=True),
         _target(_watchdog(m.BUDGET_LIMIT), "Budget", "C", instant=True)],
        _field_config(unit="currencyUSD", decimals=2, thresholds=_thresholds(TEXT)),
        color_mode="value",
    )


def _spend_by_provider() -> JSON:
    return _timeseries(
        "Spend by provider",
        "Spend this calendar month per provider, stacked: the top line is the month's total.",
        [_target(_watchdog(m.SPEND), "{{provider}}")],
        _palette_field_config(unit="currencyUSD", decimals=2, minimum=0,
                              custom={"fillOpacity": 20, "stacking": {"group": "A",
                                                                      "mode": "normal"}}),
        legend=_legend(table=True, calcs=["lastNotNull"]),
    )


def _proxy_restarts(stack: Stack) -> JSON:
    cap = stack.watchdog.restart.max_per_hour
    return _stat(
        "Proxy restarts (1h)",
        f"Restarts of the LiteLLM proxy by the watchdog in the last hour. At {cap} the "
        "watchdog stops restarting it (crash loop).",
        [_target(f"increase({_watchdog(m.PROXY_RESTARTS)}[1h])", "Restarts", instant=True)],
        _field_config(decimals=0, thresholds=_thresholds(GREEN, (1, YELLOW), (cap, RED))),
    )


def _crash_loop() -> JSON:
    return _stat(
        "Proxy crash loop",
        "The restart cap was hit and the watchdog stopped restarting the proxy: it needs a "
        "person (see the event log).",
        [_target(_watchdog(m.PROXY_CRASH_LOOP), "Crash loop", instant=True)],
        _field_config(thresholds=_thresholds(GREEN, (1, RED)),
                      mappings=_value_mappings((0, "no", GREEN), (1, "CRASH LOOP", RED))),
    )


def _stale_answers() -> JSON:
    return _stat(
        "Stale answers (1h)",
        "Answers served from the degraded-mode cache instead of a provider in the last hour.",
        [_target(f"increase({_watchdog(m.STALE_ANSWERS)}[1h])", "Stale answers",
                 instant=True)],
        _field_config(decimals=0, thresholds=_thresholds(GREEN, (1, ORANGE))),
    )


def _litellm_deployment_state() -> JSON:
    expr = f"max by (litellm_model_name, api_provider) ({_litellm(m.LITELLM_DEPLOYMENT_STATE)})"
    return _state_timeline(
        "LiteLLM deployment state",
        "LiteLLM's own view of each deployment: healthy, partial outage or complete outage.",
        [_target(expr, "{{litellm_model_name}} ({{api_provider}})")],
        _field_config(mappings=_value_mappings((0, "healthy", GREEN), (1, "partial", YELLOW),
                                               (2, "outage", RED)),
                      thresholds=_thresholds(GREEN)),
    )


def _litellm_requests() -> JSON:
    expr = (f"sum by (status_code) "
            f"(rate({_litellm(m.LITELLM_REQUESTS)}[$__rate_interval]))")
    return _timeseries(
        "LiteLLM requests by status code",
        "Requests answered by the proxy per second, by the HTTP status the client got.",
        [_target(expr, "{{status_code}}")],
        _palette_field_config(unit="reqps", minimum=0),
    )


def _litellm_failures() -> JSON:
    failed = (f"sum by (api_provider, exception_status) "
              f"(rate({_litellm(m.LITELLM_FAILURES)}[$__rate_interval]))")
    succeeded = (f"sum by (api_provider) "
                 f"(rate({_litellm(m.LITELLM_SUCCESSES)}[$__rate_interval]))")
    return _timeseries(
        "LiteLLM upstream responses",
        "Calls from the proxy to each provider per second: successes, and failures by "
        "upstream status.",
        [_target(succeeded, "{{api_provider}} ok"),
         _target(failed, "{{api_provider}} {{exception_status}}", "B")],
        _palette_field_config(unit="reqps", minimum=0),
    )


def _litellm_fallbacks() -> JSON:
    by = "sum by (requested_model, fallback_model)"
    ok = f"{by} (increase({_litellm(m.LITELLM_SUCCESSFUL_FALLBACKS)}[1h]))"
    failed = f"{by} (increase({_litellm(m.LITELLM_FAILED_FALLBACKS)}[1h]))"
    return _timeseries(
        "LiteLLM fallbacks (1h)",
        "In-proxy fallbacks (router_settings.fallbacks) in the last hour: the requested "
        "model failed and the request went to the next one of its chain.",
        [_target(ok, "ok: {{requested_model}} → {{fallback_model}}", "A"),
         _target(failed, "failed: {{requested_model}} → {{fallback_model}}", "B")],
        _palette_field_config(decimals=0, minimum=0,
                              overrides=[_by_ref("B", _fixed_color(RED))]),
    )


def _litellm_cooldowns() -> JSON:
    expr = (f"sum by (litellm_model_name, exception_status) "
            f"(increase({_litellm(m.LITELLM_COOLED_DOWN)}[1h]))")
    return _timeseries(
        "LiteLLM cooldowns (1h)",
        "Deployments LiteLLM put in cooldown in the last hour, by the status that caused it.",
        [_target(expr, "{{litellm_model_name}} ({{exception_status}})")],
        _palette_field_config(decimals=0, minimum=0),
    )


def _litellm_latency() -> JSON:
    buckets = f"sum by (le) (rate({_litellm(m.LITELLM_LATENCY, '_bucket')}[$__rate_interval]))"
    return _timeseries(
        "LiteLLM request latency",
        "End-to-end latency of requests through the proxy (fallbacks and retries included).",
        [_target(f"histogram_quantile(0.5, {buckets})", "p50", "A"),
         _target(f"histogram_quantile(0.95, {buckets})", "p95", "B")],
        _palette_field_config(unit="s"),
    )


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Cell:
    """A panel and its size on Grafana's 24-column grid."""

    panel: JSON
    w: int
    h: int


Section = tuple[str, Sequence[Cell]]


def _sections(stack: Stack) -> list[Section]:
    return [
        ("Failover", [
            Cell(_provider_health(), 8, 5),
            Cell(_active_target(stack), 6, 5),
            Cell(_kill_switch_degraded(), 5, 5),
            Cell(_last_success(stack), 5, 5),
            Cell(_fallback_events(), 12, 8),
            Cell(_circuit_state(), 12, 8),
            Cell(_latency_heatmap(), 12, 8),
            Cell(_latency_p95(), 12, 8),
        ]),
        ("Budget", [
            Cell(_budget_used(stack), 6, 8),
            Cell(_budget_usd(), 6, 8),
            Cell(_spend_by_provider(), 12, 8),
        ]),
        ("Proxy", [
            Cell(_proxy_restarts(stack), 8, 5),
            Cell(_crash_loop(), 8, 5),
            Cell(_stale_answers(), 8, 5),
        ]),
        ("LiteLLM's own view", [
            Cell(_litellm_deployment_state(), 12, 8),
            Cell(_litellm_requests(), 12, 8),
            Cell(_litellm_fallbacks(), 12, 8),
            Cell(_litellm_cooldowns(), 12, 8),
            Cell(_litellm_failures(), 12, 8),
            Cell(_litellm_latency(), 12, 8),
        ]),
    ]


def lay_out(sections: Sequence[Section]) -> list[JSON]:
    """Panels with ids and grid positions: each section a row, its cells flowed left to right.

    A cell that does not fit the rest of a line starts the next one, below the tallest cell of
    the line; so no two panels overlap whatever sizes the sections use.
    """
    panels: list[JSON] = []
    y = 0
    for title, cells in sections:
        panels.append({
            "type": "row",
            "title": title,
            "collapsed": False,
            "datasource": _ds(),
            "panels": [],
            "id": len(panels) + 1,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
        })
        y += 1
        x = line_height = 0
        for cell in cells:
            if not 0 < cell.w <= GRID_WIDTH or cell.h <= 0:
                raise ValueError(f"panel {cell.panel['title']!r}: size {cell.w}x{cell.h}")
            if x + cell.w > GRID_WIDTH:
                y, x, line_height = y + line_height, 0, 0
            panel = dict(cell.panel)
            panel["id"] = len(panels) + 1
            panel["gridPos"] = {"h": cell.h, "w": cell.w, "x": x, "y": y}
            panels.append(panel)
            x += cell.w
            line_height = max(line_height, cell.h)
        y += line_height
    return panels


# --------------------------------------------------------------------------- the dashboard


def datasource_variable(stack: Stack) -> JSON:
    """The ``datasource`` variable; its default is the data source provisioned for the bundle."""
    ds = stack.grafana.datasource
    return {
        "name": DATASOURCE_VARIABLE,
        "label": "Data source",
        "type": "datasource",
        "query": DATASOURCE_TYPE,
        "current": {"selected": False, "text": ds.name, "value": ds.uid},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def build(stack: Stack) -> JSON:
    """The dashboard JSON model for ``stack``: stable uid and title from ``grafana.dashboard``.

    Deterministic: the same stack gives the same structure, key order included.
    """
    dash = stack.grafana.dashboard
    refresh = max(MIN_REFRESH_SECONDS, math.ceil(stack.prometheus.scrape_interval))
    return {
        "uid": dash.uid,
        "title": dash.title,
        "description": "Provider fallback: health, failover, budget and the LiteLLM proxy. "
                       "Rendered from stack.yaml; edit that file, not this dashboard.",
        "tags": ["provider-fallback", "litellm"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "timezone": "browser",
        "weekStart": "",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "refresh": f"{refresh}s",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [datasource_variable(stack)]},
        "panels": lay_out(_sections(stack)),
    }
