"""The real coding-agent programs for tests, pinned and installed once per machine.

Issue 10 proves the agent adapters with the real programs, not with fakes of them. Six are npm
packages, one (Aider) a PyPI package; together ~1 GB and a few minutes to install, so they are
built once under the test cache (``$PF_CACHE`` or ``~/.cache/provider-fallback``, like the
LiteLLM venv in tests/support/litellm_proxy.py) and reused, one folder per program and version
(tests/support/cached_build.py: a lock against a racing session, a stamp when complete).

The versions are pinned here and nowhere else (:data:`AGENTS`). ``@kilocode/cli`` stays at
7.7.7: 7.8.x needs a platform binary the reachable registry does not serve
(shared/notes/agent-configs.md, "Measured on a machine of this project's kind").

The agents' own caches stay persistent too: OpenCode and Kilo keep provider packages under
``$XDG_CACHE_HOME/<app>`` (1.18.33 and 7.7.7 bundle ``@ai-sdk/openai-compatible``, so nothing
is fetched today, but a newer release fetches it on first use) and npm's cache is moved there
as well; :func:`runtime_env` points them at ``agents/`` in the test cache, so a second run on
the machine downloads nothing even with a throwaway HOME.

Measured here (Debian 12, 2 cores, busy; empty npm and pip caches): a cold install of all
seven takes ~7 min (the npm programs 13-38 s each, Aider ~4.6 min in pip) and ~2.3 GB (Aider's
venv 690 MB, Codex 400 MB, Claude Code 360 MB, OpenCode 350 MB, Kilo 290 MB); warm, a stamp
check per program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.cached_build import built_once
from tests.support.litellm_proxy import cache_dir


@dataclass(frozen=True)
class AgentProgram:
    """One pinned agent program: where it comes from and which command runs it."""

    name: str       # the project's name for the agent (the adapter's name)
    package: str    # npm package, or PyPI distribution for pip
    version: str
    command: str    # the executable the package installs
    installer: str  # "npm" or "pip"

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


#: THE pins. Change a version here only; the cache folder is named after it.
AGENTS: dict[str, AgentProgram] = {a.name: a for a in (
    AgentProgram("kilo", "@kilocode/cli", "7.7.7", "kilo", "npm"),
    AgentProgram("gemini", "@google/gemini-cli", "0.61.0", "gemini", "npm"),
    AgentProgram("claude", "@anthropic-ai/claude-code", "2.1.328", "claude", "npm"),
    AgentProgram("codex", "@openai/codex", "0.169.0", "codex", "npm"),
    AgentProgram("opencode", "opencode-ai", "1.18.33", "opencode", "npm"),
    AgentProgram("continue", "@continuedev/cli", "1.5.47", "cn", "npm"),
    AgentProgram("aider", "aider-chat", "0.86.2", "aider", "pip"),
)}


def agents_dir() -> Path:
    return cache_dir() / "agents"


def npm_cache() -> Path:
    return agents_dir() / "npm-cache"


def runtime_env() -> dict[str, str]:
    """Variables that keep the agents' own package downloads in the persistent cache.

    OpenCode and Kilo install provider SDKs into ``$XDG_CACHE_HOME/<app>`` on first use; with a
    throwaway HOME that would be a fresh download per run. Only the cache moves: the config
    folders stay under the run's HOME, where the adapters write.
    """
    return {"XDG_CACHE_HOME": str(agents_dir() / "xdg-cache"),
            "npm_config_cache": str(npm_cache())}


def executable(name: str) -> Path:
    """The installed program's executable (installing it first if needed)."""
    agent = AGENTS[name]
    root = install_agent(name)
    if agent.installer == "pip":
        return root / "bin" / agent.command
    return root / "node_modules" / ".bin" / agent.command


def install_agent(name: str) -> Path:
    """The program's install folder; installed on first use, then reused."""
    agent = AGENTS[name]

    def build(root: Path) -> None:
        if agent.installer == "pip":
            _install_pip(agent, root)
        else:
            _install_npm(agent, root)

    return built_once(agents_dir() / agent.folder, build, f"{agent.package}=={agent.version}\n")


def install_agents(names: Iterable[str] = AGENTS) -> dict[str, Path]:
    """Every named program installed (sequentially: npm and pip are heavy on 2 cores)."""
    return {name: install_agent(name) for name in names}


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"could not install {what} (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def _install_npm(agent: AgentProgram, root: Path) -> None:
    _require_node()
    root.mkdir(parents=True)
    # An empty package.json keeps npm from walking up to a parent folder's project.
    (root / "package.json").write_text('{"private": true}\n')
    # npm's download cache would double the disk used (~550 MB for the six programs) and is
    # never read again once the install is stamped: a temporary one, removed afterwards.
    downloads = root.parent / f".npm-download-{agent.folder}"
    try:
        _run(["npm", "install", "--prefix", str(root), "--no-audit", "--no-fund",
              "--loglevel=error", f"{agent.package}@{agent.version}"],
             f"{agent.package}@{agent.version}", env={"npm_config_cache": str(downloads)})
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


#: The oldest Node.js the pinned programs run on (Gemini CLI and Kilo need 20).
NODE_MAJOR = 20


def _require_node() -> None:
    """A clear error, naming the fix, when Node.js or npm is missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("the agent programs need Node.js >= 20 with npm on PATH; install "
                           "them (e.g. Debian's nodejs and npm from NodeSource) and re-run")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0)
    if major < NODE_MAJOR:
        raise RuntimeError(f"the agent programs need Node.js >= {NODE_MAJOR}; {node} is "
                           f"{version}: install a newer Node.js and re-run")


def _install_pip(agent: AgentProgram, root: Path) -> None:
    _run([sys.executable, "-m", "venv", str(root)], f"a venv for {agent.package}")
    _run([str(root / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
          f"{agent.package}=={agent.version}"], f"{agent.package}=={agent.version}")


if __name__ == "__main__":
    # `python -m tests.support.agent_install [NAME...]`: fill the cache ahead of a test run.
    for installed in install_agents(sys.argv[1:] or AGENTS).values():
        print(installed)
