"""Degraded mode's answers (runbook 7.1): the last good answer to each request, kept for a TTL.

The runbook's degraded mode is "use cached responses" with ``PROVIDER_CACHE_TTL=3600``. Here the
proxy's success callback stores every good answer under a key of the request (the model the
client asked for and its messages, tools and response format), and the last model of every
fallback chain, ``degraded-cache``, serves it when every provider of the chain has failed:
within ``litellm.cache.ttl`` (1 h by default) as a stale answer, marked as such; past it, or
for a request never answered, not at all (the proxy then says all providers are down).

Entries are files in ``<state_dir>/degraded-cache/`` (mode 0600: they hold prompts' answers),
written atomically, so a restarted proxy still has them. A request that asks LiteLLM not to
store it (``cache: {"no-store": true}``, as the watchdog's completion probe does) is not
stored either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.atomic import StrPath, atomic_write, ensure_dir

log = logging.getLogger(__name__)

ENTRY_MODE: Final = 0o600
#: Request fields that make two requests "the same request" beside model and messages.
KEY_FIELDS: Final = ("tools", "tool_choice", "response_format")


def request_key(model: str, messages: Any, extra: Mapping[str, Any] | None = None) -> str:
    """A stable key for a request: sha256 over canonical JSON of what decides its answer."""
    payload = {"model": model, "messages": messages,
               **{k: v for k, v in (extra or {}).items() if k in KEY_FIELDS and v is not None}}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    response: dict[str, Any]
    stored_at: datetime
    model: str
    served_by: str

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.stored_at).total_seconds())


class DegradedCache:
    """The entries of one proxy, under ``directory``, valid for ``ttl_s`` seconds."""

    def __init__(self, directory: StrPath, ttl_s: float) -> None:
        self.directory = Path(directory)
        self.ttl_s = ttl_s

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def store(self, key: str, response: dict[str, Any], *, model: str, served_by: str,
              now: datetime) -> None:
        """Keep ``response`` as the last good answer to ``key`` (never raises)."""
        entry = {"stored_at": now.astimezone(UTC).isoformat(), "model": model,
                 "served_by": served_by, "response": response}
        try:
            ensure_dir(self.directory)
            atomic_write(self._path(key), json.dumps(entry, default=str).encode("utf-8"),
                         new_mode=ENTRY_MODE)
        except OSError as exc:
            log.warning("cannot store a degraded-mode answer in %s: %s", self.directory, exc)

    def lookup(self, key: str, now: datetime) -> CachedAnswer | None:
        """The answer stored for ``key`` within the TTL, or None (an expired one is removed)."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            answer = CachedAnswer(response=dict(entry["response"]),
                                  stored_at=datetime.fromisoformat(entry["stored_at"]),
                                  model=str(entry["model"]), served_by=str(entry["served_by"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable degraded-mode entry %s: %s", path, exc)
            return None
        if answer.age_s(now) > self.ttl_s:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return answer

    def prune(self, now: datetime) -> int:
        """Remove expired entries; how many."""
        removed = 0
        try:
            entries = list(self.directory.glob("*.json"))
        except OSError:
            return 0
        for path in entries:
            try:
                age = now.timestamp() - path.stat().st_mtime
                if age > self.ttl_s:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
