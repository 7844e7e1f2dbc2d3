"""OpenCode (``opencode-ai``): ``~/.config/opencode/opencode.json(c)``, OpenAI chat wire.

Our provider entries are ``provider.pf-<target>`` (``@ai-sdk/openai-compatible``, base URL,
``apiKey: "{env:VAR}"`` so no key value lands in the file); a switch changes only the top-level
``model: "pf-<target>/<model>"``. The schema is strict: only these valid keys are written, and
``$schema`` is written when missing (the program rewrites a file without it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.agents.base import (
    Adapter,
    Context,
    Default,
    Endpoint,
    FileSpec,
    Trap,
    Values,
    env_trap,
    project_trap,
)
from monitoring.agents.formats import Jsonc


def provider_entry(endpoint: Endpoint) -> dict[str, Any]:
    """One ``provider.<id>`` entry of the OpenCode schema (shared by Kilo Code)."""
    key = f"{{env:{endpoint.key_env}}}" if endpoint.key_env else ""
    return {"npm": "@ai-sdk/openai-compatible", "name": f"{endpoint.label} (provider-fallback)",
            "options": {"baseURL": endpoint.base_url, "apiKey": key},
            "models": {endpoint.model: {}}}


@dataclass(frozen=True)
class OpenCodeFamily(Adapter):
    schema_url: str = "https://opencode.ai/config.json"

    def scaffold(self, reachable: Sequence[Endpoint], ctx: Context) -> Values:
        values: list[tuple[Any, Any]] = [(("$schema",), Default(self.schema_url))]
        values += [(("provider", e.provider_id), provider_entry(e)) for e in reachable
                   if e.builtin_provider is None]
        return {"config": values}

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        if endpoint.builtin_provider is not None:
            return {"config": [(("model",), f"{endpoint.builtin_provider}/{endpoint.model}")]}
        return {"config": [(("model",), f"{endpoint.provider_id}/{endpoint.model}")]}


@dataclass(frozen=True)
class OpenCode(OpenCodeFamily):
    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        why = "it replaces the file provider-fallback switches"
        return [*env_trap(env, "OPENCODE_CONFIG_CONTENT", why),
                *env_trap(env, "OPENCODE_CONFIG", "its file is merged over the user file"),
                *project_trap(cwd, ("opencode.json", "opencode.jsonc"),
                              "a project file beats the user file")]


ADAPTER = OpenCode(
    name="opencode", label="OpenCode", wire="openai-chat", live_reload=False,
    binaries=("opencode",),
    files=(FileSpec("config", ((".config", "opencode", "opencode.jsonc"),
                               (".config", "opencode", "opencode.json")), Jsonc()),),
    key_mechanism="{env:VAR} in provider.<id>.options.apiKey (the variable is read at start)",
    restart_hint="restart your OpenCode session to follow",
)
