"""Kilo Code: Kilo CLI 1.x/7.x and the VS Code extension 7.x, which runs that CLI.

Global files in ``~/.config/kilo/`` (``%USERPROFILE%\\.config\\kilo\\`` on Windows), merged
``config.json`` < ``kilo.json`` < ``kilo.jsonc`` < ``opencode.json`` < ``opencode.jsonc`` (later
wins). We edit the highest-precedence existing file that holds ``model``, else ``kilo.jsonc``
(the file Kilo's own UI writes). Same strict OpenCode schema: ``provider.<id>.{npm, name,
options.{baseURL, apiKey}, models}`` and ``model: "<id>/<model>"``. Kilo's built-in gateway
(a stack target of ``kind: agent``) is ``model: "kilo/<provider>/<model>"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitoring.agents.base import Endpoint, FileSpec, Trap, env_trap, project_trap
from monitoring.agents.formats import Jsonc
from monitoring.agents.opencode import OpenCodeFamily
from monitoring.host_config import TargetSpec

_DIR = (".config", "kilo")
#: Highest precedence first; the last is the default to create.
GLOBAL_FILES = ("opencode.jsonc", "opencode.json", "kilo.jsonc", "kilo.json", "config.json")
KILO_GATEWAY = "kilo"


@dataclass(frozen=True)
class Kilo(OpenCodeFamily):
    def endpoint(self, target: TargetSpec) -> Endpoint | None:
        if target.kind == "agent":
            if target.agent != self.name:
                return None
            provider = target.settings.get("provider", "")
            return Endpoint(target.name, target.label, "agent", None,
                            f"{provider}/{target.settings.get('model', '')}", None,
                            builtin_provider=KILO_GATEWAY)
        return super().endpoint(target)

    def resolve(self, spec: FileSpec, home: Path, os_name: str) -> Path:
        folder = Path(home, *_DIR)
        for name in GLOBAL_FILES:
            candidate = folder / name
            try:
                text = candidate.read_text(encoding="utf-8-sig")
            except OSError:
                continue
            if '"model"' in text:
                return candidate
        return folder / "kilo.jsonc"

    def watched(self, spec: FileSpec, home: Path, os_name: str) -> list[Path]:
        return [Path(home, *_DIR, name) for name in GLOBAL_FILES]

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        folder = Path(home, *_DIR)
        chosen = self.resolve(self.files[0], home, "linux")
        found: list[Trap] = []
        for name in GLOBAL_FILES[:GLOBAL_FILES.index(chosen.name)]:
            if (folder / name).exists():
                found.append(Trap(f"{folder / name} is read after {chosen.name} and wins on "
                                  "the keys it sets",
                                  f"move its provider/model keys into {chosen.name}"))
        why = "it overrides the user file"
        return [*found, *env_trap(env, "KILO_CONFIG_CONTENT", why),
                *env_trap(env, "KILO_CONFIG", why),
                *project_trap(cwd, ("kilo.json", "kilo.jsonc", "opencode.json",
                                    "opencode.jsonc", ".kilo/kilo.jsonc", ".kilocode/kilo.json"),
                              "a project file beats the user file")]


ADAPTER = Kilo(
    name="kilo-code", label="Kilo Code", wire="openai-chat", live_reload=False,
    binaries=("kilo",),
    extension_globs=(".vscode/extensions/kilocode.kilo-code-*",),
    files=(FileSpec("config", ((*_DIR, "kilo.jsonc"),), Jsonc()),),
    key_mechanism="{env:VAR} in provider.<id>.options.apiKey",
    restart_hint="restart Kilo CLI, or reload the VS Code window, to follow",
    schema_url="https://app.kilo.ai/config.json",
)
