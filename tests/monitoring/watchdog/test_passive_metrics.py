"""The passive reader of LiteLLM's /metrics: what 1.108.7 really writes (label sets as scraped
from the pinned proxy in front of the fake upstreams, ids shortened)."""

from __future__ import annotations

from typing import Any

from monitoring.watchdog.probes import COOLDOWN_STATUS, USER_AGENT, _by_group, parse_litellm_metrics

ALIASES = ["groq-70b", "groq-8b", "openrouter-free"]
UPSTREAM = {"groq-70b": "openai/llama-3.3-70b-versatile",
            "groq-8b": "openai/llama-3.1-8b-instant",
            "openrouter-free": "openai/meta-llama/llama-3.3-70b-instruct:free"}


def _series(name: str, value: float, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value}\n"


def _common(user_agent: str, group: str, model: str, model_id: str) -> dict[str, str]:
    return {"api_base": "http://127.0.0.1:1/v1", "api_key_alias": "None",
            "api_provider": "openai", "client_ip": "127.0.0.1",
            "hashed_api_key": "litellm_proxy_master_key", "litellm_model_name": model,
            "model_group": group, "model_id": model_id, "requested_model": group,
            "team": "None", "team_alias": "None", "user_agent": user_agent}


def exposition() -> str:
    agent = _common("python-httpx/0.28.1", "groq-70b", "llama-3.3-70b-versatile", "e7e4")
    canary = _common(USER_AGENT, "openrouter-free", "meta-llama/llama-3.3-70b-instruct:free",
                     "b54e")
    cooled = {**agent, "litellm_model_name": "", "model_id": "", "api_base": "",
              "api_provider": ""}
    failures = "litellm_deployment_failure_responses_total"
    successes = "litellm_deployment_success_responses_total"
    return (
        "# HELP litellm_deployment_failure_responses_total x\n"
        f"# TYPE {failures} counter\n"
        + _series(failures, 3.0, **agent, exception_class="Openai.ServiceUnavailableError",
                  exception_status="503")
        + _series(failures, 5.0, **cooled, exception_class="RouterRateLimitError",
                  exception_status="429")
        + _series(failures, 4.0, **canary, exception_class="Openai.ServiceUnavailableError",
                  exception_status="503")
        + "# HELP litellm_deployment_success_responses_total x\n"
        f"# TYPE {successes} counter\n"
        + _series(successes, 7.0, **agent)
        + _series(successes, 2.0, **canary)
        + "# HELP litellm_in_flight_requests x\n# TYPE litellm_in_flight_requests gauge\n"
        "litellm_in_flight_requests 4.0\n")


def test_the_watchdogs_own_canaries_are_not_counted_as_traffic() -> None:
    snap = parse_litellm_metrics(exposition(), ALIASES, UPSTREAM)
    assert _by_group(snap.successes) == {"groq-70b": 7.0}
    assert ("openrouter-free", "503") not in _by_group(snap.failures)


def test_litellms_cooldown_refusals_are_not_the_upstreams_status() -> None:
    snap = parse_litellm_metrics(exposition(), ALIASES, UPSTREAM)
    assert _by_group(snap.failures) == {("groq-70b", "503"): 3.0,
                                        ("groq-70b", COOLDOWN_STATUS): 5.0}


def test_requests_in_flight_leave_out_the_reading_request() -> None:
    assert parse_litellm_metrics(exposition(), ALIASES, UPSTREAM).in_flight == 3.0
    assert parse_litellm_metrics("", ALIASES, UPSTREAM).in_flight is None


def test_a_series_litellm_drops_is_not_a_counter_reset() -> None:
    """1.108.7 can drop idle series: the sum of a group's failures then goes DOWN, which a
    per-group reading would take for a proxy restart and count in full as new failures."""
    from monitoring.watchdog.probes import _judge_metrics

    before = parse_litellm_metrics(exposition(), ALIASES, UPSTREAM)
    text = "\n".join(line for line in exposition().splitlines()
                     if "RouterRateLimitError" not in line) + "\n"
    after = parse_litellm_metrics(text, ALIASES, UPSTREAM)
    detail: dict[str, Any] = dict(_judge_metrics(after, before, 0.01).detail)
    assert detail["failures"] == {}
    assert detail["by_group"] == {}
