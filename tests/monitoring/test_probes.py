"""The probes against the real proxy and the fake upstreams (loopback only).

Every probe runs inside ``asyncio.run`` with its own Prober, the way the watchdog's loop owns
one client. The upstream fakes record what reached them, which proves what a probe sent (or
did not send: a disabled completion probe, a key that is not set).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pytest

from monitoring.classify import ErrorClass, diagnose, redact
from monitoring.layout import layout
from monitoring.probes import (
    PROXY_ROUTE,
    ProbeKind,
    Prober,
    ProbeResult,
    parse_litellm_metrics,
)
from monitoring.stack import Stack
from monitoring.watchdog_config import WatchdogConfig
from tasks.render import watchdog as render_watchdog
from tests.monitoring.conftest import PROBE_TIMEOUT_S, LiveStack
from tests.support.litellm_proxy import free_port

T = TypeVar("T")

pytestmark = pytest.mark.live


def run(live: LiveStack, probe: Callable[[Prober], Awaitable[T]], *,
        env: Mapping[str, str] | None = None, config: WatchdogConfig | None = None,
        **kwargs: Any) -> T:
    """Run one probe with a fresh Prober (and client) on a fresh event loop."""
    async def go() -> T:
        async with Prober.from_config(config or live.config, env=live.env if env is None
                                      else env, **kwargs) as prober:
            return await probe(prober)
    return asyncio.run(go())


def assert_no_secret(result: ProbeResult, *secrets: str) -> None:
    text = repr(result)
    for secret in secrets:
        assert secret not in text
    assert redact(text) == text, "something key-shaped is in the result"


def test_the_proxy_target_is_gated_by_the_proxy_route(stack: Stack) -> None:
    config = render_watchdog.build(stack, layout(stack, "linux"))
    assert config.targets[0].route == PROXY_ROUTE


# --------------------------------------------------------------------------- the proxy


def test_liveness_and_models_pass_on_the_real_proxy(live: LiveStack) -> None:
    alive = run(live, Prober.liveness)
    assert (alive.route, alive.kind, alive.ok, alive.status) == (PROXY_ROUTE, "liveness", True,
                                                                  200)
    assert alive.error_class is None
    assert alive.latency_s < PROBE_TIMEOUT_S
    models = run(live, Prober.proxy_models)
    assert models.ok, models.message
    assert models.detail["served"] == sorted(live.stack.litellm.models)
    # /v1/models never calls an upstream.
    assert all(up.requests == [] for up in live.upstreams.values())
    assert_no_secret(models, *live.secret_values())


def test_a_wrong_master_key_is_auth(live: LiveStack) -> None:
    wrong = "sk-" + "0f" * 20
    result = run(live, Prober.proxy_models,
                 env={**live.env, "LITELLM_MASTER_KEY": wrong})
    # LiteLLM answers 400 "No connected db." (it looks the key up in a database it lacks).
    assert (result.ok, result.status, result.error_class) == (False, 400, ErrorClass.AUTH)
    assert "master key" in result.message
    assert_no_secret(result, wrong, *live.secret_values())


def test_an_unset_master_key_is_auth_without_a_request(live: LiveStack) -> None:
    env = {k: v for k, v in live.env.items() if k != "LITELLM_MASTER_KEY"}
    result = run(live, Prober.proxy_models, env=env)
    assert (result.ok, result.status, result.error_class) == (False, None, ErrorClass.AUTH)
    assert result.message == "LITELLM_MASTER_KEY is not set"


def test_models_that_differ_from_the_stack_are_config(live: LiveStack) -> None:
    proxy = live.config.proxy.model_copy(update={"models": [*live.config.proxy.models,
                                                            "groq-405b"]})
    result = run(live, Prober.proxy_models, config=live.config.model_copy(update={"proxy": proxy}))
    assert (result.ok, result.error_class) == (False, ErrorClass.CONFIG)
    assert result.detail["missing"] == ["groq-405b"]
    assert "missing groq-405b" in result.message


def test_a_stopped_proxy_fails_liveness_and_models_as_network(live: LiveStack) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    config = live.config.model_copy(update={
        "proxy": live.config.proxy.model_copy(update={"url": gone})})

    async def both(prober: Prober) -> list[ProbeResult]:
        return [await prober.liveness(), await prober.proxy_models()]

    for result in run(live, both, config=config):
        assert (result.ok, result.status, result.error_class) == (False, None,
                                                                   ErrorClass.NETWORK)
        assert result.message == "connection refused"
    prober = Prober.from_config(config, env=live.env)
    d = diagnose(ErrorClass.NETWORK, prober.diagnosis_inputs(result))
    assert d.checks[0].ok is False
    assert "nothing listens" in d.summary


# --------------------------------------------------------------------------- providers


def test_every_provider_answers_directly_with_its_key(live: LiveStack) -> None:
    results = run(live, Prober.all_providers)
    assert [r.route for r in results] == [p.name for p in live.config.providers]
    assert all(r.ok and r.kind is ProbeKind.PROVIDER for r in results), results
    groq = live.upstream("groq").requests
    assert [(r.method, r.path, r.authorized) for r in groq] == [("GET", "/v1/models", True)]


@pytest.mark.parametrize("how", ["fault", "wrong key"])
def test_a_rejected_provider_key_is_auth(live: LiveStack, how: str) -> None:
    wrong = "gsk_" + "9e" * 22
    env = dict(live.env)
    if how == "fault":
        live.upstream("groq").set_fault(401)
    else:
        env["GROQ_API_KEY"] = wrong  # the fake echoes it back, as OpenAI does
    result = run(live, lambda p: p.provider("groq"), env=env)
    assert (result.route, result.ok, result.status, result.error_class) == (
        "groq", False, 401, ErrorClass.AUTH)
    assert result.detail["key_present"] is True
    assert_no_secret(result, wrong, *live.secret_values())
    prober = Prober.from_config(live.config, env=env)
    d = diagnose(ErrorClass.AUTH, prober.diagnosis_inputs(result, provider_ok=False))
    assert [c.ok for c in d.checks] == [True, False]
    assert "groq rejects the key in GROQ_API_KEY" in d.summary


def test_an_unset_provider_key_is_auth_and_nothing_is_sent(live: LiveStack) -> None:
    env = {k: v for k, v in live.env.items() if k != "OPENROUTER_API_KEY"}
    result = run(live, lambda p: p.provider("openrouter"), env=env)
    assert (result.ok, result.error_class) == (False, ErrorClass.AUTH)
    assert result.message == "OPENROUTER_API_KEY is not set"
    assert live.upstream("openrouter").requests == []


def test_a_hanging_provider_times_out_within_the_probe_timeout(live: LiveStack) -> None:
    live.upstream("groq").set_fault("hang")
    started = time.monotonic()
    result = run(live, lambda p: p.provider("groq"))
    took = time.monotonic() - started
    assert (result.ok, result.error_class) == (False, ErrorClass.TIMEOUT)
    assert PROBE_TIMEOUT_S <= result.latency_s < PROBE_TIMEOUT_S + 0.3
    assert took < PROBE_TIMEOUT_S + 0.5
    assert result.message == f"no answer within {PROBE_TIMEOUT_S:g} s"
    assert len(live.upstream("groq").requests) == 1  # one attempt: no retries in a probe


def test_a_refused_provider_is_network(live: LiveStack) -> None:
    live.upstream("openrouter").set_fault("refused")
    result = run(live, lambda p: p.provider("openrouter"))
    assert (result.ok, result.status, result.error_class) == (False, None, ErrorClass.NETWORK)
    assert result.latency_s < 0.5


def test_a_rate_limited_provider_is_rate_with_its_retry_after(live: LiveStack) -> None:
    live.upstream("groq").set_fault(429, retry_after=9, paths=("/models",))
    result = run(live, lambda p: p.provider("groq"))
    assert (result.error_class, result.retry_after_s) == (ErrorClass.RATE, 9)


def test_a_provider_that_dropped_a_model_is_config(live: LiveStack) -> None:
    groq = live.upstream("groq")
    offered = groq.models
    groq.models = ("llama-3.3-70b-versatile",)
    try:
        result = run(live, lambda p: p.provider("groq"))
    finally:
        groq.models = offered
    assert (result.ok, result.status, result.error_class) == (False, 200, ErrorClass.CONFIG)
    assert result.detail["missing"] == ["groq-8b"]
    assert "llama-3.1-8b-instant" in result.message


# --------------------------------------------------------------------------- passive health


def _wait_for(predicate: Callable[[], bool], deadline_s: float) -> None:
    """Poll with a deadline (the proxy's cooldown ends on its own clock)."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.1)


def test_metrics_report_failures_and_recovery_between_reads(live: LiveStack) -> None:
    # A cooldown test may have left gpt-4 in outage: it clears on gpt-4's next success.
    def gpt4_answers_itself() -> bool:
        live.upstream("openai").clear_requests()
        served = live.chat("gpt-4").status_code == 200
        return served and [r.model for r in live.upstream("openai").requests] == ["gpt-4"]

    _wait_for(gpt4_answers_itself, 30)

    async def read_until(prober: Prober, done: Callable[[list[ProbeResult]], bool],
                         deadline_s: float = 30) -> list[ProbeResult]:
        """LiteLLM updates /metrics in callbacks AFTER it replied: poll with a deadline (30 s:
        with the 2 cores saturated its callbacks lagged past 10 s, issue 13 item 8)."""
        reads = [await prober.litellm_metrics()]
        deadline = time.monotonic() + deadline_s
        while not done(reads):
            assert time.monotonic() < deadline, reads
            await asyncio.sleep(0.1)
            reads.append(await prober.litellm_metrics())
        return reads

    def failed(r: ProbeResult) -> bool:
        return "groq-70b/500" in r.detail["failures"]

    async def scenario(prober: Prober) -> list[list[ProbeResult]]:
        first = await prober.litellm_metrics()
        for up in (live.upstream("groq"), live.upstream("openrouter")):
            up.set_fault(500)
        assert (await asyncio.to_thread(live.chat, "groq-70b")).status_code == 500
        failing = await read_until(prober, lambda rs: any(map(failed, rs)) and any(
            r.detail["failed_fallbacks"] for r in rs))
        for up in (live.upstream("groq"), live.upstream("openrouter")):
            up.clear_fault()
        assert (await asyncio.to_thread(live.chat, "groq-70b")).status_code == 200
        # Recovered: the state is back to healthy, the success was counted, and a read shows
        # nothing failing (a straggling failure callback may land in the first read after).
        recovered = await read_until(prober, lambda rs: rs[-1].ok
                                     and rs[-1].detail["states"]["groq-70b"] == 0
                                     and any(r.detail["successes"].get("groq-70b") for r in rs))
        return [[first], failing, recovered]

    [first], failing, recovered = run(live, scenario)
    assert first.ok
    assert first.detail["baseline"] is True
    assert first.detail["failures"] == {}
    second = next(r for r in failing if failed(r))
    assert (second.ok, second.error_class) == (False, ErrorClass.SERVER)
    assert second.detail["states"]["groq-70b"] == 1  # partial outage, as LiteLLM sets it
    assert "failures" in second.message
    assert recovered[-1].ok
    assert recovered[-1].error_class is None
    assert_no_secret(second, *live.secret_values())


def test_metrics_state_prefers_the_series_litellm_resets() -> None:
    text = "\n".join([
        "# TYPE litellm_deployment_state gauge",
        'litellm_deployment_state{api_base="b",api_provider="openai",'
        'litellm_model_name="llama-3.3-70b-versatile",model_id="aa"} 0.0',
        # Set to 2 by the cooldown callback under the alias; never reset by a success.
        'litellm_deployment_state{api_base="b",api_provider="openai",'
        'litellm_model_name="groq-70b",model_id="aa"} 2.0',
        'litellm_deployment_state{api_base="b",api_provider="openai",'
        'litellm_model_name="gpt-4",model_id="cc"} 2.0',
        "# TYPE litellm_deployment_cooled_down counter",
        'litellm_deployment_cooled_down_total{api_base="b",api_provider="openai",'
        'exception_status="500",litellm_model_name="groq-70b",model_id="aa"} 3.0',
    ])
    snap = parse_litellm_metrics(text, ["groq-70b", "gpt-4"],
                                 {"groq-70b": "llama-3.3-70b-versatile", "gpt-4": "gpt-4"})
    assert snap.states == {"groq-70b": 0, "gpt-4": 2}
    assert snap.cooled_down == {"groq-70b": 3.0}


# --------------------------------------------------------------------------- completion


def test_the_completion_probe_runs_only_when_enabled_and_skips_the_cache(
        live: LiveStack) -> None:
    assert run(live, Prober.completion) is None
    assert all(up.requests == [] for up in live.upstreams.values())

    enabled = live.config.model_copy(update={
        "probes": live.config.probes.model_copy(update={"completion_enabled": True})})
    ok = run(live, Prober.completion, config=enabled)
    assert ok is not None
    assert ok.ok, ok
    assert ok.detail["model"] == live.config.probes.completion_model
    assert ok.detail["tokens"]
    assert ok.detail["attempted_fallbacks"] == 0
    assert [r.path for r in live.upstream("groq").requests] == ["/v1/chat/completions"]

    # The same request again, every upstream failing: a cached answer would pass.
    for up in (live.upstream("groq"), live.upstream("openrouter")):
        up.set_fault(500)
    failed = run(live, Prober.completion, config=enabled)
    assert failed is not None
    assert (failed.ok, failed.status, failed.error_class) == (False, 500, ErrorClass.SERVER)
    assert_no_secret(failed, *live.secret_values())


def test_no_probe_result_ever_holds_a_key(live: LiveStack) -> None:
    wrong = {"GROQ_API_KEY": "gsk_" + "7d" * 22, "OPENROUTER_API_KEY": "sk-or-v1-" + "5c" * 22,
             "LITELLM_MASTER_KEY": "sk-" + "3b" * 22}
    env = {**live.env, **wrong}
    live.upstreams["paid"].set_fault(401)

    async def everything(prober: Prober) -> list[ProbeResult | None]:
        return [await prober.liveness(), await prober.proxy_models(),
                *(await prober.all_providers()), await prober.litellm_metrics(),
                await prober.completion(force=True)]

    results = run(live, everything, env=env)
    assert len(results) == 4 + len(live.config.providers)
    for result in results:
        assert result is not None
        assert_no_secret(result, *wrong.values(), *live.secret_values())
    assert {r.error_class for r in results if r is not None and r.kind is ProbeKind.PROVIDER} \
        == {ErrorClass.AUTH}
