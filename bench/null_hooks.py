"""A do-nothing proxy callback with the SAME hook methods as ``monitoring.proxy.litellm_hooks``.

``python -m bench.proxy_overhead --null`` runs a third proxy with this callback instead of the
project's, so the bench separates what LiteLLM itself does because a ``CustomLogger`` with
these hooks is registered (the hooks are awaited, the success handler calls them) from what
the project's code does inside them. Loaded BY THE PROXY (its venv has LiteLLM); nothing else
imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litellm.integrations.custom_logger import CustomLogger


class NullHooks(CustomLogger):  # type: ignore[misc]
    """Every hook of ``ProxyHooks``, each returning what LiteLLM passed in."""

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: Any) -> dict[str, Any]:
        return data

    async def async_filter_deployments(self, model: str, healthy_deployments: list[Any],
                                       messages: Any, request_kwargs: Any = None,
                                       parent_otel_span: Any = None) -> list[Any]:
        return healthy_deployments

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: Any, end_time: Any) -> None:
        return None

    async def async_post_call_response_headers_hook(
            self, data: dict[str, Any], user_api_key_dict: Any, response: Any,
            request_headers: Any = None, litellm_call_info: Any = None) -> dict[str, str] | None:
        return None

    async def async_post_call_failure_hook(self, request_data: dict[str, Any],
                                           original_exception: Exception,
                                           user_api_key_dict: Any,
                                           traceback_str: str | None = None) -> Any:
        return None

    async def async_filter_listed_models(self, user_api_key_dict: Any,
                                         model_names: Sequence[str]) -> Sequence[str]:
        return model_names


null_handler_instance = NullHooks()
