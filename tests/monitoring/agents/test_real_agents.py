"""The seven real coding agents send their request where their config file points.

Each agent is the real, pinned program (tests/support/agent_install.py), run headless with a
throwaway HOME (tests/support/agent_programs.py). Its config file is written here, as data, in
the shape the agent documents (shared/notes/agent-configs.md, one section per agent); a test
then shows where the agent's request landed, with which model and which key header:

* through the session's real LiteLLM proxy (the agent names a stack alias and holds the master
  key): the request reaches the provider's fake as an OpenAI chat completion for the upstream
  model, with the provider's key (the fake refuses every other key, the master key included);
* pointed directly at a fallback provider in the agent's own wire format (OpenRouter-style
  chat, OpenRouter's Anthropic endpoint for Claude Code, Responses for Codex, Gemini's native
  API for Gemini CLI): the request lands there with the provider's model and key header.

The adapters that write these files for real (monitoring/agents/) are another module's job; the
shapes here are the agents' documented ones, so an adapter test can compare against them.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.monitoring.conftest import LiveStack
from tests.support.agent_install import AGENTS, install_agents
from tests.support.agent_programs import AgentRun, run_agent
from tests.support.fake_upstream import FakeUpstream

#: The alias the agents ask the proxy for, and what the groq fake must see instead.
ALIAS = "groq-70b"
#: At most this many requests for one prompt: more means the agent is retrying a reply it
#: could not parse (a retry storm would hide where its NEXT request goes).
MAX_REQUESTS = 3


@dataclass(frozen=True)
class Target:
    """Where an agent is pointed: a root URL (no ``/v1``), a model, and a key by variable."""

    url: str
    model: str
    key_env: str
    key: str


Env = dict[str, str]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- config shapes
# One writer per agent: the file(s) the agent reads in HOME, and the environment it needs
# (only key values, named by the file). Sources: shared/notes/agent-configs.md sections 1-7.


def _opencode_shape(schema: str, t: Target) -> str:
    """OpenCode's config (Kilo is a fork): an openai-compatible provider of our own, the
    model as ``<provider>/<model>``, the key as ``{env:VAR}``."""
    config = {"$schema": schema, "model": f"pf/{t.model}",
              "provider": {"pf": {"npm": "@ai-sdk/openai-compatible", "name": "provider-fallback",
                                  "options": {"baseURL": f"{t.url}/v1",
                                              "apiKey": f"{{env:{t.key_env}}}"},
                                  "models": {t.model: {}}}}}
    return json.dumps(config, indent=2) + "\n"


def kilo(home: Path, t: Target) -> Env:
    """Kilo CLI 7.x: ~/.config/kilo/kilo.jsonc (JSONC: the comment is part of the proof)."""
    _write(home / ".config" / "kilo" / "kilo.jsonc", "// provider-fallback test config\n"
           + _opencode_shape("https://app.kilo.ai/config.json", t))
    return {t.key_env: t.key}


def opencode(home: Path, t: Target) -> Env:
    """OpenCode: ~/.config/opencode/opencode.json."""
    _write(home / ".config" / "opencode" / "opencode.json",
           _opencode_shape("https://opencode.ai/config.json", t))
    return {t.key_env: t.key}


def continue_(home: Path, t: Target) -> Env:
    """Continue: ~/.continue/config.yaml; the key from ~/.continue/.env as a secret."""
    _write(home / ".continue" / "config.yaml", textwrap.dedent(f"""\
        name: Local Config
        version: 1.0.0
        schema: v1
        models:
          - name: provider-fallback
            provider: openai
            model: {t.model}
            apiBase: {t.url}/v1
            apiKey: ${{{{ secrets.{t.key_env} }}}}
            roles: [chat, edit, apply]
        """))
    _write(home / ".continue" / ".env", f"{t.key_env}={t.key}\n")
    return {}


def aider(home: Path, t: Target) -> Env:
    """Aider: ~/.aider.conf.yml (generic OpenAI-compatible ``openai/`` model); the key from
    the environment (the YAML may hold only OpenAI's and Anthropic's keys)."""
    _write(home / ".aider.conf.yml",
           f"model: openai/{t.model}\nopenai-api-base: {t.url}/v1\n")
    return {"OPENAI_API_KEY": t.key}


def codex(home: Path, t: Target) -> Env:
    """Codex: ~/.codex/config.toml, a provider id of our own with ``wire_api = "responses"``."""
    _write(home / ".codex" / "config.toml", textwrap.dedent(f"""\
        model = "{t.model}"
        model_provider = "pf"

        [model_providers.pf]
        name = "provider-fallback"
        base_url = "{t.url}/v1"
        env_key = "{t.key_env}"
        wire_api = "responses"
        """))
    return {t.key_env: t.key}


def claude(home: Path, t: Target) -> Env:
    """Claude Code: the ``env`` block of ~/.claude/settings.json; the key from apiKeyHelper
    (a command, so no key value sits in the file)."""
    settings = {"apiKeyHelper": f"printenv {t.key_env}",
                "env": {"ANTHROPIC_BASE_URL": t.url, "ANTHROPIC_MODEL": t.model,
                        "ANTHROPIC_DEFAULT_HAIKU_MODEL": t.model}}
    _write(home / ".claude" / "settings.json", json.dumps(settings, indent=2) + "\n")
    return {t.key_env: t.key}


def gemini(home: Path, t: Target) -> Env:
    """Gemini CLI: ``model.name`` in ~/.gemini/settings.json, base URL and key in
    ~/.gemini/.env (the only place for the URL: there is no settings key for it)."""
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}},
                "model": {"name": t.model}}
    _write(home / ".gemini" / "settings.json", json.dumps(settings, indent=2) + "\n")
    _write(home / ".gemini" / ".env",
           f"GOOGLE_GEMINI_BASE_URL={t.url}\nGEMINI_API_KEY={t.key}\n")
    return {}


@dataclass(frozen=True)
class Agent:
    write: Callable[[Path, Target], Env]
    wire: str            # what the fake records: openai, anthropic, responses, gemini
    fallback: str        # which fallback fake it can reach directly
    fallback_model: str  # a model that provider serves
    path: str            # where its request lands on the fallback


OPENROUTER_MODEL = "meta-llama/llama-3.3-70b-instruct:free"
CHAT = "/v1/chat/completions"
CASES: dict[str, Agent] = {
    "kilo": Agent(kilo, "openai", "openrouter", OPENROUTER_MODEL, CHAT),
    "opencode": Agent(opencode, "openai", "openrouter", OPENROUTER_MODEL, CHAT),
    "continue": Agent(continue_, "openai", "openrouter", OPENROUTER_MODEL, CHAT),
    "aider": Agent(aider, "openai", "openrouter", OPENROUTER_MODEL, CHAT),
    "codex": Agent(codex, "responses", "openrouter", "openai/gpt-4o-mini", "/v1/responses"),
    "claude": Agent(claude, "anthropic", "openrouter", "anthropic/claude-sonnet-4.5",
                    "/v1/messages"),
    "gemini": Agent(gemini, "gemini", "google", "gemini-2.5-pro",
                    "/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
}


def test_every_pinned_agent_has_a_case() -> None:
    assert sorted(CASES) == sorted(AGENTS)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def agents_installed() -> None:
    """Every pinned agent program, installed on first use (minutes, once per machine)."""
    install_agents()


@dataclass
class Fallbacks:
    """Fakes of the providers an agent reaches without the proxy, and their keys."""

    upstreams: dict[str, FakeUpstream]
    keys: dict[str, str]


@pytest.fixture(scope="session")
def fallbacks() -> Iterator[Fallbacks]:
    keys = {"openrouter": "sk-or-v1-" + os.urandom(20).hex(),
            "google": "AIza" + os.urandom(18).hex()}
    models = {name: sorted({c.fallback_model for c in CASES.values() if c.fallback == name})
              for name in keys}
    with FakeUpstream(api_key=keys["openrouter"], models=models["openrouter"]) as openrouter, \
            FakeUpstream(api_key=keys["google"], models=models["google"]) as google:
        yield Fallbacks({"openrouter": openrouter, "google": google}, keys)


def _run(name: str, tmp_path: Path, target: Target,
         watch: dict[str, FakeUpstream]) -> AgentRun:
    home, cwd = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    cwd.mkdir()
    env = CASES[name].write(home, target)
    run = run_agent(name, home, cwd, env, watch=watch,
                    prompt=f"Say hi. (test run {os.urandom(4).hex()})")
    assert run.ok, run.describe()
    assert 1 <= len(run.landed) <= MAX_REQUESTS, run.describe()
    return run


# --------------------------------------------------------------------------- the proofs


@pytest.mark.live
@pytest.mark.parametrize("name", list(CASES))
def test_through_the_proxy_the_request_reaches_the_provider_with_its_key(
        name: str, live: LiveStack, agents_installed: None, tmp_path: Path) -> None:
    target = Target(live.proxy.url, ALIAS, "LITELLM_API_KEY", live.master_key)
    run = _run(name, tmp_path, target, watch=live.upstreams)
    upstream = live.stack.litellm.models[ALIAS].upstream_model
    for request in run.landed:
        assert request.upstream == "groq", run.describe()
        landed = request.request
        assert (landed.method, landed.path, landed.model) == ("POST", CHAT, upstream), \
            run.describe()
        # The groq fake accepts only the groq key: never the master key the agent holds.
        assert landed.authorized, run.describe()
        assert landed.key_headers == ("authorization",)


@pytest.mark.live
@pytest.mark.parametrize("name", list(CASES))
def test_pointed_at_the_fallback_the_request_lands_there_in_the_agents_wire(
        name: str, fallbacks: Fallbacks, agents_installed: None, tmp_path: Path) -> None:
    case = CASES[name]
    fake = fallbacks.upstreams[case.fallback]
    key_env = "GEMINI_API_KEY" if case.fallback == "google" else "OPENROUTER_API_KEY"
    target = Target(fake.url, case.fallback_model, key_env, fallbacks.keys[case.fallback])
    run = _run(name, tmp_path, target, watch=fallbacks.upstreams)
    expected_header = {"openai": "authorization", "responses": "authorization",
                       "anthropic": "authorization", "gemini": "x-goog-api-key"}[case.wire]
    for request in run.landed:
        assert request.upstream == case.fallback, run.describe()
        landed = request.request
        assert (landed.method, landed.path, landed.model, landed.wire) == (
            "POST", case.path, case.fallback_model, case.wire), run.describe()
        assert landed.authorized, run.describe()
        assert expected_header in landed.key_headers, run.describe()
