"""The alert rules, checked by the real promtool 2.42 and by a PromQL parser.

The ``promtool test rules`` file is GENERATED here from the stack's thresholds (never typed by
hand), and every input series carries a label set taken from a REAL scrape of the real
watchdog's exporter (plus the job and instance labels Prometheus attaches), so a rule cannot
pass on series the exporter never serves: with hand-written series ``AllProvidersDown`` once
passed although the proxy's own ``provider="litellm"`` health series kept it from ever firing.
It is generated for the default stack and for a stack whose every threshold is different, so each
scenario proves the rule follows the stack: pending just before a ``for`` ends and firing when
it does, no alert at a count threshold and an alert one above it, budget ratios just below and
exactly at each level. One test breaks an expectation on purpose to show promtool does fail.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from monitoring import metrics
from monitoring.content import rules
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack, parse_duration, prom_duration
from tests.conftest import STACK_FILE
from tests.support.exporter_scrape import Scrape, scrape_watchdog

PROMTOOL = "/usr/bin/promtool"
WATCHDOG_INSTANCE = "127.0.0.1:9464"

#: Every threshold different from the default stack, and a slower evaluation interval whose
#: multiples do not line up with every ``for`` (45s at 30s steps).
OTHER_THRESHOLDS: dict[str, Any] = {
    "prometheus": {"evaluation_interval": "30s"},
    "alerts": {
        "provider_down_for": "2m",
        "high_fallback_rate_per_hour": 2,
        "all_providers_down_for": "45s",
        "watchdog_down_for": "30s",
        "restart_loop": {"restarts": 5, "window": "30m"},
    },
    "budget": {"levels_percent": {"warning": 50, "critical": 80, "exceeded": 95}},
}


@pytest.fixture(scope="session")
def scrape(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    """What the live exporter of a fresh stack (no keys, no proxy) serves."""
    return scrape_watchdog(stack, tmp_path_factory.mktemp("scrape"))


def other_stack() -> Stack:
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=OTHER_THRESHOLDS)


@pytest.fixture(params=["default", "other-thresholds"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    return stack if request.param == "default" else other_stack()


def rule_list(stack: Stack) -> list[dict[str, Any]]:
    groups = rules.build(stack)["groups"]
    assert len(groups) == 1
    return list(groups[0]["rules"])


def rule_by_name(stack: Stack) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rule_list(stack)}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)


# --------------------------------------------------------------------------- static checks


def test_promtool_check_rules_passes(any_stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules.build(any_stack), sort_keys=False))
    result = run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules.ALERT_NAMES)} rules found" in result.stdout


def test_promtool_check_rules_catches_a_broken_expression(stack: Stack, tmp_path: Path) -> None:
    data = rules.build(stack)
    data["groups"][0]["rules"][0]["expr"] += " +"  # the validator is real: it can say no
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode != 0


def test_one_group_with_every_alert(stack: Stack) -> None:
    data = rules.build(stack)
    assert [g["name"] for g in data["groups"]] == [rules.GROUP]
    assert [r["alert"] for r in rule_list(stack)] == list(rules.ALERT_NAMES)


def _selector_names(expr: str) -> list[str | None]:
    return [selector.name for selector in _selectors(expr)]


KNOWN_METRICS = {spec.name for spec in metrics.WATCHDOG_METRICS} | set(metrics.LITELLM_METRICS)


@pytest.mark.parametrize("alert", rules.ALERT_NAMES)
def test_expression_parses_and_names_only_known_metrics(stack: Stack, alert: str) -> None:
    expr = rule_by_name(stack)[alert]["expr"]
    names = _selector_names(expr)
    assert names, f"{alert}: no selector in {expr!r}"
    for name in names:
        assert name is not None, f"{alert}: a selector without a metric name in {expr!r}"
        assert name in KNOWN_METRICS | {rules.UP}, f"{alert}: unknown metric {name!r}"


def test_selector_walk_sees_names_inside_functions_and_ranges() -> None:
    # The check above is only as good as the walk: it must reach into ranges and `or`.
    assert _selector_names("floor(increase(a_total[5m])) > 1 or absent(up{job='x'})") == [
        "a_total", "up"]


@pytest.mark.parametrize("alert", rules.ALERT_NAMES)
def test_every_alert_has_severity_summary_description_and_runbook(stack: Stack,
                                                                  alert: str) -> None:
    rule = rule_by_name(stack)[alert]
    assert rule["labels"]["severity"] in {rules.WARNING, rules.CRITICAL}
    assert set(rule["annotations"]) == {"summary", "description", "runbook"}
    assert all(rule["annotations"].values())
    assert re.match(r"^Phase \d+(\.\d+)?: ", rule["annotations"]["runbook"])


def test_runbook_wording_is_kept(stack: Stack) -> None:
    by_name = rule_by_name(stack)
    assert by_name["ProviderDown"]["annotations"] == {
        "summary": "Provider {{ $labels.provider }} is down",
        "description": "Provider has been unhealthy for more than 1 minute",
        "runbook": by_name["ProviderDown"]["annotations"]["runbook"]}
    assert by_name["ProviderDown"]["labels"] == {"severity": "critical"}
    assert by_name["HighFallbackRate"]["annotations"]["summary"] == "High fallback rate detected"
    assert (by_name["HighFallbackRate"]["annotations"]["description"]
            == "{{ $value }} fallback events in the last hour")
    assert by_name["AllProvidersDown"]["annotations"]["summary"] == "All providers are down"
    assert (by_name["AllProvidersDown"]["annotations"]["description"]
            == "No healthy providers available")


def test_thresholds_come_from_the_stack() -> None:
    other = other_stack()
    by_name = rule_by_name(other)
    assert by_name["ProviderDown"]["for"] == "2m"
    assert "more than 2 minutes" in by_name["ProviderDown"]["annotations"]["description"]
    assert by_name["AllProvidersDown"]["for"] == "45s"
    assert by_name["WatchdogDown"]["for"] == "30s"
    assert by_name["HighFallbackRate"]["expr"].endswith("> 2")
    assert "[30m]" in by_name["ProxyRestartLoop"]["expr"]
    assert "> 5 or" in by_name["ProxyRestartLoop"]["expr"]
    assert by_name["BudgetWarning"]["expr"].endswith(">= 0.5")
    assert by_name["BudgetCritical"]["expr"].endswith(">= 0.8")
    assert by_name["BudgetExceeded"]["expr"].endswith(">= 0.95")


def test_number_round_trips_exactly() -> None:
    for value in (0.75, 0.9, 1.0, 0.333, 1 / 3, 12.5):
        assert float(rules.number(value)) == value
    assert rules.number(1.0) == "1"


# --------------------------------------------------------------------------- generated tests


def go_float(value: float) -> str:
    """How Go's text/template prints a float64 (``{{ $value }}``) for the values used here."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def expand(template: str, labels: dict[str, str], value: float) -> str:
    """Prometheus' annotation templating, for the few forms the rules use."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if body.startswith("$labels."):
            return labels.get(body.removeprefix("$labels."), "")
        if body == "$value":
            return go_float(value)
        if body == "$value | humanizePercentage":
            return "%.4g%%" % (value * 100)  # Go: fmt.Sprintf("%.4g%%", v*100)
        raise AssertionError(f"template {body!r} is not understood by this test")

    return re.sub(r"\{\{(.*?)\}\}", one, template)


def series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def values(points: Sequence[float]) -> str:
    return " ".join(rules.number(v) for v in points)


class Scenario:
    """One promtool test group: input series at a fixed interval and checks at step indices."""

    def __init__(self, stack: Stack, name: str, interval: float | None = None,
                 scrape: Scrape | None = None) -> None:
        self.scrape = scrape
        self.rules = rule_by_name(stack)
        self.step = stack.prometheus.evaluation_interval
        self.interval = interval or self.step
        self.group: dict[str, Any] = {
            "name": name, "interval": prom_duration(self.interval), "input_series": [],
            "alert_rule_test": [], "promql_expr_test": []}

    def steps(self, seconds: float) -> int:
        """Evaluation steps until a ``for`` of ``seconds`` is over."""
        return math.ceil(seconds / self.step - 1e-9)

    def at(self, index: int) -> str:
        return prom_duration(index * self.step)

    def add_series(self, name: str, labels: dict[str, str], points: Sequence[float]) -> None:
        """An input series; any but Prometheus' own ``up`` must be one the exporter serves."""
        if name != rules.UP:
            assert self.scrape is not None
            assert self.scrape.has(name, labels), (
                f"{name}{labels} is not a series the live exporter serves")
        self.group["input_series"].append({"series": series(name, labels),
                                           "values": values(points)})

    def alerts(self, index: int, alert: str,
               firing: list[tuple[dict[str, str], float]]) -> None:
        """At step ``index``, exactly these instances of ``alert`` fire (labels, $value)."""
        rule = self.rules[alert]
        expected = []
        for labels, value in firing:
            expected.append({
                "exp_labels": {**labels, **rule["labels"]},
                "exp_annotations": {k: expand(v, labels, value)
                                    for k, v in rule["annotations"].items()},
            })
        self.group["alert_rule_test"].append(
            {"eval_time": self.at(index), "alertname": alert, "exp_alerts": expected})

    def pending(self, index: int, alert: str, labels: dict[str, str]) -> None:
        """At step ``index`` the alert is pending: active, its ``for`` not yet over."""
        selector = series("ALERTS", {"alertname": alert, "alertstate": "pending"})
        all_labels = {"alertname": alert, "alertstate": "pending", **labels,
                      **self.rules[alert]["labels"]}
        self.expr(index, selector, [(series("ALERTS", dict(sorted(all_labels.items()))), 1)])

    def expr(self, index: int, expr: str, samples: list[tuple[str, float]]) -> None:
        """At step ``index``, ``expr`` returns exactly these samples (labels, value)."""
        self.group["promql_expr_test"].append({
            "expr": expr, "eval_time": self.at(index),
            "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]})


def provider_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """One provider down (ProviderDown, pending then firing), then all (AllProvidersDown),
    while the proxy's own health series (provider="litellm", as the exporter serves it)
    stays healthy: the situation of a fresh stack whose providers all fail."""
    sc = Scenario(stack, "ProviderDown and AllProvidersDown", scrape=scrape)
    k_down = sc.steps(stack.alerts.provider_down_for)
    k_all = sc.steps(stack.alerts.all_providers_down_for)
    health = scrape.label_sets(metrics.HEALTH.name)
    proxy = [labels for labels in health if labels["provider"] == metrics.PROXY_ROUTE]
    providers = [labels for labels in health if labels["provider"] != metrics.PROXY_ROUTE]
    assert len(proxy) == 1
    assert len(providers) >= 2
    first, second = 4, 4 + k_down + 2  # the first already fires when the others go down
    down_at = [first] + [second] * (len(providers) - 1)
    last = second + max(k_down, k_all) + 4
    for labels, at in zip(providers, down_at, strict=True):
        sc.add_series(metrics.HEALTH.name, labels, [1] * at + [0] * (last - at + 1))
    sc.add_series(metrics.HEALTH.name, proxy[0], [1] * (last + 1))
    sc.add_series(rules.UP, {"job": metrics.JOB_WATCHDOG, "instance": WATCHDOG_INSTANCE},
                  [1] * (last + 1))

    def firing_providers(i: int) -> list[tuple[dict[str, str], float]]:
        return [(labels, 0) for labels, at in zip(providers, down_at, strict=True)
                if i - at >= k_down]

    checks = sorted({0, first - 1, first, first + k_down - 1, first + k_down, second - 1,
                     second + k_all - 1, second + k_all, second + k_down, last})
    for i in checks:
        sc.alerts(i, rules.PROVIDER_DOWN, firing_providers(i))
        sc.alerts(i, rules.ALL_PROVIDERS_DOWN, [({}, 0)] if i - second >= k_all else [])
        sc.alerts(i, rules.WATCHDOG_DOWN, [])
    sc.pending(first + k_down - 1, rules.PROVIDER_DOWN, providers[0])
    sc.pending(second + k_all - 1, rules.ALL_PROVIDERS_DOWN, {})
    assert not firing_providers(first + k_down - 1)
    assert firing_providers(first + k_down)
    return sc.group


def watchdog_down_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """The exporter's target fails (up == 0): WatchdogDown after watchdog_down_for."""
    sc = Scenario(stack, "WatchdogDown: scrape fails")
    k = sc.steps(stack.alerts.watchdog_down_for)
    down, last = 4, 4 + k + 3
    labels = {"job": metrics.JOB_WATCHDOG, "instance": WATCHDOG_INSTANCE}
    sc.add_series(rules.UP, labels, [1] * down + [0] * (last - down + 1))
    sc.add_series(rules.UP, {"job": metrics.JOB_LITELLM, "instance": "127.0.0.1:4000"},
                  [1] * (last + 1))
    for i in (down - 1, down, down + k - 1):
        sc.alerts(i, rules.WATCHDOG_DOWN, [])
    sc.pending(down + k - 1, rules.WATCHDOG_DOWN, labels)
    sc.alerts(down + k, rules.WATCHDOG_DOWN, [(labels, 0)])
    return sc.group


def watchdog_absent_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """No watchdog target at all (only another job is up): WatchdogDown from absent()."""
    sc = Scenario(stack, "WatchdogDown: no target")
    k = sc.steps(stack.alerts.watchdog_down_for)
    sc.add_series(rules.UP, {"job": metrics.JOB_LITELLM, "instance": "127.0.0.1:4000"},
                  [1] * (k + 4))
    labels = {"job": metrics.JOB_WATCHDOG}  # what absent() derives from the selector
    sc.alerts(k - 1, rules.WATCHDOG_DOWN, [])
    sc.pending(k - 1, rules.WATCHDOG_DOWN, labels)
    sc.alerts(k, rules.WATCHDOG_DOWN, [(labels, 1)])
    # No health series at all is the watchdog's absence, not every provider being down.
    sc.alerts(k + 2, rules.ALL_PROVIDERS_DOWN, [])
    return sc.group


#: The runbook's count without the floor: what increase() itself reads over the hour.
RAW_FALLBACK_SUM = (f"sum(increase({metrics.FALLBACK_EVENTS.name}"
                    f"[{prom_duration(rules.FALLBACK_RATE_WINDOW)}]))")



def fallback_label_sets(scrape: Scrape) -> tuple[dict[str, str], dict[str, str]]:
    """Two of the fallback counter's label sets the exporter serves (it primes them at 0)."""
    found = scrape.label_sets(metrics.FALLBACK_EVENTS.name)
    assert len(found) >= 2
    return found[0], found[-1]


def _fallback_split(total: int) -> tuple[int, int]:
    return math.ceil(total / 2), total // 2


def fallback_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """Exactly N fallbacks in an hour: no alert; N+1: alert; an hour later: gone.

    Samples sit on the evaluation steps, so ``increase()`` over the hour has nothing to
    extrapolate and its value is exact (checked with an expression test). The events are
    split over two label sets, neither above N alone: the alert fires on their sum.
    """
    sc = Scenario(stack, "HighFallbackRate", scrape=scrape)
    fallback_a, fallback_b = fallback_label_sets(scrape)
    n = stack.alerts.high_fallback_rate_per_hour
    window = rules.FALLBACK_RATE_WINDOW / sc.step
    assert window == int(window), "the test needs the hour to be whole evaluation steps"
    w = int(window)
    a_n, b_n = _fallback_split(n)
    a_more, b_more = _fallback_split(n + 1)
    assert max(a_more, b_more) <= n, "each label set alone stays at or below N"
    last = 2 * w + 3
    sc.add_series(metrics.FALLBACK_EVENTS.name, fallback_a,
                  [0] * (w + 1) + [a_n] + [a_more] * (last - w - 1))
    sc.add_series(metrics.FALLBACK_EVENTS.name, fallback_b,
                  [0] * (w + 1) + [b_n] + [b_more] * (last - w - 1))
    raw = RAW_FALLBACK_SUM
    sc.alerts(w, rules.HIGH_FALLBACK_RATE, [])
    sc.alerts(w + 1, rules.HIGH_FALLBACK_RATE, [])  # exactly N in the last hour
    sc.expr(w + 1, raw, [("{}", n)])
    sc.alerts(w + 2, rules.HIGH_FALLBACK_RATE, [({}, n + 1)])  # one more
    sc.expr(w + 2, raw, [("{}", n + 1)])
    sc.alerts(2 * w + 1, rules.HIGH_FALLBACK_RATE, [])  # the N have left the window
    return sc.group


def fallback_offset_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """Scrapes not aligned with evaluations: increase() reads more than N, the floor does not.

    This is why the rule floors: with the runbook's bare ``increase(...) > N``, exactly N
    events would fire the alert here.
    """
    step = stack.prometheus.evaluation_interval
    sc = Scenario(stack, "HighFallbackRate: extrapolation", interval=4 * step, scrape=scrape)
    fallback_a, fallback_b = fallback_label_sets(scrape)
    n = stack.alerts.high_fallback_rate_per_hour
    w = int(rules.FALLBACK_RATE_WINDOW / sc.interval)
    a_n, b_n = _fallback_split(n)
    sc.add_series(metrics.FALLBACK_EVENTS.name, fallback_a, [0] * (w + 1) + [a_n] * 4)
    sc.add_series(metrics.FALLBACK_EVENTS.name, fallback_b, [0] * (w + 1) + [b_n] * 4)
    index = 4 * (w + 1) + 1  # one evaluation step after the sample with the N events
    raw = RAW_FALLBACK_SUM
    sc.expr(index, f"{raw} > bool {n}", [("{}", 1)])
    sc.alerts(index, rules.HIGH_FALLBACK_RATE, [])
    return sc.group


def restart_loop_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """C restarts within the window: no alert; C+1: one alert; then the crash-loop gauge."""
    sc = Scenario(stack, "ProxyRestartLoop", scrape=scrape)
    loop = stack.alerts.restart_loop
    c = loop.restarts
    window = loop.window / sc.step
    assert window == int(window), "the test needs the window to be whole evaluation steps"
    rw = int(window)
    assert c + 1 <= rw, "the test puts one restart per step inside the window"
    labels = scrape.one(metrics.PROXY_RESTARTS.name)
    assert labels == scrape.one(metrics.PROXY_CRASH_LOOP.name)
    cap_at = rw + c + 1  # the (C+1)th restart, and the watchdog gives up at the same time
    last = cap_at + rw + 3
    restarts = [0] * (rw + 1) + list(range(1, c + 2)) + [c + 1] * (last - cap_at)
    assert len(restarts) == last + 1
    assert restarts[rw + c] == c
    sc.add_series(metrics.PROXY_RESTARTS.name, labels, restarts)
    sc.add_series(metrics.PROXY_CRASH_LOOP.name, labels,
                  [0] * cap_at + [1] * (last - cap_at + 1))
    sc.alerts(rw, rules.PROXY_RESTART_LOOP, [])
    sc.alerts(rw + c, rules.PROXY_RESTART_LOOP, [])  # exactly C restarts in the window
    sc.alerts(cap_at, rules.PROXY_RESTART_LOOP, [(labels, c + 1)])  # C+1, and ONE alert
    # The restarts have left the window; the crash-loop gauge alone keeps it firing.
    sc.alerts(cap_at + rw + 1, rules.PROXY_RESTART_LOOP, [(labels, 1)])
    return sc.group


def budget_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """The used ratio just below and exactly at each level; then the kill switch."""
    sc = Scenario(stack, "Budget levels and kill switch", scrape=scrape)
    ratio_labels = scrape.one(metrics.BUDGET_USED_RATIO.name)
    kill_labels = scrape.one(metrics.KILL_SWITCH.name)
    levels = stack.budget.levels_percent
    thresholds = {
        rules.BUDGET_WARNING: rules.budget_ratio(levels.warning),
        rules.BUDGET_CRITICAL: rules.budget_ratio(levels.critical),
        rules.BUDGET_EXCEEDED: rules.budget_ratio(levels.exceeded),
    }
    ratios = [0.0]
    for ratio in thresholds.values():
        ratios += [math.nextafter(ratio, 0), ratio]
    kill_at = len(ratios) - 1  # the kill switch trips with the budget exceeded
    sc.add_series(metrics.BUDGET_USED_RATIO.name, ratio_labels, ratios)
    sc.add_series(metrics.KILL_SWITCH.name, kill_labels, [0] * kill_at + [1])
    for i, ratio in enumerate(ratios):
        for alert, threshold in thresholds.items():
            sc.alerts(i, alert, [(ratio_labels, ratio)] if ratio >= threshold else [])
    sc.alerts(kill_at - 1, rules.KILL_SWITCH_ACTIVE, [])
    sc.alerts(kill_at, rules.KILL_SWITCH_ACTIVE, [(kill_labels, 1)])
    return sc.group


def projection_and_degraded_scenario(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """Projected spend below, AT (no alert) and over the budget; degraded mode off then on."""
    sc = Scenario(stack, "Projected overspend and degraded mode", scrape=scrape)
    limit_labels = scrape.one(metrics.BUDGET_LIMIT.name)
    projected_labels = scrape.one(metrics.BUDGET_PROJECTED.name)
    degraded_labels = scrape.one(metrics.DEGRADED_MODE.name)
    limit = stack.budget.monthly_usd
    projected = [limit / 2, limit, limit + 5]
    sc.add_series(metrics.BUDGET_LIMIT.name, limit_labels, [limit] * 3)
    sc.add_series(metrics.BUDGET_PROJECTED.name, projected_labels, projected)
    sc.add_series(metrics.DEGRADED_MODE.name, degraded_labels, [0, 0, 1])
    for i, value in enumerate(projected):
        sc.alerts(i, rules.PROJECTED_OVERSPEND,
                  [(projected_labels, value)] if value > limit else [])
        sc.alerts(i, rules.DEGRADED_MODE, [(degraded_labels, 1)] if i == 2 else [])
    return sc.group


SCENARIOS: tuple[Callable[[Stack, Scrape], dict[str, Any]], ...] = (
    provider_scenario, watchdog_down_scenario, watchdog_absent_scenario, fallback_scenario,
    fallback_offset_scenario, restart_loop_scenario, budget_scenario,
    projection_and_degraded_scenario,
)


def rule_tests(stack: Stack, scrape: Scrape) -> dict[str, Any]:
    """A ``promtool test rules`` file for ``stack``'s rules, every number from the stack and
    every label set from the live exporter."""
    groups = [scenario(stack, scrape) for scenario in SCENARIOS]
    for group in groups:
        if not group["promql_expr_test"]:
            del group["promql_expr_test"]
    return {
        "rule_files": ["rules.yml"],
        "evaluation_interval": prom_duration(stack.prometheus.evaluation_interval),
        "tests": groups,
    }


def promtool_test(stack: Stack, tests: dict[str, Any], tmp_path: Path
                  ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules.build(stack), sort_keys=False))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=10**6))
    return run(PROMTOOL, "test", "rules", "tests.yml", cwd=tmp_path)


def test_generated_rule_tests_pass(any_stack: Stack, scrape: Scrape, tmp_path: Path) -> None:
    tests = rule_tests(any_stack, scrape)
    result = promtool_test(any_stack, tests, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = {t["alertname"] for g in tests["tests"] for t in g["alert_rule_test"]}
    assert tested == set(rules.ALERT_NAMES), "every alert is exercised"
    fired = {t["alertname"] for g in tests["tests"] for t in g["alert_rule_test"]
             if t["exp_alerts"]}
    assert fired == set(rules.ALERT_NAMES), "every alert is shown to fire"


def _find(tests: dict[str, Any], alert: str, firing: bool) -> dict[str, Any]:
    for group in tests["tests"]:
        for check in group["alert_rule_test"]:
            if check["alertname"] == alert and bool(check["exp_alerts"]) == firing:
                return check  # type: ignore[no-any-return]
    raise AssertionError(f"no {'firing' if firing else 'silent'} check of {alert}")


def _firing_while_pending(stack: Stack, tests: dict[str, Any]) -> str:
    """Expect ProviderDown one step before its `for` is over."""
    fires = _find(tests, rules.PROVIDER_DOWN, firing=True)
    step = stack.prometheus.evaluation_interval
    for group in tests["tests"]:
        for check in group["alert_rule_test"]:
            if check is not fires and check["alertname"] == rules.PROVIDER_DOWN and \
                    check["eval_time"] == prom_duration(_seconds(fires["eval_time"]) - step):
                check["exp_alerts"] = fires["exp_alerts"]
                return rules.PROVIDER_DOWN
    raise AssertionError("no check one step before ProviderDown fires")


def _alert_at_exactly_n(stack: Stack, tests: dict[str, Any]) -> str:
    """Expect HighFallbackRate with exactly N events in the hour."""
    fires = _find(tests, rules.HIGH_FALLBACK_RATE, firing=True)
    group = _group(tests, "HighFallbackRate")
    for check in group["alert_rule_test"]:
        if check["eval_time"] == prom_duration(_seconds(fires["eval_time"])
                                               - stack.prometheus.evaluation_interval):
            check["exp_alerts"] = fires["exp_alerts"]
            return rules.HIGH_FALLBACK_RATE
    raise AssertionError("no check at exactly N")


def _silent_budget_at_level(stack: Stack, tests: dict[str, Any]) -> str:
    """Expect no BudgetCritical exactly at the critical level."""
    group = _group(tests, "Budget levels and kill switch")
    for check in group["alert_rule_test"]:
        if check["alertname"] == rules.BUDGET_CRITICAL and check["exp_alerts"]:
            check["exp_alerts"] = []
            return rules.BUDGET_CRITICAL
    raise AssertionError("BudgetCritical never fires")


def _group(tests: dict[str, Any], name: str) -> dict[str, Any]:
    groups = [g for g in tests["tests"] if g["name"] == name]
    assert len(groups) == 1
    return dict(groups[0])


def _seconds(duration: str) -> float:
    return parse_duration(duration)


@pytest.mark.parametrize("break_it", [_firing_while_pending, _alert_at_exactly_n,
                                      _silent_budget_at_level])
def test_a_wrong_expectation_makes_promtool_fail(
        stack: Stack, scrape: Scrape, tmp_path: Path,
        break_it: Callable[[Stack, dict[str, Any]], str]) -> None:
    tests = rule_tests(stack, scrape)
    alert = break_it(stack, tests)
    result = promtool_test(stack, tests, tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert f"alertname: {alert}," in result.stdout + result.stderr


def test_the_runbook_expression_would_fire_at_exactly_n(stack: Stack, scrape: Scrape,
                                                        tmp_path: Path) -> None:
    """Evidence for the floor: with the runbook's bare comparison the offset case fires."""
    n = stack.alerts.high_fallback_rate_per_hour
    result = promtool_with_expr(stack, rules.HIGH_FALLBACK_RATE, f"{RAW_FALLBACK_SUM} > {n}",
                                fallback_offset_scenario(stack, scrape), tmp_path)
    assert result.returncode != 0
    assert f"alertname: {rules.HIGH_FALLBACK_RATE}," in result.stdout + result.stderr


def promtool_with_expr(stack: Stack, alert: str, expr: str, scenario: dict[str, Any],
                       tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of one scenario against the rules with ``alert``'s expression
    replaced by ``expr`` (the evidence that a generated test catches that expression)."""
    data = rules.build(stack)
    for rule in data["groups"][0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = expr
    tests = {"rule_files": ["rules.yml"],
             "evaluation_interval": prom_duration(stack.prometheus.evaluation_interval),
             "tests": [scenario]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=10**6))
    return run(PROMTOOL, "test", "rules", "tests.yml", cwd=tmp_path)


# --------------------------------------------------------------------------- the exporter


def test_the_old_all_providers_down_never_fires_on_the_real_series(
        stack: Stack, scrape: Scrape, tmp_path: Path) -> None:
    """Evidence for item 10: ``sum(provider_health_status) == 0`` counts the proxy's series
    and stays silent with every provider down; with the exporter's real series the generated
    test catches it."""
    result = promtool_with_expr(stack, rules.ALL_PROVIDERS_DOWN,
                                f"sum({metrics.HEALTH.name}) == 0",
                                provider_scenario(stack, scrape), tmp_path)
    assert result.returncode != 0
    assert f"alertname: {rules.ALL_PROVIDERS_DOWN}," in result.stdout + result.stderr


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_every_rule_reads_series_and_labels_the_exporter_serves(stack: Stack,
                                                               scrape: Scrape) -> None:
    """Each selector of each rule names a metric the live exporter serves (or Prometheus'
    own ``up``), and each label it matches on is a label of that metric's real series."""
    exact = (promql_parser.MatchOp.Equal, promql_parser.MatchOp.NotEqual)
    for rule in rule_list(stack):
        for selector in _selectors(rule["expr"]):
            if selector.name == rules.UP:
                continue
            assert selector.name is not None
            real = scrape.label_sets(selector.name)
            for matcher in selector.matchers.matchers:
                assert any(matcher.name in labels for labels in real), (
                    f"{rule['alert']}: {selector.name} has no label {matcher.name!r}")
                values = {labels[matcher.name] for labels in real}
                if matcher.op in exact:
                    assert matcher.value in values, (
                        f"{rule['alert']}: no {selector.name} series has "
                        f"{matcher.name}={matcher.value!r} (served: {sorted(values)})")


def test_every_input_series_is_a_scraped_series(stack: Stack, scrape: Scrape) -> None:
    """The generated tests hold no hand-made label set: each input series but ``up`` was
    served by the live exporter (Scenario.add_series refuses others; this shows it is so)."""
    checked = 0
    for group in rule_tests(stack, scrape)["tests"]:
        for item in group["input_series"]:
            selector = promql_parser.parse(item["series"])
            assert isinstance(selector, promql_parser.VectorSelector)
            if selector.name == rules.UP:
                continue
            labels = {m.name: m.value for m in selector.matchers.matchers}
            assert selector.name is not None
            assert scrape.has(selector.name, labels), item["series"]
            checked += 1
    assert checked >= 10
