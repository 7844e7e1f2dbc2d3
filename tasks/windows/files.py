"""Files and directories on Windows hosts: put, file, directory.

As pyinfra's own ``files`` operations: each reads the host's state (a fact), compares it with
the wanted state and yields only the difference. Paths go to .NET's ``System.IO`` calls, which
take them literally (PowerShell's ``-Path`` would read ``[`` and ``*`` as wildcards).
"""

from __future__ import annotations

import hashlib
from io import IOBase
from pathlib import PureWindowsPath
from typing import IO, Any

from pyinfra.api.command import FileUploadCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.api.util import get_file_io
from pyinfra.context import host

from tasks.windows import powershell as ps
from tasks.windows.facts import (
    ADMINISTRATORS_SID,
    SYSTEM_SID,
    AclInfo,
    Directory,
    DirectoryAcl,
    File,
)
from tasks.windows.powershell import Commands

Source = str | IOBase | IO[Any]


def local_sha256(src: Source) -> str:
    """SHA256 of a local file or IO object (lower-case hex)."""
    digest = hashlib.sha256()
    with get_file_io(src, "rb") as handle:  # type: ignore[arg-type]
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8"))
    return digest.hexdigest()


def parent(path: str) -> str:
    return str(PureWindowsPath(path).parent)


def create_directory_command(path: str) -> str:
    return ps.script("op directory.create", {"Path": path},
                     "[void][System.IO.Directory]::CreateDirectory($Path)")


@operation()
def directory(path: str, present: bool = True) -> Commands:
    """
    Add or remove a directory (with its parents when it is added).

    + path: the directory, e.g. ``C:\\ProgramData\\ProviderFallback``
    + present: whether it should exist (removing one removes its contents)
    """
    info = host.get_fact(Directory, path=path)
    if info.exists and info.kind != "directory":
        raise OperationError(f"{path} exists and is not a directory")
    if present:
        if info.exists:
            host.noop(f"directory {path} exists")
            return
        yield create_directory_command(path)
        return
    if not info.exists:
        host.noop(f"directory {path} does not exist")
        return
    yield ps.script("op directory.delete", {"Path": path},
                    "[System.IO.Directory]::Delete($Path, $true)")


@operation()
def file(path: str, present: bool = True) -> Commands:
    """
    Add (empty, if missing) or remove a file.

    + path: the file
    + present: whether it should exist
    """
    info = host.get_fact(File, path=path)
    if info.exists and info.kind != "file":
        raise OperationError(f"{path} exists and is not a file")
    if present:
        if info.exists:
            host.noop(f"file {path} exists")
            return
        yield ps.script("op file.create", {"Path": path},
                        "[System.IO.File]::Open($Path, 'OpenOrCreate', 'Write').Dispose()")
        return
    if not info.exists:
        host.noop(f"file {path} does not exist")
        return
    yield ps.script("op file.delete", {"Path": path}, "[System.IO.File]::Delete($Path)")


@operation()
def put(src: Source, dest: str, create_remote_dir: bool = True) -> Commands:
    """
    Upload a local file (or IO object) when the host's copy differs by SHA256.

    The connector streams it in chunks and replaces the destination only after the host's
    SHA256 of what it wrote equals the local one.

    + src: local file name or IO object
    + dest: the file on the host
    + create_remote_dir: create the destination's directory when it is missing
    """
    wanted = local_sha256(src)
    info = host.get_fact(File, path=dest)
    if info.exists and info.kind != "file":
        raise OperationError(f"{dest} exists and is not a file")
    if info.exists and info.sha256 == wanted:
        host.noop(f"file {dest} is already uploaded (sha256 {wanted[:12]})")
        return
    if create_remote_dir:
        folder = parent(dest)
        if not host.get_fact(Directory, path=folder).exists:
            yield create_directory_command(folder)
    yield FileUploadCommand(src, dest)  # type: ignore[arg-type]


#: FileSystemRights: FullControl, and Modify (read, write, execute, delete; no ACL change).
FULL_CONTROL = 0x1F01FF
MODIFY = 0x1301BF
#: ContainerInherit | ObjectInherit: the rule reaches every subdirectory and file.
INHERIT_ALL = 3

_PRIVATE_ACL_BODY = """\
$acl = New-Object System.Security.AccessControl.DirectorySecurity
$acl.SetAccessRuleProtection($true, $false)
$grants = @()
foreach ($sid in $FullControl) { $grants += ,@($sid, 'FullControl') }
foreach ($sid in $Modify) { $grants += ,@($sid, 'Modify') }
foreach ($grant in $grants) {
    $identity = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $grant[0]
    $rule = New-Object System.Security.AccessControl.FileSystemAccessRule -ArgumentList @(
        $identity, $grant[1], 'ContainerInherit, ObjectInherit', 'None', 'Allow')
    $acl.AddAccessRule($rule)
}
[System.IO.Directory]::SetAccessControl($Path, $acl)"""


def private_rules(account_sid: str) -> frozenset[tuple[str, int, int]]:
    """(SID, rights, inheritance) of the DACL :func:`private_directory` sets."""
    return frozenset({(SYSTEM_SID, FULL_CONTROL, INHERIT_ALL),
                      (ADMINISTRATORS_SID, FULL_CONTROL, INHERIT_ALL),
                      (account_sid.upper(), MODIFY, INHERIT_ALL)})


def _is_private(info: AclInfo, account_sid: str) -> bool:
    if not info.protected or any(r.inherited or not r.allow or r.propagation
                                 for r in info.rules):
        return False
    return frozenset((r.sid, r.rights, r.inheritance) for r in info.rules) == \
        private_rules(account_sid)


@operation()
def private_directory(path: str, account_sid: str, account: str = "") -> Commands:
    """
    Give an existing directory a DACL of its own: inheritance removed; SYSTEM and
    Administrators full control, ``account`` modify, each for the whole tree; nobody else.

    An install root under ``C:\\ProgramData`` otherwise inherits "Users may create files and
    folders", and a file planted in the venv (a ``.pth``) runs as the deploying administrator.
    The DACL is written with .NET's ``Directory.SetAccessControl`` (SetNamedSecurityInfo), which
    passes the inheritable rules on to everything already inside. A directory OWNED by another
    account is refused, not taken over: its owner may have put anything in it, and can change
    its DACL back at will.

    + path: the directory (created by an earlier operation when it does not exist yet)
    + account_sid: the SID of the account the tasks run as
    + account: its name, for messages
    """
    info = host.get_fact(DirectoryAcl, path=path)
    values = {"Path": path, "FullControl": [SYSTEM_SID, ADMINISTRATORS_SID],
              "Modify": [account_sid]}
    if not info.exists:  # created by an earlier operation of this deploy, so ours
        yield ps.script("op directory.acl", values, _PRIVATE_ACL_BODY)
        return
    allowed_owners = {SYSTEM_SID, ADMINISTRATORS_SID, account_sid.upper()}
    if info.owner not in allowed_owners:
        who = account or account_sid
        raise OperationError(
            f"{path} is owned by {info.owner}, not by SYSTEM, Administrators or {who}: another "
            "account created it before this deploy and may have put code in it (a .pth file "
            "in the venv runs as the deploying administrator). Nothing was changed. Look at "
            "what it holds, then remove it, or take it over in an elevated PowerShell with "
            f'`takeown /F "{path}" /A /R /D Y` and deploy again')
    if _is_private(info, account_sid):
        host.noop(f"{path} is private to SYSTEM, Administrators and {account or account_sid}")
        return
    yield ps.script("op directory.acl", values, _PRIVATE_ACL_BODY)
