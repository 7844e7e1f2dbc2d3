"""A simulated Windows host behind the fake pywinrm, for the deploy's end-to-end test.

It answers at the contract of this project's own scripts, not by running PowerShell:

* a fact script (first line ``# fact <Name> {args}``) is answered with the JSON that fact's
  PowerShell prints, from the host's state;
* an upload (``# put_file {...}``) is decoded from standard input, its SHA256 checked, and the
  file stored (its directory must exist, as on Windows);
* an operation script (``# op <kind>``) changes the state according to the values its
  top-level ``$Name = ...`` assignments hold, read back with tree-sitter-powershell (so they
  are exactly what PowerShell would read), and is recorded in order.

Every exchange is kept (:attr:`FakeWindows.exchanges`), the session as the host saw it. What
PowerShell and Windows really do with these scripts only a real host proves
(tests/host/windows).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Any

from tasks.windows.facts import ALL_PROFILES, task_folder_path
from tests.support.powershell import script_assignments
from tests.tasks.windows.fakewinrm import body

Answer = tuple[int, bytes, bytes]


def _key(path: str) -> str:
    return path.rstrip("\\").casefold()


_TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
#: The sequence of a trigger's children (Task Scheduler schema: triggerBaseType, then the
#: BootTrigger's Delay or the LogonTrigger's UserId and Delay). Task Scheduler validates a
#: definition against its schema and refuses one out of order (SCHED_E_MALFORMEDXML).
_TRIGGER_SEQUENCE = {
    "BootTrigger": ("Enabled", "StartBoundary", "EndBoundary", "Repetition",
                    "ExecutionTimeLimit", "Delay"),
    "LogonTrigger": ("Enabled", "StartBoundary", "EndBoundary", "Repetition",
                     "ExecutionTimeLimit", "UserId", "Delay"),
}
#: What Task Scheduler gives a task registered without a SecurityDescriptor, as far as this
#: fake assumes: nothing for the (filtered) account itself. Only a real host tells.
DEFAULT_TASK_SDDL = "D:(A;;FA;;;BA)(A;;FA;;;SY)"


#: Operations Windows refuses to a non-elevated token: EventLog.CreateEventSource searches
#: every log, the Security log included (learn.microsoft.com, EventLog.CreateEventSource:
#: "you must have administrative privileges"); changing the firewall's rules (INetFwRules);
#: registering a task with a boot trigger ("Only a member of the Administrators group can
#: create a task with a boot trigger", BootTrigger element); setting a directory's ACL
#: beyond what its owner may.
ADMIN_OPS = frozenset({"eventlog.create", "firewall.create", "firewall.update",
                       "firewall.delete", "scheduled_task.register"})


def inherited_acl(owner: str = "S-1-5-32-544") -> dict[str, Any]:
    """A new directory under C:\\ProgramData as an elevated administrator makes it: owned by
    Administrators, inheriting ProgramData's DACL, whose BUILTIN\\Users entry lets any user
    create files and folders (the review's H3; `icacls C:\\ProgramData` on a host shows it)."""
    return {"owner": owner, "protected": False, "rules": [
        {"sid": "S-1-5-18", "rights": 0x1F01FF, "type": 0, "inherited": True,
         "inheritance": 3, "propagation": 0},
        {"sid": "S-1-5-32-544", "rights": 0x1F01FF, "type": 0, "inherited": True,
         "inheritance": 3, "propagation": 0},
        {"sid": "S-1-5-32-545", "rights": 0x1200A9, "type": 0, "inherited": True,
         "inheritance": 3, "propagation": 0},
        {"sid": "S-1-5-32-545", "rights": 0x116, "type": 0, "inherited": True,
         "inheritance": 1, "propagation": 0}]}


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", duration)
    if not match:
        raise AssertionError(f"(XML) {duration!r} is not a duration")
    days, hours, minutes, secs = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def check_task_xml(definition: str) -> ET.Element:
    """Refuse a definition as Register-ScheduledTask -Xml would, where this fake can tell.

    * An XML declaration naming an encoding other than UTF-16: the definition travels as a
      (UTF-16) BSTR and MSXML refuses "Switch from current encoding to specified encoding
      not supported" (the error Register-ScheduledTask and schtasks /XML print).
    * A trigger's children out of the schema's sequence, a UserId in a BootTrigger (the
      bootTriggerType has none), a Repetition Interval outside PT1M..P31D (Interval
      (repetitionType) element: "the minimum time allowed is 1 minute").
    """
    declaration = re.match(r"\s*<\?xml[^>]*\?>", definition)
    if declaration and re.search(r"encoding=[\"'](?!utf-16)", declaration.group(0), re.I):
        raise AssertionError("(1,39)::ERROR: Switch from current encoding to specified "
                             "encoding not supported.")
    root = ET.fromstring(definition[declaration.end():] if declaration else definition)  # noqa: S314
    for trigger in root.iter():
        kind = trigger.tag.removeprefix(_TASK_NS)
        if kind not in _TRIGGER_SEQUENCE:
            continue
        order = _TRIGGER_SEQUENCE[kind]
        names = [child.tag.removeprefix(_TASK_NS) for child in trigger]
        unknown = [n for n in names if n not in order]
        if unknown:
            raise AssertionError(f"(XML) {kind} cannot hold {unknown}")
        if names != sorted(names, key=order.index):
            raise AssertionError(f"(XML) {kind} children out of sequence: {names}")
        interval = trigger.findtext(f"{_TASK_NS}Repetition/{_TASK_NS}Interval")
        if interval is not None and not 60 <= _seconds(interval) <= 31 * 86400:
            raise AssertionError(f"(XML) Repetition Interval {interval} outside PT1M..P31D")
    return root


def values(script: str) -> dict[str, Any]:
    """Top-level ``$Name = value`` assignments: literals (tree-sitter), booleans, numbers."""
    literals = script_assignments(script)
    out: dict[str, Any] = {}
    for match in re.finditer(r"^\$([A-Za-z][A-Za-z0-9]*) = (.*)$", script, re.MULTILINE):
        name, raw = match.groups()
        if name in out:
            continue
        if raw in ("$true", "$false"):
            out[name] = raw == "$true"
        elif re.fullmatch(r"-?\d+", raw):
            out[name] = int(raw)
        elif raw.startswith("@("):
            out[name] = literals.get(name, [])
        elif literals.get(name):
            out[name] = literals[name][0]
    return out


@dataclass
class Exchange:
    label: str
    script: str
    stdin_bytes: int
    code: int
    stdout: str


@dataclass
class FakeWindows:
    """The host's state and the record of what was done to it."""

    account: tuple[str, str, bool] = ("WIN-TEST\\pavel", "S-1-5-21-1111-2222-3333-1001", True)
    pythons: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    rules: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    venvs: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: Directory owner and DACL by path key; a directory without an entry has what a new
    #: directory under C:\ProgramData gets (see :func:`inherited_acl`).
    acls: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)

    # ------------------------------------------------------------------ protocol

    def __call__(self, script: str, stdin: bytes) -> Answer:
        text = body(script)
        first = text.splitlines()[0]
        try:
            if first.startswith("# fact "):
                _, _, name, args = first.split(" ", 3)
                answer = self.fact(name, json.loads(args))
                label = f"fact {name}"
            elif first.startswith("# put_file "):
                answer = self.put(json.loads(first.split(" ", 2)[2]), stdin)
                label = "put_file"
            elif first.startswith("# op "):
                kind = first.split(" ", 2)[2]
                answer = self.op(kind, values(text), stdin)
                label = f"op {kind}"
            else:
                raise AssertionError(f"unexpected script: {first!r}")
        except AssertionError as exc:
            answer = (1, b"", str(exc).encode())
            label = "error"
        code, out, _ = answer
        self.exchanges.append(Exchange(label, text, len(stdin), code,
                                       out.decode("utf-8", "replace")))
        return answer

    def changes(self) -> list[Exchange]:
        return [e for e in self.exchanges if not e.label.startswith("fact ")]

    # ------------------------------------------------------------------ state

    def _is_dir(self, path: str) -> bool:
        return _key(path) in self.dirs or re.fullmatch(r"[a-z]:", _key(path)) is not None

    def _mkdir(self, path: str) -> None:
        p = PureWindowsPath(path)
        for part in [p, *p.parents]:
            if str(part) != part.anchor:
                self.dirs.add(_key(str(part)))

    def _file(self, path: str) -> bytes | None:
        return self.files.get(_key(path))

    # ------------------------------------------------------------------ facts

    def fact(self, name: str, args: dict[str, Any]) -> Answer:
        result: Any
        if name == "File":
            data = self._file(args["path"])
            if data is not None:
                result = {"exists": True, "type": "file",
                          "sha256": hashlib.sha256(data).hexdigest().upper(), "size": len(data)}
            elif self._is_dir(args["path"]):
                result = {"exists": True, "type": "directory", "sha256": None, "size": None}
            else:
                result = {"exists": False, "type": None, "sha256": None, "size": None}
        elif name == "Directory":
            if self._is_dir(args["path"]):
                result = {"exists": True, "type": "directory"}
            elif self._file(args["path"]) is not None:
                result = {"exists": True, "type": "file"}
            else:
                result = {"exists": False, "type": None}
        elif name == "DirectoryAcl":
            result = {"exists": False, "owner": None, "protected": False, "rules": []}
            if self._is_dir(args["path"]):
                result = {"exists": True, **self.acls.get(_key(args["path"]), inherited_acl())}
        elif name == "FirewallRule":
            result = [r for r in self.rules if r["name"].casefold() == args["rule"].casefold()]
        elif name == "ScheduledTask":
            task = self.tasks.get((task_folder_path(args["folder"]).casefold(),
                                   args["task"].casefold()))
            result = {"exists": False} if task is None else {
                "exists": True, "enabled": task["enabled"], "state": task["state"],
                "last_result": 0, "last_run": "/Date(1764151205000)/", "xml": task["xml"],
                "sddl": task["sddl"]}
        elif name == "EventLogSource":
            log = self.sources.get(args["source"].casefold())
            result = {"exists": log is not None, "log": log}
        elif name == "PythonInterpreter":
            version = self.pythons.get(_key(args["path"]))
            result = {"exists": version is not None, "version": version}
        elif name == "Venv":
            venv = self.venvs.get(_key(args["path"]))
            result = {"exists": False, "version": None, "home": None, "marker": None} \
                if venv is None else {"exists": True, **venv}
        elif name == "UserEnvironmentVariable":
            value = self.env.get(args["variable"])
            result = {"present": bool(value), "digest": None if not value else hmac.new(
                args["salt"].encode(), value.encode(), hashlib.sha256).hexdigest()}
        elif name == "CurrentUser":
            account, sid, elevated = self.account
            result = {"name": account, "sid": sid, "elevated": elevated}
        else:
            raise AssertionError(f"no such fact {name}")
        return 0, json.dumps(result).encode(), b""

    # ------------------------------------------------------------------ uploads

    def put(self, meta: dict[str, Any], stdin: bytes) -> Answer:
        data = b"".join(base64.b64decode(line) for line in stdin.split(b"\r\n") if line)
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["sha256"] or len(data) != meta["size"]:
            return 3, json.dumps({"sha256": digest, "size": len(data)}).encode(), b""
        parent = str(PureWindowsPath(meta["dest"]).parent)
        if not self._is_dir(parent):
            raise AssertionError(f"Could not find a part of the path '{meta['dest']}'")
        replaced = _key(meta["dest"]) in self.files
        self.files[_key(meta["dest"])] = data
        return 0, json.dumps({"sha256": digest, "size": len(data),
                              "replaced": replaced}).encode(), b""

    # ------------------------------------------------------------------ operations

    def op(self, kind: str, v: dict[str, Any], stdin: bytes) -> Answer:
        if kind in ADMIN_OPS and not self.account[2]:
            raise AssertionError(f"{kind}: Access is denied. (Exception from HRESULT: "
                                 "0x80070005 (E_ACCESSDENIED))")
        if kind == "directory.create":
            self._mkdir(v["Path"])
        elif kind == "directory.acl":
            if not self._is_dir(v["Path"]):
                raise AssertionError(f"Could not find a part of the path '{v['Path']}'")
            grants = [(sid, 0x1F01FF) for sid in v["FullControl"]] + \
                [(sid, 0x1301BF) for sid in v["Modify"]]
            owner = self.acls.get(_key(v["Path"]), inherited_acl())["owner"]
            self.acls[_key(v["Path"])] = {"owner": owner, "protected": True, "rules": [
                {"sid": sid, "rights": rights, "type": 0, "inherited": False,
                 "inheritance": 3, "propagation": 0} for sid, rights in grants]}
        elif kind == "firewall.create":
            self.rules.append({
                "name": v["RuleName"], "description": v.get("Description"),
                "enabled": v.get("Enabled", False), "direction": v.get("Direction", 1),
                "action": v.get("Action", 1), "protocol": v.get("Protocol", 256),
                "local_port": v.get("LocalPort", "*"), "remote_port": v.get("RemotePort", "*"),
                "profiles": v.get("Profiles", ALL_PROFILES),
                "remote_addresses": v.get("RemoteAddresses", "*"),
                "local_addresses": v.get("LocalAddresses", "*"), "program": v.get("Program")})
        elif kind == "firewall.delete":
            self.rules = [r for r in self.rules if r["name"].casefold() != v["RuleName"].casefold()]
        elif kind == "scheduled_task.register":
            key = (task_folder_path(v["TaskPath"]).casefold(), v["TaskName"].casefold())
            old = self.tasks.get(key)
            root = check_task_xml(v["Definition"])
            sddl = root.findtext(f"{_TASK_NS}RegistrationInfo/{_TASK_NS}SecurityDescriptor")
            enabled = root.findtext(
                "{http://schemas.microsoft.com/windows/2004/02/mit/task}Settings/"
                "{http://schemas.microsoft.com/windows/2004/02/mit/task}Enabled",
                "true") == "true"
            self.tasks[key] = {"xml": v["Definition"], "enabled": enabled,
                               "state": old["state"] if old else 3,
                               "sddl": sddl or DEFAULT_TASK_SDDL}
        elif kind == "scheduled_task.security":
            self._task(v)["sddl"] = v["Sddl"]
        elif kind in ("scheduled_task.run", "scheduled_task.restart"):
            self._task(v)["state"] = 4
        elif kind == "scheduled_task.restart_script":
            pass  # manage-litellm.ps1 -Action restart: the task keeps running
        elif kind == "eventlog.create":
            self.sources[v["Source"].casefold()] = v["LogName"]
        elif kind == "python.venv":
            version = next(iter(self.pythons.values()), "3.11.9")
            self.venvs[_key(v["Venv"])] = {"version": version,
                                           "home": "C:\\Program Files\\Python311",
                                           "marker": None}
        elif kind == "python.pip_install":
            venv = str(PureWindowsPath(v["Marker"]).parent)
            self.venvs[_key(venv)]["marker"] = v["MarkerText"]
        elif kind == "environment.set_user_variable":
            encoded = stdin.decode("ascii").strip()
            self.env[v["Variable"]] = base64.b64decode(encoded).decode("utf-8")
        else:
            raise AssertionError(f"the fake host does not know op {kind}")
        return 0, b"", b""

    def _task(self, v: dict[str, Any]) -> dict[str, Any]:
        return self.tasks[(task_folder_path(v["TaskFolder"]).casefold(),
                           v["TaskName"].casefold())]


def summary(exchange: Exchange) -> str:
    """One line naming a change and what it changed, for the expected-commands file."""
    if exchange.label == "put_file":
        meta = json.loads(exchange.script.splitlines()[0].split(" ", 2)[2])
        return f"put_file {meta['dest']}"
    v = values(exchange.script)
    for key in ("Path", "RuleName", "Source", "Variable", "Installer", "Venv", "Wheel",
                "Script"):
        if key in v:
            return f"{exchange.label} {v[key]}"
    if "TaskName" in v:
        folder = str(v.get("TaskPath") or v.get("TaskFolder"))
        return f"{exchange.label} {task_folder_path(folder).rstrip(chr(92))}\\{v['TaskName']}"
    return exchange.label
