"""The runbook's invented shape, kept as an explicit "generic JSON keys" adapter.

No released agent reads ``~/.kilocode/kilocode.json``; this adapter exists for a tool of your
own that reads ``{"provider": ..., "endpoint": ..., "model": ...}`` from a JSON file you name
(``adapter: generic-json`` and ``path:`` in stack.yaml). It is never enrolled by default. It
reaches every target: the keys are each target's ``settings``.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.agents.base import UNSET, Adapter, Context, Endpoint, FileSpec, Values
from monitoring.agents.formats import Jsonc
from monitoring.host_config import OWNED_KEYS, TargetSpec


@dataclass(frozen=True)
class GenericJson(Adapter):
    settings: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def endpoint(self, target: TargetSpec) -> Endpoint | None:
        return Endpoint(target.name, target.label, target.kind,
                        target.settings.get("endpoint"), target.settings.get("model", ""),
                        None, builtin_provider=target.settings.get("provider"))

    def selectors(self, endpoint: Endpoint, ctx: Context) -> Values:
        keys = {"provider": endpoint.builtin_provider, "endpoint": endpoint.base_url,
                "model": endpoint.model}
        return {"config": [((k,), UNSET if keys[k] is None else keys[k]) for k in OWNED_KEYS]}


def generic(name: str, parts: tuple[str, ...]) -> GenericJson:
    """A generic adapter for the file at home-relative ``parts``."""
    return GenericJson(
        name=name, label=name, wire="openai-chat", live_reload=False, binaries=(),
        files=(FileSpec("config", (parts,), Jsonc()),),
        key_mechanism="none: the file holds provider, endpoint and model only")
