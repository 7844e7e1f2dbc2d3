"""Switch an agent's config file to a failover target (runbook 3.1 and 4.3).

The runbook switches Kilo Code by rewriting ``.kilocode/kilocode.json`` to
``{"provider": "z-ai", "model": "glm-5:free"}`` and back to
``{"provider": "litellm", "endpoint": "http://localhost:4000", "model": "groq-70b"}``. Done
naively that loses everything else the user keeps in the file. Here the switch is a merge:

- The switch owns only :data:`~monitoring.watchdog_config.OWNED_KEYS` (provider, endpoint,
  model). Owned keys the target sets are written in place (same position in the object); owned
  keys it does not set are removed, so switching to Kilo Code's built-in provider drops the
  proxy's stale ``endpoint``; new owned keys go at the end.
- Every other key, its value and its position are kept exactly. The file's indentation, line
  endings, trailing newline and UTF-8 BOM are detected and kept too, so the diff of a switch is
  the owned lines only.
- A file that is not valid JSON (say the user left a comment in it, or an editor is halfway
  through saving), is not a JSON object, or repeats a key, is never written: it is reported
  and left exactly as it was. Overwriting it could only destroy what we failed to read.
- No change means no write: the file, its mtime and its inode stay as they are, so a watchdog
  re-asserting the active target every tick costs nothing and wakes no file watcher.
- A write is atomic (:mod:`monitoring.atomic`) and keeps a backup ``<name>.bak`` of the previous
  content; if the file changes between read and replace the merge is redone from the new
  content, so an edit the user saves at that moment is merged, not lost.

JSON values are kept by value, not by spelling: ``1.0e3`` comes back as ``1000.0`` and
``"\\u00e9"`` as ``"é"``. Both mean the same to every JSON reader.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from monitoring.atomic import (
    FileChangedError,
    FileStamp,
    StrPath,
    atomic_write,
    ensure_dir,
    expand_user,
    read_consistent,
)
from monitoring.watchdog_config import OWNED_KEYS, AgentSpec, TargetSpec

log = logging.getLogger(__name__)

BACKUP_SUFFIX: Final = ".bak"
#: A new agent file may end up holding an endpoint and, for some agents, a key: user-only.
NEW_FILE_MODE: Final = 0o600
_BOM: Final = b"\xef\xbb\xbf"
_RETRIES: Final = 3

ErrorKind = Literal["unreadable", "invalid_json", "not_object", "write_failed", "busy"]


@dataclass(frozen=True)
class SwitchResult:
    """What one switch did to one file.

    ``error`` is None on success; otherwise it says why in words fit for the event log, and
    ``error_kind`` says what the watchdog can do about it: ``invalid_json`` and ``not_object``
    need the user (the file was left untouched), ``unreadable`` and ``write_failed`` are I/O
    (permissions, disk), ``busy`` means the file kept changing under us (retry next tick).
    """

    path: Path
    changed: bool
    created: bool = False
    backup: Path | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(f"the key {key!r} appears twice")
        obj[key] = value
    return obj


def merge_settings(
    current: Mapping[str, Any], settings: Mapping[str, str], owned: Iterable[str] = OWNED_KEYS
) -> dict[str, Any]:
    """The object ``current`` becomes when switched to a target with ``settings``.

    Pure, so the property tests can check it alone. A key in ``settings`` is owned even if it
    is missing from ``owned`` (the target says so by setting it).
    """
    owned_set = set(owned) | set(settings)
    merged: dict[str, Any] = {}
    for key, value in current.items():
        if key not in owned_set:
            merged[key] = value
        elif key in settings:
            merged[key] = settings[key]
    for key, value in settings.items():
        if key not in merged:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class _Style:
    """How the file was written, so a rewrite changes the owned lines only."""

    indent: str | None = "  "
    newline: str = "\n"
    final_newline: bool = True
    bom: bool = False

    @classmethod
    def of(cls, raw: bytes, text: str) -> _Style:
        body = text.strip()
        if "\n" not in body:
            indent = None  # a one-line object stays on one line
        else:
            match = re.search(r"\n([ \t]+)\S", body)
            indent = match.group(1) if match else "  "
        return cls(indent=indent, newline="\r\n" if "\r\n" in text else "\n",
                   final_newline=text.endswith("\n"), bom=raw.startswith(_BOM))

    def dump(self, obj: Mapping[str, Any]) -> bytes:
        text = json.dumps(obj, indent=self.indent, ensure_ascii=False)
        if self.newline != "\n":
            text = text.replace("\n", self.newline)  # json escapes newlines inside strings
        if self.final_newline:
            text += self.newline
        return (_BOM if self.bom else b"") + text.encode("utf-8")


class _Unusable(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def _read(path: Path) -> tuple[FileStamp, bytes | None]:
    """A consistent (stamp, bytes) pair: re-read if the file moved while being read."""
    try:
        return read_consistent(path, _RETRIES)
    except FileChangedError:
        raise _Unusable("busy", f"{path} kept changing while it was read") from None
    except OSError as exc:
        raise _Unusable("unreadable", f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Any], _Style]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Unusable("invalid_json", f"{path} is not UTF-8 text ({exc.reason})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise _Unusable("invalid_json", f"{path} is ambiguous JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _Unusable(
            "invalid_json",
            f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})",
        ) from None
    if not isinstance(obj, dict):
        raise _Unusable("not_object",
                        f"{path} holds a JSON {type(obj).__name__}, not an object")
    return obj, _Style.of(raw, text)


def switch_agent_file(
    path: StrPath,
    settings: Mapping[str, str],
    owned: Sequence[str] = OWNED_KEYS,
    *,
    home: StrPath | None = None,
) -> SwitchResult:
    """Make the agent file at ``path`` point at the target whose agent keys are ``settings``.

    ``path`` may start with ``~`` (see :func:`monitoring.atomic.expand_user`; ``home``
    overrides whose home). A missing file is created with its missing parent directories
    (0700) and mode 0600. Never raises for a problem with the file: the result says what
    happened, so one broken agent file cannot stop the switch of the others.
    """
    target = expand_user(path, home)
    for _ in range(_RETRIES):
        try:
            seen, raw = _read(target)
            current, style = ({}, _Style()) if raw is None else _parse(target, raw)
        except _Unusable as exc:
            log.warning("agent file left untouched: %s", exc)
            return SwitchResult(path=target, changed=False, error=str(exc), error_kind=exc.kind)
        merged = merge_settings(current, settings, owned)
        if raw is not None and list(merged.items()) == list(current.items()):
            return SwitchResult(path=target, changed=False)
        try:
            if raw is None:
                ensure_dir(target.parent)
            backup = atomic_write(target, style.dump(merged), new_mode=NEW_FILE_MODE,
                                  backup_suffix=BACKUP_SUFFIX, expect=seen)
        except FileChangedError:
            continue  # merge again from what is there now
        except OSError as exc:
            message = f"cannot switch {target}: {exc.strerror or exc}"
            log.warning("%s", message)
            return SwitchResult(path=target, changed=False, error=message,
                                error_kind="write_failed")
        return SwitchResult(path=target, changed=True, created=raw is None, backup=backup)
    return SwitchResult(path=target, changed=False,
                        error=f"{target} kept changing while it was being switched",
                        error_kind="busy")


def switch_agents(
    agents: Iterable[AgentSpec],
    settings: Mapping[str, str],
    owned: Sequence[str] = OWNED_KEYS,
    *,
    home: StrPath | None = None,
) -> dict[str, SwitchResult]:
    """Switch every configured agent file; one result per agent name, failures included."""
    return {a.name: switch_agent_file(a.path or "", settings, owned, home=home)
            for a in agents if a.path}


_MISSING: Final = object()


def read_active(
    path: StrPath,
    targets: Iterable[TargetSpec] | Mapping[str, Mapping[str, str]],
    owned: Sequence[str] = OWNED_KEYS,
    *,
    home: StrPath | None = None,
) -> str | None:
    """The name of the target whose settings the file matches now, or None.

    A match means every owned key is present with the target's value exactly when the target
    sets it, and absent when it does not. None for a missing or unreadable file, or one the
    user pointed somewhere else by hand: the watchdog then knows it is not in control of it.
    ``targets`` are the config's :class:`TargetSpec` list or a mapping name -> settings; the
    first match in their order wins.
    """
    target = expand_user(path, home)
    try:
        current, _ = _parse(target, target.read_bytes())
    except (OSError, _Unusable):
        return None
    pairs = (targets.items() if isinstance(targets, Mapping)
             else ((t.name, t.settings) for t in targets))
    for name, settings in pairs:
        keys = set(owned) | set(settings)
        if all(current.get(k, _MISSING) == settings.get(k, _MISSING) for k in keys):
            return name
    return None
