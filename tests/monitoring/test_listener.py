"""Who holds a port: the uid from /proc/net/tcp, the process named where the OS allows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from monitoring.listener import (
    cpu_seconds,
    find_listener,
    foreign_listener,
    is_loopback,
    own_uid,
)
from tests.support.polling import until


def test_our_own_listener_is_ours_and_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        found = find_listener("127.0.0.1", port)
        assert found is not None
        assert found.uid == own_uid()
        assert found.pid == os.getpid()
        assert foreign_listener("127.0.0.1", port, match="anything") is None
    assert find_listener("127.0.0.1", port) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another uid")
def test_a_listener_of_another_uid_is_foreign_and_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    squatter = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I",
         "-c", f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); "
               "s.listen(); time.sleep(60)"], cwd="/")
    try:
        found = until(lambda: foreign_listener("127.0.0.1", port, match="x"), 20,
                      "the squatter listening")
        assert found.uid == 65534
        assert found.pid == squatter.pid
        assert found.describe().startswith(f"pid {squatter.pid} (")
        assert found.describe().endswith("user nobody (uid 65534)")
    finally:
        squatter.kill()
        squatter.wait()


def test_a_wildcard_listener_serves_loopback_but_another_address_does_not() -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - a test listener, closed at once
        sock.listen()
        port = sock.getsockname()[1]
        assert find_listener("127.0.0.1", port) is not None
        assert find_listener("localhost", port) is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.listen()
        assert find_listener("127.0.0.1", sock.getsockname()[1]) is None


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("api.groq.com", False), ("10.0.0.1", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_cpu_seconds_moves_with_work() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    sum(i * i for i in range(3_000_000))
    after = cpu_seconds(os.getpid())
    assert after is not None
    assert after > before
    assert cpu_seconds(2**22 + 12345) is None
