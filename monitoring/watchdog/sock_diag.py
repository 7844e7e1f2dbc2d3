"""The machine's listening TCP sockets, asked of the kernel by netlink (what ``ss -tln`` does).

Why not ``/proc/net/tcp``. The watchdog checks who holds the proxy port before every keyed
request: three times a second at the default 1 s tick. ``/proc/net/tcp`` makes the kernel
format EVERY socket of the machine, connections and TIME_WAIT included, and Python then reads
it line by line: 3.5 ms for 237 sockets here, 12-24 ms for 2,000 on a busy workstation, so
4-7 % of a core, for ever, to find one listening socket. A ``SOCK_DIAG_BY_FAMILY`` dump that
asks for the LISTEN state walks only the kernel's listening table: a handful of sockets,
whatever the number of connections (``bench/listener_check.py``).

The answer carries what the check needs and ``/proc/net/tcp`` gave: the local address and
port, the owning uid (any user may ask, whoever owns the socket) and the socket inode.
:func:`listening` returns None where netlink sock_diag is not there (not Linux, WSL 1, a
sandbox refusing the socket); the caller then reads ``/proc/net/tcp``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Final

NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
TCP_LISTEN: Final = 10

#: struct nlmsghdr: length, type, flags, sequence, port id.
_NLMSGHDR: Final = struct.Struct("=IHHII")
#: struct inet_diag_req_v2: family, protocol, extensions, pad, states; then a zeroed sockid.
_REQUEST: Final = struct.Struct("=BBBxI48x")
#: struct inet_diag_msg: family, state, timer, retrans; sockid (sport, dport big-endian,
#: src and dst 16 bytes, interface, cookie); expires, rqueue, wqueue, uid, inode.
_MESSAGE: Final = struct.Struct("=BBBB2s2s16s16sI8xIIIII")
_SEQUENCE: Final = 0x5046  # any number: the kernel echoes it
#: One receive buffer for the process, reused: a fresh 32 KB transient three times a tick is
#: what fragmented glibc's heap when /proc/net/tcp was read whole (issue 13, B9). A dump comes
#: in datagrams of at most 32 KB less the kernel's overhead (netlink_recvmsg caps them), so
#: none is truncated.
_BUFFER: Final = bytearray(32 * 1024)
_LOCK: Final = threading.Lock()


@dataclass(frozen=True)
class ListenSocket:
    """One listening TCP socket: where it listens and who owns it."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    uid: int
    inode: int


def _request(family: int) -> bytes:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, _SEQUENCE, 0) + body


def _parse(family: int, buffer: bytearray, offset: int) -> ListenSocket:
    (_, _, _, _, sport, _, src, _, _, _, _, _, uid, inode) = _MESSAGE.unpack_from(buffer, offset)
    raw = src[:4] if family == socket.AF_INET else src
    return ListenSocket(ipaddress.ip_address(raw), int.from_bytes(sport, "big"), uid, inode)


def _dump(nl: socket.socket, family: int) -> list[ListenSocket]:
    """One family's LISTEN sockets, asked on ``nl`` (under ``_LOCK``: it uses ``_BUFFER``)."""
    found: list[ListenSocket] = []
    nl.sendto(_request(family), (0, 0))
    while True:
        size = nl.recv_into(_BUFFER)
        if size == 0:
            return found
        offset = 0
        while offset + _NLMSGHDR.size <= size:
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(_BUFFER, offset)
            if length < _NLMSGHDR.size or offset + length > size:
                raise OSError("sock_diag: a malformed netlink message")
            body = offset + _NLMSGHDR.size
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                error = -struct.unpack_from("=i", _BUFFER, body)[0]
                raise OSError(error, f"sock_diag: {os.strerror(error)}")
            if kind == SOCK_DIAG_BY_FAMILY and length - _NLMSGHDR.size >= _MESSAGE.size:
                found.append(_parse(family, _BUFFER, body))
            offset += (length + 3) & ~3  # NLMSG_ALIGN


def listening() -> list[ListenSocket] | None:
    """Every listening TCP socket of this network namespace (IPv4 and IPv6), or None when the
    kernel cannot be asked this way (the caller reads /proc/net/tcp instead)."""
    if not hasattr(socket, "AF_NETLINK"):
        return None
    try:
        with _LOCK, socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(2.0)
            found = _dump(nl, socket.AF_INET)
            try:
                found += _dump(nl, socket.AF_INET6)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: no IPv6 in this kernel, no IPv6 socket
                    raise
            return found
    except OSError:
        return None
