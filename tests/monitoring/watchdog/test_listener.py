"""Who holds a port: the uid from the kernel's socket table, the process named where the OS
allows. Every test runs on both tables: netlink sock_diag, and /proc/net/tcp where netlink is
refused (WSL 1, a sandbox)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tracemalloc

import pytest

from monitoring.watchdog import sock_diag
from monitoring.watchdog.listener import (
    cpu_seconds,
    find_listener,
    foreign_listener,
    is_loopback,
    own_uid,
)
from tests.support.polling import until


@pytest.fixture(autouse=True, params=["netlink", "proc"])
def table(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which socket table the check reads: netlink, or /proc/net/tcp when netlink is absent."""
    if request.param == "proc":
        monkeypatch.setattr(sock_diag, "listening", lambda: None)
    elif sock_diag.listening() is None:
        pytest.skip("netlink sock_diag is not available here")
    return str(request.param)


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


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux's socket table")
def test_a_busy_socket_table_is_read_line_by_line_never_whole() -> None:
    """The check runs before every request to the proxy, three times a tick. Read whole, a
    busy machine's table was a transient of hundreds of KB on every probe, which fragmented
    glibc's heap: the watchdog's RSS rose in steps, 61 -> 73 MB over 8,500 ticks (issue 13,
    B9). Line by line, the check's peak allocation stays a small fraction of the table."""
    pairs = []
    with socket.create_server(("127.0.0.1", 0), backlog=512) as server:
        try:
            for _ in range(300):  # 600 sockets: within the usual 1024 descriptors
                client = socket.create_connection(server.getsockname())
                pairs.append((client, server.accept()[0]))
            with open("/proc/net/tcp", "rb") as table:
                size = len(table.read())
            assert size > 64 * 1024, "a table the size of a busy machine's"
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                assert foreign_listener("127.0.0.1", server.getsockname()[1],
                                        match="anything") is None
                peak = tracemalloc.get_traced_memory()[1] - before
            finally:
                tracemalloc.stop()
        finally:
            for pair in pairs:
                for sock in pair:
                    sock.close()
    assert peak < size / 4, f"peak {peak} B while reading a {size} B table"
