"""Task Scheduler definitions (task XML, schema 1.2) as data, to compare a wanted task with the
registered one.

Windows does not hand back the XML it was given: it adds the author, the date and the user (as a
name or a SID), may drop elements equal to the schema's defaults and may write durations in
another form. Comparing bytes would re-register every task on every deploy. So a definition is
reduced to what decides how the task runs (actions, triggers, principal, settings), missing
elements take the schema's default, durations are compared in seconds and booleans as booleans,
and only the fields the WANTED definition states are compared: a setting Windows adds by itself
never counts as a change.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
_NS = {"t": NAMESPACE}

#: Defaults of the Task Scheduler schema (taskschd.xsd) for settings a definition may omit.
SETTINGS_DEFAULTS: dict[str, str] = {
    "AllowStartOnDemand": "true",
    "AllowHardTerminate": "true",
    "DisallowStartIfOnBatteries": "true",
    "StopIfGoingOnBatteries": "true",
    "StartWhenAvailable": "false",
    "RunOnlyIfNetworkAvailable": "false",
    "RunOnlyIfIdle": "false",
    "WakeToRun": "false",
    "Enabled": "true",
    "Hidden": "false",
    "MultipleInstancesPolicy": "IgnoreNew",
    "ExecutionTimeLimit": "PT72H",
    "Priority": "7",
    "DeleteExpiredTaskAfter": "PT0S",
    "IdleSettings.StopOnIdleEnd": "true",
    "IdleSettings.RestartOnIdle": "false",
    "IdleSettings.Duration": "PT10M",
    "IdleSettings.WaitTimeout": "PT1H",
}
PRINCIPAL_DEFAULTS: dict[str, str] = {"RunLevel": "LeastPrivilege", "LogonType": "InteractiveToken"}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_BOOLEANS = {"true": "true", "1": "true", "false": "false", "0": "false"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def normalize(value: str) -> str:
    """Booleans as ``true``/``false``, ISO 8601 durations as seconds, other text trimmed."""
    text = value.strip()
    if text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    match = _DURATION.match(text)
    if match and text not in ("P", "PT"):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return f"{((days * 24 + hours) * 60 + minutes) * 60 + seconds}s"
    return text


def _flatten(element: ET.Element | None, prefix: str = "") -> dict[str, str]:
    """Leaf elements as ``Parent.Child: text`` (attributes as ``Parent@attr``)."""
    out: dict[str, str] = {}
    if element is None:
        return out
    for child in element:
        key = prefix + _local(child.tag)
        for attr, value in child.attrib.items():
            out[f"{key}@{attr}"] = value
        if len(child):
            out.update(_flatten(child, key + "."))
        else:
            out[key] = (child.text or "").strip()
    return out


@dataclass(frozen=True)
class Definition:
    """What decides how a task runs, each part as flat ``path: text`` pairs."""

    actions: tuple[dict[str, str], ...] = ()
    triggers: tuple[tuple[str, dict[str, str]], ...] = ()
    principal: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)


def parse(xml_text: str) -> Definition:
    """A definition from task XML (as a file or as Task Scheduler returns it).

    Raises ValueError for text that is not a task definition.
    """
    text = xml_text.lstrip("\ufeff")
    # ElementTree refuses a str that declares an encoding other than its own.
    text = re.sub(r"^<\?xml[^>]*\?>", "", text.strip())
    try:
        # Our own rendered XML or Task Scheduler's; expat refuses entity bombs since 2.4.1.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise ValueError(f"not a task definition: {exc}") from None
    if _local(root.tag) != "Task":
        raise ValueError(f"not a task definition: the root element is <{_local(root.tag)}>")
    actions = tuple(_flatten(a) | {"type": _local(a.tag)}
                    for a in root.findall("t:Actions/*", _NS))
    triggers = tuple((_local(t.tag), _flatten(t)) for t in root.findall("t:Triggers/*", _NS))
    principals = root.findall("t:Principals/t:Principal", _NS)
    principal = _flatten(principals[0]) if principals else {}
    settings = _flatten(root.find("t:Settings", _NS))
    return Definition(actions, triggers, principal, settings)


def _compare(scope: str, wanted: dict[str, str], current: dict[str, str],
             defaults: dict[str, str]) -> list[str]:
    out = []
    for key, value in wanted.items():
        have = current.get(key, defaults.get(key))
        if have is None or normalize(have) != normalize(value):
            out.append(f"{scope}.{key}: {have if have is not None else '(none)'} -> {value}")
    return out


def same_user(wanted: str, current: str, aliases: tuple[str, ...] = ()) -> bool:
    """True when two user ids name one account: equal ignoring case, or ``current`` is one of
    ``aliases`` (the account's SID, or its name with or without the domain)."""
    if wanted.casefold() == current.casefold():
        return True
    names = {a.casefold() for a in aliases if a}
    if wanted.casefold() in names and current.casefold() in names:
        return True
    short = wanted.rsplit("\\", 1)[-1].casefold()
    return short == current.rsplit("\\", 1)[-1].casefold() and "\\" not in current


def differences(wanted: Definition, current: Definition,
                user_aliases: tuple[str, ...] = ()) -> list[str]:
    """What differs, as readable lines (empty when the task already runs as wanted).

    Only fields the wanted definition states are compared; ``UserId`` is compared as an
    account (see :func:`same_user`).
    """
    out: list[str] = []
    if len(wanted.actions) != len(current.actions):
        out.append(f"actions: {len(current.actions)} -> {len(wanted.actions)}")
    else:
        for i, (w, c) in enumerate(zip(wanted.actions, current.actions, strict=True)):
            out += _compare(f"actions[{i}]", w, c, {})
    if [t for t, _ in wanted.triggers] != [t for t, _ in current.triggers]:
        out.append(f"triggers: {[t for t, _ in current.triggers]} -> "
                   f"{[t for t, _ in wanted.triggers]}")
    else:
        for i, ((kind, w), (_, c)) in enumerate(zip(wanted.triggers, current.triggers,
                                                    strict=True)):
            w_user, c_user = w.get("UserId"), c.get("UserId")
            w = {k: v for k, v in w.items() if k != "UserId"}
            out += _compare(f"triggers[{i}].{kind}", w, c, {"Enabled": "true"})
            if w_user and not (c_user and same_user(w_user, c_user, user_aliases)):
                out.append(f"triggers[{i}].{kind}.UserId: {c_user or '(none)'} -> {w_user}")
    w_principal = {k: v for k, v in wanted.principal.items() if k not in ("UserId", "@id")}
    out += _compare("principal", w_principal, current.principal, PRINCIPAL_DEFAULTS)
    w_user = wanted.principal.get("UserId")
    c_user = current.principal.get("UserId")
    if w_user and not (c_user and same_user(w_user, c_user, user_aliases)):
        out.append(f"principal.UserId: {c_user or '(none)'} -> {w_user}")
    out += _compare("settings", wanted.settings, current.settings, SETTINGS_DEFAULTS)
    return out


def with_user(xml_text: str, user: str) -> str:
    """The definition with ``user`` as the principal's and every logon trigger's ``UserId``
    (what render's register-tasks.ps1 does on the host), as text without an XML declaration.
    """
    text = re.sub(r"^<\?xml[^>]*\?>", "", xml_text.lstrip("\ufeff").strip())
    ET.register_namespace("", NAMESPACE)
    root = ET.fromstring(text)  # noqa: S314 (our own rendered XML)
    for node in (*root.findall("t:Principals/t:Principal", _NS),
                 *root.findall("t:Triggers/t:LogonTrigger", _NS)):
        user_node = node.find("t:UserId", _NS)
        if user_node is None:
            user_node = ET.Element(f"{{{NAMESPACE}}}UserId")
            if _local(node.tag) == "Principal":
                node.insert(0, user_node)
            else:
                node.append(user_node)
        user_node.text = user
    return ET.tostring(root, encoding="unicode")


# --------------------------------------------------------------------------- security

#: Task Scheduler checks a task's DACL with file access rights: reading the task
#: (GetTask) needs read access, and SchRpcRun / SchRpcStop run or stop it only "if the caller
#: has execute access to the task" ([MS-TSCH] 3.2.5.4.13 SchRpcStop). FILE_GENERIC_READ |
#: FILE_GENERIC_EXECUTE ("FRFX") is that, and no right to change or delete the task.
FILE_GENERIC_READ = 0x120089
FILE_GENERIC_EXECUTE = 0x1200A0
FILE_ALL_ACCESS = 0x1F01FF
RUN_STOP_RIGHTS = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE
_SDDL_RIGHTS = {"FA": FILE_ALL_ACCESS, "FR": FILE_GENERIC_READ, "FX": FILE_GENERIC_EXECUTE,
                "FW": 0x120116, "GA": FILE_ALL_ACCESS, "GR": FILE_GENERIC_READ,
                "GX": FILE_GENERIC_EXECUTE, "GW": 0x120116}
_SDDL_SIDS = {"SY": "S-1-5-18", "BA": "S-1-5-32-544", "LS": "S-1-5-19", "NS": "S-1-5-20",
              "AU": "S-1-5-11", "BU": "S-1-5-32-545", "WD": "S-1-1-0", "IU": "S-1-5-4",
              "BT": "S-1-5-3"}
_ACE = re.compile(r"\(([^;()]*);([^;()]*);([^;()]*);([^;()]*);([^;()]*);([^;()]*)\)")
_SID = re.compile(r"^S-1-\d+(-\d+)+$")


#: The proxy task's DACL, ``{sid}`` for the account (see :func:`run_stop_sddl`).
RUN_STOP_SDDL = "D:(A;;FA;;;SY)(A;;FA;;;BA)(A;;FRFX;;;{sid})"


def run_stop_sddl(account_sid: str) -> str:
    """The DACL of the proxy's task: SYSTEM and Administrators full control (as Task
    Scheduler's own default), and ``account_sid`` exactly the right to read, run and stop it.

    The account is the one the watchdog runs as; its task token is filtered (LeastPrivilege),
    so the Administrators entry does not apply to it, and the task was registered by the
    elevated deploy (review RISK 4).
    """
    if not _SID.match(account_sid):
        raise ValueError(f"{account_sid!r} is not a SID (S-1-5-21-...)")
    return RUN_STOP_SDDL.format(sid=account_sid)


def _rights(text: str) -> int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    mask = 0
    for i in range(0, len(text), 2):
        mask |= _SDDL_RIGHTS.get(text[i:i + 2].upper(), 0)
    return mask


def allowed_rights(sddl: str) -> dict[str, int]:
    """The access mask each SID is allowed by the DACL of ``sddl`` (aliases as SIDs; deny
    entries subtract). Enough of SDDL ([MS-DTYP] 2.5.1) to compare a task's descriptor as
    Windows writes it back (aliases or hex masks, any order) with the wanted one."""
    dacl = sddl.split("D:", 1)[-1].split("S:", 1)[0]
    allowed: dict[str, int] = {}
    denied: dict[str, int] = {}
    for kind, _flags, rights, _obj, _inherit, sid in _ACE.findall(dacl):
        sid = _SDDL_SIDS.get(sid.upper(), sid.upper())
        target = allowed if kind.upper() == "A" else denied if kind.upper() == "D" else None
        if target is not None:
            target[sid] = target.get(sid, 0) | _rights(rights)
    return {sid: mask & ~denied.get(sid, 0) for sid, mask in allowed.items()}


def grants_run_stop(sddl: str, account_sid: str) -> bool:
    """Whether ``sddl`` lets ``account_sid`` read, run and stop the task."""
    mask = allowed_rights(sddl).get(account_sid.upper(), 0)
    return mask & RUN_STOP_RIGHTS == RUN_STOP_RIGHTS


def with_security(xml_text: str, sddl: str) -> str:
    """The definition with ``sddl`` as RegistrationInfo/SecurityDescriptor: "When reading or
    writing XML for a task, the security descriptor of the task is specified using the
    SecurityDescriptor element" (IRegistrationInfo::SecurityDescriptor, learn.microsoft.com).
    """
    text = re.sub(r"^<\?xml[^>]*\?>", "", xml_text.lstrip("\ufeff").strip())
    ET.register_namespace("", NAMESPACE)
    root = ET.fromstring(text)  # noqa: S314 (our own rendered XML)
    info = root.find("t:RegistrationInfo", _NS)
    if info is None:
        info = ET.Element(f"{{{NAMESPACE}}}RegistrationInfo")
        root.insert(0, info)
    node = info.find("t:SecurityDescriptor", _NS)
    if node is None:
        node = ET.SubElement(info, f"{{{NAMESPACE}}}SecurityDescriptor")
    node.text = sddl
    return ET.tostring(root, encoding="unicode")
