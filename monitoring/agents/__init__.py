"""Adapters for the coding agents whose files provider-fallback switches, and their registry.

One module per agent (its files per OS, format, keys, wire format, reachable targets, live
reload, precedence traps); adding an agent means adding one module here and its test cases.

May import: ``monitoring.agents``, ``monitoring.stack`` and the shared top modules. Never
``proxy``, ``watchdog`` (which drives the agents), ``content``, the CLI or ``tasks``. Enforced
by ``tests/test_import_directions.py``.
"""

from __future__ import annotations

from typing import Final

from monitoring.agents import aider, claude, codex, continue_, gemini, kilo, opencode
from monitoring.agents.base import Adapter
from monitoring.agents.generic import generic

ADAPTERS: Final[dict[str, Adapter]] = {a.name: a for a in (
    kilo.ADAPTER, gemini.ADAPTER, claude.ADAPTER, codex.ADAPTER, opencode.ADAPTER,
    aider.ADAPTER, continue_.ADAPTER)}
GENERIC: Final = "generic-json"


def adapter_for(name: str, adapter: str | None = None, path: str | None = None) -> Adapter:
    """The adapter of an enrolled agent (``KeyError`` for an unknown one)."""
    kind = adapter or name
    if kind == GENERIC:
        if path is None:
            raise KeyError(f"{name}: the generic-json adapter needs a path")
        return generic(name, split_home(path))
    return ADAPTERS[kind]


def split_home(path: str) -> tuple[str, ...]:
    """``~/.x/y.json`` or ``~\\.x\\y.json`` -> ``(".x", "y.json")``."""
    text = path.replace("\\", "/")
    if text.startswith("~/"):
        text = text[2:]
    return tuple(p for p in text.split("/") if p)
