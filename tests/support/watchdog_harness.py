"""Driving a real watchdog in tests: quick configs, a background loop, polling helpers."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from monitoring.events import EventLog
from monitoring.host_config import Hysteresis, WatchdogConfig
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog, agent_manager
from monitoring.watchdog.probes import Prober
from monitoring.watchdog.recovery import Backend


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (fixtures stay synchronous)."""
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return wrapper


FAST = Hysteresis(failure_threshold=2, success_threshold=2, min_dwell=1.0, half_open_after=0.5,
                  max_switches_per_hour=50)
USER_KEYS = {"theme": "dark", "autoApprove": ["read"], "telemetry": False}


class RecordingBackend:
    """A backend that records restarts and does nothing (the fault tests own the proxy)."""

    name = "recording"

    def __init__(self) -> None:
        self.restarts = 0

    def restart(self) -> str:
        self.restarts += 1
        return "recorded"


def fast_config(base: WatchdogConfig, tmp_path: Path, *, hysteresis: Hysteresis = FAST,
                interval: float = 0.3, **update: Any) -> WatchdogConfig:
    """The live stack's watchdog config with its files in tmp_path and quick cadences."""
    logs, state = tmp_path / "log", tmp_path / "state"
    logs.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    home = tmp_path / "home"
    paths = base.paths.model_copy(update={
        "log_dir": str(logs), "state_dir": str(state), "event_log": str(logs / "events.log"),
        "event_jsonl": str(logs / "events.jsonl"), "state_file": str(state / "state.json")})
    probes = base.probes.model_copy(update={"interval": interval, "provider_interval": interval})
    return base.model_copy(update={"paths": paths, "probes": probes, "hysteresis": hysteresis,
                                   "agent_home": str(home), **update})


def agent_file(config: WatchdogConfig) -> Path:
    """The main file of the first enrolled agent (Kilo Code's kilo.jsonc by default)."""
    return agent_manager(config).paths(config.agents[0].name)["config"]


def seed_agent_file(config: WatchdogConfig) -> None:
    """The first agent's file with the user's own keys, already on the primary target."""
    path = agent_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(USER_KEYS, indent=2) + "\n")
    agent_manager(config, env=TEST_KEYS).apply(config.agents[0].name, config.targets[0])


#: Any non-empty values: the seed writes no key, and the watchdog reads its own.
TEST_KEYS = {"LITELLM_MASTER_KEY": "seed", "GEMINI_API_KEY": "seed"}


def target_in_file(config: WatchdogConfig) -> str | None:
    """The target the first agent's files point at now."""
    return agent_manager(config).current(config.agents[0].name)


def provider_in_file(config: WatchdogConfig) -> str | None:
    """The runbook's ``provider`` key of the target the first agent points at (``litellm``,
    ``z-ai``, ...), so tests written against the generic shape read the real agent's file."""
    found = target_in_file(config)
    target = next((t for t in config.targets if t.name == found), None)
    return None if target is None else target.settings.get("provider")


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(config: WatchdogConfig, env: dict[str, str],
                  backend: Backend | None = None) -> AsyncIterator[Watchdog]:
    """A watchdog running its loop in the background; stopped (and checked) at the end."""
    exporter = Exporter()
    async with Prober.from_config(config, env=env) as prober:
        dog = Watchdog(config, prober=prober, backend=backend or RecordingBackend(),
                       events=EventLog.from_config(config), exporter=exporter)
        stop = asyncio.Event()
        task = asyncio.create_task(dog.run(stop))
        try:
            yield dog
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def sample(dog: Watchdog, name: str, **labels: str) -> float:
    value = dog.exporter.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def event_lines(config: WatchdogConfig) -> list[str]:
    return Path(config.paths.event_log).read_text().splitlines()
