"""The fake upstream does what the live tests rely on, deterministically.

Every wait here is on the fake's own condition variables (``wait_for_waiting``,
``wait_for_requests``) or on a reply; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.support.fake_upstream import FakeUpstream, Fault

KEY = "gsk_" + "4f" * 20
CHAT = {"model": "m1", "max_tokens": 1, "messages": [{"role": "user", "content": "say hi now"}]}


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["m1", "m2"], api_key=KEY, control_port=0) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
        yield c


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """Run a blocking request in a thread; its result or exception lands in the list."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(call())
        except Exception as exc:  # the test inspects it
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# --------------------------------------------------------------------------- healthy


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_models_and_a_valid_chat_completion_with_usage(up: FakeUpstream, client: httpx.Client,
                                                       prefix: str) -> None:
    models = client.get(f"{up.url}{prefix}/models").json()
    assert [m["id"] for m in models["data"]] == ["m1", "m2"]
    reply = client.post(f"{up.url}{prefix}/chat/completions", json=CHAT)
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == 3
    assert usage["completion_tokens"] == 1
    assert usage["total_tokens"] == 4


def test_streaming_ends_with_done(up: FakeUpstream, client: httpx.Client) -> None:
    reply = client.post(f"{up.api_base}/chat/completions", json={**CHAT, "stream": True})
    assert reply.headers["content-type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in reply.text.splitlines() if line]
    assert events[-1] == "[DONE]"
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "ok"


def test_accepted_sockets_have_tcp_nodelay(up: FakeUpstream, client: httpx.Client) -> None:
    client.get(f"{up.api_base}/models")  # the keep-alive connection stays open
    server = up._server
    assert server is not None
    with server.connections_lock:
        sockets = list(server.connections)
    assert sockets
    assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)


def test_the_key_is_checked_and_echoed_like_openai_but_never_recorded(
        up: FakeUpstream) -> None:
    wrong = "gsk_" + "00" * 20
    reply = httpx.get(f"{up.api_base}/models", headers={"Authorization": f"Bearer {wrong}"})
    assert reply.status_code == 401
    assert wrong in reply.json()["error"]["message"]
    assert httpx.get(f"{up.api_base}/models").json()["error"]["message"] == "Invalid API Key"
    assert [r.authorized for r in up.requests] == [False, False]
    assert wrong not in repr(up.requests)


def test_an_unknown_model_is_a_natural_404(up: FakeUpstream, client: httpx.Client) -> None:
    reply = client.post(f"{up.api_base}/chat/completions", json={**CHAT, "model": "m9"})
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "model_not_found"


def test_every_request_is_recorded_in_order(up: FakeUpstream, client: httpx.Client) -> None:
    before = time.monotonic()
    client.get(f"{up.api_base}/models")
    client.post(f"{up.url}/chat/completions", json=CHAT)
    client.get(f"{up.control_url}/_control")  # control traffic is not recorded
    records = up.wait_for_requests(2, timeout=5)
    assert [(r.method, r.path, r.model, r.fault) for r in records] == [
        ("GET", "/v1/models", None, "ok"), ("POST", "/chat/completions", "m1", "ok")]
    assert before <= records[0].at <= records[1].at <= time.monotonic()
    assert len(up.requests) == 2
    with pytest.raises(TimeoutError, match="2 of 3 requests"):
        up.wait_for_requests(3, timeout=0.05)
    up.clear_requests()
    assert up.requests == []


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("fault", "params", "status", "code"), [
    ("401", {}, 401, "invalid_api_key"),
    ("404", {}, 404, "model_not_found"),
    ("429", {"retry_after": 3}, 429, "rate_limit_exceeded"),
    ("500", {}, 500, None),
    ("500", {"status": 503}, 503, None),
])
def test_error_faults_send_openai_shaped_errors(up: FakeUpstream, client: httpx.Client,
                                                fault: Any, params: dict[str, Any], status: int,
                                                code: str | None) -> None:
    up.set_fault(fault, **params)
    reply = client.post(f"{up.api_base}/chat/completions", json=CHAT)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert reply.headers.get("retry-after") == ("3" if fault == "429" else None)
    assert up.requests[-1].fault == str(status)


def test_a_fault_can_be_limited_to_some_paths(up: FakeUpstream, client: httpx.Client) -> None:
    up.set_fault(429, paths=("/chat/completions",))
    assert client.get(f"{up.api_base}/models").status_code == 200
    assert client.post(f"{up.api_base}/chat/completions", json=CHAT).status_code == 429


def test_hang_holds_a_request_until_the_fault_is_cleared(up: FakeUpstream,
                                                         client: httpx.Client) -> None:
    up.set_fault("hang")
    thread, out = in_thread(lambda: client.get(f"{up.api_base}/models"))
    up.wait_for_waiting(1, timeout=5)
    assert out == []
    up.clear_fault()
    thread.join(timeout=5)
    assert out[0].status_code == 200
    assert up.waiting == 0


def test_hang_never_blocks_stop() -> None:
    up = FakeUpstream().start()
    up.set_fault("hang")
    thread, out = in_thread(lambda: httpx.get(f"{up.api_base}/models", timeout=30))
    up.wait_for_waiting(1, timeout=5)
    started = time.monotonic()
    up.stop()
    assert time.monotonic() - started < 1
    thread.join(timeout=5)
    assert isinstance(out[0], httpx.RemoteProtocolError)  # dropped without an answer


def test_slow_answers_after_the_delay(up: FakeUpstream, client: httpx.Client) -> None:
    up.set_fault("slow", delay=0.3)
    started = time.monotonic()
    reply = client.get(f"{up.api_base}/models")
    assert reply.status_code == 200
    assert 0.3 <= time.monotonic() - started < 2


def test_refused_closes_the_port_and_clearing_reopens_the_same_one(
        up: FakeUpstream, client: httpx.Client) -> None:
    port = up.port
    assert client.get(f"{up.api_base}/models").status_code == 200  # a pooled connection
    up.set_fault("refused")
    for _ in range(2):  # the pooled connection was reset too, not reused
        with pytest.raises(httpx.ConnectError):
            client.get(f"{up.api_base}/models")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    up.clear_fault()
    assert up.port == port
    assert client.get(f"{up.api_base}/models").status_code == 200
    assert [r.fault for r in up.requests] == ["ok", "ok"]


def test_random_failures_are_reproducible_from_the_seed(up: FakeUpstream,
                                                        client: httpx.Client) -> None:
    def draw() -> list[int]:
        return [client.get(f"{up.api_base}/models").status_code for _ in range(60)]

    up.set_fault("random", ratio=0.3, seed=42, status=502)
    first = draw()
    up.set_fault("random", ratio=0.3, seed=42, status=502)
    assert draw() == first
    assert set(first) == {200, 502}
    assert 8 <= first.count(502) <= 30
    up.set_fault("random", ratio=0.3, seed=7, status=502)
    assert draw() != first


def test_bad_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.from_json({"fault": "explode"})
    with pytest.raises(ValueError, match="probability"):
        Fault(kind="random", ratio=2)
    with pytest.raises(ValueError, match="unknown control keys"):
        Fault.from_json({"fault": "ok", "colour": "red"})


# --------------------------------------------------------------------------- over HTTP


def test_the_control_endpoint_drives_it_over_http(up: FakeUpstream,
                                                  client: httpx.Client) -> None:
    reply = httpx.post(f"{up.url}/_control", json={"fault": "429", "retry_after": 2})
    assert reply.json()["fault"]["fault"] == "429"
    assert client.get(f"{up.api_base}/models").headers["retry-after"] == "2"
    state = httpx.get(f"{up.control_url}/_control").json()
    assert (state["fault"]["fault"], state["requests"], state["waiting"]) == ("429", 1, 0)
    assert httpx.get(f"{up.url}/_requests").json()[0]["path"] == "/v1/models"
    assert httpx.delete(f"{up.url}/_requests").status_code == 200
    assert up.requests == []
    assert httpx.post(f"{up.url}/_control", json={"fault": "nope"}).status_code == 400
    assert httpx.post(f"{up.url}/_control", content=b"[1]").status_code == 400
    # Refused over the main port: the reply arrives, then the port is closed.
    assert httpx.post(f"{up.url}/_control", json={"fault": "refused"}).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{up.api_base}/models")
    # The separate control listener is what clears it.
    assert httpx.post(f"{up.control_url}/_control", json={"fault": "ok"}).status_code == 200
    assert client.get(f"{up.api_base}/models").status_code == 200


def test_the_command_line_entry_point_serves_until_sigterm() -> None:
    env = {**os.environ, "FAKE_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_upstream", "--port", "0", "--model", "m1",
         "--api-key-env", "FAKE_KEY", "--fault", '{"fault": "429", "retry_after": 5}'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())  # printed once it listens
        auth = {"Authorization": f"Bearer {KEY}"}
        reply = httpx.get(f"{ready['api_base']}/models", headers=auth)
        assert (reply.status_code, reply.headers["retry-after"]) == (429, "5")
        httpx.post(f"{ready['url']}/_control", json={"fault": "refused"})
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{ready['api_base']}/models", headers=auth)
        httpx.post(f"{ready['control_url']}/_control", json={"fault": "ok"})
        assert httpx.get(f"{ready['api_base']}/models", headers=auth).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
