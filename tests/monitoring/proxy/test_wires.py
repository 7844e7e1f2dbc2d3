"""The real proxy serves every coding agent's wire format and forwards it as OpenAI chat.

Claude Code speaks Anthropic Messages, Codex OpenAI Responses, Gemini CLI Gemini's native
generateContent (shared/notes/agent-configs.md section 0). Each sends the master key in its own
header; LiteLLM must accept it there, answer in the agent's format, and reach the provider as
a chat completion for the upstream model with the PROVIDER's key (the groq fake refuses any
other key, so ``authorized`` proves the master key never went upstream).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from tests.monitoring.conftest import LiveStack

ALIAS = "groq-70b"


def _nonce() -> str:
    """Unique text per request: the proxy's response cache must not answer in the upstream's
    place."""
    return os.urandom(6).hex()


def _events(reply: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line.removeprefix("data: ")) for line in reply.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def _messages(stream: bool) -> dict[str, Any]:
    return {"model": ALIAS, "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": f"say hi {_nonce()}"}]}


def _gemini() -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": f"say hi {_nonce()}"}]}]}


def _check(reply: httpx.Response) -> str:
    """The text of the answer, in whichever of the four formats it came."""
    assert reply.status_code == 200, reply.text
    if reply.headers["content-type"].startswith("text/event-stream"):
        events = _events(reply)
        assert events, reply.text
        text = ""
        for event in events:
            if event.get("type") == "content_block_delta":
                text += event["delta"]["text"]
            elif event.get("type") == "response.completed":
                text += event["response"]["output"][0]["content"][0]["text"]
            elif "candidates" in event:
                text += "".join(p.get("text", "")
                                for p in event["candidates"][0]["content"].get("parts", []))
        return text
    body = reply.json()
    if body.get("type") == "message":
        return str(body["content"][0]["text"])
    if body.get("object") == "response":
        return str(body["output"][0]["content"][0]["text"])
    return str(body["candidates"][0]["content"]["parts"][0]["text"])


CASES: dict[str, tuple[str, str, Any]] = {
    # name: (path, key header, body factory)
    "anthropic messages, Bearer (ANTHROPIC_AUTH_TOKEN)": (
        "/v1/messages?beta=true", "authorization", lambda: _messages(False)),
    "anthropic messages streamed, x-api-key (ANTHROPIC_API_KEY)": (
        "/v1/messages", "x-api-key", lambda: _messages(True)),
    "responses streamed (Codex)": (
        "/v1/responses", "authorization",
        lambda: {"model": ALIAS, "stream": True, "input": f"say hi {_nonce()}"}),
    "responses": (
        "/v1/responses", "authorization", lambda: {"model": ALIAS, "input": f"hi {_nonce()}"}),
    "gemini generateContent, x-goog-api-key": (
        f"/v1beta/models/{ALIAS}:generateContent", "x-goog-api-key", _gemini),
    "gemini streamGenerateContent as sse (Gemini CLI)": (
        f"/v1beta/models/{ALIAS}:streamGenerateContent?alt=sse", "x-goog-api-key", _gemini),
}


@pytest.mark.live
@pytest.mark.parametrize("case", list(CASES))
def test_each_agent_wire_reaches_the_provider_as_chat_with_its_key(live: LiveStack,
                                                                   case: str) -> None:
    path, header, body = CASES[case]
    key = live.master_key if header != "authorization" else f"Bearer {live.master_key}"
    reply = httpx.post(f"{live.proxy.url}{path}", json=body(), timeout=30,
                       headers={header: key, "anthropic-version": "2023-06-01"})
    assert _check(reply) == "ok"
    groq = live.upstream("groq")
    (arrived,) = groq.wait_for_requests(1, timeout=10)
    model = live.stack.litellm.models[ALIAS]
    assert (arrived.method, arrived.path, arrived.model) == (
        "POST", "/v1/chat/completions", model.upstream_model)
    assert arrived.authorized  # the provider's key: the fake refuses the master key
    assert arrived.key_headers == ("authorization",)


@pytest.mark.live
@pytest.mark.parametrize("header", ["authorization", "x-api-key", "x-goog-api-key"])
def test_a_key_other_than_the_master_key_is_refused_in_every_header(live: LiveStack,
                                                                   header: str) -> None:
    value = "sk-wrong-" + _nonce()
    reply = httpx.post(f"{live.proxy.url}/v1/messages", json=_messages(False), timeout=30,
                       headers={header: f"Bearer {value}" if header == "authorization"
                                else value, "anthropic-version": "2023-06-01"})
    # Without a database LiteLLM answers a key that is not the master key with 400 "No
    # connected db." (it would look the key up as a virtual key); refused all the same.
    assert reply.status_code in (400, 401), reply.text
    assert live.upstream("groq").requests == []
