"""The cost log (runbook 9.1's ``provider_costs.log``): one JSON line per request the proxy served.

The proxy's success callback (:mod:`monitoring.proxy.litellm_hooks`) appends one line per request::

    {"ts":"2026-11-26T10:00:00Z","model":"gpt-4","served_by":"gpt-4","provider":"openai",
     "tokens_in":12,"tokens_out":40,"cost_usd":0.00276,"fallback":false,"stale":false,
     "charge":"cost $0.00276000 USD"}

(on one line). ``cost_usd`` is LiteLLM's own cost calculation with the per-model prices of
stack.yaml, which render passes to LiteLLM as custom pricing. ``model`` is what the client asked
for, ``served_by`` the model group that answered (another one after an in-proxy fallback, or
``degraded-cache`` for a stale answer). ``charge`` repeats the amount as a bare ``$0.00276000``
word between spaces, so the runbook's own parser (9.1: split each line on whitespace and sum
every word that starts with ``$``) still reads the file; no other field can hold a ``$`` word
(names are slugs, numbers are numbers).

Durability. A line is ONE ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``, under an
advisory ``flock`` (POSIX). A crash can at worst leave the last line without its newline (a
torn line). Readers never count a line without its newline; the next append first cuts such a
torn tail off (under the same lock), so it can neither glue itself to the next record nor be
half-counted by the runbook's parser, which knows nothing about torn lines. That cut is the
one exception to append-only, and it only removes bytes no reader ever counted.

Nothing secret is in a line: model names, provider slugs, numbers and a timestamp only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from monitoring.atomic import StrPath, append_locked
from monitoring.file_cursor import FileCursor

log = logging.getLogger(__name__)

TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
COST_LOG_MODE: Final = 0o640
#: The model group that serves stale answers when every provider fails (runbook 7.1).
DEGRADED_MODEL: Final = "degraded-cache"


def format_ts(when: datetime) -> str:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime(TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC)


def charge_word(cost_usd: float) -> str:
    """The amount as the runbook's parser reads it: ``$`` and a plain decimal number."""
    return f"${cost_usd:.8f}"


@dataclass(frozen=True)
class CostRecord:
    """One request the proxy answered, and what it cost."""

    ts: datetime
    model: str
    served_by: str
    provider: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    fallback: bool = False
    stale: bool = False

    @property
    def month(self) -> str:
        """The calendar month (UTC) the request counts for: ``2026-11``."""
        return month_of(self.ts)

    def to_json(self) -> dict[str, Any]:
        # Spelled out rather than dataclasses.asdict, which deep-copies field by field: the
        # proxy's I/O worker builds one of these per request.
        return {"ts": format_ts(self.ts), "model": self.model, "served_by": self.served_by,
                "provider": self.provider, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": self.cost_usd,
                "fallback": self.fallback, "stale": self.stale,
                "charge": f"cost {charge_word(self.cost_usd)} USD"}

    def line(self) -> str:
        """The record as one JSON line, newline included."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=True) + "\n"

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CostRecord:
        """Raises KeyError/ValueError/TypeError for an object that is not a record."""
        cost = float(obj["cost_usd"])
        if cost < 0 or cost != cost:  # negative or NaN: not a charge
            raise ValueError("cost_usd is not a non-negative number")
        return cls(ts=parse_ts(str(obj["ts"])), model=str(obj["model"]),
                   served_by=str(obj.get("served_by") or obj["model"]),
                   provider=str(obj.get("provider") or "unknown"),
                   tokens_in=int(obj.get("tokens_in") or 0),
                   tokens_out=int(obj.get("tokens_out") or 0), cost_usd=cost,
                   fallback=bool(obj.get("fallback")), stale=bool(obj.get("stale")))


def month_of(when: datetime) -> str:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return f"{when.year:04d}-{when.month:02d}"


def parse_line(line: bytes | str) -> CostRecord | None:
    """A record from one complete line, or None for anything else."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
        return CostRecord.from_json(obj) if isinstance(obj, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------- writing


def _cut_torn_tail(fd: int) -> int:
    """Truncate bytes after the last newline (a line a crash left unfinished); how many."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    os.lseek(fd, size - 1, os.SEEK_SET)
    if os.read(fd, 1) == b"\n":
        return 0
    # Find the last newline by reading backwards in blocks.
    pos, block = size, 4096
    while pos > 0:
        start = max(0, pos - block)
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, pos - start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            keep = start + idx + 1
            break
        pos = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return size - keep


def append_record(path: StrPath, record: CostRecord) -> None:
    """Append one record as one line (see the module docstring for the guarantees)."""
    append_records(path, [record])


def append_records(path: StrPath, records: Sequence[CostRecord]) -> int:
    """Append ``records``, one line each, in ONE write and ONE fsync (the proxy's I/O worker
    batches what arrived meanwhile); how many bytes. A crash tears at most the last line."""
    def cut_torn_line(fd: int) -> bytes:
        cut = _cut_torn_tail(fd)
        if cut:
            log.warning("cut a torn line of %d bytes off the end of %s", cut, path)
        return b""

    data = "".join(r.line() for r in records).encode("ascii")
    if data:
        append_locked(path, data, COST_LOG_MODE, cut_torn_line)
    return len(data)


# ----------------------------------------------------------------------------- reading


def iter_records(path: StrPath) -> Iterator[CostRecord]:
    """Every complete, valid record of the file, oldest first (a missing file has none)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn line that does not count yet
    for line in lines:
        record = parse_line(line)
        if record is not None:
            yield record


class CostLedger:
    """Reads the cost log incrementally: each :meth:`refresh` parses only the lines added
    since the last one, so the watchdog can look every second at a month of requests.

    A file that shrank, was replaced (rotated, truncated) or deleted and created again is read
    again from the start (:class:`~monitoring.file_cursor.FileCursor`). Only complete lines
    are consumed: a line still being written is read next time.
    """

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self.records: list[CostRecord] = []
        self._cursor = FileCursor()

    def refresh(self) -> list[CostRecord]:
        """The records appended since the last call (all of them after a rotation)."""
        kept, lines = self._cursor.read_lines(self.path)
        if not kept:
            self.records = []
        new = [r for r in (parse_line(line) for line in lines) if r is not None]
        self.records.extend(new)
        return new

    def month(self, month: str) -> list[CostRecord]:
        return [r for r in self.records if r.month == month]


#: How much of the file one read of :class:`MonthTotal` holds in memory at most.
_SCAN_CHUNK: Final = 1 << 20


class MonthTotal:
    """One month's spend in the cost log as a running sum: what the proxy's budget decisions
    need, in constant memory however many requests the month had (a list of records would
    grow by ~400 B a request, ~400 MB at a million).

    Each :meth:`refresh` reads only the bytes appended since the last one, and only complete
    lines (a line being written counts next time, a torn tail never). A new month, or a file
    that shrank, was replaced (rotated) or deleted and created again, is read again from the
    start, in bounded chunks.
    The caller that appended the new bytes itself may say so (``appended``): when the file
    grew by exactly those bytes they are not parsed again, their sum is added as given.
    """

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)
        self.month: str | None = None
        self.total = 0.0
        self.count = 0
        self._cursor = FileCursor()

    def refresh(self, month: str, appended: tuple[int, float, int] | None = None) -> float:
        """This month's total now. ``appended``: (bytes, cost of them in ``month``, lines in
        ``month``) that the caller appended since the last call."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            self.month, self.total, self.count = month, 0.0, 0
            self._cursor.forget()
            return 0.0
        with fh:
            st = os.fstat(fh.fileno())
            if not self._cursor.check(fh, st) or month != self.month:
                self.month, self.total, self.count = month, 0.0, 0
                self._cursor.rewind()
                appended = None
            if appended is not None and st.st_size == self._cursor.offset + appended[0]:
                self._cursor.advance(fh, st.st_size)
                self.total += appended[1]
                self.count += appended[2]
            elif st.st_size > self._cursor.offset:
                self._scan(fh, st.st_size)
        return self.total

    def _scan(self, fh: BinaryIO, size: int) -> None:
        offset = self._cursor.offset
        fh.seek(offset)
        while offset < size:
            chunk = fh.read(min(_SCAN_CHUNK, size - offset))
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) < _SCAN_CHUNK:
                    break  # only a line still being written (or a torn tail)
                offset += len(chunk)  # a "line" of 1 MiB is no record: skip it
                continue
            for line in chunk[:end].split(b"\n"):
                record = parse_line(line)
                if record is not None and record.month == self.month:
                    self.total += record.cost_usd
                    self.count += 1
            offset += end + 1
            fh.seek(offset)
        self._cursor.advance(fh, offset)
