"""The fake upstream's Anthropic, Responses and Gemini wire formats: strict on the way in,
complete on the way out (the real agents stop at the first malformed event)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream

KEY = "sk-test-" + "5a" * 20
WRONG = "sk-test-" + "00" * 20
ANTHROPIC = {"model": "m1", "max_tokens": 16,
             "messages": [{"role": "user", "content": "say hi"}]}
RESPONSES = {"model": "m1", "input": [{"role": "user", "content": "say hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "say hi"}]}]}


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["m1"], api_key=KEY) as server:
        yield server


def events(reply: httpx.Response) -> list[tuple[str | None, dict[str, Any]]]:
    """The server-sent events of a reply, as (event name, data)."""
    assert reply.headers["content-type"] == "text/event-stream"
    out = []
    for block in reply.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields.get("event"), json.loads(fields["data"])))
    return out


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_message_with_x_api_key(up: FakeUpstream) -> None:
    reply = httpx.post(f"{up.url}/v1/messages", json=ANTHROPIC,
                       headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert reply.status_code == 200
    body = reply.json()
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "m1")
    assert body["content"] == [{"type": "text", "text": "ok"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 1
    record = up.requests[-1]
    assert (record.wire, record.model, record.key_header, record.authorized) == (
        "anthropic", "m1", "x-api-key", True)


def test_anthropic_stream_with_bearer_token_has_the_full_event_sequence(
        up: FakeUpstream) -> None:
    reply = httpx.post(f"{up.url}/v1/messages?beta=true", json={**ANTHROPIC, "stream": True},
                       headers={"Authorization": f"Bearer {KEY}",
                                "anthropic-version": "2023-06-01"})
    got = events(reply)
    assert [name for name, _ in got] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in got)
    assert got[3][1]["delta"] == {"type": "text_delta", "text": "ok"}
    assert up.requests[-1].key_header == "authorization"
    assert up.requests[-1].path == "/v1/messages"


def test_every_key_header_a_request_carried_is_recorded(up: FakeUpstream) -> None:
    httpx.post(f"{up.url}/v1/messages", json=ANTHROPIC,
               headers={"x-api-key": KEY, "Authorization": f"Bearer {KEY}",
                        "anthropic-version": "2023-06-01"})
    record = up.requests[-1]
    assert (record.key_header, record.key_headers) == ("x-api-key",
                                                       ("authorization", "x-api-key"))


def test_anthropic_count_tokens(up: FakeUpstream) -> None:
    reply = httpx.post(f"{up.url}/v1/messages/count_tokens",
                       json={"model": "m1", "messages": ANTHROPIC["messages"]},
                       headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert reply.json() == {"input_tokens": 2}


@pytest.mark.parametrize(("headers", "body", "status", "kind"), [
    ({"anthropic-version": "2023-06-01"}, ANTHROPIC, 401, "authentication_error"),
    ({"x-api-key": WRONG, "anthropic-version": "2023-06-01"}, ANTHROPIC, 401,
     "authentication_error"),
    ({"x-api-key": KEY}, ANTHROPIC, 400, "invalid_request_error"),
    ({"x-api-key": KEY, "anthropic-version": "2023-06-01"},
     {k: v for k, v in ANTHROPIC.items() if k != "max_tokens"}, 400, "invalid_request_error"),
    ({"x-api-key": KEY, "anthropic-version": "2023-06-01"}, {**ANTHROPIC, "model": "m9"}, 404,
     "not_found_error"),
])
def test_anthropic_refuses_what_the_real_api_refuses(up: FakeUpstream, headers: dict[str, str],
                                                     body: dict[str, Any], status: int,
                                                     kind: str) -> None:
    reply = httpx.post(f"{up.url}/v1/messages", json=body, headers=headers)
    assert reply.status_code == status
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == kind
    assert WRONG not in repr(up.requests)


# --------------------------------------------------------------------------- Responses


def test_responses_stream_ends_in_response_completed(up: FakeUpstream) -> None:
    reply = httpx.post(f"{up.api_base}/responses", json={**RESPONSES, "stream": True},
                       headers={"Authorization": f"Bearer {KEY}"})
    got = events(reply)
    names = [name for name, _ in got]
    assert names[0] == "response.created"
    assert names[-1] == "response.completed"
    assert "response.output_text.delta" in names
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    done = got[-1][1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == "ok"
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + 1
    record = up.requests[-1]
    assert (record.wire, record.model, record.key_header) == ("responses", "m1", "authorization")


def test_responses_without_stream_is_one_response_object(up: FakeUpstream) -> None:
    body = httpx.post(f"{up.api_base}/responses", json=RESPONSES,
                      headers={"Authorization": f"Bearer {KEY}"}).json()
    assert (body["object"], body["status"]) == ("response", "completed")


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({}, RESPONSES, 401),
    ({"x-api-key": KEY}, RESPONSES, 401),  # OpenAI takes the key as a Bearer token only
    ({"Authorization": f"Bearer {KEY}"}, {"model": "m1"}, 400),
    ({"Authorization": f"Bearer {KEY}"}, {**RESPONSES, "model": "m9"}, 404),
])
def test_responses_refuses_what_openai_refuses(up: FakeUpstream, headers: dict[str, str],
                                               body: dict[str, Any], status: int) -> None:
    reply = httpx.post(f"{up.api_base}/responses", json=body, headers=headers)
    assert reply.status_code == status
    assert reply.json()["error"]["message"]


# --------------------------------------------------------------------------- Gemini


def test_gemini_generate_content_with_x_goog_api_key(up: FakeUpstream) -> None:
    reply = httpx.post(f"{up.url}/v1beta/models/m1:generateContent", json=GEMINI,
                       headers={"x-goog-api-key": KEY})
    assert reply.status_code == 200
    candidate = reply.json()["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "ok"}]}
    assert candidate["finishReason"] == "STOP"
    record = up.requests[-1]
    assert (record.wire, record.model, record.key_header) == ("gemini", "m1", "x-goog-api-key")


def test_gemini_stream_as_sse_and_as_a_json_array(up: FakeUpstream) -> None:
    url = f"{up.url}/v1beta/models/m1:streamGenerateContent"
    got = events(httpx.post(f"{url}?alt=sse", json=GEMINI, headers={"x-goog-api-key": KEY}))
    assert [name for name, _ in got] == [None]
    assert got[0][1]["candidates"][0]["content"]["parts"] == [{"text": "ok"}]
    array = httpx.post(f"{url}?key={KEY}", json=GEMINI).json()
    assert array[0]["candidates"][0]["finishReason"] == "STOP"
    assert up.requests[-1].key_header == "key"
    assert KEY not in repr(up.requests)


def test_gemini_json_mode_gets_json(up: FakeUpstream) -> None:
    body = {**GEMINI, "generationConfig": {"responseMimeType": "application/json"}}
    reply = httpx.post(f"{up.url}/v1beta/models/m1:generateContent", json=body,
                       headers={"x-goog-api-key": KEY})
    assert json.loads(reply.json()["candidates"][0]["content"]["parts"][0]["text"]) == {}


@pytest.mark.parametrize(("headers", "body", "status", "state"), [
    ({}, GEMINI, 403, "PERMISSION_DENIED"),
    ({"x-goog-api-key": WRONG}, GEMINI, 400, "INVALID_ARGUMENT"),
    ({"Authorization": f"Bearer {KEY}"}, GEMINI, 403, "PERMISSION_DENIED"),
    ({"x-goog-api-key": KEY}, {"contents": []}, 400, "INVALID_ARGUMENT"),
])
def test_gemini_refuses_what_google_refuses(up: FakeUpstream, headers: dict[str, str],
                                            body: dict[str, Any], status: int,
                                            state: str) -> None:
    reply = httpx.post(f"{up.url}/v1beta/models/m1:generateContent", json=body,
                       headers=headers)
    assert reply.status_code == status
    assert reply.json()["error"]["status"] == state


def test_faults_apply_to_every_wire_in_its_own_error_shape(up: FakeUpstream) -> None:
    up.set_fault(429, retry_after=2)
    reply = httpx.post(f"{up.url}/v1/messages", json=ANTHROPIC,
                       headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["type"] == "rate_limit_error"
    reply = httpx.post(f"{up.url}/v1beta/models/m1:generateContent", json=GEMINI,
                       headers={"x-goog-api-key": KEY})
    assert reply.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
