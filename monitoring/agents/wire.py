"""Which wire formats a stack target serves, at which base URL: one place for render (the
watchdog config) and for the stack checks (an impossible agent/target pairing).

The proxy serves all four (LiteLLM: ``/v1/chat/completions``, ``/v1/messages``,
``/v1/responses``, Gemini's ``generateContent``). A direct target serves OpenAI chat at its
api_base (every model of the stack is reached that way), plus what its provider is known to
offer; ``endpoints:`` on the target adds or overrides (a test's fake, a gateway).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from monitoring.agents.base import GOOGLE_GEMINI_DEFAULT
from monitoring.stack.schema import AgentTarget, DirectTarget, LitellmTarget, Stack


def windows_proxy_root(stack: Stack) -> str:
    """The proxy as Windows reaches it from a WSL deploy: ``http://127.0.0.1:<port>``. WSL
    forwards only IPv4 binds on 127.0.0.1/0.0.0.0 to Windows (NAT: wslrelay; mirrored: ::1
    is not supported), and ``localhost`` may resolve to ::1 on Windows."""
    return f"http://127.0.0.1:{stack.litellm.listen.port}"


def _strip(url: str, suffix: str) -> str:
    return re.sub(re.escape(suffix) + "/?$", "", url.rstrip("/"))


#: provider slug -> wire -> how its base URL derives from the OpenAI-compatible api_base.
KNOWN: Final[dict[str, dict[str, Callable[[str], str]]]] = {
    # openrouter.ai/docs: Anthropic Messages at /api (no /v1); Responses at /api/v1.
    "openrouter": {"anthropic-messages": lambda b: _strip(b, "/v1"),
                   "openai-responses": lambda b: b},
    "groq": {"openai-responses": lambda b: b},
    "openai": {"openai-responses": lambda b: b},
    # Gemini CLI's own endpoint is Google's root; a fake in a test is its server root.
    "google": {"gemini-native": lambda b: GOOGLE_GEMINI_DEFAULT
               if "generativelanguage.googleapis.com" in b
               else _strip(_strip(b, "/v1beta/openai"), "/v1")},
}


def target_endpoints(stack: Stack, target: LitellmTarget | DirectTarget | AgentTarget,
                     proxy_root: str | None = None) -> dict[str, str]:
    """Base URL per wire format agents can use for ``target`` ({} for a built-in one);
    ``proxy_root``: the proxy as agents elsewhere reach it (Windows from WSL)."""
    if isinstance(target, AgentTarget):
        return {}
    if isinstance(target, LitellmTarget):
        root = proxy_root or stack.proxy_url
        return {"openai-chat": f"{root}/v1", "anthropic-messages": root,
                "openai-responses": f"{root}/v1", "gemini-native": root}
    model = stack.litellm.models[target.model]
    out = {"openai-chat": model.api_base}
    for wire, derive in KNOWN.get(model.provider, {}).items():
        out[wire] = derive(model.api_base)
    out.update({str(k): v for k, v in target.endpoints.items()})
    return out
