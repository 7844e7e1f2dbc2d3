"""The watchdog loop against the real proxy and fake upstreams: detect, classify, fall back,
log, export and restore; restart a killed proxy; give up in a crash loop; never flap."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from monitoring import metrics
from monitoring.events import read_events
from monitoring.host_config import Restart, WatchdogConfig
from monitoring.stack.layout import PROXY_ENV
from monitoring.watchdog.circuit import Circuit, circuit_of
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.probes import PROXY_ROUTE
from monitoring.watchdog.recovery import ProcessBackend
from monitoring.watchdog.state import load_state
from tests.monitoring.conftest import LiveStack
from tests.support.litellm_proxy import REPO, ensure_venv, free_port, proxy_argv
from tests.support.watchdog_harness import (
    USER_KEYS,
    RecordingBackend,
    agent_file,
    aio,
    event_lines,
    fast_config,
    provider_in_file,
    running,
    sample,
    seed_agent_file,
    until,
)

pytestmark = pytest.mark.live

# (fault injected on every provider behind the proxy, expected class, event wording)
FAULTS = [
    (401, "auth", "authentication failed"),
    (404, "config", "model not found"),
    (429, "rate", "rate limited"),
    (500, "server", "server error"),
    ("hang", "timeout", "timed out"),
    ("refused", "network", "connection refused"),
]
LINE = r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] "
#: What a switch adds after the runbook's wording: the agents switched, and those not.
AGENTS = r"(; agents: [^;]*)?(; not switched: .*)?"


@pytest.mark.parametrize(("fault", "cls", "cause"), FAULTS, ids=[f[1] for f in FAULTS])
@aio
async def test_a_provider_fault_falls_back_and_restores(
        live: LiveStack, tmp_path: Path, fault: Any, cls: str, cause: str) -> None:
    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    primary, fallback = config.targets[0], config.targets[1]
    async with running(config, live.env) as dog:
        await until(lambda: circuit_of(dog.state.route("groq")) is Circuit.HEALTHY
                    and dog.state.active_target == primary.name, 20, "a healthy start")
        # Every provider behind the proxy's chain, and Google (Gemini CLI's direct target).
        failing = list(dict.fromkeys([*primary.via, *(t.route for t in config.targets
                                                      if t.kind == "direct" and t.route)]))
        for name in failing:
            live.upstream(name).set_fault(fault, paths=("/v1/models", "/models"))
        await until(lambda: provider_in_file(config) == fallback.settings["provider"], 30,
                    "the fallback in the agent file")
        route = dog.state.route(primary.via[0])
        assert route.last_error_class == cls
        assert route.diagnosis, "a diagnosis is attached when the route opens"
        data = json.loads(agent_file(config).read_text())
        assert {k: data[k] for k in USER_KEYS} == USER_KEYS
        assert "endpoint" not in data  # the Kilo Code target has none: the stale one is gone
        assert sample(dog, "provider_fallback_events_total", from_provider=primary.name,
                      to_provider=fallback.name, reason=cls) == 1
        assert sample(dog, metrics.HEALTH.name, provider=primary.via[0]) == 0
        for name in failing:
            live.upstream(name).clear_fault()
        await until(lambda: provider_in_file(config) == "litellm", 30, "the restore")
        assert sample(dog, metrics.ACTIVE_TARGET.name, target=primary.name) == 1
    # Every provider of every target failed, so this is also the runbook's emergency (7.1).
    expected = [f"FALLBACK: LiteLLM {cause} at {primary.via[0]}, switched to {fallback.label}",
                "EMERGENCY: All providers failed, entering degraded mode",
                "RESTORED: Providers recovered, leaving degraded mode",
                "RESTORED: LiteLLM recovered, switched back to primary"]
    lines = event_lines(config)
    assert len(lines) == len(expected), lines
    for line, text in zip(lines, expected, strict=True):
        assert re.match(LINE + re.escape(text) + AGENTS + "$", line), (line, text)
    for secret in live.secret_values():
        assert secret not in Path(config.paths.event_log).read_text()
        assert secret not in Path(config.paths.state_file).read_text()


@aio
async def test_the_proxy_stopped_is_the_runbooks_own_line(live: LiveStack,
                                                          tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    backend = RecordingBackend()
    async with running(config, live.env, backend) as dog:
        # The target adopted from the agent files and a never-probed route look healthy at
        # once: wait for the proxy to have answered, or its stop would count as a slow start.
        await until(lambda: dog.state.active_target == "litellm"
                    and circuit_of(dog.state.route(PROXY_ROUTE)) is Circuit.HEALTHY
                    and dog.state.route(PROXY_ROUTE).last_success is not None, 20,
                    "a healthy start")
        live.proxy.stop()
        try:
            await until(lambda: provider_in_file(config) == "z-ai", 30, "the fallback")
            assert dog.state.route(PROXY_ROUTE).last_error_class == "network"
            await until(lambda: backend.restarts >= 1, 10, "a restart attempt")
        finally:
            live.proxy.start()
        await until(lambda: provider_in_file(config) == "litellm", 60, "the restore")
    text = "\n".join(event_lines(config))
    assert re.search(LINE + re.escape("FALLBACK: LiteLLM connection refused, switched to "
                                      "Kilo Code") + AGENTS + "$", text, re.MULTILINE), text
    assert re.search(LINE + "RESTART: LiteLLM connection refused, restarting it", text,
                     re.MULTILINE)
    assert re.search(LINE + re.escape("RESTORED: LiteLLM recovered, switched back to primary"),
                     text, re.MULTILINE)


@aio
async def test_a_restarted_watchdog_resumes_its_state(live: LiveStack, tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    for name in config.targets[0].via:
        live.upstream(name).set_fault(401, paths=("/v1/models", "/models"))
    async with running(config, live.env) as dog:
        await until(lambda: dog.state.active_target == "kilo-code", 30, "the fallback")
    # A new watchdog with the same files: it remembers the fallback and logs nothing new.
    before = event_lines(config)
    async with running(config, live.env) as dog:
        assert dog.state.active_target == "kilo-code"
        await until(lambda: dog.state.route("groq").consecutive_failures >= 3, 20,
                    "a few more failing probes")
    assert event_lines(config) == before
    assert load_state(config.paths.state_file).state.active_target == "kilo-code"


@aio
async def test_a_manual_pin_holds_until_restore(live: LiveStack, tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    pin = Path(config.paths.state_file).with_name("pin.json")
    async with running(config, live.env) as dog:
        await until(lambda: dog.state.active_target == "litellm", 20, "a healthy start")
        pin.write_text(json.dumps({"target": "openrouter", "ttl_s": None}))
        await until(lambda: provider_in_file(config) == "openrouter", 10, "the pinned target")
        assert dog.state.pin is not None
        pin.write_text(json.dumps({"target": None}))
        await until(lambda: provider_in_file(config) == "litellm", 10, "health deciding again")
        assert dog.state.switches == []  # a person's switches do not use up the hourly cap
    events = read_events(config.paths.event_jsonl)
    assert [(e.kind, e.reason, e.message.split(";")[0]) for e in events] == [
        ("FALLBACK", "manual", "manual switch to OpenRouter"),
        ("RESTORED", "manual", "pin removed, switched back to LiteLLM")]
    assert "agents: kilo-code on openrouter" in events[0].message
    assert "gemini-cli on google" in events[0].message  # Gemini CLI cannot speak OpenRouter
    assert sample(dog, "provider_fallback_events_total", from_provider="litellm",
                  to_provider="openrouter", reason="unknown") == 0


@aio
async def test_a_broken_agent_file_is_reported_once_and_mended_once_fixed(
        live: LiveStack, tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    path = agent_file(config)
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    async with running(config, live.env) as dog:
        await until(lambda: Path(config.paths.event_log).exists(), 20, "the error event")
        await until(lambda: dog.state.active_target == "litellm", 20, "the first decision")
        assert path.read_text() == "{ not json"  # never overwritten
        path.write_text(json.dumps(USER_KEYS))  # the user repairs it
        await until(lambda: provider_in_file(config) == "litellm", 10, "the file mended")
    errors = [e for e in read_events(config.paths.event_log) if e.kind == "ERROR"]
    assert len(errors) == 1
    assert "left untouched" in errors[0].message
    data = json.loads(path.read_text())
    assert {k: data[k] for k in USER_KEYS} == USER_KEYS


# --------------------------------------------------------------------------- recovery


def process_config(live: LiveStack, tmp_path: Path, command: list[str], port: int,
                   restart: Restart) -> WatchdogConfig:
    proxy = live.config.proxy.model_copy(update={
        "url": f"http://127.0.0.1:{port}", "command": command,
        "config_path": command[command.index("--config") + 1]})
    return fast_config(live.config, tmp_path, proxy=proxy, restart=restart)


def backend_for(config: WatchdogConfig) -> ProcessBackend:
    state = Path(config.paths.state_dir)
    return ProcessBackend(config.proxy.command, PROXY_ENV, state / "litellm.pid",
                          Path(config.paths.log_dir) / "litellm.log", config.proxy.config_path,
                          cwd=state)


@aio
async def test_a_proxy_killed_with_sigkill_is_restarted_and_counted(
        live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in live.env.items():
        monkeypatch.setenv(name, value)  # the supervised proxy inherits the keys
    # ... and runs monitoring.proxy.serve from this checkout (a host has it in its venv).
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    port = free_port()
    venv = ensure_venv(live.stack.litellm.version)
    command = proxy_argv(venv, live.proxy.config, port)
    config = process_config(live, tmp_path, command, port, Restart(
        backoff_initial=1, backoff_max=10, max_per_hour=5, startup_timeout=60))
    seed_agent_file(config)
    backend = backend_for(config)
    try:
        async with running(config, live.env, backend) as dog:
            await until(lambda: circuit_of(dog.state.route(PROXY_ROUTE)) is Circuit.HEALTHY
                        and dog.state.route(PROXY_ROUTE).last_success is not None, 120,
                        "the supervised proxy to answer")
            first = backend.running_pid()
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await until(lambda: sample(dog, "provider_proxy_restarts_total") >= 1, 30,
                        "the restart")
            await until(lambda: (backend.running_pid() or first) != first
                        and circuit_of(dog.state.route(PROXY_ROUTE)) is Circuit.HEALTHY, 120,
                        "the restarted proxy to answer")
            await until(lambda: provider_in_file(config) == "litellm", 30, "the restore")
        text = "\n".join(event_lines(config))
        assert re.search(LINE + "RESTART: LiteLLM connection refused, restarting it "
                         r"\(attempt 1 of 5 this hour\)", text, re.MULTILINE), text
        assert re.search(LINE + "RECOVERY: LiteLLM auto-recovery successful", text,
                         re.MULTILINE), text
        assert len(load_state(config.paths.state_file).state.restarts) == 1
    finally:
        backend.stop()


@aio
async def test_a_proxy_that_keeps_dying_ends_in_the_crash_loop(live: LiveStack,
                                                              tmp_path: Path) -> None:
    port = free_port()  # nothing will ever listen here
    marker = str(tmp_path / "dying-proxy.yaml")
    command = [sys.executable, "-c", "import sys; sys.exit(3)", "--config", marker,
               "--host", "127.0.0.1", "--port", str(port)]
    config = process_config(live, tmp_path, command, port, Restart(
        backoff_initial=0.1, backoff_max=0.2, max_per_hour=3, startup_timeout=0.3))
    backend = backend_for(config)
    async with running(config, live.env, backend) as dog:
        await until(lambda: sample(dog, metrics.PROXY_CRASH_LOOP.name) == 1, 30,
                    "the crash-loop state")
        restarts = sample(dog, "provider_proxy_restarts_total")
        assert restarts == 3
        # It stays there: no more restarts while the proxy is down.
        await until(lambda: dog.state.route(PROXY_ROUTE).consecutive_failures >= 10, 20,
                    "more failing probes")
        assert sample(dog, "provider_proxy_restarts_total") == restarts
    errors = [e for e in read_events(config.paths.event_log) if e.kind == "ERROR"]
    assert len(errors) == 1
    assert "manual intervention required" in errors[0].message


# --------------------------------------------------------------------------- flapping


@aio
async def test_thirty_percent_random_failures_for_two_minutes_stay_under_the_cap(
        live: LiveStack, tmp_path: Path) -> None:
    stack_hysteresis = live.config.hysteresis  # the defaults of stack.yaml
    primary = live.config.targets[0].model_copy(update={"via": ["groq"]})
    config = fast_config(live.config, tmp_path, hysteresis=stack_hysteresis, interval=1.0,
                         targets=[primary, *live.config.targets[1:]])
    seed_agent_file(config)
    loop = asyncio.get_running_loop()
    async with running(config, live.env) as dog:
        await until(lambda: dog.state.active_target == "litellm", 20, "a healthy start")
        live.upstream("groq").set_fault("random", ratio=0.3, seed=7,
                                        paths=("/v1/models", "/models"))
        end = loop.time() + 120
        await until(lambda: loop.time() > end, 130, "two minutes")
        switches = len(dog.state.switches)
        failed = dog.state.route("groq").last_failure is not None
    assert failed, "the fault really hit the probes"
    assert switches <= stack_hysteresis.max_switches_per_hour


# --------------------------------------------------------------------------- passive health


async def _traffic(live: LiveStack, model: str, stop: asyncio.Event) -> None:
    """An agent's requests through the proxy, one after another, until ``stop``."""
    while not stop.is_set():
        await asyncio.to_thread(live.chat, model, 10)


def passive_config(live: LiveStack, tmp_path: Path) -> WatchdogConfig:
    """Direct provider probes effectively off: only real traffic can reveal the fault."""
    config = fast_config(live.config, tmp_path)
    probes = config.probes.model_copy(update={"provider_interval": 3600, "metrics_interval": 0.3})
    return config.model_copy(update={"probes": probes})


@asynccontextmanager
async def watched_with_traffic(live: LiveStack, config: WatchdogConfig
                               ) -> AsyncIterator[Watchdog]:
    """A watchdog on the primary, and an agent's requests flowing until the block ends."""
    seed_agent_file(config)
    primary = config.targets[0]
    stop = asyncio.Event()
    async with running(config, live.env) as dog:
        await until(lambda: dog.state.active_target == primary.name, 20, "a healthy start")
        traffic = asyncio.create_task(_traffic(live, primary.settings["model"], stop))
        try:
            yield dog
        finally:
            stop.set()
            await traffic


@aio
async def test_real_traffic_failing_at_every_provider_falls_back(live: LiveStack,
                                                                tmp_path: Path) -> None:
    config = passive_config(live, tmp_path)
    primary = config.targets[0]
    async with watched_with_traffic(live, config) as dog:
        for name in primary.via:  # chat fails, /models (the direct probe) still answers
            live.upstream(name).set_fault(500, paths=("/v1/chat/completions",))
        await until(lambda: provider_in_file(config) == "z-ai", 30, "the fallback")
        assert dog.state.route(primary.via[0]).last_error_class == "server"
        assert "through the proxy" in (dog.state.route(primary.via[0]).last_message or "")


@aio
async def test_one_provider_down_is_left_to_litellms_own_fallback(live: LiveStack,
                                                                 tmp_path: Path) -> None:
    config = passive_config(live, tmp_path)
    primary = config.targets[0]
    async with watched_with_traffic(live, config) as dog:
        live.upstream(primary.via[0]).set_fault(500, paths=("/v1/chat/completions",))
        await until(lambda: circuit_of(dog.state.route(primary.via[0])) is Circuit.FAILED,
                    30, "the failing provider's circuit to open")
        # LiteLLM serves the primary's requests from the next provider of its chain.
        assert circuit_of(dog.state.route(primary.via[1])).usable
    assert dog.state.active_target == primary.name
    assert provider_in_file(config) == "litellm"
    assert not Path(config.paths.event_log).exists() or "FALLBACK" not in Path(
        config.paths.event_log).read_text()

@aio
async def test_the_completion_probe_is_sent_only_when_enabled(live: LiveStack,
                                                             tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    groq = live.upstream("groq")
    async with running(config, live.env):
        await until(lambda: len([r for r in groq.requests if r.path == "/v1/models"]) >= 3, 20,
                    "a few ticks of direct probes")
    assert not [r for r in groq.requests if r.path.endswith("/chat/completions")]
    enabled = config.model_copy(update={"probes": config.probes.model_copy(update={
        "completion_enabled": True, "completion_interval": 0.5,
        "completion_model": "groq-8b"})})
    async with running(enabled, live.env):
        await until(lambda: any(r.path.endswith("/chat/completions") for r in groq.requests),
                    20, "a completion at the upstream")
    sent = [r for r in groq.requests if r.path.endswith("/chat/completions")]
    assert {r.model for r in sent} == {live.stack.litellm.models["groq-8b"].upstream_model}
