"""Degraded mode's answers (runbook 7.1): the last good answer to each request, kept for a TTL.

The runbook's degraded mode is "use cached responses" with ``PROVIDER_CACHE_TTL=3600``. Here the
proxy's success callback stores every good answer under a key of the request (the model the
client asked for and its messages, tools and response format), and the last model of every
fallback chain, ``degraded-cache``, serves it when every provider of the chain has failed:
within ``litellm.cache.ttl`` (1 h by default) as a stale answer, marked as such; past it, or
for a request never answered, not at all (the proxy then says all providers are down). A
request that asks LiteLLM not to store it (``cache: {"no-store": true}``, as the watchdog's
completion probe does) is not stored either.

Segments. Answers are lines of JSON appended to segment files, ``seg-<n>.jsonl`` in
``<state_dir>/degraded-cache/`` (mode 0600: they hold prompts' answers; created as the
directory's owner when the proxy runs as root), ``<n>`` rising, never reused. A stored answer
costs ONE append write on the open newest segment; eviction deletes a whole segment. One file
per answer, written by temp file and rename and evicted one by one, cost the proxy's I/O worker
a create, a rename and an unlink per request, and on a file system mounted with online
``discard`` the unlink of a file already on disk blocks for ~0.1 ms (issue 13, item B7). A
segment is closed and a new one started once it holds a tenth of either bound
(:data:`SEGMENTS`), so a full cache is about ten files. The index (key -> segment, offset,
length) lives in memory, about 200 B an entry, so memory is bounded with the entries; a
restarted proxy rebuilds it by reading the segments, oldest first (the newest copy of a key
wins). A segment is never appended to by a later process: a line a crash left torn (no
newline, or not JSON) stays where it is, is skipped by the scan and never served. Lines are
written without fsync: a power loss can lose the latest answers, never serve a torn one; they
are a cache, and the request path stays light.

Bounds. The cache holds at most ``max_entries`` lines and ``max_bytes`` bytes of segments on
disk; a superseded copy of an answer (the same request stored again) counts until its segment
goes, so the answers it can serve are at most as many. Eviction rule: the segments written
longest ago go first, whole. Before an answer is appended, the oldest segments are deleted
until the answer fits within both bounds, so the bounds are never exceeded (a torn tail counts
in the bytes); the price of deleting whole segments is that right after an eviction the cache
holds up to one segment (a tenth of a bound) less than it could. An answer larger
than a tenth of ``max_bytes`` is not kept at all. Storing an answer again makes it the newest:
its new line is in the newest segment and outlives the old one.

Expiry. A line older than the TTL is never served. A segment whose newest line is older than
the TTL is deleted when the proxy starts (the scan), when a lookup finds an expired answer in
it, and by the watchdog's :meth:`DegradedCache.prune` (by the file's mtime, the time of its last
append). A segment deleted behind the proxy's back (the watchdog, an operator) is noticed
before the next append (its link count is 0) and a new one is started.

Threads. Only the proxy's I/O worker thread stores (:class:`monitoring.proxy.io_worker.ProxyIO`);
lookups run on the proxy's event loop. The index and the segment list change under one lock,
held for dictionary updates only (never for a write, a read or an unlink, except by the scan
that builds the index once, which the I/O worker starts), and an answer enters the index only
after its line is completely written, so a lookup never reads a half-written line; a lookup
that finds its segment deleted meanwhile (evicted) answers None.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.atomic import StrPath, create_private, ensure_dir

log = logging.getLogger(__name__)

ENTRY_MODE: Final = 0o600
#: Default bounds (stack.yaml: ``litellm.cache.max_entries`` / ``max_bytes``).
MAX_ENTRIES: Final = 1000
MAX_BYTES: Final = 32 * 1024 * 1024
#: A segment holds at most 1/SEGMENTS of each bound: eviction frees that much at once.
SEGMENTS: Final = 10
#: Request fields that make two requests "the same request" beside model and messages.
KEY_FIELDS: Final = ("tools", "tool_choice", "response_format")
_SEGMENT_NAME: Final = re.compile(r"seg-(\d{1,20})\.jsonl")
#: One file per answer (``<sha256>.json``), and its temp files: the layout before segments,
#: removed by the first scan.
_LEGACY_NAME: Final = re.compile(r"\.?[0-9a-f]{64}\.json(\.\d+\.tmp)?")


def request_key(model: str, messages: Any, extra: Mapping[str, Any] | None = None) -> str:
    """A stable key for a request: sha256 over canonical JSON of what decides its answer."""
    payload = {"model": model, "messages": messages,
               **{k: v for k, v in (extra or {}).items() if k in KEY_FIELDS and v is not None}}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def segment_files(directory: StrPath) -> list[Path]:
    """The segment files in ``directory``, oldest first (none when it does not exist or cannot
    be read: the watchdog's prune must not fail its tick for a cache)."""
    found: list[tuple[int, Path]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                match = _SEGMENT_NAME.fullmatch(entry.name)
                if match and entry.is_file(follow_symlinks=False):
                    found.append((int(match.group(1)), Path(entry.path)))
    except OSError:
        return []
    return [path for _, path in sorted(found)]


@dataclass(frozen=True)
class CachedAnswer:
    response: dict[str, Any]
    stored_at: datetime
    model: str
    served_by: str

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.stored_at).total_seconds())


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where the newest copy of an answer is: its segment's number, offset and length."""

    segment: int
    offset: int
    length: int


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    #: The keys of its lines, in order (superseded copies included: they take room too).
    keys: list[str] = field(default_factory=list)
    #: Bytes on disk (a torn tail included).
    size: int = 0
    #: ``stored_at`` of its newest line (POSIX seconds); 0 without one.
    newest: float = 0.0


def _parse(line: bytes) -> tuple[str, CachedAnswer]:
    """The key and answer of one whole line; ValueError, KeyError or TypeError if it is not."""
    if not line.endswith(b"\n"):
        raise ValueError("torn line")
    entry = json.loads(line)
    answer = CachedAnswer(response=dict(entry["response"]),
                          stored_at=datetime.fromisoformat(entry["stored_at"]),
                          model=str(entry["model"]), served_by=str(entry["served_by"]))
    return str(entry["key"]), answer


class DegradedCache:
    """The entries of one proxy, under ``directory``, valid for ``ttl_s`` seconds, within
    ``max_entries`` and ``max_bytes`` (see the module docstring for the eviction rule)."""

    def __init__(self, directory: StrPath, ttl_s: float, *, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: Guards everything below except ``_fd``, which only the storing thread touches.
        self._lock = threading.Lock()
        #: key -> newest copy; None until the first store or lookup scans the directory.
        self._index: dict[str, _Loc] | None = None
        #: number -> segment, oldest first.
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._next_number = 0
        self._lines = 0
        self._bytes = 0
        self._fd: int | None = None

    @property
    def segment_entries(self) -> int:
        """Lines a segment holds at most: never more than ``max_entries``, so the newest
        segment alone always fits the bound."""
        return max(1, self.max_entries // SEGMENTS)

    @property
    def segment_bytes(self) -> int:
        """Bytes a segment holds at most: never below the largest answer kept (a tenth of
        ``max_bytes``), so any answer fits an empty segment."""
        return max(self.max_bytes // SEGMENTS, self.max_bytes // 10)

    # -- the index

    def load(self, now: datetime) -> None:
        """Build the index from the segments on disk, once (the worker calls it at start, so
        the event loop's first lookup does not wait for the scan)."""
        if self._index is not None:
            return
        with self._lock:
            if self._index is None:
                self._scan(now)

    def _scan(self, now: datetime) -> None:
        """The segments on disk, oldest first; expired or unreadable ones and the files of the
        one-file-per-answer layout removed. Called under the lock."""
        index: dict[str, _Loc] = {}
        horizon = now.timestamp() - self.ttl_s
        self._remove_legacy_files()
        for path in segment_files(self.directory):
            number = int(_SEGMENT_NAME.fullmatch(path.name).group(1))  # type: ignore[union-attr]
            self._next_number = max(self._next_number, number + 1)
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.warning("unreadable degraded-mode segment %s: %s", path, exc)
                continue
            segment = _Segment(number, path, size=len(data))
            found: list[tuple[str, _Loc]] = []
            offset = 0
            while (end := data.find(b"\n", offset)) >= 0:
                try:
                    key, answer = _parse(data[offset:end + 1])
                except (ValueError, KeyError, TypeError):
                    log.warning("skipped a torn degraded-mode line in %s at %d", path, offset)
                else:
                    found.append((key, _Loc(number, offset, end + 1 - offset)))
                    segment.newest = max(segment.newest, answer.stored_at.timestamp())
                offset = end + 1
            if offset < len(data):
                log.warning("skipped a torn degraded-mode line at the end of %s", path)
            if segment.newest < horizon:  # expired, or no whole line
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            for key, loc in found:
                index[key] = loc  # a later copy (segment, line) is newer: it wins
                segment.keys.append(key)
            self._segments[number] = segment
            self._lines += len(segment.keys)
            self._bytes += segment.size
        self._index = index

    def _remove_legacy_files(self) -> None:
        try:
            with os.scandir(self.directory) as entries:
                legacy = [entry.path for entry in entries if _LEGACY_NAME.fullmatch(entry.name)]
        except OSError:
            return
        for path in legacy:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _forget(self, segment: _Segment) -> None:
        """Drop ``segment`` and the answers whose newest copy it holds (under the lock)."""
        assert self._index is not None
        if self._segments.pop(segment.number, None) is None:
            return
        for key in segment.keys:
            loc = self._index.get(key)
            if loc is not None and loc.segment == segment.number:
                del self._index[key]
        self._lines -= len(segment.keys)
        self._bytes -= segment.size
        if segment is self._current:
            self._current = None

    # -- storing (the I/O worker only)

    def store(self, key: str, response: dict[str, Any], *, model: str, served_by: str,
              now: datetime) -> None:
        """Keep ``response`` as the last good answer to ``key`` (never raises)."""
        entry = {"key": key, "stored_at": now.astimezone(UTC).isoformat(), "model": model,
                 "served_by": served_by, "response": response}
        line = (json.dumps(entry, default=str) + "\n").encode("utf-8")
        if len(line) > self.max_bytes // 10:
            return
        try:
            self.load(now)
            self._append(key, line, now)
        except OSError as exc:
            log.warning("cannot store a degraded-mode answer in %s: %s", self.directory, exc)

    def _append(self, key: str, line: bytes, now: datetime) -> None:
        segment, fd = self._writable(len(line))
        self._evict(len(line), keep=segment)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk: the segment ends in a torn line
                raise OSError(errno.ENOSPC, f"{written} of {len(line)} bytes written")
        except OSError:
            grown_to = None
            with contextlib.suppress(OSError):
                grown_to = os.fstat(fd).st_size
            self._seal(grown_to)
            raise
        with self._lock:
            if self._segments.get(segment.number) is segment:
                assert self._index is not None
                self._index.pop(key, None)
                self._index[key] = _Loc(segment.number, segment.size, len(line))
                segment.keys.append(key)
                segment.size += len(line)
                segment.newest = max(segment.newest, now.timestamp())
                self._lines += 1
                self._bytes += len(line)

    def _writable(self, room: int) -> tuple[_Segment, int]:
        """The newest segment and its descriptor, a new one when it is full or was deleted."""
        segment, fd = self._current, self._fd
        if segment is not None and fd is not None:
            if os.fstat(fd).st_nlink == 0:  # deleted behind our back: forget what it held
                with self._lock:
                    self._forget(segment)
                self._seal()
            elif (len(segment.keys) >= self.segment_entries
                  or segment.size + room > self.segment_bytes):
                self._seal()
            else:
                return segment, fd
        return self._open_segment()

    def _open_segment(self) -> tuple[_Segment, int]:
        ensure_dir(self.directory)
        while True:
            path = self.directory / f"seg-{self._next_number:012d}.jsonl"
            self._next_number += 1
            try:
                fd = create_private(path, ENTRY_MODE)
            except FileExistsError:  # another process's, or an operator's: never appended to
                continue
            break
        segment = _Segment(self._next_number - 1, path)
        with self._lock:
            self._segments[segment.number] = segment
            self._current = segment
        self._fd = fd
        return segment, fd

    def _seal(self, grown_to: int | None = None) -> None:
        """Close the newest segment: the next answer starts a new one."""
        fd, self._fd = self._fd, None
        with self._lock:
            segment, self._current = self._current, None
            if segment is not None and grown_to is not None and grown_to > segment.size:
                if segment.number in self._segments:  # a torn tail takes room too
                    self._bytes += grown_to - segment.size
                segment.size = grown_to
        if fd is not None:
            os.close(fd)

    def _evict(self, room: int, keep: _Segment) -> None:
        """Delete the oldest segments (never ``keep``) until one more line of ``room`` bytes
        fits within both bounds. The unlinks happen outside the lock."""
        doomed: list[Path] = []
        with self._lock:
            while self._lines + 1 > self.max_entries or self._bytes + room > self.max_bytes:
                oldest = next(iter(self._segments.values()), None)
                if oldest is None or oldest is keep:
                    break
                self._forget(oldest)
                doomed.append(oldest.path)
        for path in doomed:
            with contextlib.suppress(OSError):
                path.unlink()

    def close(self) -> None:
        """Close the newest segment's descriptor (tests; a proxy keeps it to its end)."""
        self._seal()

    def __len__(self) -> int:
        """Answers this process can serve (after its first store or lookup)."""
        with self._lock:
            return len(self._index or ())

    @property
    def lines(self) -> int:
        """Lines in the segments on disk as this process counts them (the bound's measure)."""
        return self._lines

    @property
    def size(self) -> int:
        """Bytes of the segments on disk as this process counts them (the bound's measure)."""
        return self._bytes

    # -- lookups (the event loop)

    def lookup(self, key: str, now: datetime) -> CachedAnswer | None:
        """The answer stored for ``key`` within the TTL, or None (an expired one is forgotten,
        and its segment removed when nothing newer is in it)."""
        self.load(now)
        with self._lock:
            assert self._index is not None
            loc = self._index.get(key)
            segment = self._segments.get(loc.segment) if loc is not None else None
        if loc is None or segment is None:
            return None
        try:
            with segment.path.open("rb") as fh:
                fh.seek(loc.offset)
                line = fh.read(loc.length)
            found, answer = _parse(line)
            if found != key:
                raise ValueError(f"line at {loc.offset} holds another key")
        except FileNotFoundError:
            return None  # evicted or pruned meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable degraded-mode entry in %s: %s", segment.path, exc)
            return None
        if answer.age_s(now) > self.ttl_s:
            self._expire(key, loc, segment, now)
            return None
        return answer

    def _expire(self, key: str, loc: _Loc, segment: _Segment, now: datetime) -> None:
        with self._lock:
            assert self._index is not None
            if self._index.get(key) == loc:
                del self._index[key]
            doomed = (segment is not self._current and segment.number in self._segments
                      and segment.newest < now.timestamp() - self.ttl_s)
            if doomed:
                self._forget(segment)
        if doomed:
            with contextlib.suppress(OSError):
                segment.path.unlink()

    # -- the watchdog

    def prune(self, now: datetime) -> int:
        """Remove the segments not appended to within the TTL (by mtime); how many. The
        watchdog calls it in its own process; this process's newest segment is kept."""
        horizon = now.timestamp() - self.ttl_s
        removed = 0
        for path in segment_files(self.directory):
            try:
                if path.stat().st_mtime >= horizon:
                    continue
                number = int(_SEGMENT_NAME.fullmatch(path.name).group(1))  # type: ignore[union-attr]
                with self._lock:
                    segment = self._segments.get(number)
                    if segment is not None:
                        if segment is self._current:
                            continue
                        self._forget(segment)
                path.unlink()
                removed += 1
            except OSError:
                continue
        return removed
