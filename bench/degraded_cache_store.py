"""What storing one answer in the degraded cache costs the proxy's I/O worker (run by hand;
issue 13, item B7).

    python -m bench.degraded_cache_store [--rate 60] [--seconds 90] [--max-entries 1000]

Stores answers of a proxy's size (~600 B of JSON) at a proxy's pace (``--rate`` a second, one
per wake-up, as the worker does at one client) in a cache directory on the file system of the
working directory (not a tmpfs: the cost being measured is the file system's), and reports, for
the stores made once the cache is full (every store then evicts), the median and p99 wall time
of a store, its CPU time and the thread's voluntary context switches per store (a store that
waits for the disk switches out: that count is noise-free on a shared machine, the times are
not). Run it from two checkouts at once to compare two versions under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from monitoring.proxy.degraded_cache import DegradedCache

RESPONSE = {"id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok " * 40}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52}}


def measure(directory: Path, rate: float, seconds: float, max_entries: int) -> dict[str, float]:
    cache = DegradedCache(directory, 3600, max_entries=max_entries)
    walls: list[float] = []
    cpus: list[float] = []
    switches = 0
    full = 0
    period = 1 / rate
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        next_at = time.monotonic() + period
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        c0, t0 = time.thread_time(), time.perf_counter()
        cache.store(f"{n:064x}", RESPONSE, model="gpt-4", served_by="gpt-4",
                    now=datetime.now(UTC))
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if n >= max_entries:  # full: every store evicts (one file, or one segment in ten)
            walls.append(wall)
            cpus.append(cpu)
            switches += resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
            full += 1
        n += 1
        time.sleep(max(0.0, next_at - time.monotonic()))
    walls.sort()
    return {"stores": n, "measured": full,
            "wall_ms_p50": statistics.median(walls) * 1000,
            "wall_ms_p99": walls[int(0.99 * (len(walls) - 1))] * 1000,
            "wall_ms_mean": statistics.fmean(walls) * 1000,
            "cpu_ms_mean": statistics.fmean(cpus) * 1000,
            "switches_per_store": switches / full,
            "files": len(os.listdir(directory)), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="stores a second")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--max-entries", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=".pf-cache-bench-", dir=Path.cwd()) as tmp:
        result = measure(Path(tmp), args.rate, args.seconds, args.max_entries)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
