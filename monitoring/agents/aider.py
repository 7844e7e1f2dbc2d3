"""Aider: ``~/.aider.conf.yml`` (``model: openai/<model>``, ``openai-api-base``).

Aider takes its key from ``OPENAI_API_KEY``, one variable for every target, so a switch must
change the key too. It offers no reference to a variable by name; instead ``env-file`` points
at a dotenv of ours (``~/.config/provider-fallback/aider.env``, 0600) holding the active
target's key, which Aider loads over the environment. Aider reads its files per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitoring.agents.base import (
    Adapter,
    Context,
    Endpoint,
    FileSpec,
    Secret,
    Trap,
    Values,
    env_trap,
    project_trap,
)
from monitoring.agents.formats import Dotenv, Yaml

KEY_FILE = (".config", "provider-fallback", "aider.env")


@dataclass(frozen=True)
class Aider(Adapter):
    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        values: Values = {"config": [(("model",), f"openai/{endpoint.model}"),
                                     (("openai-api-base",), endpoint.base_url),
                                     (("env-file",), str(Path(ctx.home, *KEY_FILE)))]}
        if endpoint.key_env:
            values["keys"] = [(("OPENAI_API_KEY",), Secret(endpoint.key_env))]
        return values

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        return [*env_trap(env, "AIDER_MODEL", "it beats the config file"),
                *env_trap(env, "AIDER_OPENAI_API_BASE", "it beats the config file"),
                *project_trap(cwd, (".aider.conf.yml",), "a repository's file beats home's")]


ADAPTER = Aider(
    name="aider", label="Aider", wire="openai-chat", live_reload=False, binaries=("aider",),
    files=(FileSpec("config", ((".aider.conf.yml",),), Yaml()),
           FileSpec("keys", (KEY_FILE,), Dotenv(), secret=True)),
    key_mechanism="env-file -> ~/.config/provider-fallback/aider.env (key value, 0600)",
    restart_hint="Aider reads its config per run: the next run follows",
)
