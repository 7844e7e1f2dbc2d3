"""What every agent adapter declares, and the target-side facts they are computed from.

An adapter is data plus two small functions: which files the agent reads (per OS, home-relative,
in precedence order), their format, which wire format the agent speaks, whether a running
session picks an edit up, and, per target, the owned values: the ``scaffold`` (our provider
entries, written once at takeover and then left alone) and the ``selectors`` (what a switch
changes: usually the model reference). Keeping the scaffold constant is what makes a switch
and a restore give back the same bytes: only selector values move.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from monitoring.agents.formats import Format
from monitoring.agents.formats import Path as KeyPath
from monitoring.host_config import TargetSpec

Wire = Literal["openai-chat", "anthropic-messages", "openai-responses", "gemini-native"]
WIRES: Final[tuple[Wire, ...]] = get_args(Wire)
#: Gemini CLI's own endpoint: a target pointing there means "drop the override".
GOOGLE_GEMINI_DEFAULT: Final = "https://generativelanguage.googleapis.com"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: A selector value meaning "this target must not set the key" (deleted, or turned off).
UNSET: Final = _Unset()


@dataclass(frozen=True)
class Secret:
    """A key VALUE, read from the watchdog's environment at write time. Only for agents that
    offer no way to refer to a key (Gemini CLI's ``.env``, Aider's key file); such files are
    kept 0600."""

    env: str


@dataclass(frozen=True)
class Default:
    """Written only when the key is missing (Kilo's ``$schema``: any value the user has is
    fine; a missing one makes Kilo rewrite the file itself)."""

    value: Any


@dataclass(frozen=True)
class Endpoint:
    """Where one agent goes for one target: resolved from the :class:`TargetSpec`."""

    target: str
    label: str
    kind: str
    base_url: str | None
    model: str
    key_env: str | None
    builtin_provider: str | None = None

    @property
    def provider_id(self) -> str:
        """Our own provider id in the agent's config: never a built-in one."""
        return f"pf-{self.target}"


@dataclass(frozen=True)
class FileSpec:
    """One file an agent reads. ``candidates`` are home-relative parts, highest precedence
    first; the adapter's ``resolve`` picks the one to edit (default: the first existing, else
    the last listed, which is the agent's own default name)."""

    role: str
    candidates: tuple[tuple[str, ...], ...]
    fmt: Format
    secret: bool = False
    windows: tuple[tuple[str, ...], ...] | None = None

    def parts(self, os_name: str) -> tuple[tuple[str, ...], ...]:
        return self.windows if os_name == "windows" and self.windows else self.candidates

    def shown(self, os_name: str, parts: tuple[str, ...] | None = None) -> str:
        sep = "\\" if os_name == "windows" else "/"
        return "~" + sep + sep.join(parts or self.parts(os_name)[-1])


@dataclass(frozen=True)
class Trap:
    """Something outside the files we edit that would defeat a switch, and its fix."""

    what: str
    fix: str


Values = dict[str, list[tuple[KeyPath, Any]]]


@dataclass(frozen=True)
class Adapter:
    """One real agent. Subclasses fill the class attributes and the two value functions."""

    name: str
    label: str
    wire: Wire
    live_reload: bool
    binaries: tuple[str, ...]
    files: tuple[FileSpec, ...]
    key_mechanism: str
    restart_hint: str = ""
    #: Home-relative globs of the agent's IDE extension (installed without a program on PATH).
    extension_globs: tuple[str, ...] = field(default_factory=tuple)

    # -- which targets ----------------------------------------------------------------

    def endpoint(self, target: TargetSpec) -> Endpoint | None:
        """Where this agent goes for ``target``, or None when it cannot speak to it."""
        if target.kind == "agent":
            return None  # a provider built into another agent
        base = target.endpoints.get(self.wire)
        if base is None:
            return None
        return Endpoint(target.name, target.label, target.kind, base, target.model,
                        target.api_key_env)

    def reachable(self, targets: Sequence[TargetSpec]) -> list[Endpoint]:
        return [e for t in targets if (e := self.endpoint(t)) is not None]

    # -- what to write ----------------------------------------------------------------

    def scaffold(self, reachable: Sequence[Endpoint], ctx: Context) -> Values:
        """Values written once and kept across switches (provider entries)."""
        return {}

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        """Values a switch to ``endpoint`` changes."""
        raise NotImplementedError

    # -- where --------------------------------------------------------------------------

    def resolve(self, spec: FileSpec, home: Path, os_name: str) -> Path:
        options = spec.parts(os_name)
        for parts in options:
            if Path(home, *parts).exists():
                return Path(home, *parts)
        return Path(home, *options[-1])

    def watched(self, spec: FileSpec, home: Path, os_name: str) -> list[Path]:
        """The files whose change can change what :meth:`resolve` picks (stat'ed per tick)."""
        return [Path(home, *parts) for parts in spec.parts(os_name)]

    def installed(self, env: Mapping[str, str] | None = None, home: Path | None = None) -> bool:
        """A program of the agent on PATH, or (``extension_globs``) its IDE extension."""
        import shutil

        path = (env or os.environ).get("PATH")
        if any(shutil.which(b, path=path) for b in self.binaries):
            return True
        root = home or Path.home()
        return any(any(root.glob(pattern)) for pattern in self.extension_globs)

    def traps(self, home: Path, env: Mapping[str, str], cwd: Path) -> list[Trap]:
        """Precedence traps visible from here (environment, project files)."""
        return []


@dataclass(frozen=True)
class Context:
    """What value functions may need beyond the endpoint."""

    home: Path
    os_name: str
    key_command: Sequence[str] = ()


def env_trap(env: Mapping[str, str], name: str, why: str) -> list[Trap]:
    if name in env:
        return [Trap(f"{name} is set in this environment: {why}",
                     f"unset {name} (remove its export from your shell profile)")]
    return []


def project_trap(cwd: Path, names: Sequence[str], why: str) -> list[Trap]:
    """A project-level file between ``cwd`` and the filesystem root that overrides the user
    file."""
    found: list[Trap] = []
    for folder in (cwd, *cwd.parents):
        if folder == Path.home():
            break
        for name in names:
            if (folder / name).exists():
                found.append(Trap(f"{folder / name} overrides the user file: {why}",
                                  f"remove the provider/model keys from {folder / name}"))
    return found
