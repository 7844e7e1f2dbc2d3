"""A failure that repeats every tick is logged once, then at a bounded rate (issue 13 follow-up).

Seen on a host: a root-owned cost log made the watchdog log "budget check failed: Permission
denied" every second. The watchdog here is real (its tick, prober, event log); its proxy port
refuses, which costs a tick nothing, and its cost log is a directory, which fails the budget
check on every tick the way an unreadable file does (the tests run as root, whom permission
bits do not stop).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from monitoring.events import EventLog
from monitoring.stack.schema import Stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.probes import Prober
from monitoring.watchdog.repeat_log import REMIND_EVERY_S, RepeatLog
from tests.support.cli_host import temp_host_config
from tests.support.litellm_proxy import free_port
from tests.support.watchdog_harness import RecordingBackend

LOGGER = "monitoring.watchdog.loop"
#: The watchdog's time between two ticks of the test: a minute, so 30 ticks span three
#: reminder periods without running 1,800 real ticks.
TICK_S = 60.0


class Clock:
    """The watchdog's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.getMessage().startswith(start)]


def test_the_watchdogs_failing_budget_check_is_logged_once_then_at_a_bounded_rate(
        stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, config = temp_host_config(stack, tmp_path)
    config = config.model_copy(update={"proxy": config.proxy.model_copy(
        update={"url": f"http://127.0.0.1:{free_port()}"})})
    cost_log = Path(config.paths.cost_log)
    cost_log.mkdir(parents=True)  # unreadable as a file: every budget check fails
    clock = Clock()

    async def ticks(n: int) -> None:
        async with Prober.from_config(config, env={}) as prober:
            dog = Watchdog(config, prober=prober, backend=RecordingBackend(),
                           events=EventLog.from_config(config), exporter=Exporter())
            dog.mono = clock
            for _ in range(n):
                await dog.tick()
                clock.now += TICK_S
            cost_log.rmdir()  # the operator fixes it
            await dog.tick()

    caplog.set_level(logging.INFO, logger=LOGGER)
    n = 30
    asyncio.run(ticks(n))
    failed = lines(caplog, "budget check failed")
    # The first failure, then one reminder per REMIND_EVERY_S: not one line a tick.
    assert len(failed) == 1 + int((n - 1) * TICK_S // REMIND_EVERY_S), failed
    assert str(cost_log) in failed[0]
    assert "more times since it was last logged" in failed[1]
    assert len(lines(caplog, "works again after")) == 1


def test_a_changed_failure_is_logged_at_once_and_a_cleared_one_again_from_scratch(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    repeats = RepeatLog(logging.getLogger(LOGGER), every_s=60, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    for message in ("A", "A", "B", "B"):
        repeats.failed("step", message)
        clock.now += 1
    repeats.failed("other", "A")  # another step is its own failure
    repeats.ok("step")
    repeats.ok("step")  # nothing was failing any more: no second line
    repeats.failed("step", "B")
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["A", "B", "A", "works again after 2 failures: B", "B"]
