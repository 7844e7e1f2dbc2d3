"""Apply an agent's owned values to its files, safely; remember and give back the user's own.

For each file of an agent the engine reads a consistent (stamp, bytes) pair, refuses what it
cannot edit safely (read-only, not UTF-8, unparseable), edits the TEXT through the format
(:mod:`monitoring.agents.formats`), and writes atomically (:mod:`monitoring.atomic`) with a
``.bak`` backup and a compare-and-swap on the stamp, so an edit the user saves meanwhile is
merged, not lost. No change, no write. A symlinked file is edited at its target.

Cheap ticks: the watchdog re-asserts the active target every tick; when no file's stamp
(device, inode, size, mtime) moved since the engine last made it right, nothing is read.

Takeover record: before the first write to an agent's files, the user's bytes and owned values
are saved (0600) in the state directory; ``release`` puts them back (the exact bytes when the
file is still as we last wrote it, else the owned values one by one) and stops managing the
agent until ``manage``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from monitoring.agents import adapter_for
from monitoring.agents.base import UNSET, Adapter, Context, Default, Endpoint, Secret
from monitoring.agents.formats import MISSING, FormatError, show
from monitoring.atomic import (
    FileChangedError,
    FileStamp,
    atomic_write,
    ensure_dir,
    read_consistent,
    stamp,
)
from monitoring.host_config import AgentSpec, TargetSpec
from monitoring.stack.layout import HOST_KEY_PREFIX

log = logging.getLogger(__name__)

BACKUP_SUFFIX: Final = ".bak"
SECRET_MODE: Final = 0o600
_BOM: Final = b"\xef\xbb\xbf"
_RETRIES: Final = 3


class AgentFileError(Exception):
    """A file left untouched; the message names the file and the fix."""


@dataclass
class AgentResult:
    """What making one agent follow one target did."""

    agent: str
    label: str
    target: str | None
    changed: bool = False
    error: str | None = None
    restart: str = ""
    files: list[str] = field(default_factory=list)
    #: Set when a follower applies it in a person's home (:mod:`monitoring.agents.follower`):
    #: ``managed for <login> by <unit>``; ``pending`` until the follower applied the decision.
    whose: str | None = None
    pending: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        data = {"agent": self.agent, "label": self.label, "target": self.target,
                "ok": self.ok, "changed": self.changed, "error": self.error,
                "restart": self.restart, "files": self.files}
        if self.whose is not None:
            data.update(whose=self.whose, pending=self.pending)
        return data


def _decode(path: Path, raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8-sig"), raw.startswith(_BOM)
    except UnicodeDecodeError as exc:
        raise AgentFileError(f"{path} is not UTF-8 text ({exc.reason}): save it as UTF-8"
                             ) from None


def _read(path: Path) -> tuple[FileStamp, bytes | None]:
    try:
        return read_consistent(path, _RETRIES)
    except FileChangedError:
        raise AgentFileError(f"{path} kept changing while it was read") from None
    except OSError as exc:
        raise AgentFileError(f"cannot read {path}: {exc.strerror or exc}: give the "
                             "watchdog's user read access") from None


def _writable(path: Path) -> None:
    """A read-only file is the user's statement: never replaced through a rename."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise AgentFileError(f"{path} is read-only: make it writable (chmod u+w) for the "
                             "switch to follow, or release the agent")


def key_command() -> list[str]:
    """The ``provider-fallback`` helper next to this interpreter (Claude Code's
    ``apiKeyHelper`` runs it), or nothing when it is not installed there."""
    import sys

    helper = Path(sys.executable).with_name("provider-fallback")
    return [str(helper)] if helper.exists() else []


class AgentManager:
    """Switches the enrolled agents' files; one instance lives as long as the watchdog."""

    def __init__(self, agents: Sequence[AgentSpec], targets: Sequence[TargetSpec], *,
                 home: str | os.PathLike[str] | None, records_dir: str | os.PathLike[str],
                 os_name: str = "linux", env: Mapping[str, str] | None = None,
                 key_command: Sequence[str] = ()) -> None:
        self.specs = {a.name: a for a in agents}
        self.targets = {t.name: t for t in targets}
        self.home = Path(home) if home is not None else Path.home()
        self.records = Path(records_dir)
        self.os_name = os_name
        self.env = os.environ if env is None else env
        self.ctx = Context(home=self.home, os_name=os_name, key_command=tuple(key_command))
        self._seen: dict[tuple[str, str], dict[Path, FileStamp]] = {}
        self._resolved: dict[tuple[str, str], tuple[tuple[FileStamp, ...], Path]] = {}

    def adapter(self, name: str) -> Adapter:
        spec = self.specs[name]
        return adapter_for(spec.name, spec.adapter, spec.path)

    def order(self, name: str) -> list[TargetSpec]:
        """The agent's own fallback order, restricted to targets it can reach."""
        adapter = self.adapter(name)
        names = self.specs[name].order or list(self.targets)
        return [self.targets[n] for n in names
                if n in self.targets and adapter.endpoint(self.targets[n]) is not None]

    # ------------------------------------------------------------------ values

    def _values(self, adapter: Adapter, endpoint: Endpoint, name: str
                ) -> dict[str, list[tuple[Any, Any]]]:
        reachable = [e for t in self.order(name) if (e := adapter.endpoint(t)) is not None]
        out: dict[str, list[tuple[Any, Any]]] = {}
        for part in (adapter.scaffold(reachable, self.ctx), adapter.selectors(endpoint,
                                                                              self.ctx)):
            for role, values in part.items():
                out.setdefault(role, []).extend(values)
        return out

    def _resolve_secret(self, value: Any) -> Any:
        """A key value from the watchdog's environment. A target names its key as the person
        does (``GEMINI_API_KEY``: agents refer to it by that name), but on a host the watchdog
        holds provider keys under their host names (``PF_GEMINI_API_KEY``,
        :func:`monitoring.stack.layout.host_env_names`), so that name is tried too."""
        if isinstance(value, Secret):
            secret = self.env.get(value.env) or self.env.get(HOST_KEY_PREFIX + value.env)
            if not secret:
                raise AgentFileError(f"the watchdog has no {value.env} in its environment: "
                                     "add it to the watchdog's secrets")
            return secret
        return value

    def paths(self, name: str) -> dict[str, Path]:
        """Which file of each role to edit; re-resolved only when a candidate's stamp moved
        (Kilo Code picks the global file that holds ``model``: read once, not every tick)."""
        adapter = self.adapter(name)
        out: dict[str, Path] = {}
        for spec in adapter.files:
            watched = adapter.watched(spec, self.home, self.os_name)
            stamps = tuple(stamp(p) for p in watched)
            cached = self._resolved.get((name, spec.role))
            if cached is None or cached[0] != stamps:
                cached = (stamps, adapter.resolve(spec, self.home, self.os_name))
                self._resolved[(name, spec.role)] = cached
            out[spec.role] = cached[1]
        return out

    # ------------------------------------------------------------------ apply

    def released(self, name: str) -> bool:
        return (self.records / f"{name}.released").exists()

    def apply(self, name: str, target: TargetSpec) -> AgentResult:
        """Make agent ``name`` follow ``target`` (a no-op when its files already do)."""
        adapter = self.adapter(name)
        result = AgentResult(name, adapter.label, target.name)
        if self.released(name):
            result.error = "released: not managed (provider-fallback agents manage NAME)"
            return result
        endpoint = adapter.endpoint(target)
        if endpoint is None:
            result.target = None
            result.error = f"{adapter.label} cannot speak to {target.label}"
            return result
        paths = self.paths(name)
        result.files = [str(p) for p in paths.values()]
        key = (name, target.name)
        seen = self._seen.get(key)
        if seen is not None and all(stamp(p) == s for p, s in seen.items()):
            return result
        values = self._values(adapter, endpoint, name)
        stamps: dict[Path, FileStamp] = {}
        try:
            # Every file is planned before any is written: an agent is switched whole or not
            # at all (a Gemini CLI with the new model but the old base URL would be worse).
            for spec in adapter.files:
                self._plan(paths[spec.role], spec.fmt, values.get(spec.role, []))
            for spec in adapter.files:
                path = paths[spec.role]
                result.changed |= self._apply_file(name, path, spec.fmt,
                                                   values.get(spec.role, []),
                                                   secret=spec.secret)
                stamps[path] = stamp(path)
        except AgentFileError as exc:
            result.error = str(exc)
            self._seen.pop(key, None)
            return result
        self._seen = {k: v for k, v in self._seen.items() if k[0] != name}
        self._seen[key] = stamps
        for spec in adapter.files:  # our own write picked nothing else: keep the resolution
            watched = adapter.watched(spec, self.home, self.os_name)
            self._resolved[(name, spec.role)] = (tuple(stamp(p) for p in watched),
                                                 paths[spec.role])
        if result.changed and not adapter.live_reload:
            result.restart = adapter.restart_hint
        return result

    def _plan(self, path: Path, fmt: Any, values: list[tuple[Any, Any]]
              ) -> tuple[FileStamp, bytes | None, str, str, bool]:
        """(stamp, old bytes, old text, new text, BOM) for one file, or AgentFileError."""
        seen, raw = _read(path)
        if raw is not None:
            _writable(path)
        text, bom = _decode(path, raw) if raw is not None else (
            fmt.new("\r\n" if self.os_name == "windows" else "\n"), False)
        try:
            if raw is not None:
                fmt.check(text)
            new = text
            for key_path, value in values:
                new = self._edit(fmt, new, key_path, value)
        except FormatError as exc:
            raise AgentFileError(f"{path} {exc}: fix it by hand; it is retried once "
                                 "it parses") from None
        except (ValueError, TypeError, KeyError) as exc:  # a key of ours holds the wrong type
            raise AgentFileError(f"{path} does not have the shape {fmt.name} agents expect "
                                 f"({exc}): fix it by hand; it is retried once it "
                                 "does") from None
        if raw is None and self.os_name == "windows":  # a new file gets Windows line ends
            new = re.sub(r"(?<!\r)\n", "\r\n", new)
        return seen, raw, text, new, bom

    def _apply_file(self, name: str, path: Path, fmt: Any, values: list[tuple[Any, Any]],
                    *, secret: bool) -> bool:
        for _ in range(_RETRIES):
            seen, raw, text, new, bom = self._plan(path, fmt, values)
            if raw is not None and new == text:
                if secret:
                    self._private(path)
                return False
            data = (_BOM if bom else b"") + new.encode("utf-8")
            self._record(name, path, raw, fmt, values)
            try:
                if raw is None:
                    ensure_dir(path.parent)
                atomic_write(path, data, new_mode=SECRET_MODE, backup_suffix=BACKUP_SUFFIX,
                             expect=seen)
            except FileChangedError:
                continue
            except OSError as exc:
                raise AgentFileError(f"cannot write {path}: {exc.strerror or exc}") from None
            if secret:
                self._private(path)
            self._note_written(name, path, data)
            return True
        raise AgentFileError(f"{path} kept changing while it was being switched")

    @staticmethod
    def _private(path: Path) -> None:
        real = Path(os.path.realpath(path))
        with contextlib.suppress(OSError):
            if stat.S_IMODE(os.stat(real).st_mode) & 0o077:
                os.chmod(real, SECRET_MODE)
            backup = real.with_name(real.name + BACKUP_SUFFIX)
            if backup.exists():
                os.chmod(backup, SECRET_MODE)

    def _edit(self, fmt: Any, text: str, key_path: Any, value: Any) -> str:
        if value is UNSET:
            return str(fmt.unset(text, key_path)) if fmt.get(text, key_path) is not MISSING \
                else text
        if isinstance(value, Default):
            if fmt.get(text, key_path) is not MISSING:
                return text
            value = value.value
        value = self._resolve_secret(value)
        if fmt.get(text, key_path) == value:
            return text
        return str(fmt.set(text, key_path, value))

    # ------------------------------------------------------------------ reading

    def current(self, name: str) -> str | None:
        """The target the agent's files point at now (selectors match), or None."""
        adapter = self.adapter(name)
        paths = self.paths(name)
        texts: dict[str, str] = {}
        for spec in adapter.files:
            try:
                raw = paths[spec.role].read_bytes()
                texts[spec.role] = raw.decode("utf-8-sig")
                spec.fmt.check(texts[spec.role])
            except (OSError, UnicodeDecodeError, FormatError):
                texts[spec.role] = ""
        fmts = {f.role: f.fmt for f in adapter.files}
        for target in self.order(name):
            endpoint = adapter.endpoint(target)
            if endpoint is None:
                continue
            selectors = adapter.selectors(endpoint, self.ctx)
            if all(self._matches(fmts[role], texts.get(role, ""), path, value)
                   for role, values in selectors.items() for path, value in values):
                return target.name
        return None

    @staticmethod
    def _matches(fmt: Any, text: str, path: Any, value: Any) -> bool:
        if isinstance(value, Secret):
            return True  # a key value is not shown here, and not compared
        try:
            now = fmt.get(text, path) if text else MISSING
        except FormatError:
            return False
        return now is MISSING if value is UNSET else now == value

    # ------------------------------------------------------------------ records

    def _record_path(self, name: str) -> Path:
        return self.records / f"{name}.json"

    def _load_record(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self._record_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"files": {}}
        return data if isinstance(data, dict) else {"files": {}}

    def _save_record(self, name: str, record: dict[str, Any]) -> None:
        ensure_dir(self.records)
        atomic_write(self._record_path(name), json.dumps(record, indent=1).encode(),
                     new_mode=0o600)

    def _record(self, name: str, path: Path, raw: bytes | None, fmt: Any,
                values: list[tuple[Any, Any]]) -> None:
        """The user's own bytes and values, saved once, before our first write to ``path``."""
        record = self._load_record(name)
        files = record.setdefault("files", {})
        if str(path) in files:
            return
        text = raw.decode("utf-8-sig", "replace") if raw is not None else ""
        owned = []
        for key_path, _ in values:
            try:
                now = fmt.get(text, key_path) if raw is not None else MISSING
            except FormatError:
                now = MISSING
            owned.append({"path": [str(p) if isinstance(p, str) else [p.field, p.value]
                                   for p in key_path], "shown": show(key_path),
                          "value": None if now is MISSING else now,
                          "missing": now is MISSING})
        files[str(path)] = {"original": None if raw is None else base64.b64encode(
            raw).decode(), "values": owned, "written": None}
        self._save_record(name, record)

    def _note_written(self, name: str, path: Path, data: bytes) -> None:
        record = self._load_record(name)
        entry = record.get("files", {}).get(str(path))
        if entry is not None:
            entry["written"] = hashlib.sha256(data).hexdigest()
            self._save_record(name, record)

    def managed(self, name: str) -> bool:
        return self._record_path(name).exists() and not self.released(name)

    def release(self, name: str) -> list[str]:
        """Give the user's own files back and stop managing ``name``; what was done."""
        from monitoring.agents.formats import Item

        adapter = self.adapter(name)
        fmts = {str(p): f.fmt for f in adapter.files for p in [self.paths(name)[f.role]]}
        record = self._load_record(name)
        done: list[str] = []
        for file, entry in record.get("files", {}).items():
            path = Path(file)
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            original = entry.get("original")
            if current is not None and entry.get("written") == hashlib.sha256(
                    current).hexdigest():
                if original is None:
                    path.unlink()
                    done.append(f"{file}: removed (provider-fallback created it)")
                else:
                    atomic_write(path, base64.b64decode(original))
                    done.append(f"{file}: your original bytes put back")
                continue
            fmt = fmts.get(file)
            if current is None or fmt is None:
                continue
            text = current.decode("utf-8-sig")
            for value in entry.get("values", []):
                key_path = tuple(Item(*p) if isinstance(p, list) else p for p in value["path"])
                text = (fmt.delete(text, key_path) if value["missing"]
                        else fmt.set(text, key_path, value["value"]))
            bom = _BOM if current.startswith(_BOM) else b""
            atomic_write(path, bom + text.encode("utf-8"))
            done.append(f"{file}: your own values put back (the file changed since)")
        ensure_dir(self.records)
        (self.records / f"{name}.released").write_text("released\n", encoding="utf-8")
        self._seen = {k: v for k, v in self._seen.items() if k[0] != name}
        return done

    def manage(self, name: str) -> None:
        """Undo ``release``: the watchdog takes the agent over again (a fresh record)."""
        with contextlib.suppress(FileNotFoundError):
            (self.records / f"{name}.released").unlink()
        with contextlib.suppress(FileNotFoundError):
            self._record_path(name).unlink()
