"""The cost of the check "who holds the proxy port" on a busy machine (run by hand).

    python bench/listener_check.py [--pairs 0 1000] [--calls 200]

The watchdog runs :func:`monitoring.watchdog.listener.foreign_listener` before every keyed
request to the proxy: three times a tick, a tick a second by default. This opens ``--pairs``
connected loopback pairs (two sockets each, as a workstation with a browser, an IDE and a few
agents holds), then times the check against a listener of our own, reading the kernel's
table by netlink sock_diag and by /proc/net/tcp (the fallback), interleaved. It reports the
median wall time and the CPU time (user + system) per call, and their ratio.
Figures: bench/results/listener-check.txt.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

from monitoring.watchdog import listener, sock_diag


@contextmanager
def _busy(pairs: int) -> Iterator[int]:
    """``pairs`` connected loopback pairs; yields the port of a listener of our own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * pairs + 256)), hard))
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as server:
        try:
            for _ in range(pairs):
                held.append(socket.create_connection(server.getsockname()))
                held.append(server.accept()[0])
            yield server.getsockname()[1]
        finally:
            for sock in held:
                sock.close()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time(check: Callable[[], object], calls: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) per call over ``calls`` calls."""
    walls = []
    cpu = _cpu()
    for _ in range(calls):
        start = time.perf_counter()
        check()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls) * 1000, (_cpu() - cpu) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[0, 1000])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if sock_diag.listening() is None:
        raise SystemExit("netlink sock_diag is not available on this machine")
    print(f"load average {os.getloadavg()[0]:.1f}; {args.calls} calls x {args.rounds} rounds")
    print("pairs  sockets  netlink wall/cpu ms  /proc wall/cpu ms  cpu ratio")
    for pairs in args.pairs:
        with _busy(pairs) as port, open("/proc/net/tcp", "rb") as table:
            sockets = len(table.read().splitlines()) - 1

            def check(port: int = port) -> object:
                return listener.foreign_listener("127.0.0.1", port, match="x")

            netlink: list[tuple[float, float]] = []
            proc: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                netlink.append(_time(check, args.calls))
                with mock.patch.object(sock_diag, "listening", return_value=None):
                    proc.append(_time(check, args.calls))
            n_wall = statistics.median(w for w, _ in netlink)
            n_cpu = statistics.median(c for _, c in netlink)
            p_wall = statistics.median(w for w, _ in proc)
            p_cpu = statistics.median(c for _, c in proc)
            print(f"{pairs:5d}  {sockets:7d}  {n_wall:7.3f} / {n_cpu:7.3f}    "
                  f"{p_wall:7.3f} / {p_cpu:7.3f}   {p_cpu / max(n_cpu, 1e-6):6.1f}x")


if __name__ == "__main__":
    main()
