"""The LiteLLM proxy config, built as data from stack.yaml.

Keys are never in it: each model's key and the master key are ``os.environ/NAME`` references
that LiteLLM resolves at start-up. Every provider is reached through its OpenAI-compatible
endpoint (``openai/<upstream model>`` with ``api_base``), so one code path in LiteLLM serves
Groq, OpenRouter, Gemini and OpenAI alike, and the watchdog can probe ``<api_base>/models``.

Coding agents reach the same aliases in their own wire formats, which the proxy serves:
``/v1/chat/completions`` (Kilo, OpenCode, Continue, Aider), ``/v1/messages`` (Claude Code),
``/v1/responses`` (Codex) and ``/v1beta/models/<alias>:generateContent`` (Gemini CLI), with the
master key in that format's header (Bearer, ``x-api-key``, ``x-goog-api-key``). All of them go
upstream as chat completions (see ``use_chat_completions_api`` below).
"""

from __future__ import annotations

from typing import Any

from monitoring.proxy.cost_log import DEGRADED_MODEL
from monitoring.stack.checks import MAX_FALLBACKS
from monitoring.stack.layout import Layout, host_env_name
from monitoring.stack.schema import Stack
from tasks.render.common import Artifact, Rendered, dump_json, dump_yaml

HEADER = "# Rendered from stack.yaml by provider-fallback: edit stack.yaml, not this file.\n"

#: The proxy's budget, kill-switch and degraded-mode hooks (monitoring/proxy/litellm_hooks.py),
#: found by LiteLLM's get_instance_fn through an import of the monitoring package (the project's
#: wheel is installed in the proxy's venv).
HOOKS_CALLBACK = "monitoring.proxy.litellm_hooks.proxy_handler_instance"
DEGRADED_HANDLER = "monitoring.proxy.litellm_hooks.degraded_handler"
DEGRADED_PROVIDER = "provider-fallback"
#: Tells the hooks where the watchdog's config is (paths, prices, budget, allow-list).
CONFIG_ENV = "PROVIDER_FALLBACK_CONFIG"

# stack.yaml's error classes -> LiteLLM's exception names (retry_policy / allowed_fails_policy).
# LiteLLM raises connection errors as InternalServerError, so "server" covers the network class.
ERROR_CLASSES: dict[str, tuple[str, ...]] = {
    "auth": ("AuthenticationError",),
    "rate": ("RateLimitError",),
    "config": ("BadRequestError", "NotFoundError"),
    "server": ("InternalServerError", "ServiceUnavailableError"),
    "timeout": ("TimeoutError",),
}


def _per_token(usd_per_1k: float) -> float:
    """LiteLLM's custom pricing is per token; stack.yaml's (like the runbook's) per 1K."""
    return round(usd_per_1k / 1000, 12)


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def fallback_chains(stack: Stack) -> dict[str, list[str]]:
    """Every model's fallback chain, ending in the degraded cache when the cache is on.

    Runbook 7.1: when every provider of a chain fails, the last good answer to the same
    request is served stale; so every model gets a chain, even one stack.yaml gives none.
    """
    lm = stack.litellm
    chains = {alias: list(lm.fallbacks.get(alias, [])) for alias in lm.models}
    if lm.cache.enabled:
        for chain in chains.values():
            chain.append(DEGRADED_MODEL)
    return {alias: chain for alias, chain in chains.items() if chain}


def config(stack: Stack, lay: Layout | None = None) -> dict[str, Any]:
    """LiteLLM's proxy config (model_list, router, litellm and general settings) as data.

    ``lay`` gives the host path of the watchdog config the proxy's hooks read; without it
    (tests of the shape) the Linux default is used.
    """
    lm = stack.litellm
    model_list = [
        {
            "model_name": alias,
            "litellm_params": {
                "model": f"openai/{model.upstream_model}",
                "api_base": model.api_base,
                "api_key": f"os.environ/{host_env_name(stack, model.api_key_env)}",
                # /v1/responses (Codex) is answered by LiteLLM over the upstream's chat
                # endpoint: an openai/ deployment would otherwise be forwarded to
                # <api_base>/responses, which Gemini's OpenAI endpoint does not serve.
                "use_chat_completions_api": True,
                # Custom pricing: LiteLLM's own cost calculation charges these.
                "input_cost_per_token": _per_token(model.input_usd_per_1k),
                "output_cost_per_token": _per_token(model.output_usd_per_1k),
            },
        }
        for alias, model in lm.models.items()
    ]
    if lm.cache.enabled:
        model_list.append({"model_name": DEGRADED_MODEL, "litellm_params": {
            "model": f"{DEGRADED_PROVIDER}/{DEGRADED_MODEL}",
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}})
    policies = {name: getattr(lm.errors, name) for name in ERROR_CLASSES}
    retry_policy = {f"{exc}Retries": policies[cls].retries
                    for cls, excs in ERROR_CLASSES.items() for exc in excs}
    allowed_fails = {f"{exc}AllowedFails": policies[cls].allowed_fails
                     for cls, excs in ERROR_CLASSES.items() for exc in excs}
    litellm_settings: dict[str, Any] = {
        "callbacks": ["prometheus", HOOKS_CALLBACK],
        # Loopback only: Prometheus scrapes /metrics/ without the master key.
        "require_auth_for_metrics_endpoint": False,
        # Else every error reply waits ~23 s on a tokenizer download that cannot succeed.
        "disable_hf_tokenizer_download": True,
        "request_timeout": _seconds(lm.request_timeout),
        # /v1/messages (Claude Code) likewise over the chat endpoint, not <api_base>/responses.
        "use_chat_completions_url_for_anthropic_messages": True,
    }
    if lm.cache.enabled:
        litellm_settings["cache"] = True
        litellm_settings["cache_params"] = {"type": "local", "ttl": _seconds(lm.cache.ttl)}
        litellm_settings["custom_provider_map"] = [
            {"provider": DEGRADED_PROVIDER, "custom_handler": DEGRADED_HANDLER}]
    chains = fallback_chains(stack)
    watchdog_config = lay.watchdog_config if lay else "/etc/provider-fallback/watchdog.json"
    return {
        "environment_variables": {CONFIG_ENV: watchdog_config},
        "model_list": model_list,
        "router_settings": {
            "num_retries": lm.num_retries,
            "timeout": _seconds(lm.request_timeout),
            "cooldown_time": _seconds(lm.cooldown),
            "retry_policy": retry_policy,
            "allowed_fails_policy": allowed_fails,
            "fallbacks": [{source: chain} for source, chain in chains.items()],
            # The degraded cache may make a chain one longer than stack.yaml allows.
            "max_fallbacks": max([MAX_FALLBACKS, *(len(c) for c in chains.values())]),
        },
        "litellm_settings": litellm_settings,
        "general_settings": {"master_key": f"os.environ/{lm.master_key_env}"},
    }


#: uvicorn's logging for the proxy (``--log_config``): its own and LiteLLM's messages kept,
#: the access log (one line per request, three a second from the probes) at WARNING.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                             "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
    },
}


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """``litellm/config.yaml``: readable by the service group only (it names, not holds, keys);
    ``litellm/logging.json``: the proxy's log config."""
    return {"litellm/config.yaml": Artifact(dump_yaml(config(stack, lay), HEADER),
                                            lay.litellm_config, mode=0o640),
            "litellm/logging.json": Artifact(dump_json(LOG_CONFIG), lay.litellm_log_config,
                                             mode=0o640)}
