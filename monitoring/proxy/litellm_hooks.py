"""LiteLLM's side of the budget, kill switch and degraded mode: loaded BY THE PROXY.

Render lists these objects in the proxy's config (``tasks/render/litellm.py``)::

    litellm_settings:
      callbacks: [prometheus, monitoring.proxy.litellm_hooks.proxy_handler_instance]
      custom_provider_map:
        - provider: provider-fallback
          custom_handler: monitoring.proxy.litellm_hooks.degraded_handler

LiteLLM 1.108.7 resolves such a dotted name with ``get_instance_fn``: a ``monitoring/proxy/
litellm_hooks.py`` file next to the config if there is one, else ``importlib.import_module``.
On a host the project's wheel (the ``monitoring`` package) is installed in the proxy's own
venv, so the import finds it; no file is rendered next to the config. Tests put the repository
on the proxy's ``PYTHONPATH`` instead (``tests/support/litellm_proxy.py``).

Everything decided here is in :mod:`monitoring.proxy.policy` (plain Python, tested without a
proxy); this module only adapts LiteLLM's hook API to it:

- ``async_pre_call_hook``: only the call types whose spend is recorded reach a provider
  (403 for files, batches, vector stores, realtime secrets... unless stack.yaml opens them);
  a paid model asked for while the kill switch is on is served by a free one (header
  ``x-provider-fallback-kill-switch``); the request's ``no-store`` wish is kept for the
  degraded cache.
- ``async_filter_deployments``: no paid deployment while the kill switch is on, fallbacks
  included (the router never reaches a paid upstream).
- ``async_log_success_event``: the cost-log line, the kill switch, the good answer kept; it
  only queues them for the policy's I/O worker (no file I/O on LiteLLM's event loop).
- the ``degraded-cache`` model (:class:`DegradedCacheLLM`, last in every fallback chain): the
  last good answer within the TTL, marked ``x-provider-fallback-stale: true``; else a 503
  saying all providers are down (``async_post_call_failure_hook``).
- ``async_filter_listed_models``: ``degraded-cache`` is not listed by ``/v1/models``.

A hook never lets a bug of its own fail a request: errors are logged and the request goes on
(except the kill switch's refusal, which is the point).

This module imports LiteLLM, which only the proxy's venv has; nothing else imports it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import litellm
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.llms.custom_llm import CustomLLM, CustomLLMError

from monitoring.proxy.cost_log import DEGRADED_MODEL
from monitoring.proxy.policy import (
    ALL_DOWN_MESSAGE,
    KILL_SWITCH_HEADER,
    PASS_THROUGH,
    RECORDED_CALL_TYPES,
    STALE_AGE_HEADER,
    STALE_HEADER,
    Answer,
    KillSwitchBlockedError,
    ProxyPolicy,
    Served,
    call_type_refusal,
)

log = logging.getLogger("provider_fallback.litellm_hooks")

#: The provider name of the degraded-cache model in ``custom_provider_map``.
PROVIDER: Final = "provider-fallback"
_NO_STORE: Final = "pf_no_store"
_REQUESTED: Final = "pf_requested_model"
_SUBSTITUTED: Final = "pf_kill_switch"
#: Stale answers served, by LiteLLM call id -> age in seconds (read by the headers hook).
_STALE: dict[str, float] = {}
#: An entry the headers hook never collected (a client gone) must not stay forever.
_STALE_MAX: Final = 1000


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    params = kwargs.get("litellm_params") or {}
    meta = params.get("metadata") or kwargs.get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def _extra(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params.get(k) for k in ("tools", "tool_choice", "response_format")}


class ProxyHooks(CustomLogger):  # type: ignore[misc]
    """The proxy's callback object (``proxy_handler_instance``)."""

    def __init__(self) -> None:
        super().__init__()
        self._policy: ProxyPolicy | None = None
        self._loaded = False

    @property
    def policy(self) -> ProxyPolicy | None:
        """Loaded at first use: LiteLLM sets the config's environment variables first."""
        if not self._loaded:
            self._loaded = True
            try:
                self._policy = ProxyPolicy.from_env()
            except Exception:
                log.exception("provider-fallback: cannot load the watchdog config")
        return self._policy

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: Any) -> dict[str, Any]:
        policy = self.policy
        kind = str(call_type)
        if kind == PASS_THROUGH:
            # /openai/..., /gemini/... forward to a provider with the stack's own keys, past
            # the budget, the prices and the fallbacks: this bundle uses none of them.
            raise HTTPException(status_code=403, detail=(
                "provider-fallback: pass-through routes are disabled; use /v1/chat/completions"
                " with a model of the stack"))
        # An allow-list (held even without a watchdog config): a call type whose spend is not
        # recorded would bill the provider past the cost log and the kill switch.
        allowed = (policy.allowed_call_type(kind) if policy is not None
                   else kind in RECORDED_CALL_TYPES)
        if not allowed:
            raise HTTPException(status_code=403, detail=call_type_refusal(kind))
        if policy is None or not isinstance(data.get("model"), str):
            return data
        meta = data.setdefault("metadata", {})
        wish = data.get("cache")
        meta[_NO_STORE] = isinstance(wish, dict) and bool(wish.get("no-store"))
        meta[_REQUESTED] = data["model"]
        try:
            substitute = policy.substitute(data["model"])
        except KillSwitchBlockedError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        if substitute is not None:
            meta[_SUBSTITUTED] = f"{data['model']} -> {substitute}"
            data["model"] = substitute
        return data

    async def async_filter_deployments(self, model: str, healthy_deployments: list[Any],
                                       messages: Any, request_kwargs: Any = None,
                                       parent_otel_span: Any = None) -> list[Any]:
        policy = self.policy
        if policy is None:
            return healthy_deployments
        kept = policy.allowed_deployments(healthy_deployments, model)
        if len(kept) != len(healthy_deployments):
            log.warning("provider-fallback: kill switch active, no request to paid %s", model)
        return kept

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: Any, end_time: Any) -> None:
        policy = self.policy
        if policy is None:
            return
        try:
            self._record(policy, kwargs, response_obj)
        except Exception:
            log.exception("provider-fallback: cannot record a request's cost")

    def _record(self, policy: ProxyPolicy, kwargs: dict[str, Any], response_obj: Any) -> None:
        meta = _metadata(kwargs)
        slo = kwargs.get("standard_logging_object") or {}
        served_by = str(meta.get("model_group") or slo.get("model_group") or kwargs.get("model"))
        routed = str(meta.get("original_model_group") or served_by)
        requested = str(meta.get(_REQUESTED) or routed)
        stale = served_by == policy.degraded_model
        cost = kwargs.get("response_cost")
        served = Served(model=requested, routed=routed, served_by=served_by,
                        provider=str(slo.get("custom_llm_provider") or "unknown"),
                        tokens_in=int(slo.get("prompt_tokens") or 0),
                        tokens_out=int(slo.get("completion_tokens") or 0),
                        cost_usd=float(cost) if isinstance(cost, int | float) else 0.0)
        answer = None
        dump = getattr(response_obj, "model_dump", None)
        if (policy.cache is not None and not (stale or meta.get(_NO_STORE)
                                              or kwargs.get("cache_hit"))
                and callable(dump) and kwargs.get("messages") is not None):
            params = kwargs.get("optional_params") or {}
            answer = Answer(routed, kwargs.get("messages"), _extra(params), dump(), served_by)
        policy.submit(served, stale=stale, answer=answer)

    async def async_post_call_response_headers_hook(
            self, data: dict[str, Any], user_api_key_dict: Any, response: Any,
            request_headers: Any = None, litellm_call_info: Any = None) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        hidden = getattr(response, "_hidden_params", None) or {}
        age = _STALE.pop(str(hidden.get("litellm_call_id")), None)
        if age is not None:
            headers[STALE_HEADER] = "true"
            headers[STALE_AGE_HEADER] = str(int(age))
        substituted = (data.get("metadata") or {}).get(_SUBSTITUTED)
        if substituted:
            headers[KILL_SWITCH_HEADER] = str(substituted)
        return headers or None

    async def async_post_call_failure_hook(self, request_data: dict[str, Any],
                                           original_exception: Exception,
                                           user_api_key_dict: Any,
                                           traceback_str: str | None = None) -> Any:
        text = str(original_exception)
        degraded = self.policy.degraded_model if self.policy is not None else DEGRADED_MODEL
        # LiteLLM reports the first group's error and lists the fallbacks that "also failed";
        # the degraded cache being among them means every provider of the chain failed and
        # no cached answer was there.
        chain_failed = re.search(rf"Fallback to [^\n]*\b{re.escape(degraded)}\b[^\n]* also "
                                 "failed", text)
        if ALL_DOWN_MESSAGE in text or chain_failed:
            return HTTPException(status_code=503, detail=ALL_DOWN_MESSAGE)
        return None

    async def async_filter_listed_models(self, user_api_key_dict: Any,
                                         model_names: Sequence[str]) -> Sequence[str]:
        hidden = self.policy.degraded_model if self.policy is not None else DEGRADED_MODEL
        return [name for name in model_names if name != hidden]


class DegradedCacheLLM(CustomLLM):  # type: ignore[misc]
    """The ``degraded-cache`` model: the last good answer to the same request, or a 503."""

    def __init__(self, hooks: ProxyHooks) -> None:
        super().__init__()
        self.hooks = hooks

    def _answer(self, messages: list[Any], optional_params: dict[str, Any],
                litellm_params: dict[str, Any] | None) -> tuple[dict[str, Any], float]:
        policy = self.hooks.policy
        meta = (litellm_params or {}).get("metadata") or {}
        routed = str(meta.get("original_model_group") or "")
        answer = (policy.degraded_answer(routed, messages, _extra(optional_params))
                  if policy is not None and routed else None)
        if answer is None or policy is None:
            raise CustomLLMError(status_code=503, message=ALL_DOWN_MESSAGE)
        call_id = (litellm_params or {}).get("litellm_call_id")
        age = answer.age_s(policy.clock())
        if call_id:
            while len(_STALE) >= _STALE_MAX:
                _STALE.pop(next(iter(_STALE)))
            _STALE[str(call_id)] = age
        log.warning("provider-fallback: every provider failed; served a stale answer to %s "
                    "(%.0f s old)", routed, age)
        return answer.response, age

    async def acompletion(self, model: str, messages: list[Any], api_base: str,
                          custom_prompt_dict: dict[str, Any], model_response: Any,
                          print_verbose: Any, encoding: Any, api_key: Any, logging_obj: Any,
                          optional_params: dict[str, Any], acompletion: Any = None,
                          litellm_params: dict[str, Any] | None = None, logger_fn: Any = None,
                          headers: Any = None, timeout: Any = None, client: Any = None) -> Any:
        response, _ = self._answer(messages, optional_params, litellm_params)
        body = {k: v for k, v in response.items() if k in ("id", "choices", "usage", "model")}
        body["created"] = int(time.time())
        return litellm.ModelResponse(**body)

    async def astreaming(self, model: str, messages: list[Any], api_base: str,
                         custom_prompt_dict: dict[str, Any], model_response: Any,
                         print_verbose: Any, encoding: Any, api_key: Any, logging_obj: Any,
                         optional_params: dict[str, Any], acompletion: Any = None,
                         litellm_params: dict[str, Any] | None = None, logger_fn: Any = None,
                         headers: Any = None, timeout: Any = None,
                         client: Any = None) -> AsyncIterator[dict[str, Any]]:
        response, _ = self._answer(messages, optional_params, litellm_params)
        choice = (response.get("choices") or [{}])[0]
        text = str((choice.get("message") or {}).get("content") or "")
        usage = response.get("usage") or {}
        yield {"text": text, "tool_use": None, "is_finished": True, "index": 0,
               "finish_reason": str(choice.get("finish_reason") or "stop"),
               "usage": {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                         "completion_tokens": int(usage.get("completion_tokens") or 0),
                         "total_tokens": int(usage.get("total_tokens") or 0)}}


proxy_handler_instance = ProxyHooks()
degraded_handler = DegradedCacheLLM(proxy_handler_instance)
