"""pyinfra facts for Windows hosts: small PowerShell queries answered with ``ConvertTo-Json``.

Never table text (``Format-List``, ``schtasks /query``, ``netsh``): tables change with the
Windows display language and the console width. Each script prints ONE compressed JSON document
(``-InputObject``, so an array of one stays an array), with enums as numbers (locale-free) and
``-Depth`` set (PowerShell's default of 2 turns deeper objects into strings). The parsers still
accept what other PowerShell versions print: one object where an array was expected, no output
at all, ``null`` fields, enum names instead of numbers, and ``\\/Date(ms)\\/`` dates.

Every script starts with a comment line naming the fact and its arguments as JSON (see
:func:`tasks.windows.powershell.comment`), which is what a reader of the host's PowerShell logs
sees first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pyinfra.api.exceptions import FactProcessError
from pyinfra.api.facts import FactBase
from typing_extensions import override

from tasks.windows import powershell as ps
from tasks.windows import taskxml

T = TypeVar("T")


def load_json(output: list[str]) -> Any:
    """The JSON document of a fact's output lines (None for no output)."""
    text = "\n".join(output).strip().removeprefix("\ufeff")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FactProcessError(f"expected JSON from PowerShell, got {text[:200]!r}: {exc}") \
            from None


def as_list(value: Any) -> list[Any]:
    """PowerShell's shapes of "zero or more": null, one object, or an array."""
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return [value]


def as_object(value: Any, fact: str) -> dict[str, Any]:
    items = as_list(value)
    if len(items) != 1 or not isinstance(items[0], dict):
        raise FactProcessError(f"{fact}: expected one JSON object, got {value!r}")
    return items[0]


_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def json_date(value: Any) -> datetime | None:
    """A date as Windows PowerShell 5.1 (``/Date(ms)/``) or PowerShell 7 (ISO 8601) prints it."""
    if value in (None, ""):
        return None
    text = str(value)
    match = _MS_DATE.match(text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _script(fact: str, args: dict[str, Any], body: str) -> str:
    return f"{ps.comment(f'fact {fact}', args)}\n{body.strip()}"


def _json(expression: str) -> str:
    return f"ConvertTo-Json -Compress -Depth 6 -InputObject ({expression})"


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class PathInfo:
    """A path on the host: whether it exists, as what, and (files) its size and SHA256."""

    exists: bool
    kind: str | None = None  # "file" or "directory"
    sha256: str | None = None  # lower-case hex
    size: int | None = None

    @property
    def is_file(self) -> bool:
        return self.exists and self.kind == "file"

    @property
    def is_directory(self) -> bool:
        return self.exists and self.kind == "directory"


def _path_info(value: Any, fact: str) -> PathInfo:
    obj = as_object(value, fact)
    if not obj.get("exists"):
        return PathInfo(False)
    sha = obj.get("sha256")
    size = obj.get("size")
    return PathInfo(True, _str(obj.get("type")).lower() or None,
                    sha.lower() if isinstance(sha, str) else None,
                    int(size) if size is not None else None)


class File(FactBase[PathInfo]):
    """A file: ``PathInfo(exists, kind, sha256, size)``; the SHA256 is lower-case hex, as
    hashlib prints it (``Get-FileHash`` prints upper case: compared as is, every put would
    look like a change)."""

    @staticmethod
    @override
    def default() -> PathInfo:
        return PathInfo(False)

    @override
    def command(self, path: str) -> str:
        return _script("File", {"path": path}, f"""
$Path = {ps.literal(path)}
$item = Get-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue
$result = [ordered]@{{ exists = $false; type = $null; sha256 = $null; size = $null }}
if ($null -ne $item) {{
    $result.exists = $true
    if ($item.PSIsContainer) {{
        $result.type = 'directory'
    }} else {{
        $result.type = 'file'
        $result.size = [long]$item.Length
        $result.sha256 = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
    }}
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> PathInfo:
        return _path_info(load_json(output), "File")


class Directory(FactBase[PathInfo]):
    """A directory: ``PathInfo(exists, kind)`` (nothing is hashed)."""

    @staticmethod
    @override
    def default() -> PathInfo:
        return PathInfo(False)

    @override
    def command(self, path: str) -> str:
        return _script("Directory", {"path": path}, f"""
$Path = {ps.literal(path)}
$item = Get-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue
$result = [ordered]@{{ exists = ($null -ne $item); type = $null }}
if ($null -ne $item) {{
    $result.type = $(if ($item.PSIsContainer) {{ 'directory' }} else {{ 'file' }})
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> PathInfo:
        return _path_info(load_json(output), "Directory")


#: Well-known SIDs (locale-free, unlike BUILTIN\\Administrators and NT AUTHORITY\\SYSTEM).
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"


@dataclass(frozen=True)
class AccessRule:
    """One access rule of a DACL, as .NET's FileSystemAccessRule reports it (numbers)."""

    sid: str
    rights: int  # FileSystemRights
    allow: bool
    inherited: bool
    inheritance: int  # InheritanceFlags: 1 ContainerInherit, 2 ObjectInherit
    propagation: int  # PropagationFlags


@dataclass(frozen=True)
class AclInfo:
    """A directory's owner and DACL: whether it inherits (``protected`` False) and its rules."""

    exists: bool
    owner: str | None = None
    protected: bool = False
    rules: tuple[AccessRule, ...] = ()


class DirectoryAcl(FactBase[AclInfo]):
    """The owner (a SID) and the access rules of a directory, SIDs rather than names (names
    depend on the display language)."""

    @staticmethod
    @override
    def default() -> AclInfo:
        return AclInfo(False)

    @override
    def command(self, path: str) -> str:
        return _script("DirectoryAcl", {"path": path}, f"""
$Path = {ps.literal(path)}
$result = [ordered]@{{ exists = $false; owner = $null; protected = $false; rules = @() }}
if ([System.IO.Directory]::Exists($Path)) {{
    $sidType = [System.Security.Principal.SecurityIdentifier]
    $acl = [System.IO.Directory]::GetAccessControl($Path)
    $result.exists = $true
    $result.owner = $acl.GetOwner($sidType).Value
    $result.protected = [bool]$acl.AreAccessRulesProtected
    $result.rules = @($acl.GetAccessRules($true, $true, $sidType) | ForEach-Object {{
        [ordered]@{{
            sid = $_.IdentityReference.Value
            rights = [int]$_.FileSystemRights
            type = [int]$_.AccessControlType
            inherited = [bool]$_.IsInherited
            inheritance = [int]$_.InheritanceFlags
            propagation = [int]$_.PropagationFlags
        }}
    }})
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> AclInfo:
        obj = as_object(load_json(output), "DirectoryAcl")
        if not obj.get("exists"):
            return AclInfo(False)
        rules = tuple(AccessRule(
            sid=_str(r.get("sid")).upper(), rights=int(r.get("rights") or 0),
            allow=r.get("type") in (0, "Allow"),
            inherited=r.get("inherited") in (True, "True", "true", 1),
            inheritance=int(r.get("inheritance") or 0),
            propagation=int(r.get("propagation") or 0))
            for r in as_list(obj.get("rules")) if isinstance(r, dict))
        return AclInfo(True, _str(obj.get("owner")).upper() or None,
                       obj.get("protected") in (True, "True", "true", 1), rules)


# --------------------------------------------------------------------------- firewall

#: INetFwRule's numbers (the COM API answers in numbers in every display language).
DIRECTIONS = {1: "in", 2: "out"}
ACTIONS = {0: "block", 1: "allow"}
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmpv4", 58: "icmpv6", 256: "any"}
PROFILE_BITS = {1: "Domain", 2: "Private", 4: "Public"}
ALL_PROFILES = 0x7FFFFFFF


def profiles_from_mask(mask: int) -> tuple[str, ...]:
    if mask == ALL_PROFILES or mask & 7 == 7:
        return ("Domain", "Private", "Public")
    return tuple(name for bit, name in PROFILE_BITS.items() if mask & bit)


def _enum(value: Any, names: dict[int, str]) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return names.get(value, str(value))
    text = _str(value).strip().lower()
    aliases = {"inbound": "in", "outbound": "out", "1": "in", "2": "out"}
    return aliases.get(text, text)


def _split(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


@dataclass(frozen=True)
class FirewallRuleInfo:
    """One rule as the firewall reports it, normalized (``in``/``out``, ``allow``/``block``,
    ``tcp``/``udp``/``any``, profile names, addresses as lists; ``*`` means any)."""

    name: str
    enabled: bool
    direction: str
    action: str
    protocol: str
    local_port: str
    remote_port: str
    profiles: tuple[str, ...]
    remote_addresses: tuple[str, ...]
    local_addresses: tuple[str, ...]
    program: str
    description: str


def _firewall_rule(obj: dict[str, Any]) -> FirewallRuleInfo:
    mask = obj.get("profiles")
    if isinstance(mask, int):
        profiles = profiles_from_mask(mask)
    else:
        names = [p.capitalize() for p in _split(mask)]
        profiles = ("Domain", "Private", "Public") if "Any" in names or "All" in names \
            else tuple(sorted(names))
    return FirewallRuleInfo(
        name=_str(obj.get("name")),
        enabled=obj.get("enabled") in (True, "True", "true", 1),
        direction=_enum(obj.get("direction"), DIRECTIONS),
        action=_enum(obj.get("action"), ACTIONS),
        protocol=_enum(obj.get("protocol"), PROTOCOLS),
        local_port=_str(obj.get("local_port")) or "*",
        remote_port=_str(obj.get("remote_port")) or "*",
        profiles=profiles,
        remote_addresses=_split(obj.get("remote_addresses")) or ("*",),
        local_addresses=_split(obj.get("local_addresses")) or ("*",),
        program=_str(obj.get("program")),
        description=_str(obj.get("description")),
    )


class FirewallRule(FactBase[list[FirewallRuleInfo]]):
    """Every rule whose name is ``rule`` (the name the firewall UI and ``netsh`` show; the COM
    API's ``Name``, NetSecurity's ``DisplayName``), compared as PowerShell's ``-eq`` does
    (ignoring case). Usually zero or one; more is reported to the user by the operation."""

    default = list

    @override
    def command(self, rule: str) -> str:
        return _script("FirewallRule", {"rule": rule}, f"""
$RuleName = {ps.literal(rule)}
$policy = New-Object -ComObject HNetCfg.FwPolicy2
$found = @($policy.Rules | Where-Object {{ $_.Name -eq $RuleName }} | ForEach-Object {{
    [ordered]@{{
        name = $_.Name
        description = $_.Description
        enabled = [bool]$_.Enabled
        direction = [int]$_.Direction
        action = [int]$_.Action
        protocol = [int]$_.Protocol
        local_port = $_.LocalPorts
        remote_port = $_.RemotePorts
        profiles = [int]$_.Profiles
        remote_addresses = $_.RemoteAddresses
        local_addresses = $_.LocalAddresses
        program = $_.ApplicationName
    }}
}})
{_json("$found")}""")

    @override
    def process(self, output: list[str]) -> list[FirewallRuleInfo]:
        return [_firewall_rule(obj) for obj in as_list(load_json(output))
                if isinstance(obj, dict)]


# --------------------------------------------------------------------------- scheduled tasks

#: TASK_STATE (the COM API's numbers; Get-ScheduledTask's enum names are accepted too).
TASK_STATES = {0: "unknown", 1: "disabled", 2: "queued", 3: "ready", 4: "running"}


@dataclass(frozen=True)
class ScheduledTaskInfo:
    """A registered task: its state, whether it is enabled, and its definition."""

    exists: bool
    enabled: bool = False
    state: str = "unknown"
    xml: str = ""
    last_result: int | None = None
    last_run: datetime | None = None
    #: The task's DACL in SDDL (IRegisteredTask.GetSecurityDescriptor(4): DACL only).
    sddl: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def definition(self) -> taskxml.Definition:
        return taskxml.parse(self.xml)


def task_folder_path(folder: str) -> str:
    """Task Scheduler's folder path without its trailing backslash (the root is ``\\``)."""
    trimmed = folder.rstrip("\\")
    return trimmed or "\\"


class ScheduledTask(FactBase[ScheduledTaskInfo]):
    """The task ``task`` in folder ``folder`` (``\\ProviderFallback\\``), looked up exactly
    through the Task Scheduler COM API (``Get-ScheduledTask -TaskName`` reads wildcards)."""

    @staticmethod
    @override
    def default() -> ScheduledTaskInfo:
        return ScheduledTaskInfo(False)

    @override
    def command(self, task: str, folder: str = "\\") -> str:
        return _script("ScheduledTask", {"task": task, "folder": folder}, f"""
$TaskName = {ps.literal(task)}
$TaskFolder = {ps.literal(task_folder_path(folder))}
$service = New-Object -ComObject 'Schedule.Service'
$service.Connect()
$registered = $null
try {{
    $registered = $service.GetFolder($TaskFolder).GetTask($TaskName)
}} catch {{
    $registered = $null
}}
$result = [ordered]@{{ exists = $false }}
if ($null -ne $registered) {{
    $result.exists = $true
    $result.enabled = [bool]$registered.Enabled
    $result.state = [int]$registered.State
    $result.last_result = [long]$registered.LastTaskResult
    $result.last_run = $registered.LastRunTime.ToUniversalTime().ToString('o')
    $result.xml = [string]$registered.Xml
    $result.sddl = [string]$registered.GetSecurityDescriptor(4)
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> ScheduledTaskInfo:
        obj = as_object(load_json(output), "ScheduledTask")
        if not obj.get("exists"):
            return ScheduledTaskInfo(False)
        state = obj.get("state")
        state_name = TASK_STATES.get(state, str(state)) if isinstance(state, int) \
            else _str(state).lower() or "unknown"
        last = obj.get("last_result")
        try:
            last_run = json_date(obj.get("last_run"))
        except ValueError:
            last_run = None
        # Never run: LastRunTime is 1899-12-30 (OLE zero) in local time.
        if last_run is not None and last_run.year < 1901:
            last_run = None
        return ScheduledTaskInfo(
            exists=True,
            enabled=obj.get("enabled") in (True, "True", "true", 1),
            state=state_name,
            xml=_str(obj.get("xml")),
            last_result=int(last) if last is not None else None,
            last_run=last_run,
            sddl=_str(obj.get("sddl")),
        )


# --------------------------------------------------------------------------- event log


@dataclass(frozen=True)
class EventSourceInfo:
    exists: bool
    log: str | None = None


class EventLogSource(FactBase[EventSourceInfo]):
    """Whether an Event Log source is registered, and in which log (needs an administrator:
    looking for a source reads every log's registry key, the Security log's included)."""

    @staticmethod
    @override
    def default() -> EventSourceInfo:
        return EventSourceInfo(False)

    @override
    def command(self, source: str) -> str:
        return _script("EventLogSource", {"source": source}, f"""
$Source = {ps.literal(source)}
$result = [ordered]@{{ exists = $false; log = $null }}
if ([System.Diagnostics.EventLog]::SourceExists($Source)) {{
    $result.exists = $true
    $result.log = [System.Diagnostics.EventLog]::LogNameFromSourceName($Source, '.')
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> EventSourceInfo:
        obj = as_object(load_json(output), "EventLogSource")
        return EventSourceInfo(bool(obj.get("exists")), obj.get("log") or None)


# --------------------------------------------------------------------------- python


@dataclass(frozen=True)
class PythonInfo:
    exists: bool
    version: str | None = None  # "3.11.9"

    @property
    def minor(self) -> str | None:
        """``3.11`` from ``3.11.9``."""
        return ".".join(self.version.split(".")[:2]) if self.version else None


class PythonInterpreter(FactBase[PythonInfo]):
    """An interpreter at ``path`` and its version (asked of the interpreter itself, ``-I``:
    isolated from the user's site-packages and PYTHON* variables)."""

    @staticmethod
    @override
    def default() -> PythonInfo:
        return PythonInfo(False)

    @override
    def command(self, path: str) -> str:
        return _script("PythonInterpreter", {"path": path}, f"""
$Python = {ps.literal(path)}
$result = [ordered]@{{ exists = $false; version = $null }}
if ([System.IO.File]::Exists($Python)) {{
    $result.exists = $true
    $version = & $Python -I -c 'import sys; print(sys.version.split()[0])'
    if ($LASTEXITCODE -eq 0) {{
        $result.version = ([string]$version).Trim()
    }}
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> PythonInfo:
        obj = as_object(load_json(output), "PythonInterpreter")
        return PythonInfo(bool(obj.get("exists")), _str(obj.get("version")) or None)


@dataclass(frozen=True)
class VenvInfo:
    """A virtual environment: present when its python.exe is, with pyvenv.cfg's version and
    home, and the install marker the pip operation writes (None when absent)."""

    exists: bool
    version: str | None = None
    home: str | None = None
    marker: dict[str, Any] | None = None

    @property
    def minor(self) -> str | None:
        return ".".join(self.version.split(".")[:2]) if self.version else None


#: Written into the venv by :func:`tasks.windows.python.pip_install` after a good install.
INSTALL_MARKER = "provider-fallback-install.json"


class Venv(FactBase[VenvInfo]):
    """The venv at ``path`` (pyvenv.cfg read as key = value lines, not run)."""

    @staticmethod
    @override
    def default() -> VenvInfo:
        return VenvInfo(False)

    @override
    def command(self, path: str) -> str:
        return _script("Venv", {"path": path}, f"""
$Venv = {ps.literal(path)}
$result = [ordered]@{{ exists = $false; version = $null; home = $null; marker = $null }}
$python = [System.IO.Path]::Combine($Venv, 'Scripts', 'python.exe')
$config = [System.IO.Path]::Combine($Venv, 'pyvenv.cfg')
$marker = [System.IO.Path]::Combine($Venv, {ps.literal(INSTALL_MARKER)})
if ([System.IO.File]::Exists($python) -and [System.IO.File]::Exists($config)) {{
    $result.exists = $true
    foreach ($line in [System.IO.File]::ReadAllLines($config)) {{
        $key, $value = $line -split '=', 2
        if ($null -eq $value) {{ continue }}
        switch ($key.Trim().ToLowerInvariant()) {{
            'version' {{ $result.version = $value.Trim() }}
            'version_info' {{
                if ($null -eq $result.version) {{ $result.version = $value.Trim() }}
            }}
            'home' {{ $result.home = $value.Trim() }}
        }}
    }}
    if ([System.IO.File]::Exists($marker)) {{
        $result.marker = [System.IO.File]::ReadAllText($marker)
    }}
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> VenvInfo:
        obj = as_object(load_json(output), "Venv")
        if not obj.get("exists"):
            return VenvInfo(False)
        marker_text = obj.get("marker")
        marker: dict[str, Any] | None = None
        if isinstance(marker_text, str) and marker_text.strip():
            try:
                loaded = json.loads(marker_text.lstrip("\ufeff"))
            except ValueError:
                loaded = None  # a broken marker means: install again
            marker = loaded if isinstance(loaded, dict) else None
        elif isinstance(marker_text, dict):
            marker = marker_text
        version = _str(obj.get("version"))
        # version_info is "3.11.9.final.0": keep X.Y.Z.
        version = ".".join(version.split(".")[:3]) if version else ""
        return VenvInfo(True, version or None, _str(obj.get("home")) or None, marker)


# --------------------------------------------------------------------------- ports


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    pid: int
    process: str | None


class ListeningPorts(FactBase[list[Listener]]):
    """Every TCP listener on ``port``: address, owning process id and name."""

    default = list

    @override
    def command(self, port: int) -> str:
        return _script("ListeningPorts", {"port": int(port)}, f"""
$Port = {int(port)}
$found = @(Get-NetTCPConnection -State Listen -LocalPort $Port -ErrorAction SilentlyContinue |
    ForEach-Object {{
        $process = Get-Process -Id $_.OwningProcess -ErrorAction SilentlyContinue
        [ordered]@{{
            address = [string]$_.LocalAddress
            port = [int]$_.LocalPort
            pid = [int]$_.OwningProcess
            process = $(if ($null -ne $process) {{ $process.ProcessName }} else {{ $null }})
        }}
    }})
{_json("$found")}""")

    @override
    def process(self, output: list[str]) -> list[Listener]:
        out = []
        for obj in as_list(load_json(output)):
            if isinstance(obj, dict):
                out.append(Listener(_str(obj.get("address")), int(obj.get("port") or 0),
                                    int(obj.get("pid") or 0), obj.get("process") or None))
        return out


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class EnvVarInfo:
    """A user environment variable: present or not, and a keyed digest of its value (never
    the value): HMAC-SHA256 keyed with the salt the operation chose, lower-case hex."""

    present: bool
    digest: str | None = None


class UserEnvironmentVariable(FactBase[EnvVarInfo]):
    """Whether ``variable`` is set in the connected user's environment (HKCU\\Environment).

    The value never leaves the host; the digest lets the operation tell "set to the
    controller's value" from "set to something else" without it.
    """

    @staticmethod
    @override
    def default() -> EnvVarInfo:
        return EnvVarInfo(False)

    @override
    def command(self, variable: str, salt: str) -> str:
        return _script("UserEnvironmentVariable", {"variable": variable, "salt": salt}, f"""
$Variable = {ps.literal(variable)}
$Salt = {ps.literal(salt)}
$value = [System.Environment]::GetEnvironmentVariable($Variable, 'User')
$result = [ordered]@{{ present = $false; digest = $null }}
if (-not [string]::IsNullOrEmpty($value)) {{
    $utf8 = [System.Text.Encoding]::UTF8
    $key = $utf8.GetBytes($Salt)
    $hmac = New-Object System.Security.Cryptography.HMACSHA256 -ArgumentList (,$key)
    $hash = $hmac.ComputeHash($utf8.GetBytes($value))
    $result.present = $true
    $result.digest = -join ($hash | ForEach-Object {{ $_.ToString('x2') }})
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> EnvVarInfo:
        obj = as_object(load_json(output), "UserEnvironmentVariable")
        digest = obj.get("digest")
        return EnvVarInfo(bool(obj.get("present")),
                          digest.lower() if isinstance(digest, str) else None)


# --------------------------------------------------------------------------- account


@dataclass(frozen=True)
class AccountInfo:
    """The account WinRM runs as: ``DOMAIN\\name``, its SID, and whether the token is elevated
    (an administrator's WinRM session is, unless remote UAC filters a local account)."""

    name: str
    sid: str
    elevated: bool


class CurrentUser(FactBase[AccountInfo | None]):
    @override
    def command(self) -> str:
        return _script("CurrentUser", {}, f"""
$identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object System.Security.Principal.WindowsPrincipal -ArgumentList $identity
$result = [ordered]@{{
    name = $identity.Name
    sid = $identity.User.Value
    elevated = $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
}}
{_json("$result")}""")

    @override
    def process(self, output: list[str]) -> AccountInfo | None:
        obj = as_object(load_json(output), "CurrentUser")
        return AccountInfo(_str(obj.get("name")), _str(obj.get("sid")),
                           obj.get("elevated") in (True, "True", "true", 1))
