"""Soak: the real watchdog loop keeps a flat memory footprint in every state (issue 13, item 9).

The watchdog runs for months, so memory that grows per tick is a defect even at a few KB.
Each test runs the real :meth:`Watchdog.run` loop (real Prober, exporter, event log, state
file) against the session's real LiteLLM proxy and fake upstreams, at a fast tick, with the
wall and monotonic clocks accelerated (:data:`SPEED`): an hour of the watchdog's time passes
in about a minute, so what is keyed by time (hourly switch caps, half-open timers, daily budget
alerts, cache pruning, history pruning) turns over many times during the run. The exporter is
rendered as a Prometheus scrape would render it.

RSS is read after a warm-up (imports, first allocations, pools settling) and at the end; the
growth must stay under :data:`TOLERANCE_MB`. The fake upstreams record every request in memory,
so they are cleared as the run goes: the test measures the watchdog, not its fakes.

``PF_SOAK_TICKS`` sets the ticks per state (default :data:`DEFAULT_TICKS`, cheap enough for
``make test``); ``PF_SOAK_TICKS=20000`` is the long run done by hand.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.watchdog.circuit import Circuit, circuit_of
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.heap import keep_big_buffers_out_of_the_heap
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.probes import PROXY_ROUTE, Prober
from tests.monitoring.conftest import LiveStack
from tests.support.litellm_proxy import free_port
from tests.support.watchdog_harness import (
    RecordingBackend,
    aio,
    fast_config,
    seed_agent_file,
    until,
)

DEFAULT_TICKS = 600
TICKS = int(os.environ.get("PF_SOAK_TICKS", DEFAULT_TICKS))
#: Ticks before the first reading: by then the allocator has taken the arenas a tick needs
#: (measured: one step of ~0.9 MB between ticks 200 and 300, flat from there to 1,500).
WARMUP = 300
#: RSS growth allowed between the end of the warm-up and the end of the run. The default run
#: (300 measured ticks) catches a leak of 5 KB a tick or more (checked: 8 KB a tick fails
#: it); the leak seen on a host (~125 KB a minute at one tick a second, ~2 KB a tick) needs
#: the long run (``PF_SOAK_TICKS=20000``: 40 MB), run by hand. Allocator noise in a process
#: that also runs the fakes stays under it.
TOLERANCE_MB = 1.5
#: Accelerated clocks: watchdog seconds per real second.
SPEED = 60.0
#: Time for one tick on a loaded 2-core machine (measured 0.08-0.18 s with eight test
#: sessions sharing it; the proxy-down state waits for nothing: the port refuses at once).
TICK_BUDGET_S = 1.0
STATES = ("healthy", "providers_failing", "degraded", "proxy_down")


def rss_mb() -> float:
    """This process's resident set (Linux /proc; the soak runs where the live tests run)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def accelerated() -> tuple[Callable[[], datetime], Callable[[], float]]:
    """A wall clock and a monotonic clock that run :data:`SPEED` times faster than real."""
    origin, wall = time.monotonic(), datetime.now(UTC)

    def elapsed() -> float:
        return (time.monotonic() - origin) * SPEED

    return (lambda: wall + timedelta(seconds=elapsed())), elapsed


def soak_config(live: LiveStack, tmp_path: Path, state: str) -> WatchdogConfig:
    config = fast_config(live.config, tmp_path, interval=0.001)
    # Metrics on every tick: LiteLLM's /metrics is the biggest page the watchdog reads.
    probes = config.probes.model_copy(update={"metrics_interval": 0.001})
    config = config.model_copy(update={"probes": probes})
    if state == "proxy_down":
        proxy = config.proxy.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})
        config = config.model_copy(update={
            "proxy": proxy,
            "restart": config.restart.model_copy(update={"startup_timeout": 0.1})})
    return config


def set_faults(live: LiveStack, state: str) -> None:
    """Providers refuse their keys the way a host without keys sees it (401)."""
    failing = {"providers_failing": ["groq"],
               "degraded": list(live.upstreams)}.get(state, [])
    for name in failing:
        live.upstreams[name].set_fault(401)


def reached(dog: Watchdog, state: str) -> bool:
    """Whether the watchdog is in the state the test soaks."""
    routes = dog.state.routes
    if state == "healthy":
        return all(circuit_of(r) is Circuit.HEALTHY for r in routes.values()) and bool(routes)
    if state == "providers_failing":
        return "groq" in routes and not circuit_of(routes["groq"]).usable
    if state == "degraded":
        return dog.state.degraded
    return PROXY_ROUTE in routes and not circuit_of(routes[PROXY_ROUTE]).usable


def clear_fakes(live: LiveStack) -> None:
    for up in live.upstreams.values():
        up.clear_requests()


async def soak_until(dog: Watchdog, live: LiveStack, ticks: int) -> None:
    """Let the loop run up to ``ticks`` ticks, scraping the exporter and emptying the fakes."""
    budget = (ticks - dog._ticks) * TICK_BUDGET_S + 30
    deadline = time.monotonic() + budget
    while dog._ticks < ticks:
        assert time.monotonic() < deadline, f"{ticks} ticks not done within {budget:.0f} s"
        generate_latest(dog.exporter.registry)  # what a Prometheus scrape costs the watchdog
        clear_fakes(live)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("state", STATES)
@aio
async def test_the_watch_loop_keeps_a_flat_rss(live: LiveStack, tmp_path: Path,
                                               state: str) -> None:
    # As `watch` does on a host (monitoring/watchdog/heap.py): big transient buffers stay
    # out of the heap, so the test process's other threads do not fragment what is measured.
    keep_big_buffers_out_of_the_heap()
    config = soak_config(live, tmp_path, state)
    seed_agent_file(config)
    set_faults(live, state)
    clock, mono = accelerated()
    async with Prober.from_config(config, env=live.env) as prober:
        dog = Watchdog(config, prober=prober, backend=RecordingBackend(),
                       events=EventLog.from_config(config), exporter=Exporter(), clock=clock)
        dog.mono = mono
        dog._booted = mono()
        stop = asyncio.Event()
        task = asyncio.create_task(dog.run(stop))
        try:
            await until(lambda: reached(dog, state), 60, f"the {state} state")
            await soak_until(dog, live, WARMUP)
            gc.collect()
            before = rss_mb()
            await soak_until(dog, live, TICKS)
            assert reached(dog, state), f"left the {state} state during the soak"
            gc.collect()
            after = rss_mb()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    print(f"{state}: {TICKS} ticks, RSS {before:.1f} -> {after:.1f} MB")
    assert after - before <= TOLERANCE_MB, (
        f"RSS grew {after - before:.2f} MB in {TICKS - WARMUP} ticks ({state})")
