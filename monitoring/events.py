"""The fallback event log, in the runbook's own line format, with a JSON-lines twin.

Text log (``paths.event_log``, the runbook's ``fallback-events.log``), one line per event::

    [2026-02-13T03:00:00Z] FALLBACK: LiteLLM connection refused, switched to Kilo Code
    [2026-02-13T03:15:00Z] RESTORED: LiteLLM recovered, switched back to primary
    [2026-02-13T03:20:00Z] EMERGENCY: All providers failed, entering degraded mode

The first three kinds are the runbook's (3.1, 4.3, 7.1), byte for byte. The watchdog needs four
more, written in the same ``[ts] KIND: message`` grammar:

- ``RESTART``: it restarts the proxy (runbook 5.2, auto-recovery), e.g.
  ``RESTART: LiteLLM connection refused, restarting it (attempt 2 of 6 this hour)``;
- ``RECOVERY``: the restarted proxy answers again, e.g.
  ``RECOVERY: LiteLLM auto-recovery successful after 2 restarts``;
- ``ERROR``: something needs a human, e.g.
  ``ERROR: LiteLLM auto-recovery failed, manual intervention required`` (5.2's own words) or an
  agent file left untouched because it is not valid JSON;
- ``KILL-SWITCH``: the budget kill switch (9.3), e.g.
  ``KILL-SWITCH: ACTIVATED - Budget exceeded ($20.41 of $20.00 this month), only free
  providers allowed`` (one line).

JSON twin (``paths.event_jsonl``): one object per line with ``ts``, ``kind``, ``from``, ``to``,
``reason`` (the error class: network, auth, rate, config, server, timeout, unknown; the same
value as the ``reason`` label of ``provider_fallback_events_total``), ``message`` and
``details``. Tools read this one; :func:`read_events` reads either file.

Durability and readers. Each event is ONE ``os.write`` of whole lines on an ``O_APPEND``
descriptor, then ``fsync``, under an advisory ``flock`` (POSIX): concurrent appenders (the
watchdog and the CLI) never interleave inside a line, and a crash can at worst leave the last
line without its newline. Readers skip such a torn trailing line, and the next append first
ends it with `` [torn line]`` and a newline, so it can never glue itself to a good event and
is skipped wherever it ends up.
Timestamps are UTC with a ``Z``, to the second as in the runbook; the clock is injectable.

Nothing logged may hold a key: every string (message, from, to, reason, details) goes through
:func:`redact`, built on :func:`monitoring.stack.schema.looks_like_secret`.

On Windows each event also goes to the Event Log (runbook 10.4) under the configured source and
IDs: 1001 fallback, 1002 restored (and recovery), 1003 error (and emergency, restart), 1004
kill switch; event types Warning for fallback, restart and kill switch (a degradation, not
routine information as the runbook's sample has it), Information for restored and recovery,
Error for error and emergency. pywin32 is imported lazily, on Windows only, by
:func:`windows_event_writer`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from monitoring.atomic import StrPath, append_locked
from monitoring.host_config import WatchdogConfig, WindowsEvents
from monitoring.stack.scalars import looks_like_secret

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Writes one Windows Event Log entry: (event id, event type, message).
WindowsWriter = Callable[[int, int, str], None]

TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
EMERGENCY_MESSAGE: Final = "All providers failed, entering degraded mode"
REDACTED: Final = "[REDACTED]"
#: Ends a line a crash left without its newline, before the next event is appended.
TORN_MARK: Final = " [torn line]"
LOG_FILE_MODE: Final = 0o640
_ON_WINDOWS = os.name == "nt"

# win32evtlog's event types, as numbers so nothing imports pywin32 to name them.
EVENTLOG_ERROR_TYPE: Final = 0x0001
EVENTLOG_WARNING_TYPE: Final = 0x0002
EVENTLOG_INFORMATION_TYPE: Final = 0x0004


class EventKind(StrEnum):
    FALLBACK = "FALLBACK"
    RESTORED = "RESTORED"
    EMERGENCY = "EMERGENCY"
    ERROR = "ERROR"
    RESTART = "RESTART"
    RECOVERY = "RECOVERY"
    KILL_SWITCH = "KILL-SWITCH"


#: Kind -> (attribute of WindowsEvents holding the ID, event type).
WINDOWS_EVENT: Final[Mapping[EventKind, tuple[str, int]]] = {
    EventKind.FALLBACK: ("fallback", EVENTLOG_WARNING_TYPE),
    EventKind.RESTORED: ("restored", EVENTLOG_INFORMATION_TYPE),
    EventKind.RECOVERY: ("restored", EVENTLOG_INFORMATION_TYPE),
    EventKind.EMERGENCY: ("error", EVENTLOG_ERROR_TYPE),
    EventKind.ERROR: ("error", EVENTLOG_ERROR_TYPE),
    EventKind.RESTART: ("error", EVENTLOG_WARNING_TYPE),
    EventKind.KILL_SWITCH: ("kill_switch", EVENTLOG_WARNING_TYPE),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_ts(ts: datetime) -> str:
    """``2026-02-13T03:00:00Z``; a naive datetime is taken to be UTC already."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime(TS_FORMAT)


def parse_ts(text: str) -> datetime:
    """The inverse of :func:`format_ts` (also accepts fractional seconds and offsets)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# ------------------------------------------------------------------------------- redaction

# Candidate tokens: runs of characters a key can be made of, split at whatever usually
# surrounds one (spaces, quotes, "=", ":", "/", brackets), so "api_key=gsk_..." and
# "Bearer sk-..." are caught while URLs and paths fall apart into short harmless pieces.
_TOKEN = re.compile(r"[^\s\"'`,;:=/\\()\[\]{}<>|]+")
# litellm.AuthenticationError, openai.APIConnectionError: long, but names, not keys.
_DOTTED_NAME = re.compile(r"^[A-Za-z_]+(\.[A-Za-z_]+)+$")


def _secret_token(token: str) -> bool:
    return looks_like_secret(token) and not _DOTTED_NAME.match(token)


def redact(text: str) -> str:
    """``text`` with every token shaped like a key replaced by ``[REDACTED]``."""
    return _TOKEN.sub(lambda m: REDACTED if _secret_token(m.group()) else m.group(), text)


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_any(v) for v in value]
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str) -> str:
    """A message stays on its line: newlines in an upstream error would forge events."""
    return _CONTROL.sub(" ", text).strip()


# ------------------------------------------------------------------------------- the event


@dataclass(frozen=True)
class Event:
    """One event. ``from_``/``to`` are target names, ``reason`` the error class."""

    ts: datetime
    kind: str
    message: str
    from_: str | None = None
    to: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The runbook's text line, newline included."""
        return f"[{format_ts(self.ts)}] {self.kind}: {self.message}\n"

    def to_json(self) -> dict[str, Any]:
        return {"ts": format_ts(self.ts), "kind": str(self.kind), "from": self.from_,
                "to": self.to, "reason": self.reason, "message": self.message,
                "details": dict(self.details)}

    def json_line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Event:
        """Raises KeyError/ValueError/TypeError for an object that is not an event."""
        details = obj.get("details") or {}
        if not isinstance(details, Mapping):
            raise TypeError("details is not an object")
        return cls(ts=parse_ts(obj["ts"]), kind=_kind(str(obj["kind"])),
                   message=str(obj["message"]), from_=obj.get("from"), to=obj.get("to"),
                   reason=obj.get("reason"), details=dict(details))


def _kind(text: str) -> str:
    try:
        return EventKind(text)
    except ValueError:
        return text  # a kind some other writer used: kept, not dropped


# -------------------------------------------------------------------------- message texts


def fallback_message(from_label: str, cause: str, to_label: str) -> str:
    """``LiteLLM connection refused, switched to Kilo Code`` (runbook 3.1)."""
    return f"{from_label} {cause}, switched to {to_label}"


def restored_message(label: str, to_label: str | None = None) -> str:
    """``LiteLLM recovered, switched back to primary`` (runbook 4.3).

    ``to_label`` names the target switched to when it is not the primary (a recovery from
    P4 to P3 while P1 is still down).
    """
    return f"{label} recovered, switched back to {to_label or 'primary'}"


def restart_message(label: str, cause: str, attempt: int, limit: int | None = None) -> str:
    """``LiteLLM connection refused, restarting it (attempt 2 of 6 this hour)``."""
    of = f" of {limit} this hour" if limit is not None else ""
    return f"{label} {cause}, restarting it (attempt {attempt}{of})"


def recovery_message(label: str, restarts: int | None = None) -> str:
    """``LiteLLM auto-recovery successful after 2 restarts`` (runbook 5.2's words)."""
    if restarts is None:
        return f"{label} auto-recovery successful"
    return f"{label} auto-recovery successful after {restarts} restart{'s' * (restarts != 1)}"


def kill_switch_message(active: bool, spend_usd: float, budget_usd: float) -> str:
    """``ACTIVATED - Budget exceeded ($20.41 of $20.00 this month), only free providers
    allowed`` (runbook 9.3's words), or ``DEACTIVATED - ...`` when a new month frees it."""
    money = f"${spend_usd:.2f} of ${budget_usd:.2f} this month"
    if active:
        return f"ACTIVATED - Budget exceeded ({money}), only free providers allowed"
    return f"DEACTIVATED - Spend back within budget ({money}), all providers allowed"


# ------------------------------------------------------------------------------- writing


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return True
    os.lseek(fd, size - 1, os.SEEK_SET)
    return os.read(fd, 1) == b"\n"


def append_line(path: StrPath, line: str) -> None:
    """Append one whole line with a single ``write`` on an ``O_APPEND`` descriptor + fsync.

    Opened per event (events are rare): a log rotated away meanwhile is simply re-created.
    If the file ends in a torn line (a crash mid-append), it is first ended with
    :data:`TORN_MARK` and a newline: the torn bytes stay a line of their own, marked as such
    for a human, and skipped by :func:`read_events` in both files.
    """
    # Appenders (the watchdog and the CLI) are serialised: without the lock one could see
    # another's line half-copied into the file, take it for a torn line and mark it.
    def end_torn_line(fd: int) -> bytes:
        return b"" if _ends_with_newline(fd) else (TORN_MARK + "\n").encode("utf-8")

    append_locked(path, line.encode("utf-8"), LOG_FILE_MODE, end_torn_line)


def windows_event_writer(source: str, *, module: Any = None) -> WindowsWriter:
    """A :data:`WindowsWriter` reporting under ``source`` (runbook 10.4's ReportEvent call).

    ``win32evtlogutil`` (pywin32) is imported at the first event, so this module imports and
    is tested anywhere; ``module`` stands in for it in tests. The runbook passes the event type
    as ``eventCategory``, which files every event as "Information" with a bogus category: it
    is passed as ``eventType`` here.
    """
    cache: list[Any] = [module] if module is not None else []

    def write(event_id: int, event_type: int, message: str) -> None:
        if not cache:
            cache.append(importlib.import_module("win32evtlogutil"))
        cache[0].ReportEvent(source, event_id, eventCategory=0, eventType=event_type,
                             strings=[message], data=b"")

    return write


class EventLog:
    """Appends events to the text log, its JSON twin and (on Windows) the Event Log.

    Writing an event never raises: a full disk or a broken Event Log is logged through
    :mod:`logging` and the watchdog goes on failing over, which matters more than the record.
    """

    def __init__(
        self,
        text_path: StrPath | None,
        jsonl_path: StrPath | None = None,
        *,
        clock: Clock = utc_now,
        windows: WindowsEvents | None = None,
        windows_writer: WindowsWriter | None = None,
    ) -> None:
        self.text_path = Path(text_path) if text_path is not None else None
        self.jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self.clock = clock
        self.windows = windows
        self.windows_writer = windows_writer

    @classmethod
    def from_config(
        cls,
        config: WatchdogConfig,
        *,
        clock: Clock = utc_now,
        windows_writer: WindowsWriter | None = None,
    ) -> EventLog:
        """The log at the configured paths; on a Windows host also the Event Log."""
        win = config.windows_events
        if win is not None and windows_writer is None and _ON_WINDOWS:
            windows_writer = windows_event_writer(win.source)
        return cls(config.paths.event_log, config.paths.event_jsonl, clock=clock,
                   windows=win, windows_writer=windows_writer)

    def record(
        self,
        kind: EventKind | str,
        message: str,
        *,
        from_: str | None = None,
        to: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """Redact, timestamp and append one event everywhere; returns what was written."""
        ts = self.clock()
        ts = (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC))
        event = Event(
            ts=ts.replace(microsecond=0), kind=_kind(_one_line(str(kind))),
            message=_one_line(redact(message)),
            from_=redact(from_) if from_ is not None else None,
            to=redact(to) if to is not None else None,
            reason=redact(reason) if reason is not None else None,
            details=_redact_any(dict(details or {})),
        )
        log.info("%s", event.line().rstrip("\n"))
        for path, text in ((self.jsonl_path, event.json_line()), (self.text_path, event.line())):
            if path is None:
                continue
            try:
                append_line(path, text)
            except OSError as exc:
                log.error("cannot append to %s: %s", path, exc)
        self._to_windows(event)
        return event

    def _to_windows(self, event: Event) -> None:
        if self.windows is None or self.windows_writer is None:
            return
        spec = WINDOWS_EVENT.get(event.kind) if isinstance(event.kind, EventKind) else None
        attr, event_type = spec or ("error", EVENTLOG_ERROR_TYPE)
        try:
            self.windows_writer(getattr(self.windows, attr), event_type,
                                f"{event.kind}: {event.message}")
        except Exception as exc:  # pywin32 missing, source unregistered: keep going
            log.warning("cannot write to the Windows Event Log: %s", exc)

    # -- the kinds, with the runbook's wording -------------------------------------------

    def fallback(
        self,
        from_target: str,
        to_target: str,
        cause: str,
        *,
        error_class: str = "unknown",
        from_label: str | None = None,
        to_label: str | None = None,
        details: Mapping[str, Any] | None = None,
        suffix: str = "",
    ) -> Event:
        """``FALLBACK: LiteLLM connection refused, switched to Kilo Code``; ``suffix`` lists
        the agents switched and not (issue 11: never claim a switch that did not happen)."""
        text = fallback_message(from_label or from_target, cause, to_label or to_target) + suffix
        return self.record(EventKind.FALLBACK, text, from_=from_target, to=to_target,
                           reason=error_class, details=details)

    def restored(
        self,
        from_target: str,
        to_target: str,
        *,
        to_label: str | None = None,
        primary: bool = True,
        details: Mapping[str, Any] | None = None,
        suffix: str = "",
    ) -> Event:
        """``RESTORED: LiteLLM recovered, switched back to primary``.

        ``from_target`` is the fallback being left, ``to_target`` the one that recovered.
        """
        label = to_label or to_target
        text = restored_message(label, None if primary else label) + suffix
        return self.record(EventKind.RESTORED, text, from_=from_target, to=to_target,
                           details=details)

    def emergency(
        self,
        from_target: str | None = None,
        *,
        error_class: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """``EMERGENCY: All providers failed, entering degraded mode`` (runbook 7.1)."""
        return self.record(EventKind.EMERGENCY, EMERGENCY_MESSAGE, from_=from_target,
                           to="degraded", reason=error_class, details=details)

    def error(
        self,
        message: str,
        *,
        target: str | None = None,
        error_class: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """``ERROR: <message>``: needs a human (crash loop, an agent file left untouched)."""
        return self.record(EventKind.ERROR, message, from_=target, reason=error_class,
                           details=details)

    def restart(
        self,
        cause: str,
        *,
        attempt: int,
        limit: int | None = None,
        target: str = "litellm",
        label: str = "LiteLLM",
        error_class: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """``RESTART: LiteLLM connection refused, restarting it (attempt 2 of 6 this hour)``."""
        return self.record(EventKind.RESTART, restart_message(label, cause, attempt, limit),
                           from_=target, to=target, reason=error_class, details=details)

    def recovery(
        self,
        *,
        restarts: int | None = None,
        target: str = "litellm",
        label: str = "LiteLLM",
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """``RECOVERY: LiteLLM auto-recovery successful after 2 restarts``."""
        return self.record(EventKind.RECOVERY, recovery_message(label, restarts), to=target,
                           details=details)

    def kill_switch(
        self,
        active: bool,
        spend_usd: float,
        budget_usd: float,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        """``KILL-SWITCH: ACTIVATED - Budget exceeded (...), only free providers allowed``."""
        return self.record(EventKind.KILL_SWITCH,
                           kill_switch_message(active, spend_usd, budget_usd),
                           reason="budget", details=details)


# ------------------------------------------------------------------------------- reading

_TEXT_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\] ([A-Z][A-Z_-]*): (.*)$")


def parse_line(line: str) -> Event | None:
    """An event from one line of either file, or None for anything that is not one."""
    if line.startswith("{"):
        try:
            obj = json.loads(line)
            return Event.from_json(obj) if isinstance(obj, dict) else None
        except (ValueError, KeyError, TypeError):
            return None
    match = _TEXT_LINE.match(line)
    if not match or line.endswith(TORN_MARK):
        return None
    return Event(ts=parse_ts(match.group(1)), kind=_kind(match.group(2)),
                 message=match.group(3))


def read_events(path: StrPath, since: datetime | None = None) -> list[Event]:
    """The events in the JSON-lines twin (or the text log), oldest first.

    A missing file has no events. Lines that do not parse are skipped, above all a torn last
    line (no newline yet: a crash, or a writer mid-append), so a count is never off by a
    half-written event. ``since``: only events at or after it (naive means UTC).
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    lines.pop()  # the part after the last newline: empty, or a torn line
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    out: list[Event] = []
    for chunk in lines:
        event = parse_line(chunk.decode("utf-8", "replace").rstrip("\r"))
        if event is not None and (since is None or event.ts >= since):
            out.append(event)
    return out
