"""Gemini CLI: ``GOOGLE_GEMINI_BASE_URL`` and ``GEMINI_API_KEY`` in ``~/.gemini/.env``,
``model.name`` in ``~/.gemini/settings.json`` (JSON with comments).

It speaks only Gemini's own wire format, so its one direct fallback is Google: a target whose
``gemini-native`` endpoint is Google's default drops the override (the line is turned off,
and comes back in place on restore); any other URL (the proxy, a test's fake) is set. Gemini
CLI cannot refer to a key by name, so ``.env`` holds the key VALUE and is kept 0600.
``security.auth.selectedType`` must be ``gemini-api-key`` for the base URL to apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.agents.base import (
    GOOGLE_GEMINI_DEFAULT,
    UNSET,
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
from monitoring.agents.formats import Dotenv, Jsonc
from monitoring.agents.formats import Path as KeyPath


@dataclass(frozen=True)
class Gemini(Adapter):
    def scaffold(self, reachable: Sequence[Endpoint], ctx: Context) -> Values:
        return {"settings": [(("security", "auth", "selectedType"), "gemini-api-key")]}

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        google = (endpoint.base_url or "").rstrip("/") == GOOGLE_GEMINI_DEFAULT
        env: list[tuple[KeyPath, Any]] = [
            (("GOOGLE_GEMINI_BASE_URL",), UNSET if google else endpoint.base_url)]
        if endpoint.key_env:
            env.append((("GEMINI_API_KEY",), Secret(endpoint.key_env)))
        return {"settings": [(("model", "name"), endpoint.model)], "env": list(env)}

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        found = [*env_trap(env, "GEMINI_MODEL", "it beats model.name in settings.json"),
                 *env_trap(env, "GOOGLE_GEMINI_BASE_URL", "the shell beats ~/.gemini/.env"),
                 *env_trap(env, "GEMINI_API_KEY", "the shell beats ~/.gemini/.env")]
        found += project_trap(cwd, (".gemini/settings.json",), "it overrides the user settings")
        found += project_trap(cwd, (".gemini/.env", ".env"),
                              "Gemini CLI loads only the first .env it finds, from the "
                              "project upwards, so ~/.gemini/.env is not read")
        return found


ADAPTER = Gemini(
    name="gemini-cli", label="Gemini CLI", wire="gemini-native", live_reload=False,
    binaries=("gemini",),
    files=(FileSpec("settings", ((".gemini", "settings.json"),), Jsonc()),
           FileSpec("env", ((".gemini", ".env"),), Dotenv(), secret=True)),
    key_mechanism="GEMINI_API_KEY value in ~/.gemini/.env (no other way: the file is 0600)",
    restart_hint="restart your Gemini CLI session to follow",
)
