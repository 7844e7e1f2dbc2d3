"""Claude Code: the ``env`` block of ``~/.claude/settings.json`` (strict JSON).

``ANTHROPIC_BASE_URL`` (the proxy's root, which serves ``/v1/messages``, or OpenRouter's
Anthropic endpoint: its api_base without ``/v1``), ``ANTHROPIC_MODEL`` and the small/haiku
slot ``ANTHROPIC_DEFAULT_HAIKU_MODEL``. The key never lands in the file: ``apiKeyHelper``
runs ``provider-fallback agents key VAR``, which prints the variable from the person's
environment or key file. The docs say a running session re-applies a changed ``env`` block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.agents.base import (
    Adapter,
    Context,
    Endpoint,
    FileSpec,
    Trap,
    Values,
    env_trap,
    project_trap,
)
from monitoring.agents.formats import Jsonc
from monitoring.agents.formats import Path as KeyPath


def key_command(ctx: Context, var: str) -> str:
    import shlex

    return shlex.join([*(ctx.key_command or ("provider-fallback",)), "agents", "key", var])


@dataclass(frozen=True)
class Claude(Adapter):
    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        values: list[tuple[KeyPath, Any]] = [
            (("env", "ANTHROPIC_BASE_URL"), endpoint.base_url),
            (("env", "ANTHROPIC_MODEL"), endpoint.model),
            (("env", "ANTHROPIC_DEFAULT_HAIKU_MODEL"), endpoint.model)]
        if endpoint.key_env:
            values.append((("apiKeyHelper",), key_command(ctx, endpoint.key_env)))
        return {"settings": values}

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        return [*env_trap(env, "ANTHROPIC_API_KEY", "it is sent instead of apiKeyHelper's key"),
                *env_trap(env, "ANTHROPIC_AUTH_TOKEN", "it is sent instead of apiKeyHelper's"),
                *project_trap(cwd, (".claude/settings.json", ".claude/settings.local.json"),
                              "a project env block beats the user file")]


ADAPTER = Claude(
    name="claude-code", label="Claude Code", wire="anthropic-messages", live_reload=True,
    binaries=("claude",),
    files=(FileSpec("settings", ((".claude", "settings.json"),), Jsonc(comments=False)),),
    key_mechanism="apiKeyHelper runs `provider-fallback agents key VAR`",
    restart_hint="",
)
