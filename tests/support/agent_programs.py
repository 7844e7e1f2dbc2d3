"""Run one real coding agent headless and see where its requests landed.

The harness for issue 10's proofs: a test writes an agent's config file (the way the agent's
adapter would) into a throwaway HOME, runs the real, pinned program (installed once per machine
by tests/support/agent_install.py) with one prompt, and asks which fake upstream received the
agent's request(s), with which model and which key header.

API::

    install_agents()                     # every pinned program, cached (agent_install.py)
    run = run_agent("claude", home, cwd, env, watch={"proxy-side": groq, "fallback": openrouter})
    run.ok                               # exited 0 within the timeout
    run.landed                           # [CapturedRequest(upstream="fallback", request=...)]
    run.at("fallback")                   # just the RecordedRequests that landed there
    run.describe()                       # command, exit code and output tails for a message

Names: kilo, gemini, claude, codex, opencode, continue, aider (:data:`AGENTS`). Every agent
reads its config at start, so one call shows where the agent's NEXT request goes: for an
end-to-end proof, run it, let the watchdog switch the files, run it again with the same HOME.
What the agents do to HOME themselves, worth knowing for byte-identical restores: Kilo 7.7.7
adds ``"permission": {"bash": "allow"}`` to ``kilo.jsonc`` on its first run (comments kept;
marker ``~/.config/kilo/.bash-permission-migrated``); Kilo and OpenCode add a ``.gitignore``
to their config folder; Claude Code writes ``~/.claude.json`` and ``~/.claude/`` state.

``env`` holds only what the test means to give the agent (keys, base URLs for agents that take
them from the environment); the harness adds HOME, PATH, the persistent package cache
(:func:`tests.support.agent_install.runtime_env`) and the per-agent switches that make a
headless run possible offline (:data:`HEADLESS_ENV`). Nothing else of the test process's
environment reaches the agent, so a developer's own ``OPENAI_API_KEY`` or ``ANTHROPIC_BASE_URL``
cannot change where a request lands. Agents run one at a time and are killed with their whole
process group at the timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.agent_install import AGENTS, executable, install_agents, runtime_env
from tests.support.fake_upstream import FakeUpstream, RecordedRequest

__all__ = ["AgentRun", "CapturedRequest", "install_agents", "run_agent"]

#: What each agent needs to run headless here (shared/notes/agent-configs.md, "Measured on a
#: machine of this project's kind"): Gemini CLI exits 55 in an untrusted folder; Claude Code
#: would otherwise call home (telemetry, update checks) before the first request.
HEADLESS_ENV: dict[str, dict[str, str]] = {
    "gemini": {"GEMINI_CLI_TRUST_WORKSPACE": "true"},
    "claude": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"},
    "codex": {},
    # Else each run waits ~7 s on models.dev, which is not reachable offline (and Kilo ~10 s
    # more indexing the project folder).
    "kilo": {"KILO_DISABLE_MODELS_FETCH": "1", "KILO_DISABLE_AUTOUPDATE": "1",
             "KILO_DISABLE_LSP_DOWNLOAD": "1", "KILO_DISABLE_SHARE": "1",
             "KILO_DISABLE_CODEBASE_INDEXING": "1", "KILO_DISABLE_SESSION_INGEST": "1"},
    "opencode": {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
                 "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1"},
    "continue": {},
    "aider": {},
}

#: Seconds one run may take. Generous: a cold Node start on a loaded 2-core machine is slow,
#: and a run that ends early is never waited for.
DEFAULT_TIMEOUT_S = 180.0


def command(name: str, prompt: str, home: Path) -> list[str]:
    """The headless invocation of agent ``name`` for one prompt (no model or URL on the
    command line: those must come from the config file under test)."""
    exe = str(executable(name))
    if name in ("kilo", "opencode"):
        return [exe, "run", prompt]
    if name in ("gemini", "claude"):
        return [exe, "-p", prompt]
    if name == "codex":
        return [exe, "exec", "--skip-git-repo-check", prompt]
    if name == "continue":
        return [exe, "-p", prompt]
    if name == "aider":
        return [exe, "--message", prompt, "--yes-always", "--no-git", "--no-check-update",
                "--no-show-release-notes", "--no-analytics", "--no-pretty", "--no-stream",
                "--no-show-model-warnings"]
    raise KeyError(f"no agent {name!r}; known: {', '.join(AGENTS)}")


@dataclass(frozen=True)
class CapturedRequest:
    """One request of the agent's run, and the fake upstream (by the test's name) it hit."""

    upstream: str
    request: RecordedRequest


@dataclass
class AgentRun:
    """The outcome of one run: exit, output, and what each watched upstream received."""

    name: str
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    landed: list[CapturedRequest] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def at(self, upstream: str) -> list[RecordedRequest]:
        return [c.request for c in self.landed if c.upstream == upstream]

    def describe(self) -> str:
        """For assertion messages: what ran, how it ended, the output tails, what landed."""
        ended = "timed out" if self.returncode is None else f"exit {self.returncode}"
        landed = [(c.upstream, c.request.method, c.request.path, c.request.model,
                   c.request.key_header, c.request.authorized) for c in self.landed]
        return (f"{self.name}: {' '.join(self.argv[1:])!r} {ended} after {self.seconds:.1f} s\n"
                f"landed: {landed}\n--- stdout ---\n{self.stdout[-2000:]}\n"
                f"--- stderr ---\n{self.stderr[-3000:]}")


def agent_env(name: str, home: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The agent's whole environment: a clean base, the headless switches, then ``env``."""
    node_bin = Path(os.path.realpath(_which("node"))).parent
    base = {"HOME": str(home), "PATH": f"{node_bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1", "TMPDIR": str(home / "tmp")}
    return {**base, **runtime_env(), **HEADLESS_ENV[name], **env}


def run_agent(name: str, home: Path, cwd: Path, env: Mapping[str, str], *,
              watch: Mapping[str, FakeUpstream], prompt: str = "Say hi.",
              timeout: float = DEFAULT_TIMEOUT_S) -> AgentRun:
    """Run agent ``name`` once with ``prompt``; report what reached each upstream in ``watch``.

    ``home`` and ``cwd`` must exist (the test writes the agent's config into ``home`` first).
    The watched upstreams' records are read before and after, so only this run's requests are
    reported; requests that reach the LiteLLM proxy show up at the upstream it forwards to.
    """
    argv = command(name, prompt, home)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    before = {label: len(up.requests) for label, up in watch.items()}
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=cwd, env=agent_env(name, home, env),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        returncode = None
    else:
        _kill_group(process)  # helpers it left behind (language servers, MCP, telemetry)
    seconds = time.monotonic() - started
    landed = [CapturedRequest(label, r) for label, up in watch.items()
              for r in up.requests[before[label]:]]
    landed.sort(key=lambda c: c.request.at)
    return AgentRun(name, argv, returncode, stdout, stderr, seconds, landed)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _which(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise RuntimeError(f"{program} is not on PATH; the agent programs need Node.js 20+")
    return found
