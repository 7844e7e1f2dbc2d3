"""The LiteLLM proxy config, built as data from stack.yaml.

Keys are never in it: each model's key and the master key are ``os.environ/NAME`` references
that LiteLLM resolves at start-up. Every provider is reached through its OpenAI-compatible
endpoint (``openai/<upstream model>`` with ``api_base``), so one code path in LiteLLM serves
Groq, OpenRouter, Gemini and OpenAI alike, and the watchdog can probe ``<api_base>/models``.
"""

from __future__ import annotations

from typing import Any

from monitoring.layout import Layout
from monitoring.stack import Stack
from tasks.render.common import Artifact, Rendered, dump_yaml

HEADER = "# Rendered from stack.yaml by provider-fallback: edit stack.yaml, not this file.\n"

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


def config(stack: Stack) -> dict[str, Any]:
    """LiteLLM's proxy config (model_list, router, litellm and general settings) as data."""
    lm = stack.litellm
    model_list = [
        {
            "model_name": alias,
            "litellm_params": {
                "model": f"openai/{model.upstream_model}",
                "api_base": model.api_base,
                "api_key": f"os.environ/{model.api_key_env}",
                # Custom pricing: LiteLLM's own cost calculation charges these.
                "input_cost_per_token": _per_token(model.input_usd_per_1k),
                "output_cost_per_token": _per_token(model.output_usd_per_1k),
            },
        }
        for alias, model in lm.models.items()
    ]
    policies = {name: getattr(lm.errors, name) for name in ERROR_CLASSES}
    retry_policy = {f"{exc}Retries": policies[cls].retries
                    for cls, excs in ERROR_CLASSES.items() for exc in excs}
    allowed_fails = {f"{exc}AllowedFails": policies[cls].allowed_fails
                     for cls, excs in ERROR_CLASSES.items() for exc in excs}
    litellm_settings: dict[str, Any] = {
        "callbacks": ["prometheus"],
        # Loopback only: Prometheus scrapes /metrics/ without the master key.
        "require_auth_for_metrics_endpoint": False,
        # Else every error reply waits ~23 s on a tokenizer download that cannot succeed.
        "disable_hf_tokenizer_download": True,
        "request_timeout": _seconds(lm.request_timeout),
    }
    if lm.cache.enabled:
        litellm_settings["cache"] = True
        litellm_settings["cache_params"] = {"type": "local", "ttl": _seconds(lm.cache.ttl)}
    return {
        "model_list": model_list,
        "router_settings": {
            "num_retries": lm.num_retries,
            "timeout": _seconds(lm.request_timeout),
            "cooldown_time": _seconds(lm.cooldown),
            "retry_policy": retry_policy,
            "allowed_fails_policy": allowed_fails,
            "fallbacks": [{source: list(chain)} for source, chain in lm.fallbacks.items()],
        },
        "litellm_settings": litellm_settings,
        "general_settings": {"master_key": f"os.environ/{lm.master_key_env}"},
    }


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """``litellm/config.yaml``: readable by the service group only (it names, not holds, keys)."""
    return {"litellm/config.yaml": Artifact(dump_yaml(config(stack), HEADER),
                                            lay.litellm_config, mode=0o640)}
