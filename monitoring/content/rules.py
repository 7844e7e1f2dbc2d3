"""The Prometheus alert rules (runbook 8.3, extended to phases 5, 7 and 9), as data.

Every threshold comes from stack.yaml (``alerts`` and ``budget.levels_percent``) and every
metric and job name from :mod:`monitoring.metrics`, so the rules cannot drift from what the
watchdog exports. The rules are dumped to YAML by Python, never passed through Jinja: the
``{{ $labels.provider }}`` and ``{{ $value }}`` below are Prometheus' own templates and reach
the file byte for byte.

Counting alerts use ``floor(increase(...))``: ``increase()`` extrapolates to the edges of its
window, so exactly 5 fallback events in an hour read as about 5.04 whenever scrapes and rule
evaluations are not aligned, and a bare ``> 5`` would fire on 5. The floor is the number of
events Prometheus actually saw inside the window, which is what "more than N" means.

``annotations.runbook`` names the phase of seed/provider-fallback-workflow.md to follow.
"""

from __future__ import annotations

from typing import Any

from monitoring import metrics
from monitoring.stack.schema import Stack, prom_duration

GROUP = "provider_fallback"

PROVIDER_DOWN = "ProviderDown"
HIGH_FALLBACK_RATE = "HighFallbackRate"
ALL_PROVIDERS_DOWN = "AllProvidersDown"
WATCHDOG_DOWN = "WatchdogDown"
PROXY_RESTART_LOOP = "ProxyRestartLoop"
BUDGET_WARNING = "BudgetWarning"
BUDGET_CRITICAL = "BudgetCritical"
BUDGET_EXCEEDED = "BudgetExceeded"
KILL_SWITCH_ACTIVE = "KillSwitchActive"
PROJECTED_OVERSPEND = "BudgetProjectedOverspend"
DEGRADED_MODE = "DegradedMode"

ALERT_NAMES: tuple[str, ...] = (
    PROVIDER_DOWN, HIGH_FALLBACK_RATE, ALL_PROVIDERS_DOWN, WATCHDOG_DOWN, PROXY_RESTART_LOOP,
    BUDGET_WARNING, BUDGET_CRITICAL, BUDGET_EXCEEDED, KILL_SWITCH_ACTIVE, PROJECTED_OVERSPEND,
    DEGRADED_MODE,
)

CRITICAL = "critical"
WARNING = "warning"

#: The window of HighFallbackRate: the runbook's "fallback events in the last hour", and the
#: unit of ``alerts.high_fallback_rate_per_hour``.
FALLBACK_RATE_WINDOW = 3600.0

#: Prometheus' own per-target series (1 scraped, 0 failed); not an exporter metric, so it is
#: not in :mod:`monitoring.metrics`.
UP = "up"

# Runbook phases named by the ``runbook`` annotation.
_RUNBOOK_DIAGNOSIS = "Phase 2: Diagnosis (classify the error as in Step 1.2, then 2A-2F)"
_RUNBOOK_RESTORE = "Phase 4: Primary Restoration (fix the cause, test, switch back)"
_RUNBOOK_MONITORING = "Phase 5.1: Implement Monitoring (the watchdog is the monitor)"
_RUNBOOK_RECOVERY = "Phase 5.2: Add Auto-Recovery / 7.2 P1: restart the LiteLLM service"
_RUNBOOK_EMERGENCY = "Phase 7.1: Immediate Fallback (All Providers Failing)"
_RUNBOOK_COST = "Phase 9.1: Daily Cost Check"
_RUNBOOK_KILL_SWITCH = "Phase 9.3: Budget Kill-Switch"


def number(value: float) -> str:
    """A PromQL number that parses back to exactly ``value`` (``1.0`` is written ``1``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def human_duration(seconds: float) -> str:
    """``60`` -> ``1 minute``, ``30`` -> ``30 seconds``: the runbook's wording for a ``for``."""
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return prom_duration(seconds)


def _label_value(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule(alert: str, expr: str, for_: float | None, severity: str, summary: str,
          description: str, runbook: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": alert, "expr": expr}
    if for_ is not None:
        rule["for"] = prom_duration(for_)
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description, "runbook": runbook}
    return rule


def budget_ratio(percent: float) -> float:
    """The used-ratio threshold for a level given in percent of the monthly budget."""
    return percent / 100


def build(stack: Stack) -> dict[str, Any]:
    """The rule file: one group, ``provider_fallback``, with every alert of the bundle."""
    alerts = stack.alerts
    budget = stack.budget
    levels = budget.levels_percent
    health = metrics.HEALTH.name
    watchdog_up = f"{UP}{{job={_label_value(metrics.JOB_WATCHDOG)}}}"
    loop = alerts.restart_loop

    def budget_rule(alert: str, percent: float, status: str, severity: str, description: str,
                    runbook: str) -> dict[str, Any]:
        return _rule(
            alert, f"{metrics.BUDGET_USED_RATIO.name} >= {number(budget_ratio(percent))}", None,
            severity,
            f"Budget {status}: {{{{ $value | humanizePercentage }}}} of the monthly budget used",
            description, runbook)

    rules = [
        # Runbook 8.3, its wording kept; the duration follows alerts.provider_down_for.
        _rule(PROVIDER_DOWN, f"{health} == 0", alerts.provider_down_for, CRITICAL,
              "Provider {{ $labels.provider }} is down",
              f"Provider has been unhealthy for more than "
              f"{human_duration(alerts.provider_down_for)}",
              _RUNBOOK_DIAGNOSIS),
        # Runbook 8.3 counts per label set (from, to, reason); the stack's threshold is for all
        # fallbacks together, so they are summed before the comparison.
        _rule(HIGH_FALLBACK_RATE,
              f"floor(sum(increase({metrics.FALLBACK_EVENTS.name}"
              f"[{prom_duration(FALLBACK_RATE_WINDOW)}]))) > "
              f"{alerts.high_fallback_rate_per_hour}",
              None, WARNING, "High fallback rate detected",
              "{{ $value }} fallback events in the last hour", _RUNBOOK_RESTORE),
        # The proxy's own series (provider="litellm") is not a provider: counting it, the
        # sum stayed 1 while every provider was down (issue 11, item 10).
        _rule(ALL_PROVIDERS_DOWN,
              f"sum({health}{{provider!={_label_value(metrics.PROXY_ROUTE)}}}) == 0",
              alerts.all_providers_down_for, CRITICAL,
              "All providers are down", "No healthy providers available", _RUNBOOK_EMERGENCY),
        # Without the watchdog's exporter every other alert here goes silent (its series go
        # stale), so its absence is an alert of its own: a failed scrape (up == 0) or no
        # target at all (absent).
        _rule(WATCHDOG_DOWN, f"{watchdog_up} == 0 or absent({watchdog_up})",
              alerts.watchdog_down_for, CRITICAL,
              "The provider-fallback watchdog is down",
              f"Prometheus has not scraped the watchdog's exporter for "
              f"{human_duration(alerts.watchdog_down_for)}: no provider, failover or budget "
              "alert can fire, and nothing fails over or restarts the proxy",
              _RUNBOOK_MONITORING),
        # Both sides carry the same labels (job, instance), so `or` yields one alert, not two.
        _rule(PROXY_RESTART_LOOP,
              f"floor(increase({metrics.PROXY_RESTARTS.name}[{prom_duration(loop.window)}]))"
              f" > {loop.restarts} or {metrics.PROXY_CRASH_LOOP.name} == 1",
              None, CRITICAL, "The LiteLLM proxy is in a restart loop",
              f"More than {loop.restarts} proxy restarts within {human_duration(loop.window)}"
              " (value: {{ $value }}), or the watchdog hit its restart cap and stopped"
              " restarting the proxy (value 1)",
              _RUNBOOK_RECOVERY),
        # Runbook 9.1 statuses WARNING / CRITICAL / EXCEEDED at budget.levels_percent;
        # Alertmanager's inhibit rules keep only the highest one that fires. The rules read
        # the used RATIO, so the monthly amount is not in them: changing it touches only the
        # watchdog's config, and Prometheus needs no reload.
        budget_rule(BUDGET_WARNING, levels.warning, "WARNING", WARNING,
                    f"Spend this month reached {levels.warning:g}% of the monthly budget",
                    _RUNBOOK_COST),
        budget_rule(BUDGET_CRITICAL, levels.critical, "CRITICAL", CRITICAL,
                    f"Spend this month reached {levels.critical:g}% of the monthly budget",
                    _RUNBOOK_COST),
        budget_rule(BUDGET_EXCEEDED, levels.exceeded, "EXCEEDED", CRITICAL,
                    "KILL-SWITCH: Budget exceeded, switching to free providers only",
                    _RUNBOOK_KILL_SWITCH),
        _rule(KILL_SWITCH_ACTIVE, f"{metrics.KILL_SWITCH.name} == 1", None, WARNING,
              "Kill-switch activated! Only free providers available.",
              f"Allowed providers: {', '.join(budget.free_allow_list)}",
              _RUNBOOK_KILL_SWITCH),
        # The month-end projection from the burn rate (9.1) passes the budget: a warning
        # while there is still time to slow down. The watchdog's projection counts at least
        # one day of the month, so the first requests of a month cannot fire it alone.
        _rule(PROJECTED_OVERSPEND,
              f"{metrics.BUDGET_PROJECTED.name} > {metrics.BUDGET_LIMIT.name}", None, WARNING,
              "Projected month-end spend of {{ $value }} USD is over the budget",
              "At this month's burn rate the monthly budget runs out before the month ends",
              _RUNBOOK_COST),
        # Degraded mode (7.1): every provider failed; the proxy answers repeated prompts from
        # its cache (stale) and every other request with a 503.
        _rule(DEGRADED_MODE, f"{metrics.DEGRADED_MODE.name} == 1", None, CRITICAL,
              "Degraded mode: every provider failed, only cached answers are served",
              "Repeated prompts get stale answers from the degraded cache; new prompts get "
              "503 until a provider recovers", _RUNBOOK_EMERGENCY),
    ]
    return {"groups": [{"name": GROUP, "rules": rules}]}
