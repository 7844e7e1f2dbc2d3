"""The person's agents: the watchdog decides, a follower running as the person applies.

On a workstation the coding agents belong to the person, not to the service account the
watchdog runs as. The watchdog cannot edit the person's files itself without more rights
than it should have (a group-writable home loses the person's own 0600 ``.env`` on the first
atomic replace by another user; ``sudo`` is blocked by ``NoNewPrivileges``; a user unit
needs lingering and does not exist without systemd). So the work is split:

- the watchdog keeps DECIDING, per agent, as before, and publishes the decision in
  ``<state_dir>/agents-decision.json`` (world-readable, atomic, no secrets: the enrolled
  agents, the targets' names, base URLs, models and the NAMES of key variables);
- a follower, ``provider-fallback agents follow``, runs AS THE PERSON (the systemd template
  unit ``provider-fallback-agents@<login>``, or the init script on a host without systemd),
  polls that file, applies it with the same engine (:mod:`monitoring.agents.engine`) in the
  person's home, and reports per agent what it applied in ``<state_dir>/agents-follower/``,
  a directory the deploy creates, owned by the person, where its takeover records live too.

That directory is the one place that says a person's agents are followed: it exists only
while ``linux.agents_user`` names someone, and its owner is that person. The watchdog reads
the follower's report to tell what was really applied (``status``, ``agents``); with no such
directory it edits its own home as before (a server, CI).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from monitoring.agents.engine import AgentManager, AgentResult
from monitoring.atomic import FileStamp, atomic_write, stamp
from monitoring.host_config import AgentSpec, TargetSpec, WindowsSide

log = logging.getLogger(__name__)

#: Under the state directory: the watchdog's decision (0644) and the follower's directory.
DECISION_FILE: Final = "agents-decision.json"
FOLLOWER_DIR: Final = "agents-follower"
#: In the follower's directory: what it applied (0644) and its takeover records (0600 each).
REPORT_FILE: Final = "applied.json"
RECORDS_DIR: Final = "records"
#: A WSL person's Windows-side agents: their results' names (``kilo-code@windows``) and
#: their takeover records (``records-windows/``).
WINDOWS_SUFFIX: Final = "@windows"
WINDOWS_RECORDS_DIR: Final = "records-windows"
#: The follower's poll: one stat of the decision file and one per agent file a tick.
POLL_INTERVAL_S: Final = 1.0
#: Largest decision file the follower reads (a real one is a few KB): bounded memory.
MAX_DECISION_BYTES: Final = 1 << 20
VERSION: Final = 1


class DecisionError(ValueError):
    """The decision file cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Decision:
    """Where each enrolled agent goes now, as the watchdog decided it."""

    id: str
    active: str | None
    os: str
    agents: list[AgentSpec]
    targets: list[TargetSpec]
    #: agent -> target name, or None with ``why``.
    targets_of: dict[str, str | None]
    why: dict[str, str]
    #: WSL: the person's Windows profile and the targets as Windows reaches them.
    windows: WindowsSide | None = None


def decision_bytes(*, os_name: str, active: str | None, agents: Sequence[AgentSpec],
                   targets: Sequence[TargetSpec],
                   targets_of: Mapping[str, TargetSpec | None],
                   why: Mapping[str, str], windows: WindowsSide | None = None
                   ) -> tuple[bytes, str]:
    """The decision file's bytes and its ``id``: deterministic, so an unchanged decision is
    not rewritten and the ``id`` (a digest of the rest) says which decision a report
    answers."""
    body: dict[str, Any] = {
        "version": VERSION, "active": active, "os": os_name,
        "agents": [a.model_dump(mode="json") for a in agents],
        "targets": [t.model_dump(mode="json") for t in targets],
        "decision": {name: {"target": t.name if t is not None else None,
                            "why": why.get(name, "")} for name, t in targets_of.items()},
        "windows": windows.model_dump(mode="json") if windows is not None else None}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["id"] = decision_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode(), decision_id


def publish(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write the decision when its bytes differ from the file's (True when written)."""
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.read_bytes() == data:
            return False
    atomic_write(target, data, new_mode=0o644)
    return True


def parse_decision(path: Path, raw: bytes) -> Decision:
    """A :class:`Decision` from the file's bytes, or :class:`DecisionError`."""
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("version") != VERSION:
            raise ValueError(f"version {body.get('version') if isinstance(body, dict) else '?'}"
                             f" is not {VERSION}")
        decision = body["decision"]
        return Decision(
            id=str(body["id"]), active=body.get("active"), os=str(body.get("os", "linux")),
            agents=[AgentSpec.model_validate(a) for a in body["agents"]],
            targets=[TargetSpec.model_validate(t) for t in body["targets"]],
            targets_of={str(k): (v.get("target") if isinstance(v, dict) else None)
                        for k, v in decision.items()},
            why={str(k): str(v.get("why", "")) for k, v in decision.items()
                 if isinstance(v, dict)},
            windows=WindowsSide.model_validate(body["windows"]) if body.get("windows")
            else None)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecisionError(f"{path} is not a decision of this version of provider-fallback "
                            f"({type(exc).__name__}: {str(exc)[:200]}): upgrade the follower "
                            "with the deploy, or restart the watchdog to write it "
                            "again") from None


# --------------------------------------------------------------------------- whose files


@dataclass(frozen=True)
class Whose:
    """The person whose agents a follower manages, as the watchdog and the CLI see it."""

    login: str
    home: Path
    folder: Path

    @property
    def report_path(self) -> Path:
        return self.folder / REPORT_FILE

    def report(self) -> dict[str, Any] | None:
        """The follower's last report, or None (none yet, unreadable, not JSON)."""
        try:
            data = json.loads(self.report_path.read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def by(self, report: Mapping[str, Any] | None = None) -> str:
        name = (report or {}).get("by")
        return str(name) if name else "its follower"

    def phrase(self, report: Mapping[str, Any] | None = None) -> str:
        """``managed for alice by provider-fallback-agents@alice.service``."""
        return f"managed for {self.login} by {self.by(report)}"


def follower_of(state_dir: str | os.PathLike[str]) -> Whose | None:
    """The person whose agents are followed, from the follower directory's owner; None when
    there is no such directory (the watchdog then manages its own home's agents)."""
    folder = Path(state_dir) / FOLLOWER_DIR
    try:
        st = os.stat(folder)
        entry = pwd.getpwuid(st.st_uid)
    except (OSError, KeyError):
        return None
    return Whose(login=entry.pw_name, home=Path(entry.pw_dir), folder=folder)


def person_managers(agents: Sequence[AgentSpec], targets: Sequence[TargetSpec], os_name: str,
                    windows: WindowsSide | None, *, home: Path, folder: Path,
                    env: Mapping[str, str] | None = None, key_command: Sequence[str] = ()
                    ) -> dict[str, AgentManager]:
    """The managers of a person's agents, by side: ``""`` for their home, with the records
    in the follower's directory, and :data:`WINDOWS_SUFFIX` for their Windows profile (WSL)
    when ``windows`` names it. What the follower applies with and the CLI reads and releases
    with: the same homes, targets and records."""
    sides = {"": AgentManager(agents, targets, home=home, records_dir=folder / RECORDS_DIR,
                              os_name=os_name, env=env, key_command=key_command)}
    if windows is not None:
        sides[WINDOWS_SUFFIX] = AgentManager(
            agents, windows.targets, home=windows.home,
            records_dir=folder / WINDOWS_RECORDS_DIR, os_name="windows", env=env,
            key_command=key_command)
    return sides


def applied_result(name: str, label: str, target: str | None, report: Mapping[str, Any] | None,
                   decision_id: str, whose: str) -> AgentResult | None:
    """What the follower reported for ``name`` under decision ``decision_id``, or None when
    it has not applied that decision yet."""
    if not report or report.get("decision") != decision_id:
        return None
    for entry in report.get("agents", []):
        if isinstance(entry, dict) and entry.get("agent") == name:
            return AgentResult(name, label, entry.get("target", target),
                               changed=bool(entry.get("changed")), error=entry.get("error"),
                               restart=str(entry.get("restart") or ""),
                               files=[str(f) for f in entry.get("files", [])], whose=whose)
    return None


# --------------------------------------------------------------------------- the follower


class Follower:
    """Applies the watchdog's decisions to the person's files (runs as the person)."""

    def __init__(self, state_dir: str | os.PathLike[str], *, by: str,
                 home: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, key_command: Sequence[str] = ()
                 ) -> None:
        self.decision_path = Path(state_dir) / DECISION_FILE
        self.folder = Path(state_dir) / FOLLOWER_DIR
        self.by = by
        self.home = Path(home) if home is not None else Path.home()
        self.env = os.environ if env is None else env
        self.key_command = tuple(key_command)
        self.decision: Decision | None = None
        self.manager: AgentManager | None = None
        #: The person's Windows-side agents (WSL), when the decision names their profile.
        self.windows: AgentManager | None = None
        self._stamp: FileStamp | None = None
        self._problem: str | None = None
        self._last: bytes | None = None
        self._hints: dict[str, tuple[str | None, str]] = {}
        #: Agents whose files this decision changed: the report says what a decision did,
        #: not what the last tick did (so it is written once per change, not twice).
        self._changed: set[str] = set()

    def _load(self) -> None:
        """Re-read the decision when its stamp moved (one stat per tick otherwise)."""
        now = stamp(self.decision_path)
        if now == self._stamp:
            return
        self._stamp = now
        try:
            with open(self.decision_path, "rb") as handle:
                raw = handle.read(MAX_DECISION_BYTES + 1)
            if len(raw) > MAX_DECISION_BYTES:
                raise DecisionError(f"{self.decision_path} is larger than "
                                    f"{MAX_DECISION_BYTES} bytes: not a decision")
            decision = parse_decision(self.decision_path, raw)
        except FileNotFoundError:
            self._problem = (f"no decision yet at {self.decision_path}: the watchdog "
                             "writes it on its first tick")
            return
        except OSError as exc:
            self._problem = (f"cannot read {self.decision_path}: {exc.strerror or exc}: "
                             "the state directory must be traversable by the follower")
            return
        except DecisionError as exc:
            self._problem = str(exc)
            return
        self._problem = None
        old = self.decision
        if old is None or old.id != decision.id:
            self._changed.clear()
        if (self.manager is None or old is None or old.agents != decision.agents
                or old.targets != decision.targets or old.os != decision.os
                or old.windows != decision.windows):
            sides = person_managers(decision.agents, decision.targets, decision.os,
                                    decision.windows, home=self.home, folder=self.folder,
                                    env=self.env, key_command=self.key_command)
            self.manager, self.windows = sides[""], sides.get(WINDOWS_SUFFIX)
        self.decision = decision

    def tick(self) -> bool:
        """Apply the current decision once; True when the report was rewritten."""
        self._load()
        results: list[AgentResult] = []
        decision, manager = self.decision, self.manager
        if decision is not None and manager is not None:
            for spec in decision.agents:
                results.append(self._apply(manager, decision, spec.name))
            if self.windows is not None:
                results += [self._apply(self.windows, decision, spec.name, WINDOWS_SUFFIX)
                            for spec in decision.agents]
        report = {"by": self.by, "login": _login(), "home": str(self.home),
                  "decision": decision.id if decision else None,
                  "problem": self._problem, "agents": [r.to_json() for r in results]}
        data = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode()
        if data == self._last:
            return False
        try:
            atomic_write(self.folder / REPORT_FILE, data, new_mode=0o644)
        except OSError as exc:
            log.error("cannot write %s: %s", self.folder / REPORT_FILE, exc)
            return False
        self._last = data
        for result in results:
            if result.error and not result.error.startswith("released"):
                log.warning("%s left untouched: %s", result.agent, result.error)
        return True

    def _apply(self, manager: AgentManager, decision: Decision, name: str,
               side: str = "") -> AgentResult:
        label = manager.adapter(name).label + (" (Windows)" if side else "")
        wanted = decision.targets_of.get(name)
        target = manager.targets.get(wanted or "")
        if target is None:
            why = decision.why.get(name) or f"the decision names no target for {label}"
            return AgentResult(name + side, label, None, error=why)
        result = manager.apply(name, target)
        result.agent, result.label = name + side, label
        name += side
        # "restart your session to follow" stays until the agent's next switch.
        seen_target, hint = self._hints.get(name, (None, ""))
        if result.changed:
            self._changed.add(name)
            self._hints[name] = (target.name, result.restart)
        elif result.ok and seen_target == target.name:
            result.restart = hint
        result.changed = name in self._changed
        return result

    def run(self, stop: threading.Event, interval: float = POLL_INTERVAL_S) -> None:
        """Tick every ``interval`` until ``stop`` is set (SIGTERM sets it)."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick must not end the follower
                log.exception("follower tick failed")
            stop.wait(interval)


def _login() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
