"""The seven real agents follow a real failover and restore (issue 10 item 6), end to end.

All seven are ENROLLED through the stack's ``agents:`` section: their files are written by
the project's own adapters (monitoring/agents/), run by the real Watchdog with its real
Prober, in a throwaway HOME that the real, pinned agent programs then run with
(tests/support/agent_programs.py). For each of three phases every agent is run once and the
test shows where its NEXT request landed, with which model and which key header:

1. the watchdog on the proxy: through the session's real LiteLLM proxy to the groq fake, as
   a chat completion for the upstream model with the groq key (the fake refuses any other,
   the master key the agent holds included);
2. a fault injected at the fakes behind the proxy's chain (groq and OpenRouter answer 500 to
   ``/models`` and ``/chat/completions``), the watchdog fails over: each agent lands directly
   at the fallback of its OWN order, in its own wire format, with that provider's key:
   the OpenAI-chat agents and Gemini CLI at Google (the only provider still healthy), Claude
   Code at OpenRouter's Anthropic endpoint and Codex at Groq's Responses endpoint (nothing
   they can speak is healthy, so the last of their order: the paths the fault leaves alone);
3. the fault cleared, the watchdog restores: through the proxy again.

Kilo Code's order is given (``[litellm, openrouter, google]``): its default goes first to
Kilo's own gateway, which is not reachable offline. The agents get what a person has in
their shell: the keys under the names the files refer to (``{env:VAR}``, Codex's
``env_key``, Continue's secrets, Claude Code's key helper), not Gemini's key, which
``~/.gemini/.env`` holds (an exported one would beat it: a trap ``agents`` reports). One
failover and one restore serve all seven agents.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.watchdog.loop import Watchdog
from tasks.render import watchdog
from tests.monitoring.conftest import LiveStack, build_test_stack
from tests.support.agent_install import install_agents
from tests.support.agent_programs import AgentRun, CapturedRequest, run_agent
from tests.support.watchdog_harness import aio, fast_config, running, until

pytestmark = pytest.mark.live

#: Adapter name (stack.yaml) -> harness name (tests/support/agent_install.py).
PROGRAM = {"kilo-code": "kilo", "gemini-cli": "gemini", "claude-code": "claude",
           "codex": "codex", "opencode": "opencode", "aider": "aider", "continue": "continue"}
#: The ``agents:`` section under test: every agent, Kilo Code with an order of its own.
ENROLLED: list[object] = [
    {"name": "kilo-code", "order": ["litellm", "openrouter", "google"]},
    "gemini-cli", "claude-code", "codex", "opencode", "aider", "continue"]
CHAT = "/v1/chat/completions"
#: At most this many requests for one prompt: more means the agent retries a reply it could
#: not parse (a retry storm would hide where its NEXT request goes).
MAX_REQUESTS = 3
#: The provider routes the fault takes down: every provider of the proxy's chain.
FAULTED = ("groq", "openrouter")
FAULT_PATHS = ("/models", "/chat/completions")


@dataclass(frozen=True)
class Landing:
    """Where an agent's request must land in a phase: target, fake, wire, path, and the
    header carrying the key the fake accepted."""

    target: str
    upstream: str
    wire: str
    path: Callable[[str], str]  # of the model
    header: str


def _chat(model: str) -> str:
    return CHAT


PROXY = Landing("litellm", "groq", "openai", _chat, "authorization")
GOOGLE_CHAT = Landing("google", "paid", "openai", _chat, "authorization")
#: Phase 2: the fallback of each agent's own order, in its own wire format.
FALLBACK = {
    "kilo-code": GOOGLE_CHAT, "opencode": GOOGLE_CHAT, "continue": GOOGLE_CHAT,
    "aider": GOOGLE_CHAT,
    "gemini-cli": Landing("google", "paid", "gemini",
                          lambda m: f"/v1beta/models/{m}:streamGenerateContent",
                          "x-goog-api-key"),
    # Claude Code sends apiKeyHelper's key as x-api-key (Anthropic's own header).
    "claude-code": Landing("openrouter", "openrouter", "anthropic", lambda m: "/v1/messages",
                           "x-api-key"),
    "codex": Landing("groq", "groq", "responses", lambda m: "/v1/responses", "authorization"),
}


@pytest.fixture(scope="module")
def agents_installed() -> None:
    """Every pinned agent program, installed on first use (minutes, once per machine)."""
    install_agents()


def enrolled_config(live: LiveStack, tmp_path: Path) -> WatchdogConfig:
    """The session stack with every agent enrolled, rendered to a quick watchdog config."""
    stack = build_test_stack(live.proxy.port,
                             {name: up.api_base for name, up in live.upstreams.items()},
                             agents=ENROLLED)
    return fast_config(watchdog.build(stack, layout(stack, "linux")), tmp_path)


def person_env(live: LiveStack, agent: str) -> dict[str, str]:
    """What a person has in their shell: the keys by the names the agent files refer to."""
    env = {live.stack.litellm.master_key_env: live.master_key, **live.keys}
    if agent == "gemini-cli":
        env.pop("GEMINI_API_KEY")  # ~/.gemini/.env holds it; an exported one would win
    return env


@dataclass
class Phase:
    """One phase's runs and the failures found in them (all agents run before asserting)."""

    name: str
    runs: dict[str, AgentRun]
    failures: list[str]
    seconds: float


def agent_requests(run: AgentRun) -> list[CapturedRequest]:
    """What the agent sent: the watchdog's own probes (``GET .../models`` at each provider,
    every 0.3 s meanwhile) land at the same fakes and are left out."""
    return [c for c in run.landed
            if not (c.request.method == "GET" and c.request.path.endswith("/models"))]


async def run_phase(name: str, live: LiveStack, config: WatchdogConfig,
                    expected: Callable[[str], Landing]) -> Phase:
    """Each agent once, in turn (the watchdog keeps ticking meanwhile), checked."""
    home, cwd = Path(str(config.agent_home)), Path(str(config.agent_home)).parent / "project"
    cwd.mkdir(exist_ok=True)
    targets = {t.name: t for t in config.targets}
    runs: dict[str, AgentRun] = {}
    failures: list[str] = []
    started = time.monotonic()
    for agent, program in PROGRAM.items():
        run = await asyncio.to_thread(
            run_agent, program, home, cwd, person_env(live, agent), watch=live.upstreams,
            prompt=f"Say hi. ({name} {os.urandom(4).hex()})")
        runs[agent] = run
        want = expected(agent)
        model = targets[want.target].model
        if want.target == "litellm":
            model = live.stack.litellm.models[model].upstream_model
        sent = agent_requests(run)
        problems = [] if run.ok and 1 <= len(sent) <= MAX_REQUESTS else ["the run"]
        for landed in sent:
            r = landed.request
            if (landed.upstream, r.method, r.path, r.model, r.wire) != (
                    want.upstream, "POST", want.path(model), model, want.wire):
                problems.append(f"landed {landed.upstream} {r.path} {r.model} {r.wire}")
            # Each fake accepts only its provider's key: never the master key upstream.
            if not r.authorized or r.key_header != want.header:
                problems.append(f"key {r.key_header} authorized={r.authorized}")
        if problems:
            failures.append(f"[{name}] {agent}: {problems}\n{run.describe()}")
    return Phase(name, runs, failures, time.monotonic() - started)


async def files_follow(dog: Watchdog, expected: Callable[[str], Landing], what: str) -> None:
    """Wait for every agent's files to point at its expected target; else say where each
    points and why the watchdog did not switch it."""
    try:
        await until(lambda: all(dog.agents.current(a) == expected(a).target for a in PROGRAM),
                    60, what)
    except AssertionError as exc:
        where = {a: dog.agents.current(a) for a in PROGRAM}
        raise AssertionError(f"{exc}: files on {where}; errors {dog._agent_errors}") from None


def report(phases: list[Phase], switches: dict[str, float]) -> str:
    lines = [f"{p.name}: {p.seconds:.1f} s; " + ", ".join(
        f"{a} {r.seconds:.1f} s" for a, r in p.runs.items()) for p in phases]
    lines += [f"{k}: {v:.1f} s" for k, v in switches.items()]
    return "\n".join(lines)


@aio
async def test_every_enrolled_agent_follows_a_failover_and_the_restore(
        live: LiveStack, agents_installed: None, tmp_path: Path) -> None:
    config = enrolled_config(live, tmp_path)
    assert sorted(a.name for a in config.agents) == sorted(PROGRAM)
    paid = live.upstreams["paid"]
    phases: list[Phase] = []
    switches: dict[str, float] = {}
    async with running(config, live.env) as dog:
        await files_follow(dog, lambda a: PROXY, "every agent file on the proxy")
        phases.append(await run_phase("proxy", live, config, lambda a: PROXY))

        started = time.monotonic()
        for name in FAULTED:
            live.upstream(name).set_fault(500, paths=FAULT_PATHS)
        try:
            await files_follow(dog, FALLBACK.__getitem__, "every agent file on its fallback")
            switches["failover"] = time.monotonic() - started
            assert dog.state.active_target != "litellm"
            # Google's fake shares the proxy's paid upstream, which takes any key; for this
            # phase it requires Google's, so a request carrying another key is refused.
            paid.api_key = live.keys["GEMINI_API_KEY"]
            phases.append(await run_phase("fallback", live, config, FALLBACK.__getitem__))
        finally:
            paid.api_key = None
            for name in FAULTED:
                live.upstream(name).clear_fault()
        started = time.monotonic()
        await files_follow(dog, lambda a: PROXY, "every agent file back on the proxy")
        switches["restore"] = time.monotonic() - started
        assert dog.state.active_target == "litellm"
        phases.append(await run_phase("restored", live, config, lambda a: PROXY))
    print("\n" + report(phases, switches))
    failures = [f for p in phases for f in p.failures]
    assert not failures, "\n\n".join(failures)
    for secret in live.secret_values():
        for path in (Path(config.paths.event_log), Path(config.paths.state_file)):
            assert secret not in path.read_text(), path
