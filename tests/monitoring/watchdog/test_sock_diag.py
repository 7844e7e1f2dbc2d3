"""The listening sockets, asked of the kernel by netlink: the same answer as /proc/net/tcp,
and only the listening ones however many connections the machine holds."""

from __future__ import annotations

import os
import socket

import pytest

from monitoring.watchdog import listener, sock_diag

pytestmark = pytest.mark.skipif(sock_diag.listening() is None,
                                reason="netlink sock_diag is not available here")


def _entries(sockets: list[sock_diag.ListenSocket] | None) -> set[tuple[int, int, int]]:
    assert sockets is not None
    return {(s.port, s.uid, s.inode) for s in sockets}


@pytest.mark.parametrize(("family", "address"), [(socket.AF_INET, "127.0.0.1"),
                                                 (socket.AF_INET6, "::1")])
def test_a_listener_of_ours_is_there_with_its_address_uid_and_inode(
        family: int, address: str) -> None:
    with socket.socket(family) as sock:
        sock.bind((address, 0))
        sock.listen()
        port = sock.getsockname()[1]
        found = [s for s in sock_diag.listening() or [] if s.port == port]
        assert [(str(s.address), s.uid, s.inode) for s in found] == [
            (address, os.geteuid(), os.fstat(sock.fileno()).st_ino)]
    assert not [s for s in sock_diag.listening() or [] if s.port == port]


def test_it_agrees_with_proc_net_tcp() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = set(listener._proc_listeners("127.0.0.1", port))
        netlink = {(s.uid, s.inode) for s in sock_diag.listening() or [] if s.port == port}
        assert proc == netlink
        assert len(proc) == 1


def test_connections_are_not_listed_however_many() -> None:
    """The point of asking netlink: the kernel walks its listening table only, so 600
    connected sockets add nothing to the answer (/proc/net/tcp formats every one of them)."""
    before = _entries(sock_diag.listening())
    pairs = []
    with socket.create_server(("127.0.0.1", 0), backlog=512) as server:
        try:
            for _ in range(300):
                client = socket.create_connection(server.getsockname())
                pairs.append((client, server.accept()[0]))
            during = _entries(sock_diag.listening())
            server_entry = (server.getsockname()[1], os.geteuid(),
                            os.fstat(server.fileno()).st_ino)
            assert server_entry in during
            # Other tests' listeners may come and go meanwhile: compare with some slack.
            assert len(during) <= len(before) + 1 + 20
        finally:
            for pair in pairs:
                for sock in pair:
                    sock.close()
