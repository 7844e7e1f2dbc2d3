"""Codex CLI: ``~/.codex/config.toml`` with provider ids of our own.

Built-in ids (``openai``) cannot be redefined, so each target is ``[model_providers.pf-<t>]``
with ``base_url``, ``env_key`` (the NAME of the variable holding the key) and
``wire_api = "responses"`` (the only wire Codex still accepts); a switch changes
``model_provider`` and ``model``. Read at start only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.agents.base import Adapter, Context, Endpoint, FileSpec, Trap, Values, env_trap
from monitoring.agents.formats import Path as KeyPath
from monitoring.agents.formats import Toml


@dataclass(frozen=True)
class Codex(Adapter):
    def scaffold(self, reachable: Sequence[Endpoint], ctx: Context) -> Values:
        values: list[tuple[KeyPath, Any]] = []
        for e in reachable:
            entry = {"name": f"{e.label} (provider-fallback)", "base_url": e.base_url,
                     "wire_api": "responses"}
            if e.key_env:
                entry["env_key"] = e.key_env
            values.append((("model_providers", e.provider_id), entry))
        return {"config": values}

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        return {"config": [(("model_provider",), endpoint.provider_id),
                           (("model",), endpoint.model)]}

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        return env_trap(env, "CODEX_HOME", "Codex reads config.toml from there instead")


ADAPTER = Codex(
    name="codex", label="Codex CLI", wire="openai-responses", live_reload=False,
    binaries=("codex",),
    files=(FileSpec("config", ((".codex", "config.toml"),), Toml()),),
    key_mechanism="env_key names the variable; export it (or put it in ~/.codex/.env)",
    restart_hint="restart your Codex session to follow",
)
