"""Continue: a ``models:`` entry of our own, by name, in ``~/.continue/config.yaml``.

The entry named ``provider-fallback`` (``provider: openai``, ``model``, ``apiBase``,
``apiKey: ${{ secrets.VAR }}``, resolved by Continue from ``~/.continue/.env`` or the
environment) is added once; a switch changes its model, base and key reference. The IDE
extension polls the file every second, so running sessions follow.
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
)
from monitoring.agents.formats import Item, Yaml
from monitoring.agents.formats import Path as KeyPath

ENTRY = Item("name", "provider-fallback")


def _key(endpoint: Endpoint) -> str:
    return f"${{{{ secrets.{endpoint.key_env} }}}}" if endpoint.key_env else ""


@dataclass(frozen=True)
class Continue(Adapter):
    def scaffold(self, reachable: Sequence[Endpoint], ctx: Context) -> Values:
        first = reachable[0] if reachable else None
        values: list[tuple[KeyPath, Any]] = [
            (("name",), Default("Local Config")), (("version",), Default("1.0.0")),
            (("schema",), Default("v1"))]
        if first is not None:
            values.append((("models", ENTRY), Default({
                "name": ENTRY.value, "provider": "openai", "model": first.model,
                "apiBase": first.base_url, "apiKey": _key(first),
                "roles": ["chat", "edit", "apply"]})))
        return {"config": values}

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        return {"config": [(("models", ENTRY, "model"), endpoint.model),
                           (("models", ENTRY, "apiBase"), endpoint.base_url),
                           (("models", ENTRY, "apiKey"), _key(endpoint))]}

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        return [Trap("the IDE uses config.yaml only while 'Local Config' is selected; a Hub "
                     "assistant selected in the dropdown ignores it",
                     "select 'Local Config' in Continue's assistant dropdown"),
                *env_trap(env, "CONTINUE_GLOBAL_DIR", "Continue reads its config from there")]


ADAPTER = Continue(
    name="continue", label="Continue", wire="openai-chat", live_reload=True,
    binaries=("cn",),
    extension_globs=(".vscode/extensions/continue.continue-*",),
    files=(FileSpec("config", ((".continue", "config.yaml"),), Yaml()),),
    key_mechanism="${{ secrets.VAR }} (from ~/.continue/.env or the environment)",
)
