"""A real HTTP forwarding proxy on loopback, as a corporate proxy is met by the watchdog.

It speaks both forms a client uses through ``HTTP(S)_PROXY``: an absolute-form request
(``GET http://host:port/path HTTP/1.1``, plain HTTP) is forwarded and its reply relayed; a
``CONNECT host:port`` opens a tunnel (HTTPS). Names are resolved through ``hosts`` only, so a
test can give a provider a name that resolves nowhere but here: a request for it that does
not pass through the proxy fails. Every request is recorded (method and target, never a
header's value).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: ``requests`` is the log."""

    def _resolve(self, host: str) -> str | None:
        return self.server.owner.hosts.get(host.lower())

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        self.server.owner.record("CONNECT", self.path)
        address = self._resolve(host)
        if address is None:
            self.send_error(502, f"cannot resolve {host}")
            return
        try:
            upstream = socket.create_connection((address, int(port)), timeout=5)
        except OSError:
            self.send_error(502, "cannot connect")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        with upstream:
            while True:
                readable, _, _ = select.select(sockets, [], [], 5)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)

    def _forward(self) -> None:
        self.server.owner.record(self.command, self.path)
        parts = urlsplit(self.path)
        if not parts.scheme or not parts.hostname:
            self.send_error(400, "a proxy needs an absolute-form request")
            return
        address = self._resolve(parts.hostname)
        if address is None:
            self.send_error(502, f"cannot resolve {parts.hostname}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        skip = {"host", "proxy-connection", "connection", "content-length"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        headers["Host"] = parts.netloc
        target = parts._replace(netloc=f"{address}:{parts.port or 80}").geturl()
        try:
            reply = httpx.request(self.command, target, headers=headers, content=body,
                                  timeout=10, follow_redirects=False, trust_env=False)
        except httpx.HTTPError:
            self.send_error(502, "upstream failed")
            return
        self.send_response(reply.status_code)
        for name, value in reply.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "content-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ForwardProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class ForwardProxy:
    """The proxy on a free loopback port; a context manager that always stops it."""

    def __init__(self, hosts: Mapping[str, str]) -> None:
        self.hosts = {name.lower(): address for name, address in hosts.items()}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        with contextlib.suppress(OSError):
            self._server.server_close()
        self._thread.join(10)
