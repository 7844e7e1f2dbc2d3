"""The non-OpenAI-chat wire formats of the fake upstream: Anthropic Messages, OpenAI Responses
and Gemini's native generateContent.

Real coding agents speak these (Claude Code, Codex, Gemini CLI; shared/notes/agent-configs.md
section 0), and each is picky about the replies it parses: a missing ``message_stop`` or
``response.completed`` event makes the agent retry, and its retries would hide what the test
wants to see. So the bodies and event streams here follow the providers' published shapes
(Anthropic "Streaming Messages", OpenAI "Responses streaming events", Gemini
"GenerateContentResponse"), and requests are checked the way the real API checks them: which
header carries the key, which fields are required.

Each format is a :class:`Wire`: how to find the key and the model in a request, what a
request must contain, the error body, and the answer (JSON or server-sent events).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: A request's headers as http.server parses them (names are case-insensitive).
Headers = Message


def tokens(text: str) -> int:
    """A crude, deterministic token count (about one per word), enough for usage accounting."""
    return max(1, len(text.split()))


def _text_of(value: Any) -> str:
    """All the text in a request's nested message structure (for the token count)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " ".join(_text_of(v) for k, v in value.items() if k in ("text", "content",
                                                                       "parts", "input"))
    if isinstance(value, Sequence):
        return " ".join(_text_of(v) for v in value)
    return ""


def sse(events: Sequence[tuple[str | None, Mapping[str, Any]]]) -> bytes:
    """Server-sent events: ``event:`` lines where the format names its events."""
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(data)}\n\n")
    return "".join(out).encode()


@dataclass(frozen=True)
class Reply:
    """What the fake sends back: a status and a JSON body, or a 200 event stream."""

    status: int
    body: object = None
    stream: bytes | None = None


@dataclass(frozen=True)
class Presented:
    """Where a request carried its key (the header's name), and the key (never recorded)."""

    header: str | None
    key: str | None


def key_headers(headers: Headers, query: str) -> tuple[str, ...]:
    """Every place a request carried a key, by name: what a client sends, whatever the API."""
    present = [name for name in ("authorization", "x-api-key", "x-goog-api-key")
               if headers.get(name) is not None]
    return (*present, "key") if "key" in parse_qs(query) else tuple(present)


def _bearer(headers: Headers) -> Presented:
    value = headers.get("Authorization")
    if value is None:
        return Presented(None, None)
    return Presented("authorization", value.removeprefix("Bearer ").strip())


def _body_model(path: str, body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None


# --------------------------------------------------------------------------- Anthropic


class AnthropicMessages:
    """``POST /v1/messages`` (and ``/v1/messages/count_tokens``), as api.anthropic.com.

    The key is ``x-api-key``; ``Authorization: Bearer`` is accepted too (what Claude Code sends
    for ``ANTHROPIC_AUTH_TOKEN``, and what OpenRouter's Anthropic endpoint takes). Like the
    real API it requires the ``anthropic-version`` header, ``model``, ``messages`` and, for a
    message, an integer ``max_tokens``.
    """

    name = "anthropic"

    @staticmethod
    def presented(headers: Headers, query: str) -> Presented:
        key = headers.get("x-api-key")
        return Presented("x-api-key", key) if key is not None else _bearer(headers)

    model = staticmethod(_body_model)

    @staticmethod
    def error(status: int, message: str) -> Reply:
        kind = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}.get(status, "api_error")
        return Reply(status, {"type": "error", "error": {"type": kind, "message": message}})

    def unauthorized(self, presented: Presented) -> Reply:
        if presented.key is None:
            return self.error(401, "x-api-key header is required")
        return self.error(401, "invalid x-api-key")

    def invalid(self, path: str, headers: Headers, body: Mapping[str, Any]) -> str | None:
        if not headers.get("anthropic-version"):
            return "anthropic-version: header is required"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("messages"), list):
            return "messages: Field required"
        if not path.endswith("/count_tokens") and not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        return None

    def answer(self, path: str, query: str, body: Mapping[str, Any], model: str, reply: str,
               number: int) -> Reply:
        prompt = tokens(_text_of(body.get("messages")) + " " + _text_of(body.get("system")))
        if path.endswith("/count_tokens"):
            return Reply(200, {"input_tokens": prompt})
        words = reply.split()[:max(1, int(body.get("max_tokens", 1)))]
        text = " ".join(words)
        message = {"id": f"msg_fake{number:08d}", "type": "message", "role": "assistant",
                   "model": model, "content": [{"type": "text", "text": text}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": prompt, "output_tokens": tokens(text)}}
        if body.get("stream") is not True:
            return Reply(200, message)
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": prompt, "output_tokens": 1}}
        return Reply(200, stream=sse([
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": tokens(text)}}),
            ("message_stop", {"type": "message_stop"}),
        ]))


# --------------------------------------------------------------------------- OpenAI Responses


class OpenAIResponses:
    """``POST /v1/responses``, as api.openai.com: Bearer key, ``model`` and ``input`` required;
    ``stream: true`` answers with the typed event sequence ending in ``response.completed``."""

    name = "responses"

    @staticmethod
    def presented(headers: Headers, query: str) -> Presented:
        return _bearer(headers)

    model = staticmethod(_body_model)

    @staticmethod
    def error(status: int, message: str) -> Reply:
        code = {401: "invalid_api_key", 404: "model_not_found"}.get(status)
        return Reply(status, {"error": {"message": message, "type": "invalid_request_error",
                                        "param": None, "code": code}})

    def unauthorized(self, presented: Presented) -> Reply:
        if presented.key is None:
            return self.error(401, "You didn't provide an API key.")
        return self.error(401, "Incorrect API key provided.")

    def invalid(self, path: str, headers: Headers, body: Mapping[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str):
            return "Missing required parameter: 'model'."
        if not isinstance(body.get("input"), str | list):
            return "Missing required parameter: 'input'."
        return None

    def answer(self, path: str, query: str, body: Mapping[str, Any], model: str, reply: str,
               number: int) -> Reply:
        limit = body.get("max_output_tokens")
        words = reply.split()
        text = " ".join(words[:max(1, limit)] if isinstance(limit, int) else words)
        prompt = tokens(_text_of(body.get("input")) + " " + _text_of(body.get("instructions")))
        item_id = f"msg_fake{number:08d}"
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": tokens(text), "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": prompt + tokens(text)}
        response = {"id": f"resp_fake{number:08d}", "object": "response",
                    "created_at": int(time.time()), "status": "completed", "model": model,
                    "output": [item], "usage": usage, "error": None,
                    "incomplete_details": None}
        if body.get("stream") is not True:
            return Reply(200, response)
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str | None, Mapping[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": pending}),
            ("response.in_progress", {"type": "response.in_progress", "response": pending}),
            ("response.output_item.added", {
                "type": "response.output_item.added", "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []}}),
            ("response.content_part.added", {
                "type": "response.content_part.added", "item_id": item_id, "output_index": 0,
                "content_index": 0, "part": {**part, "text": ""}}),
            ("response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                "content_index": 0, "delta": text}),
            ("response.output_text.done", {
                "type": "response.output_text.done", "item_id": item_id, "output_index": 0,
                "content_index": 0, "text": text}),
            ("response.content_part.done", {
                "type": "response.content_part.done", "item_id": item_id, "output_index": 0,
                "content_index": 0, "part": part}),
            ("response.output_item.done", {"type": "response.output_item.done",
                                           "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": response}),
        ]
        numbered = [(n, {**e, "sequence_number": i}) for i, (n, e) in enumerate(events)]
        return Reply(200, stream=sse(numbered))


# --------------------------------------------------------------------------- Gemini native


class GeminiNative:
    """``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent``, as
    generativelanguage.googleapis.com: the key in ``x-goog-api-key`` (or ``?key=``), the
    model in the path, ``contents`` required; ``?alt=sse`` streams server-sent events, a
    stream without it is one JSON array. ``:countTokens`` answers a count."""

    name = "gemini"

    @staticmethod
    def presented(headers: Headers, query: str) -> Presented:
        key = headers.get("x-goog-api-key")
        if key is not None:
            return Presented("x-goog-api-key", key)
        keys = parse_qs(query).get("key")
        return Presented("key", keys[0]) if keys else Presented(None, None)

    @staticmethod
    def model(path: str, body: Mapping[str, Any]) -> str | None:
        tail = path.rsplit("/models/", 1)[-1]
        return tail.split(":", 1)[0] or None

    @staticmethod
    def error(status: int, message: str) -> Reply:
        state = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}.get(status, "INTERNAL")
        return Reply(status, {"error": {"code": status, "message": message, "status": state}})

    def unauthorized(self, presented: Presented) -> Reply:
        if presented.key is None:
            return self.error(403, "Method doesn't allow unregistered callers (callers without "
                                   "established identity). Please use API Key or other form of "
                                   "API consumer identity to call this API.")
        return self.error(400, "API key not valid. Please pass a valid API key.")

    def invalid(self, path: str, headers: Headers, body: Mapping[str, Any]) -> str | None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        return None

    def answer(self, path: str, query: str, body: Mapping[str, Any], model: str, reply: str,
               number: int) -> Reply:
        prompt = tokens(_text_of(body.get("contents")))
        if path.endswith(":countTokens"):
            return Reply(200, {"totalTokens": prompt})
        config = body.get("generationConfig")
        wants_json = isinstance(config, Mapping) and (
            config.get("responseMimeType") == "application/json")
        # A JSON-mode request (Gemini CLI's routing and next-speaker checks) gets valid JSON.
        text = "{}" if wants_json else reply
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": tokens(text),
                 "totalTokenCount": prompt + tokens(text)}
        response = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": usage, "modelVersion": model,
                    "responseId": f"fake{number:08d}"}
        if not path.endswith(":streamGenerateContent"):
            return Reply(200, response)
        if parse_qs(query).get("alt") == ["sse"]:
            return Reply(200, stream=sse([(None, response)]))
        return Reply(200, [response])


Wire = AnthropicMessages | OpenAIResponses | GeminiNative

#: Which wire serves a POST to ``path``.
WIRES: dict[str, Wire] = {"anthropic": AnthropicMessages(), "responses": OpenAIResponses(),
         "gemini": GeminiNative()}
GEMINI_METHODS = (":generateContent", ":streamGenerateContent", ":countTokens")


def wire_of(method: str, path: str) -> Wire | None:
    """The non-chat wire format a request is in, from its method and path (no query)."""
    if method != "POST":
        return None
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        return WIRES["anthropic"]
    if path in ("/v1/responses", "/responses"):
        return WIRES["responses"]
    if "/models/" in path and path.endswith(GEMINI_METHODS):
        return WIRES["gemini"]
    return None


def split_target(raw: str) -> tuple[str, str]:
    """A request target's path (no trailing slash) and query string."""
    parts = urlsplit(raw)
    return parts.path.rstrip("/") or "/", parts.query
