"""Degraded mode's answers (runbook 7.1): the last good answer to each request, kept for a TTL.

The runbook's degraded mode is "use cached responses" with ``PROVIDER_CACHE_TTL=3600``. Here the
proxy's success callback stores every good answer under a key of the request (the model the
client asked for and its messages, tools and response format), and the last model of every
fallback chain, ``degraded-cache``, serves it when every provider of the chain has failed:
within ``litellm.cache.ttl`` (1 h by default) as a stale answer, marked as such; past it, or
for a request never answered, not at all (the proxy then says all providers are down).

Entries are files in ``<state_dir>/degraded-cache/`` (mode 0600: they hold prompts' answers),
written atomically (a temp file renamed, :func:`monitoring.atomic.replace_cache_entry`), so a
restarted proxy still has them. A request that asks LiteLLM not to
store it (``cache: {"no-store": true}``, as the watchdog's completion probe does) is not
stored either.

Bounds. The cache holds at most ``max_entries`` answers and ``max_bytes`` bytes of them (a
proxy answering 20 requests a second would otherwise write 72,000 files an hour). Eviction
rule: the answers stored longest ago go first. When a new answer would exceed either bound,
the oldest stored answers are removed until it fits; an answer larger than a tenth of
``max_bytes`` is not kept at all. Storing an answer again (the same request) makes it the
newest. Expired answers (older than the TTL) are removed when the proxy starts, when a lookup
finds one, and by the watchdog's :meth:`DegradedCache.prune`. Entries are written without
fsync: a power loss can lose the latest answers (an empty or missing file reads as "no
answer"), never serve a torn one; they are a cache, and the request path stays light.

Only the proxy's I/O worker thread stores (:class:`monitoring.proxy.io_worker.ProxyIO`); its index
(key -> size, in store order) costs ~100 B an entry, so memory is bounded with the entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.atomic import StrPath, ensure_dir, replace_cache_entry

log = logging.getLogger(__name__)

ENTRY_MODE: Final = 0o600
#: Default bounds (stack.yaml: ``litellm.cache.max_entries`` / ``max_bytes``).
MAX_ENTRIES: Final = 1000
MAX_BYTES: Final = 32 * 1024 * 1024
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
    """The entries of one proxy, under ``directory``, valid for ``ttl_s`` seconds, within
    ``max_entries`` and ``max_bytes`` (see the module docstring for the eviction rule)."""

    def __init__(self, directory: StrPath, ttl_s: float, *, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: key -> size in bytes, oldest stored first; None until the first store scans.
        self._index: OrderedDict[str, int] | None = None
        self._bytes = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _load_index(self, now: datetime) -> OrderedDict[str, int]:
        """The entries on disk, oldest first, expired ones removed (once, at the first store)."""
        self.prune(now)
        found: list[tuple[float, str, int]] = []
        try:
            for path in self.directory.glob("*.json"):
                try:
                    st = path.stat()
                except OSError:
                    continue
                found.append((st.st_mtime, path.stem, st.st_size))
        except OSError:
            pass
        index: OrderedDict[str, int] = OrderedDict(
            (key, size) for _, key, size in sorted(found))
        self._index, self._bytes = index, sum(index.values())
        return index

    def _evict(self, index: OrderedDict[str, int], room: int) -> None:
        """Remove the oldest stored answers until one more of ``room`` bytes fits."""
        while index and (len(index) + 1 > self.max_entries
                         or self._bytes + room > self.max_bytes):
            key, size = index.popitem(last=False)
            self._bytes -= size
            with contextlib.suppress(OSError):
                os.unlink(self._path(key))

    def store(self, key: str, response: dict[str, Any], *, model: str, served_by: str,
              now: datetime) -> None:
        """Keep ``response`` as the last good answer to ``key`` (never raises)."""
        entry = {"stored_at": now.astimezone(UTC).isoformat(), "model": model,
                 "served_by": served_by, "response": response}
        data = json.dumps(entry, default=str).encode("utf-8")
        if len(data) > self.max_bytes // 10:
            return
        try:
            if self._index is None:
                ensure_dir(self.directory)
            index = self._index if self._index is not None else self._load_index(now)
            self._bytes -= index.pop(key, 0)
            self._evict(index, len(data))
            try:
                replace_cache_entry(self._path(key), data, ENTRY_MODE)
            except FileNotFoundError:  # the directory was removed since: once more
                ensure_dir(self.directory)
                replace_cache_entry(self._path(key), data, ENTRY_MODE)
            index[key] = len(data)
            self._bytes += len(data)
        except OSError as exc:
            log.warning("cannot store a degraded-mode answer in %s: %s", self.directory, exc)

    def __len__(self) -> int:
        """Entries this process knows of (after its first store)."""
        return len(self._index or ())

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
