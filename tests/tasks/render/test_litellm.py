"""The rendered LiteLLM config: its shape, and the real pinned proxy starting from it."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import httpx
import pytest
import yaml

from monitoring import metrics
from monitoring.proxy.cost_log import DEGRADED_MODEL
from monitoring.stack.layout import Layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import litellm
from tasks.render.common import Rendered
from tests.conftest import STACK_FILE
from tests.support.litellm_proxy import RunningProxy, ensure_venv, running_proxy
from tests.support.polling import until

CONFIG = "litellm/config.yaml"


def test_every_model_alias_is_served_through_its_openai_compatible_endpoint(stack: Stack) -> None:
    config = litellm.config(stack)
    entries = {e["model_name"]: e["litellm_params"] for e in config["model_list"]}
    assert list(entries) == [*stack.litellm.models, DEGRADED_MODEL]
    for alias, model in stack.litellm.models.items():
        params = entries[alias]
        assert params["model"] == f"openai/{model.upstream_model}"
        assert params["api_base"] == model.api_base
        # Under the host name LiteLLM never reads on its own (issue 12, H2).
        assert params["api_key"] == f"os.environ/PF_{model.api_key_env}"
        assert params["input_cost_per_token"] == pytest.approx(model.input_usd_per_1k / 1000)
        assert params["output_cost_per_token"] == pytest.approx(model.output_usd_per_1k / 1000)


def test_agent_wire_formats_are_answered_over_the_upstreams_chat_endpoint(stack: Stack) -> None:
    """Codex (/v1/responses) and Claude Code (/v1/messages) reach every provider through its
    chat endpoint: LiteLLM would otherwise forward both to <api_base>/responses, which Gemini's
    OpenAI endpoint lacks (tests/monitoring/proxy/test_wires.py runs them through the proxy)."""
    config = litellm.config(stack)
    served = [e["litellm_params"] for e in config["model_list"]
              if e["model_name"] in stack.litellm.models]
    assert served
    assert all(params["use_chat_completions_api"] is True for params in served)
    assert config["litellm_settings"]["use_chat_completions_url_for_anthropic_messages"] is True


def test_router_settings_come_from_the_stack(stack: Stack) -> None:
    router = litellm.config(stack)["router_settings"]
    assert router["fallbacks"] == [{k: [*v, DEGRADED_MODEL]}
                                   for k, v in stack.litellm.fallbacks.items()]
    assert router["num_retries"] == stack.litellm.num_retries
    assert router["cooldown_time"] == stack.litellm.cooldown
    assert router["timeout"] == stack.litellm.request_timeout
    assert router["retry_policy"]["AuthenticationErrorRetries"] == stack.litellm.errors.auth.retries
    assert router["retry_policy"]["RateLimitErrorRetries"] == stack.litellm.errors.rate.retries
    assert (router["allowed_fails_policy"]["InternalServerErrorAllowedFails"]
            == stack.litellm.errors.server.allowed_fails)


def test_offline_and_metrics_settings_are_on(stack: Stack) -> None:
    settings = litellm.config(stack)["litellm_settings"]
    assert settings["callbacks"] == ["prometheus", litellm.HOOKS_CALLBACK]
    assert settings["disable_hf_tokenizer_download"] is True
    assert settings["require_auth_for_metrics_endpoint"] is False
    assert settings["cache_params"] == {"type": "local", "ttl": stack.litellm.cache.ttl}
    assert settings["custom_provider_map"] == [
        {"provider": litellm.DEGRADED_PROVIDER, "custom_handler": litellm.DEGRADED_HANDLER}]
    assert litellm.config(stack)["general_settings"] == {
        "master_key": f"os.environ/{stack.litellm.master_key_env}"}


def test_config_is_group_readable_only_and_holds_no_key(rendered_linux: Rendered) -> None:
    artifact = rendered_linux[CONFIG]
    assert artifact.mode == 0o640
    assert not re.search(rb"(gsk_|sk-)[A-Za-z0-9]", artifact.data)


# --------------------------------------------------------------------------- the real proxy


@pytest.fixture(scope="session")
def proxy(stack: Stack, rendered_linux: Rendered,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """The pinned proxy started from the rendered config (shared by the live tests)."""
    venv = ensure_venv(stack.litellm.version)
    workdir = tmp_path_factory.mktemp("litellm")
    config = workdir / "config.yaml"
    # As rendered, but for the watchdog config path: a machine where `make deploy` ran has
    # the real /etc/provider-fallback/watchdog.json, and these tests want the hooks inert.
    data = yaml.safe_load(rendered_linux[CONFIG].data)
    data["environment_variables"][litellm.CONFIG_ENV] = str(workdir / "no-watchdog.json")
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    key = "sk-test-master-" + os.urandom(8).hex()
    env = {name: f"test-{name.lower()}" for name in stack.secret_env_names()}
    env[stack.litellm.master_key_env] = key
    with running_proxy(venv, config, env, key) as running:
        yield running


@pytest.mark.live
def test_liveliness_answers(proxy: RunningProxy) -> None:
    reply = httpx.get(f"{proxy.url}/health/liveliness", timeout=5)
    assert reply.status_code == 200


@pytest.mark.live
def test_models_lists_exactly_the_configured_aliases(proxy: RunningProxy, stack: Stack) -> None:
    reply = httpx.get(f"{proxy.url}/v1/models", timeout=10,
                      headers={"Authorization": f"Bearer {proxy.master_key}"})
    assert reply.status_code == 200, reply.text
    assert sorted(m["id"] for m in reply.json()["data"]) == sorted(stack.litellm.models)


@pytest.mark.live
def test_models_refuses_a_request_without_the_master_key(proxy: RunningProxy) -> None:
    reply = httpx.get(f"{proxy.url}/v1/models", timeout=10)
    assert reply.status_code == 401


@pytest.mark.live
def test_metrics_are_open_and_name_what_the_dashboard_reads(proxy: RunningProxy) -> None:
    reply = httpx.get(f"{proxy.url}{metrics.LITELLM_METRICS_PATH}", timeout=10)
    assert reply.status_code == 200
    families = set(re.findall(r"^# TYPE (\S+) ", reply.text, flags=re.MULTILINE))
    # A counter's TYPE line may name it with or without its _total suffix.
    missing = {n for n in metrics.LITELLM_METRICS
               if n not in families and n.removesuffix("_total") not in families}
    assert not missing, f"LiteLLM {len(families)} families lack {missing}"


def test_rendered_bytes_are_the_config(rendered_linux: Rendered, stack: Stack,
                                       linux_layout: Layout) -> None:
    assert yaml.safe_load(rendered_linux[CONFIG].data) == litellm.config(stack, linux_layout)


def test_degraded_cache_ends_every_chain_and_costs_nothing(stack: Stack) -> None:
    config = litellm.config(stack)
    chains = {k: v for entry in config["router_settings"]["fallbacks"] for k, v in entry.items()}
    assert set(chains) == set(stack.litellm.models), "every model gets a chain"
    assert all(chain[-1] == DEGRADED_MODEL for chain in chains.values())
    degraded = next(e for e in config["model_list"] if e["model_name"] == DEGRADED_MODEL)
    assert degraded["litellm_params"] == {
        "model": f"{litellm.DEGRADED_PROVIDER}/{DEGRADED_MODEL}",
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
    assert config["router_settings"]["max_fallbacks"] >= max(len(c) for c in chains.values())


def test_without_the_cache_there_is_no_degraded_model() -> None:
    stack = parse_stack(STACK_FILE.read_text(encoding="utf-8"),
                        overrides={"litellm": {"cache": {"enabled": False}}})
    config = litellm.config(stack)
    assert DEGRADED_MODEL not in {e["model_name"] for e in config["model_list"]}
    assert "custom_provider_map" not in config["litellm_settings"]
    assert config["router_settings"]["fallbacks"] == [
        {k: v} for k, v in stack.litellm.fallbacks.items()]


def test_hooks_find_the_watchdog_config_of_the_host(rendered_linux: Rendered,
                                                    rendered_windows: Rendered,
                                                    linux_layout: Layout,
                                                    windows_layout: Layout) -> None:
    for rendered, lay in ((rendered_linux, linux_layout), (rendered_windows, windows_layout)):
        config = yaml.safe_load(rendered[CONFIG].data)
        assert config["environment_variables"] == {litellm.CONFIG_ENV: lay.watchdog_config}


@pytest.mark.live
def test_hooks_load_in_the_real_proxy_and_hide_the_degraded_model(proxy: RunningProxy,
                                                                   stack: Stack) -> None:
    """The proxy above runs the rendered config as is: it imported monitoring.proxy.litellm_hooks
    (else it would not have started) and /v1/models does not list degraded-cache."""
    # The hooks load their policy at first use: one request makes them run (its answer does
    # not matter here: no upstream is reachable from this proxy).
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{proxy.url}/v1/chat/completions", timeout=15,
                   headers={"Authorization": f"Bearer {proxy.master_key}"},
                   json={"model": next(iter(stack.litellm.models)),
                         "messages": [{"role": "user", "content": "hi"}]})
    # the hooks ran, inert without a watchdog config
    until(lambda: "no watchdog config at" in proxy.log.read_text(errors="replace"), 60,
          "the hooks' warning in the proxy log")
