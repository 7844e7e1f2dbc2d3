"""Who holds the proxy port, and whether that process makes progress.

The watchdog sends the master key to the proxy port with its keyed probes, and it adopts a
proxy that already answers there. A port on loopback is not a credential: during a restart or
at boot, any local user may bind it first (security review H1). So before the key goes out,
and before a listener is adopted, the listener is checked to be the watchdog's own proxy:

- **Linux**: the socket's owning uid from the kernel's socket table (netlink sock_diag, else
  ``/proc/net/tcp{,6}``; either tells every user who owns any socket) must be the watchdog's
  own uid: the proxy and the watchdog run as one service user. The process behind it (pid,
  command line) is named where the OS lets us see it, which psutil finds through
  ``/proc/<pid>/fd`` (all processes as root, only our own otherwise: a foreign listener then
  shows as "uid 65534 (nobody)", which is still enough).
- **Windows** (and anywhere ``/proc/net`` is missing): psutil's connection table gives the pid;
  the process' user must be ours and its command line must name the proxy's config.

The same module reads the process' CPU time for the restart rule: a hung process makes no
progress, a busy one does (:func:`cpu_seconds`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from monitoring.watchdog import sock_diag

__all__ = [
    "Listener",
    "cpu_seconds",
    "find_listener",
    "foreign_listener",
    "is_loopback",
    "is_own",
    "own_uid",
    "pid_listening",
]

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column


@dataclass(frozen=True)
class Listener:
    """The process listening on a TCP port, as far as the OS lets us know it."""

    port: int
    uid: int | None = None
    pid: int | None = None
    user: str | None = None
    cmdline: str | None = None

    def describe(self) -> str:
        """``pid 4242 (python3 -m http.server 4000), user nobody (uid 65534)``; the parts known."""
        parts: list[str] = []
        if self.pid is not None:
            command = f" ({_short(self.cmdline)})" if self.cmdline else ""
            parts.append(f"pid {self.pid}{command}")
        if self.user is not None or self.uid is not None:
            who = self.user or "?"
            parts.append(f"user {who}" + (f" (uid {self.uid})" if self.uid is not None else ""))
        return ", ".join(parts) or "a process the OS does not name to this user"


def _short(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def own_uid() -> int | None:
    """This process' uid (None on Windows)."""
    getuid = getattr(os, "getuid", None)
    return int(getuid()) if getuid is not None else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip("[]").lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _proc_address(field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a /proc/net/tcp ``ADDR:PORT`` column (32-bit words in host order)."""
    raw = bytes.fromhex(field.rsplit(":", 1)[0])
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    return ipaddress.ip_address(b"".join(words))


def _serves(local: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> bool:
    """Whether a socket bound to ``local`` receives connections made to ``host``."""
    if local.is_unspecified:
        return True
    mapped = getattr(local, "ipv4_mapped", None)
    local = mapped or local
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
        wanted = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    except (OSError, ValueError):
        return False
    return local in wanted


def _table_rows(path: str) -> Iterator[str]:
    """The rows of a /proc/net table, header skipped, read line by line.

    Read before every request to the proxy (three times a tick), on machines with thousands
    of sockets: the table is then hundreds of KB. Read whole, it was a transient buffer of
    that size on every probe; glibc serves such a buffer from mmap until one is freed, then
    from its heap (the mmap threshold adapts upwards), where transients of varying size
    fragment it. The watchdog's RSS rose in steps of about a megabyte, from 61 to 70 MB over
    5,000 ticks, on a machine with ~900 sockets (issue 13, B9; bench/watchdog_memory.py).
    Line by line, no buffer exceeds a few KB.
    """
    with open(path, encoding="ascii") as table:
        next(table, None)
        yield from table


def _proc_listeners(host: str, port: int) -> list[tuple[int, int]]:
    """(uid, socket inode) of every LISTEN socket serving ``host:port`` (/proc/net/tcp{,6})."""
    found: list[tuple[int, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in _table_rows(table):
                if f" {_LISTEN} " not in line:  # cheap: most rows are connections
                    continue
                cols = line.split()
                if len(cols) < 10 or cols[3] != _LISTEN:
                    continue
                if int(cols[1].rsplit(":", 1)[1], 16) == port and _serves(
                        _proc_address(cols[1]), host):
                    found.append((int(cols[7]), int(cols[9])))
    return found


def _socket_table(host: str, port: int) -> list[tuple[int, int]] | None:
    """(uid, socket inode) of every LISTEN socket serving ``host:port``, from the kernel's
    own table: netlink sock_diag (:mod:`monitoring.watchdog.sock_diag`, 45x cheaper), else
    /proc/net/tcp. None where the OS has neither (Windows): psutil must tell then."""
    sockets = sock_diag.listening()
    if sockets is not None:
        return [(s.uid, s.inode) for s in sockets if s.port == port and _serves(s.address, host)]
    if Path("/proc/net/tcp").exists():
        return _proc_listeners(host, port)
    return None


def _pid_of_port(port: int) -> int | None:
    """The pid psutil can see listening on ``port`` (None when it cannot see it)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return None if conn.pid is None else int(conn.pid)
    return None


def _user_of_uid(uid: int) -> str | None:
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


def find_listener(host: str, port: int) -> Listener | None:
    """The process listening on TCP ``host:port`` of this machine; None when nothing listens.

    Where several sockets serve the address, one whose uid is not ours is the one reported.
    """
    table = _socket_table(host, port)
    proc_table = table or []
    pid = _pid_of_port(port)
    if not proc_table:
        if table is not None or (pid is None and not _connects(host, port)):
            return None
        if pid is None:
            return Listener(port)
    mine = own_uid()
    foreign = [entry for entry in proc_table if entry[0] != mine]
    uid = (foreign or proc_table)[0][0] if proc_table else None
    user = _user_of_uid(uid) if uid is not None else None
    cmdline: str | None = None
    if pid is not None:
        with contextlib.suppress(psutil.Error, OSError):
            process = psutil.Process(pid)
            cmdline = " ".join(process.cmdline())
            user = user or process.username()
            if uid is None and hasattr(process, "uids"):
                uid = int(process.uids().real)
    return Listener(port, uid=uid, pid=pid, user=user, cmdline=cmdline)


def _connects(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


def is_own(listener: Listener, *, match: str) -> bool:
    """Whether ``listener`` is this watchdog's proxy.

    On Linux the socket's uid decides (the proxy runs as the watchdog's user). Elsewhere the
    process' user must be ours and its command line must contain ``match`` (the proxy's config
    path); a process the OS does not show us is not ours.
    """
    mine = own_uid()
    if mine is not None and listener.uid is not None:
        return listener.uid == mine
    if listener.pid is None or listener.cmdline is None:
        return False
    try:
        me = psutil.Process().username()
    except (psutil.Error, OSError):
        return False
    return listener.user == me and match in listener.cmdline


def foreign_listener(host: str, port: int, *, match: str) -> Listener | None:
    """The listener on ``host:port`` when it is NOT this watchdog's proxy; None otherwise
    (ours, or nothing listens).

    Called before every keyed request to the proxy, so the common case is cheap: on Linux one
    netlink question about the listening sockets (~0.08 ms) settles it when every socket
    there is ours; the process table (psutil, tens of ms) is walked only to name a foreign one.
    """
    mine = own_uid()
    table = _socket_table(host, port) if mine is not None else None
    if table is not None and all(uid == mine for uid, _ in table):
        return None
    found = find_listener(host, port)
    return None if found is None or is_own(found, match=match) else found


def pid_listening(host: str, port: int) -> int | None:
    """The pid of this user's process listening on ``host:port`` (the proxy), if visible."""
    found = find_listener(host, port)
    return None if found is None else found.pid


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` and its children, or None if it cannot be read.

    Children count: LiteLLM may run its work in worker processes.
    """
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = float(times.user + times.system)
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += float(child_times.user + child_times.system)
        return total
    except (psutil.Error, OSError):
        return None
