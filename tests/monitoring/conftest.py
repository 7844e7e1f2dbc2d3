"""One real LiteLLM proxy per session, in front of fake upstreams, for the live watchdog tests.

The test stack is the default stack.yaml with its providers pointed at :class:`FakeUpstream`
servers (groq, openrouter, and one "paid" upstream shared by google and openai) and LiteLLM's
patience cut down, so a fault test takes a fraction of a second instead of the 44-58 s the
defaults cost (shared/notes/litellm.md): request timeout 1 s, no retries, and allowed_fails so
high that no model group of the main chain (groq-70b -> groq-8b -> openrouter-free) is ever
cooled down, so one test's fault cannot leak into the next as a cooldown.

The cooldown shape is still reproduced, in isolation: gpt-4 and gemini-pro fall back only to
each other, live on the paid upstream, and carry a deployment-level ``allowed_fails_policy`` of
0 for server errors (LiteLLM's ``model_info``; stack.yaml has no per-model policy, so the test
adds it to the rendered config). Keys are random and key-shaped, so a leak would be caught.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from monitoring.host_config import WatchdogConfig
from monitoring.proxy.cost_log import DEGRADED_MODEL
from monitoring.stack.layout import host_env_name, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import litellm, watchdog
from tests.conftest import STACK_FILE
from tests.support.fake_upstream import FakeUpstream
from tests.support.litellm_proxy import ProxyProcess, ensure_venv, free_port

#: Which fake serves which provider of the default stack.
UPSTREAM_OF = {"groq": "groq", "openrouter": "openrouter", "google": "paid", "openai": "paid"}
#: The model groups whose deployments cool down after one server error (see the docstring).
COOLDOWN_GROUPS = ("gpt-4", "gemini-pro")
COOLDOWN_S = 2
REQUEST_TIMEOUT_S = 1
PROBE_TIMEOUT_S = 1.5


@dataclass
class LiveStack:
    """The session's proxy, its fakes, its keys and the watchdog config rendered for it."""

    stack: Stack
    config: WatchdogConfig
    proxy: ProxyProcess
    upstreams: dict[str, FakeUpstream]
    # Test keys, but kept out of reprs all the same (pytest prints fixtures on failure).
    env: dict[str, str] = field(repr=False)
    master_key: str = field(repr=False)
    keys: dict[str, str] = field(default_factory=dict, repr=False)

    def upstream(self, provider: str) -> FakeUpstream:
        return self.upstreams[UPSTREAM_OF[provider]]

    def reset(self) -> None:
        """Every upstream healthy and its records empty."""
        for up in self.upstreams.values():
            up.clear_fault()
            up.clear_requests()

    def chat(self, model: str, timeout: float = 30) -> httpx.Response:
        """A real chat completion through the proxy, past LiteLLM's response cache."""
        return httpx.post(
            f"{self.proxy.url}/v1/chat/completions", timeout=timeout,
            headers={"Authorization": f"Bearer {self.master_key}"},
            json={"model": model, "max_tokens": 1,
                  "messages": [{"role": "user", "content": "hello"}],
                  "cache": {"no-cache": True, "no-store": True}})

    def secret_values(self) -> list[str]:
        return [self.master_key, *self.keys.values()]


def _key(prefix: str) -> str:
    return prefix + os.urandom(20).hex()


def build_test_stack(port: int, api_bases: dict[str, str],
                     agents: list[Any] | None = None) -> Stack:
    """The default stack, its providers at the fakes, LiteLLM's waits cut down (and, given
    ``agents``, that ``agents:`` section instead of the default one)."""
    base = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    models = {alias: {"api_base": api_bases[UPSTREAM_OF[m.provider]]}
              for alias, m in base.litellm.models.items()}
    policy = {"retries": 0, "allowed_fails": 1000}
    overrides: dict[str, Any] = {
        "litellm": {
            "listen": {"port": port},
            "models": models,
            "request_timeout": REQUEST_TIMEOUT_S,
            "num_retries": 0,
            "cooldown": COOLDOWN_S,
            "errors": {name: policy for name in ("auth", "rate", "config", "server", "timeout")},
            "fallbacks": {"gpt-4": ["gemini-pro"], "gemini-pro": ["gpt-4"]},
        },
        "watchdog": {"probe_timeout": PROBE_TIMEOUT_S, "probe_interval": PROBE_TIMEOUT_S},
    }
    if agents is not None:
        overrides["agents"] = agents
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


def without_budget_hooks(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the budget hooks and the degraded cache (issue 6).

    The session proxy shows LiteLLM's own error shapes when a whole chain fails (the
    classifier's tests); the degraded cache would answer those requests with its 503. The
    hooks have a proxy of their own (tests/monitoring/proxy/test_litellm_hooks.py).
    """
    config.pop("environment_variables", None)
    config["model_list"] = [e for e in config["model_list"]
                            if e["model_name"] != DEGRADED_MODEL]
    router = config["router_settings"]
    router["fallbacks"] = [{k: [m for m in v if m != DEGRADED_MODEL]}
                           for entry in router["fallbacks"] for k, v in entry.items()]
    router["fallbacks"] = [e for e in router["fallbacks"] if next(iter(e.values()))]
    settings = config["litellm_settings"]
    settings["callbacks"] = ["prometheus"]
    settings.pop("custom_provider_map", None)
    return config


def proxy_config(stack: Stack) -> dict[str, Any]:
    """The rendered LiteLLM config plus the per-deployment cooldown policy of the test."""
    config = without_budget_hooks(litellm.config(stack))
    for entry in config["model_list"]:
        if entry["model_name"] in COOLDOWN_GROUPS:
            entry["model_info"] = {"allowed_fails_policy": {"InternalServerErrorAllowedFails": 0}}
    return config


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """The session's one proxy (started once; tests may stop and start it in place)."""
    base = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    venv = ensure_venv(base.litellm.version)
    keys = {"GROQ_API_KEY": _key("gsk_"), "OPENROUTER_API_KEY": _key("sk-or-v1-"),
            "GEMINI_API_KEY": _key("AIza"), "OPENAI_API_KEY": _key("sk-proj-")}
    paid_models = [m.upstream_model for m in base.litellm.models.values()
                   if UPSTREAM_OF[m.provider] == "paid"]
    # One key per fake: google and openai share the paid fake, so it requires neither key
    # (auth is tested on the groq and openrouter fakes).
    upstreams = {
        "groq": FakeUpstream(api_key=keys["GROQ_API_KEY"], models=[
            m.upstream_model for m in base.litellm.models.values() if m.provider == "groq"]),
        "openrouter": FakeUpstream(api_key=keys["OPENROUTER_API_KEY"], models=[
            m.upstream_model for m in base.litellm.models.values() if m.provider == "openrouter"]),
        "paid": FakeUpstream(models=paid_models),
    }
    master_key = _key("sk-master-")
    # The proxy and the watchdog see the provider keys under their host names
    # (PF_GROQ_API_KEY...), as the deploy gives them (monitoring.stack.layout.host_env_names).
    env = {host_env_name(base, name): key for name, key in keys.items()}
    env[base.litellm.master_key_env] = master_key
    port = free_port()
    with contextlib.ExitStack() as cleanup:
        for up in upstreams.values():
            cleanup.enter_context(up)
        stack = build_test_stack(port, {name: up.api_base for name, up in upstreams.items()})
        workdir = tmp_path_factory.mktemp("live-litellm")
        config_file = workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(proxy_config(stack), sort_keys=False),
                               encoding="utf-8")
        proxy = ProxyProcess(venv, config_file, port, env)
        cleanup.callback(proxy.stop)
        proxy.start()
        yield LiveStack(stack=stack, config=watchdog.build(stack, layout(stack, "linux")),
                        proxy=proxy, upstreams=upstreams, env=env, master_key=master_key,
                        keys=keys)


@pytest.fixture
def live(live_stack: LiveStack) -> Iterator[LiveStack]:
    """The session's live stack, every upstream healthy before and after the test."""
    if live_stack.proxy.process is None:  # a test that stopped it failed before restarting
        live_stack.proxy.start()
    live_stack.reset()
    yield live_stack
    live_stack.reset()
