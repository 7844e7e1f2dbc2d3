"""The project's fake upstream: the one stand-in for Groq, OpenRouter, Anthropic & co.

It speaks OpenAI chat (``/v1/chat/completions``, ``/v1/models``) and, for the real coding
agents of issue 10, Anthropic Messages (``/v1/messages``), OpenAI Responses (``/v1/responses``)
and Gemini's native ``/v1beta/models/<model>:generateContent`` (tests/support/fake_wires.py),
each with the key header and the required fields the real API insists on. Every request
records which header carried its key (``key_header``) and its wire format (``wire``).

There is no internet where the tests run, and a real provider cannot be told to fail on cue,
so the live tests point LiteLLM (and the watchdog's direct probes) at this server and inject
the runbook's faults (section 1.2) one by one:

========== ==============================================================================
``ok``      answer normally (the default)
``401``     OpenAI-style ``invalid_api_key`` error
``404``     ``model_not_found``
``429``     ``rate_limit_exceeded`` with a ``Retry-After`` header
``500``     ``server_error`` (``status`` may pick another 5xx)
``hang``    accept, read the request, never answer until the fault changes or the server stops
``slow``    answer normally after ``delay`` seconds
``refused`` stop listening (connection refused); listen again on the SAME port when cleared
``random``  fail a ``ratio`` of requests with ``status``, drawn from an RNG seeded by ``seed``
``html``    answer 200 with an HTML log-in page, as a captive portal or a login proxy does
========== ==============================================================================

A test drives it in-process (:meth:`FakeUpstream.set_fault`); another process drives it over
HTTP with ``POST /_control`` (JSON ``{"fault": "429", "retry_after": 7}``). While ``refused``
the main port is closed, so the optional separate control listener (``control_port``) is the
way to clear it from outside. Every request is recorded (method, path, model, time, the fault
applied), never its key, so a test can prove what reached the upstream and when.

Synchronisation is by condition variables (:meth:`FakeUpstream.wait_for_requests`), never by
sleeping. Accepted sockets get TCP_NODELAY: without it Nagle plus delayed ACK add ~40 ms to
every reply, which would swamp the latencies the tests measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal, cast, get_args

from tests.support.fake_wires import (
    Presented,
    Reply,
    Wire,
    key_headers,
    split_target,
    tokens,
    wire_of,
)

FaultKind = Literal["ok", "401", "404", "429", "500", "hang", "slow", "refused", "random",
                    "html"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

#: How often the serving loop checks for shutdown; bounds how long stop() and refused take.
_POLL_S = 0.05


@dataclass(frozen=True)
class Fault:
    """What the upstream does with the next requests.

    ``paths`` limits the fault to requests whose path ends with one of these suffixes (e.g.
    ``("/chat/completions",)`` to rate-limit completions while ``/models`` still answers, as
    real providers do); other requests are answered normally. ``refused`` ignores it.
    """

    kind: FaultKind = "ok"
    retry_after: float | None = 7.0
    delay: float = 0.0
    ratio: float = 0.0
    seed: int = 0
    status: int | None = None
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError("ratio is a probability between 0 and 1")
        if self.delay < 0:
            raise ValueError("delay is a number of seconds >= 0")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from the control JSON: ``{"fault": "429", "retry_after": 3}``."""
        known = {"fault", "retry_after", "delay", "ratio", "seed", "status", "paths"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown control keys {sorted(unknown)}; known: {sorted(known)}")
        kind = str(data.get("fault", "ok"))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        retry_after = data.get("retry_after", 7.0)
        status = data.get("status")
        return cls(kind=cast(FaultKind, kind),
                   retry_after=None if retry_after is None else float(retry_after),
                   delay=float(data.get("delay", 0.0)), ratio=float(data.get("ratio", 0.0)),
                   seed=int(data.get("seed", 0)),
                   status=None if status is None else int(status),
                   paths=tuple(str(p) for p in data.get("paths", ())))

    def to_json(self) -> dict[str, Any]:
        """The control JSON for this fault (what ``GET /_control`` answers)."""
        out = asdict(self)
        out["fault"] = out.pop("kind")
        out["paths"] = list(self.paths)
        return out


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream saw it (never its key: only whether it was accepted)."""

    method: str
    path: str
    model: str | None
    at: float  # time.monotonic() on arrival, comparable with the test's own clock
    fault: str  # what was done with it: ok, 401, ..., hang, slow, or the random draw
    authorized: bool
    #: Which header carried a key: "authorization" (Bearer), "x-api-key", "x-goog-api-key",
    #: "key" (Gemini's query parameter), or None when the request carried none.
    key_header: str | None = None
    #: Every key-carrying header (or query parameter) the request had, checked or not.
    key_headers: tuple[str, ...] = ()
    #: The wire format of the request: "openai" (chat, models), "anthropic", "responses",
    #: "gemini" (see tests/support/fake_wires.py).
    wire: str = "openai"


# --------------------------------------------------------------------------- response bodies

#: What a captive portal or a login proxy answers on every path (the ``html`` fault).
PORTAL_TITLE = "Guest Wi-Fi: please log in"
PORTAL_PAGE = (f"<!DOCTYPE html>\n<html><head><title>{PORTAL_TITLE}</title></head>"
               "<body><form method=post action=/login><input name=user></form></body></html>\n")


def error_body(status: int, model: str | None, retry_after: float | None = None,
               received_key: str | None = None) -> dict[str, Any]:
    """The OpenAI-style error JSON a real provider sends for ``status``.

    A 401 for a wrong key echoes the key received, as OpenAI's "Incorrect API key provided"
    does: a hostile but real case for the watchdog's redaction.
    """
    error: dict[str, str | None]
    if status == 401 and received_key:
        error = {"message": f"Incorrect API key provided: {received_key}.",
                 "type": "invalid_request_error", "code": "invalid_api_key"}
    elif status == 401:
        error = {"message": "Invalid API Key", "type": "invalid_request_error",
                 "code": "invalid_api_key"}
    elif status == 403:
        error = {"message": "You do not have access to this resource.",
                 "type": "permission_error", "code": "permission_denied"}
    elif status == 404:
        error = {"message": f"The model `{model}` does not exist or you do not have access to it.",
                 "type": "invalid_request_error", "code": "model_not_found"}
    elif status == 429:
        wait = f" Please try again in {retry_after:g}s." if retry_after is not None else ""
        error = {"message": f"Rate limit reached for model `{model}` on tokens per minute.{wait}",
                 "type": "tokens", "code": "rate_limit_exceeded"}
    elif status >= 500:
        error = {"message": "The server had an error while processing your request. Sorry!",
                 "type": "server_error", "code": None}
    else:
        error = {"message": f"Request failed with status {status}.",
                 "type": "invalid_request_error", "code": None}
    return {"error": {**error, "param": None}}


def chat_completion(model: str, messages: Sequence[Mapping[str, Any]], reply: str,
                    max_tokens: int | None, number: int) -> dict[str, Any]:
    """A valid ``chat.completion`` object with usage, as OpenAI-compatible providers send."""
    prompt = " ".join(str(m.get("content", "")) for m in messages)
    words = reply.split()
    if max_tokens is not None:
        words = words[:max(1, max_tokens)]
    content = " ".join(words)
    prompt_tokens, completion_tokens = tokens(prompt), tokens(content)
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def embeddings(model: str, inputs: Any) -> dict[str, Any]:
    """A valid ``/embeddings`` answer (one 3-dimensional vector per input), with usage."""
    texts = inputs if isinstance(inputs, list) else [inputs]
    used = sum(tokens(str(t)) for t in texts)
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                     for i in range(len(texts))],
            "usage": {"prompt_tokens": used, "total_tokens": used}}


def _stream_chunks(completion: dict[str, Any]) -> bytes:
    """The same completion as server-sent events (``stream: true``), ending in ``[DONE]``."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    content = completion["choices"][0]["message"]["content"]
    chunks = [
        {**base, "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                      "finish_reason": None}]},
        {**base, "object": "chat.completion.chunk",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": completion["usage"]},
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return text.encode()


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that sets TCP_NODELAY and can drop every open connection."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    #: socketserver's default listen backlog is 5: a proxy opening 64 connections at once
    #: then saw SYNs dropped and retried after 1, 3, 7 and 15 s (bench/proxy_overhead.py's
    #: p99 of 15 s at 64 clients). A real provider's backlog is far larger.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], upstream: FakeUpstream, control_only: bool):
        self.upstream = upstream
        self.control_only = control_only
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet for connections the client or a fault reset; loud for anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def drop_connections(self, keep: socket.socket | None = None) -> None:
        """Reset every open connection (as a dying process would), except ``keep``."""
        with self.connections_lock:
            doomed = [s for s in self.connections if s is not keep]
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as LiteLLM's pooled clients expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the recorded requests are the log (and a log could leak a header)."""

    # -- replies

    def send_json(self, status: int, body: object, headers: Mapping[str, str] | None = None,
                  close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_html(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return None

    # -- verbs

    def do_GET(self) -> None:
        self.server.upstream._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.upstream._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.upstream._handle(self, "DELETE")


# --------------------------------------------------------------------------- the upstream


def _path(raw: str) -> str:
    return raw.split("?", 1)[0].rstrip("/") or "/"


class FakeUpstream:
    """An OpenAI-compatible upstream on loopback whose faults the test controls.

    ``models`` are listed by ``GET /v1/models``; when given, a completion for any other model
    gets a natural 404. ``api_key``, when given, is required as a Bearer token (a wrong one
    gets a natural 401), so a probe can prove a key is accepted; it is never recorded.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 models: Sequence[str] = ("fake-model",), api_key: str | None = None,
                 control_port: int | None = None, reply: str = "ok") -> None:
        self.host = host
        self._port = port
        self._control_port = control_port
        self.models = tuple(models)
        self.api_key = api_key
        self.reply = reply
        self._cond = threading.Condition()
        self._fault = Fault()
        self._generation = 0  # bumped on every fault change: wakes hanging requests
        self._rng = random.Random(0)  # a test double: S311 is off for tests
        self._records: list[RecordedRequest] = []
        self._waiting = 0  # requests held by hang or slow right now
        self._answered = 0
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._control: _Server | None = None
        self._control_thread: threading.Thread | None = None
        self._listen_lock = threading.Lock()

    # -- life cycle

    def start(self) -> FakeUpstream:
        """Bind and serve (the port is fixed from here on, even across ``refused``)."""
        with self._cond:
            self._stopping = False
        self._listen()
        if self._control_port is not None:
            self._control = _Server((self.host, self._control_port), self, control_only=True)
            self._control_port = int(self._control.server_address[1])
            self._control_thread = self._serve(self._control, "fake-upstream-control")
        return self

    def stop(self) -> None:
        """Stop serving; held (hanging, slow) requests are released without an answer."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._unlisten()
        if self._control is not None:
            self._close(self._control, self._control_thread)
            self._control = self._control_thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self, server: _Server, name: str) -> threading.Thread:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": _POLL_S},
                                  name=name, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _close(server: _Server, thread: threading.Thread | None,
               keep: socket.socket | None = None) -> None:
        server.shutdown()
        server.server_close()
        server.drop_connections(keep)
        if thread is not None:
            thread.join()

    def _listen(self) -> None:
        with self._listen_lock:
            if self._server is not None:
                return
            try:
                server = _Server((self.host, self._port), self, control_only=False)
            except OSError as exc:
                raise RuntimeError(f"the fake upstream cannot listen on {self.host}:"
                                   f"{self._port} again: {exc}") from exc
            self._port = int(server.server_address[1])
            self._server = server
            self._thread = self._serve(server, f"fake-upstream-{self._port}")

    def _unlisten(self, keep: socket.socket | None = None) -> None:
        with self._listen_lock:
            if self._server is None:
                return
            self._close(self._server, self._thread, keep)
            self._server = self._thread = None

    # -- addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the same across ``refused`` and back)."""
        return f"http://{self.host}:{self._port}"

    @property
    def api_base(self) -> str:
        """What a client configures as the OpenAI base URL (``<url>/v1``)."""
        return f"{self.url}/v1"

    @property
    def control_url(self) -> str | None:
        """The separate control listener, which stays up while the main port is refused."""
        return None if self._control is None else f"http://{self.host}:{self._control_port}"

    # -- faults

    @property
    def fault(self) -> Fault:
        with self._cond:
            return self._fault

    def set_fault(self, kind: FaultKind | int | Fault = "ok", **params: Any) -> Fault:
        """Apply a fault now: ``set_fault(429, retry_after=3)``, ``set_fault("hang")``.

        Returns once it is in force: after ``refused`` the port is closed (and every open
        connection reset); after anything else it is listening again.
        """
        fault = kind if isinstance(kind, Fault) else Fault(kind=cast(FaultKind, str(kind)),
                                                           **params)
        self._apply(fault)
        return fault

    def clear_fault(self) -> None:
        """Back to ``ok`` (and listening, if it was ``refused``)."""
        self._apply(Fault())

    def _apply(self, fault: Fault, keep: socket.socket | None = None) -> None:
        with self._cond:
            self._fault = fault
            self._generation += 1
            self._rng = random.Random(fault.seed)
            self._cond.notify_all()
            stopping = self._stopping
        if fault.kind == "refused":
            self._unlisten(keep)
        elif not stopping:
            self._listen()

    # -- records

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (control requests excluded)."""
        with self._cond:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._cond:
            self._records.clear()

    @property
    def waiting(self) -> int:
        """How many requests are held right now by ``hang`` or ``slow``."""
        with self._cond:
            return self._waiting

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` (evaluated under the lock on every change) or timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_requests(self, count: int, timeout: float = 10.0,
                          path: str | None = None) -> list[RecordedRequest]:
        """The first ``count`` requests (ending with ``path`` if given), once they arrived."""
        def matching() -> list[RecordedRequest]:
            return [r for r in self._records if path is None or r.path.endswith(path)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} requests"
                                   f"{' to ' + path if path else ''} arrived within {timeout} s")
            return matching()[:count]

    def wait_for_waiting(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` requests are held by ``hang``/``slow`` (no sleep-polling)."""
        if not self.wait_for(lambda: self._waiting >= count, timeout):
            raise TimeoutError(f"{self._waiting} of {count} requests held within {timeout} s")

    # -- request handling (called on the server's threads)

    def _handle(self, h: _Handler, method: str) -> None:
        path = _path(h.path)
        if path.startswith("/_"):
            self._handle_control(h, method, path)
            return
        if h.server.control_only:
            h.send_json(404, error_body(404, None))
            return
        body = h.read_json() if method == "POST" else {}
        wire = wire_of(method, path)
        if not isinstance(body, dict):
            message = "the body is not JSON"
            if wire is not None:
                self._send(h, wire.error(400, message))
                return
            h.send_json(400, {"error": {"message": message, "param": None,
                                        "type": "invalid_request_error", "code": None}})
            return
        query = split_target(h.path)[1]
        if wire is None:
            model = body.get("model") if isinstance(body.get("model"), str) else None
            bearer = h.headers.get("Authorization")
            presented = Presented(None if bearer is None else "authorization",
                                  None if bearer is None else bearer.removeprefix("Bearer "))
            authorized = self.api_key is None or bearer == f"Bearer {self.api_key}"
        else:
            model = wire.model(path, body)
            presented = wire.presented(h.headers, query)
            authorized = self.api_key is None or presented.key == self.api_key
        is_models = method == "GET" and path in ("/v1/models", "/models")
        is_chat = method == "POST" and path in ("/v1/chat/completions", "/chat/completions")

        with self._cond:
            fault = self._fault
            applies = not fault.paths or any(path.endswith(p) for p in fault.paths)
            action = self._decide(fault) if applies else "ok"
            self._records.append(RecordedRequest(method, path, model, time.monotonic(),
                                                 action, authorized, presented.header,
                                                 key_headers(h.headers, query),
                                                 "openai" if wire is None else wire.name))
            self._cond.notify_all()

        while action == "hang":
            # Held until the fault changes (then answered per the new one) or the server stops.
            with self._cond:
                self._waiting += 1
                self._cond.notify_all()
                self._cond.wait_for(self._changed_since(self._generation))
                self._waiting -= 1
                if self._stopping:
                    h.close_connection = True
                    return
                fault = self._fault
                applies = not fault.paths or any(path.endswith(p) for p in fault.paths)
                action = self._decide(fault) if applies else "ok"
        if action == "refused":  # the port closed while this request was held
            h.close_connection = True
            return
        if action == "slow":
            with self._cond:
                self._waiting += 1
                self._cond.notify_all()
                stopped = self._cond.wait_for(lambda: self._stopping, fault.delay)
                self._waiting -= 1
            if stopped:
                h.close_connection = True
                return
            action = "ok"

        if action == "html":
            h.send_html(200, PORTAL_PAGE)
        elif action != "ok":
            status = int(action)
            headers: dict[str, str] = {}
            if status == 429 and fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            error = error_body(status, model, fault.retry_after)
            if wire is not None:
                self._send(h, wire.error(status, str(error["error"]["message"])), headers)
            else:
                h.send_json(status, error, headers)
        elif wire is not None:
            self._wire(h, wire, path, query, body, model, presented, authorized)
        elif not authorized:
            sent = h.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            h.send_json(401, error_body(401, model, received_key=sent or None))
        elif is_models:
            h.send_json(200, {"object": "list",
                              "data": [{"id": m, "object": "model", "created": 0,
                                        "owned_by": "fake-upstream"} for m in self.models]})
        elif is_chat:
            self._chat(h, body, model)
        elif method == "POST" and path in ("/v1/embeddings", "/embeddings") and model:
            h.send_json(200, embeddings(model, body.get("input")))
        else:
            h.send_json(404, {"error": {"message": f"no route {method} {path}", "param": None,
                                        "type": "invalid_request_error", "code": None}})

    def _changed_since(self, generation: int) -> Callable[[], bool]:
        """A wait predicate: the fault changed after ``generation``, or the server stops."""
        return lambda: self._stopping or self._generation != generation

    def _decide(self, fault: Fault) -> str:
        """What to do with one request under ``fault`` (called with the lock held)."""
        if fault.kind == "random":
            failed = self._rng.random() < fault.ratio
            return str(fault.status or 500) if failed else "ok"
        if fault.kind == "500" and fault.status is not None:
            return str(fault.status)
        return fault.kind

    def _wire(self, h: _Handler, wire: Wire, path: str, query: str, body: dict[str, Any],
              model: str | None, presented: Presented, authorized: bool) -> None:
        """A request in a non-chat wire format: checked and answered as that API would."""
        if not authorized:
            self._send(h, wire.unauthorized(presented))
            return
        problem = wire.invalid(path, h.headers, body)
        if problem is not None or model is None:
            self._send(h, wire.error(400, problem or "model is required"))
            return
        if self.models and model not in self.models:
            self._send(h, wire.error(404, str(error_body(404, model)["error"]["message"])))
            return
        with self._cond:
            self._answered += 1
            number = self._answered
        self._send(h, wire.answer(path, query, body, model, self.reply, number))

    @staticmethod
    def _send(h: _Handler, reply: Reply, headers: Mapping[str, str] | None = None) -> None:
        if reply.stream is None:
            h.send_json(reply.status, reply.body, headers)
            return
        h.send_response(reply.status)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(reply.stream)))
        h.end_headers()
        h.wfile.write(reply.stream)
        h.wfile.flush()

    def _chat(self, h: _Handler, body: dict[str, Any], model: str | None) -> None:
        messages = body.get("messages")
        if model is None or not isinstance(messages, list):
            h.send_json(400, {"error": {"message": "model and messages are required",
                                        "type": "invalid_request_error", "param": None,
                                        "code": None}})
            return
        if self.models and model not in self.models:
            h.send_json(404, error_body(404, model))
            return
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        with self._cond:
            self._answered += 1
            number = self._answered
        completion = chat_completion(model, messages, self.reply,
                                     max_tokens if isinstance(max_tokens, int) else None, number)
        if body.get("stream") is True:
            self._send(h, Reply(200, stream=_stream_chunks(completion)))
            return
        h.send_json(200, completion)

    def _handle_control(self, h: _Handler, method: str, path: str) -> None:
        if path == "/_control" and method == "POST":
            data = h.read_json()
            try:
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                fault = Fault.from_json(data)
            except (TypeError, ValueError) as exc:
                h.send_json(400, {"error": str(exc)})
                return
            # Refused closes the port this very request came in on: keep only this connection
            # open long enough to answer, so the caller knows the port is closed on return.
            self._apply(fault, keep=h.connection if fault.kind == "refused" else None)
            h.send_json(200, {"fault": fault.to_json()},
                        close=fault.kind == "refused" and not h.server.control_only)
        elif path == "/_control" and method == "GET":
            with self._cond:
                state = {"fault": self._fault.to_json(), "requests": len(self._records),
                         "waiting": self._waiting}
            h.send_json(200, state)
        elif path == "/_requests" and method == "GET":
            h.send_json(200, [asdict(r) for r in self.requests])
        elif path == "/_requests" and method == "DELETE":
            self.clear_requests()
            h.send_json(200, {"cleared": True})
        else:
            h.send_json(404, {"error": f"no control route {method} {path}"})


# --------------------------------------------------------------------------- command line


@dataclass
class _Args:
    host: str = "127.0.0.1"
    port: int = 0
    control_port: int = 0
    models: list[str] = field(default_factory=list)
    api_key_env: str | None = None
    fault: str = "ok"


def _parse(argv: Sequence[str] | None) -> _Args:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_upstream",
        description="A fake OpenAI-compatible upstream for loopback tests. Prints one JSON line "
                    "with its URLs when ready; POST /_control {\"fault\": ...} to inject faults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--control-port", type=int, default=0,
                        help="a separate control listener that stays up while 'refused'")
    parser.add_argument("--model", dest="models", action="append", default=[],
                        help="a model to list and accept (repeat); default fake-model")
    parser.add_argument("--api-key-env", default=None,
                        help="NAME of a variable holding the key to require (never the key "
                             "itself: a command line is visible to every local user)")
    parser.add_argument("--fault", default="ok",
                        help="initial fault: a kind, or control JSON such as "
                             "'{\"fault\": \"429\", \"retry_after\": 3}'")
    return parser.parse_args(argv, namespace=_Args())


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    import os

    args = _parse(argv)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        print(f"{args.api_key_env} is not set", file=sys.stderr)
        return 2
    initial = (Fault.from_json(json.loads(args.fault)) if args.fault.lstrip().startswith("{")
               else Fault.from_json({"fault": args.fault}))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    upstream = FakeUpstream(args.host, args.port, models=args.models or ("fake-model",),
                            api_key=key, control_port=args.control_port)
    with upstream:
        upstream.set_fault(initial)
        print(json.dumps({"url": upstream.url, "api_base": upstream.api_base,
                          "control_url": upstream.control_url,
                          "fault": initial.to_json()}), flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
