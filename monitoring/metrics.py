"""Every metric name the bundle exports or reads, defined once.

The watchdog's exporter builds its prometheus_client objects from these specs; the alert
rules, the Grafana dashboard and the tests import the same names, so a rename cannot leave a
rule or a panel pointing at nothing. The first three are the runbook's own (section 8.1); the
exporter runs on ``watchdog.listen`` from stack.yaml, never on Prometheus' 9090.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricSpec:
    """Name, type, help text and label names of one metric family."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()

    def series(self, suffix: str = "") -> str:
        """A series name of this family, e.g. ``LATENCY.series("_bucket")``."""
        return self.name + suffix


#: The ``provider`` label value of the proxy's own series of the per-route metrics
#: (provider_health_status and friends): the proxy is a route, but not a provider.
PROXY_ROUTE = "litellm"

# --- the runbook's (8.1) -------------------------------------------------------------------
FALLBACK_EVENTS = MetricSpec(
    "provider_fallback_events_total", "counter", "Total number of fallback events",
    ("from_provider", "to_provider", "reason"))
HEALTH = MetricSpec(
    "provider_health_status", "gauge",
    "Health status of each provider (1=healthy, 0=unhealthy)", ("provider",))
LATENCY = MetricSpec(
    "provider_request_latency_seconds", "histogram", "Request latency by provider",
    ("provider",))

# --- the watchdog's own ----------------------------------------------------------------------
ACTIVE_TARGET = MetricSpec(
    "provider_active_target", "gauge",
    "1 for the target the agents are switched to now, 0 for the others", ("target",))
CIRCUIT_STATE = MetricSpec(
    "provider_circuit_state", "gauge",
    "Circuit of each route: 0 healthy, 1 suspect, 2 failed (fallback active), 3 half-open",
    ("provider",))
PROXY_RESTARTS = MetricSpec(
    "provider_proxy_restarts_total", "counter", "Restarts of the LiteLLM proxy by the watchdog")
PROXY_CRASH_LOOP = MetricSpec(
    "provider_proxy_crash_loop", "gauge",
    "1 when proxy restarts hit the hourly cap and the watchdog stopped restarting it")
LAST_SUCCESS = MetricSpec(
    "provider_last_success_timestamp_seconds", "gauge",
    "Unix time of the last successful probe of each provider", ("provider",))

# --- budget and degraded mode (runbook phases 7 and 9) ---------------------------------------
SPEND = MetricSpec(
    "provider_month_spend_usd", "gauge", "Spend this calendar month by provider, USD",
    ("provider",))
BUDGET_USED_RATIO = MetricSpec(
    "provider_budget_used_ratio", "gauge",
    "Spend this calendar month divided by the monthly budget (1 = budget used up)")
BUDGET_PROJECTED = MetricSpec(
    "provider_budget_projected_usd", "gauge",
    "Month-end spend projected from this month's burn rate, USD")
BUDGET_LIMIT = MetricSpec("provider_budget_limit_usd", "gauge", "The monthly budget, USD")
KILL_SWITCH = MetricSpec(
    "provider_kill_switch_active", "gauge",
    "1 while the budget kill switch restricts requests to free providers")
DEGRADED_MODE = MetricSpec(
    "provider_degraded_mode", "gauge",
    "1 while every provider fails and cached answers are served")
STALE_ANSWERS = MetricSpec(
    "provider_stale_answers_total", "counter",
    "Answers served from the degraded-mode cache instead of a provider")

WATCHDOG_METRICS: tuple[MetricSpec, ...] = (
    FALLBACK_EVENTS, HEALTH, LATENCY, ACTIVE_TARGET, CIRCUIT_STATE, PROXY_RESTARTS,
    PROXY_CRASH_LOOP, LAST_SUCCESS, SPEND, BUDGET_USED_RATIO, BUDGET_PROJECTED, BUDGET_LIMIT,
    KILL_SWITCH, DEGRADED_MODE, STALE_ANSWERS,
)

# --- LiteLLM's, read by the dashboard and the watchdog (callbacks: ["prometheus"]) -----------
LITELLM_DEPLOYMENT_STATE = "litellm_deployment_state"  # 0 healthy, 1 partial, 2 outage
LITELLM_REQUESTS = "litellm_proxy_total_requests_metric_total"
LITELLM_FAILURES = "litellm_deployment_failure_responses_total"
LITELLM_SUCCESSES = "litellm_deployment_success_responses_total"
LITELLM_SUCCESSFUL_FALLBACKS = "litellm_deployment_successful_fallbacks_total"
LITELLM_FAILED_FALLBACKS = "litellm_deployment_failed_fallbacks_total"
LITELLM_COOLED_DOWN = "litellm_deployment_cooled_down_total"
LITELLM_LATENCY = "litellm_request_total_latency_metric"  # histogram
#: HTTP requests the proxy is serving now (1.108.7: proxy-wide, unlabelled, the reader included).
LITELLM_IN_FLIGHT = "litellm_in_flight_requests"

LITELLM_METRICS: tuple[str, ...] = (
    LITELLM_DEPLOYMENT_STATE, LITELLM_REQUESTS, LITELLM_FAILURES, LITELLM_SUCCESSES,
    LITELLM_SUCCESSFUL_FALLBACKS,
    LITELLM_FAILED_FALLBACKS, LITELLM_COOLED_DOWN, LITELLM_LATENCY,
)

# --- Prometheus scrape jobs ------------------------------------------------------------------
JOB_WATCHDOG = "provider-fallback-watchdog"
JOB_LITELLM = "litellm"
JOB_PROMETHEUS = "prometheus"
JOB_ALERTMANAGER = "alertmanager"
SCRAPE_JOBS: tuple[str, ...] = (JOB_WATCHDOG, JOB_LITELLM, JOB_PROMETHEUS, JOB_ALERTMANAGER)

#: LiteLLM serves /metrics as a 307 to /metrics/; scraping the final path saves a round trip.
LITELLM_METRICS_PATH = "/metrics/"
