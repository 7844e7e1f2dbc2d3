"""A pyinfra 3 connector for Windows hosts over WinRM, on pywinrm: ``@winrm/HOST``.

pyinfra 3 dropped its WinRM connector; this one is registered under the ``pyinfra.connectors``
entry point (pyproject.toml), so an inventory names a host ``@winrm/win-dev.example.net``.

Security defaults, and why:

* HTTPS (port 5986) with the server certificate validated against the system CAs, or
  ``winrm_ca_trust_path`` (the host's self-signed certificate, exported). ``winrm_cert_validation:
  False`` turns validation off, with a warning. Plain HTTP (5985) needs ``winrm_allow_plaintext:
  True`` and warns; even then pywinrm's NTLM/Kerberos/CredSSP message encryption is forced on,
  so nothing travels in clear text, but nothing proves the server is the one you meant.
* NTLM (default), Kerberos or CredSSP. Basic authentication sends the password with every
  request and is refused.
* Credentials come from host data (``winrm_user``, ``winrm_password``) or, better, from the
  controller's environment (``WINRM_USER``, ``WINRM_PASSWORD``; other names with
  ``winrm_user_env``, ``winrm_password_env``). The password is never logged, printed or put in
  an exception message: errors from pywinrm and requests are scrubbed of it.

How commands run: one WinRS shell per connection (opened at connect, code page UTF-8), one
``powershell.exe -EncodedCommand`` process per command, started without cmd.exe (so 32 KiB of
command line, and no cmd.exe parsing). The script gets the preamble of
:func:`tasks.windows.powershell.wrap`. Exit codes are the process's; CLIXML on stderr is decoded
to text. ``_stdin`` goes to the process's standard input (the way secrets travel: never on a
command line, which Windows can log); ``_timeout`` stops a command that runs too long;
``_chdir`` and ``_env`` are honoured; ``_sudo``, ``_su_user``, ``_doas`` and ``_dzdo`` are refused
(WinRM runs as the connected account: connect as an administrator).

Files: ``put_file`` streams the file on standard input in chunks of ``winrm_chunk_size`` bytes
(base64 lines) to a temporary file beside the destination, which the host hashes (SHA256) as it
writes; the temporary file replaces the destination only if the host's hash and size equal the
controller's, and the controller checks them once more. A destination held open by a running
program (prometheus.exe) is renamed aside first, which Windows allows. ``get_file`` reads in
1 MiB pieces and checks the SHA256 of the whole at the end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from io import IOBase
from typing import IO, TYPE_CHECKING, Any

import requests
import winrm
from pyinfra import logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.output import echo
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector, DataMeta
from pyinfra.connectors.util import CommandOutput, OutputLine
from typing_extensions import TypedDict, Unpack, override
from winrm import transport as winrm_transport
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
)

from tasks.wheelhouse import ByteProgress
from tasks.windows import powershell as ps

if TYPE_CHECKING:
    from pyinfra.api.arguments import ConnectorArguments
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

#: Raw bytes per standard-input message: base64 twice (our line, then WS-Man's) stays under
#: pywinrm's 150 KiB envelope.
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 80 * 1024
GET_CHUNK_SIZE = 1024 * 1024
#: Uploads from this size report their progress (smaller ones are over in a few seconds).
PROGRESS_FROM = 4 * 1024 * 1024
UTF8_CODEPAGE = 65001
TRANSPORTS = ("ntlm", "kerberos", "credssp")
REFUSED_ARGUMENTS = ("_sudo", "_su_user", "_doas", "_dzdo")


class ConnectorData(TypedDict):
    winrm_hostname: str
    winrm_port: int
    winrm_scheme: str
    winrm_path: str
    winrm_transport: str
    winrm_user: str
    winrm_password: str
    winrm_user_env: str
    winrm_password_env: str
    winrm_ca_trust_path: str
    winrm_cert_validation: bool
    winrm_allow_plaintext: bool
    winrm_read_timeout: int
    winrm_operation_timeout: int
    winrm_connect_retries: int
    winrm_connect_retry_delay: float
    winrm_chunk_size: int


connector_data_meta: dict[str, DataMeta] = {
    "winrm_hostname": DataMeta("Host name or address (default: the inventory name)"),
    "winrm_port": DataMeta("WinRM port (default 5986 for https, 5985 for http)"),
    "winrm_scheme": DataMeta("https (default) or http (needs winrm_allow_plaintext)", "https"),
    "winrm_path": DataMeta("WS-Management path", "wsman"),
    "winrm_transport": DataMeta("ntlm (default), kerberos or credssp", "ntlm"),
    "winrm_user": DataMeta("User name (DOMAIN\\user or user); else $WINRM_USER"),
    "winrm_password": DataMeta("Password; better: leave unset and use $WINRM_PASSWORD"),
    "winrm_user_env": DataMeta("Controller variable holding the user name", "WINRM_USER"),
    "winrm_password_env": DataMeta("Controller variable holding the password", "WINRM_PASSWORD"),
    "winrm_ca_trust_path": DataMeta("CA bundle (PEM) that signed the host's certificate"),
    "winrm_cert_validation": DataMeta("Validate the server certificate", True),
    "winrm_allow_plaintext": DataMeta("Allow http:// (message encryption still forced)", False),
    "winrm_read_timeout": DataMeta("Seconds to wait for an HTTP answer", 60),
    "winrm_operation_timeout": DataMeta("Seconds a WS-Man receive may wait", 50),
    "winrm_connect_retries": DataMeta("Extra connection attempts on network errors", 2),
    "winrm_connect_retry_delay": DataMeta("Seconds between connection attempts", 2.0),
    "winrm_chunk_size": DataMeta("Bytes per upload message", DEFAULT_CHUNK_SIZE),
}


#: Transport -> (pywinrm's flag that its library imported, the extra that installs it).
TRANSPORT_EXTRAS = {"kerberos": ("HAVE_KERBEROS", "kerberos"),
                    "credssp": ("HAVE_CREDSSP", "credssp")}


def _require_transport_support(transport: str) -> None:
    """Refuse kerberos or credssp when pywinrm cannot use them, naming the extra to install.

    pywinrm imports the libraries optionally (winrm/transport.py sets HAVE_KERBEROS and
    HAVE_CREDSSP) and fails only at the first request, with a message about pykerberos or
    requests_credssp; this names what to do instead.
    """
    if transport not in TRANSPORT_EXTRAS:
        return
    flag, extra = TRANSPORT_EXTRAS[transport]
    if not getattr(winrm_transport, flag, False):
        raise ConnectError(
            f"winrm_transport {transport} needs pywinrm[{extra}], which is not installed on "
            f"this controller: run `make venv WINRM_TRANSPORT={transport}` (or pip install "
            f"'provider-fallback[{extra}]' in the venv), or use winrm_transport ntlm")


class WinRMCommandError(Exception):
    """A command could not be run (the shell broke), as opposed to a command that failed."""


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _output(stdout: bytes, stderr: bytes) -> CommandOutput:
    lines = [OutputLine("stdout", line) for line in ps.decode_output(stdout).split("\n")]
    if lines and lines[-1].line == "":
        lines.pop()
    err = ps.decode_clixml(stderr)
    lines += [OutputLine("stderr", line) for line in err.splitlines() if line.strip()]
    return CommandOutput(lines)


def _stdin_bytes(value: Any) -> bytes:
    """``_stdin`` as bytes: a string, a list of lines, or a HiddenValue holding either."""
    if isinstance(value, HiddenValue):
        value = value.unmask()
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return "".join(f"{line}\r\n" for line in value).encode("utf-8")


def _upload_script(dest: str, sha256: str, size: int) -> str:
    """Reads base64 lines from stdin into a temporary file, hashes while writing, and moves it
    over ``dest`` only when the hash and size are the ones the controller sent.

    The lines are read through ``$input``, and that is not a style choice: ``powershell.exe
    -EncodedCommand`` feeds a redirected stdin to the script only when the script's text
    uses the variable ``$input`` (ConsoleHost.DoRunspaceInitialization sets
    ``ReadInputObjects`` when ``AstSearcher.IsUsingDollarInput`` finds it; otherwise
    Executor closes the pipeline's input). A ``process {}`` block reading ``$_`` gets nothing.
    """
    return f"""\
{ps.comment("put_file", {"dest": dest, "sha256": sha256, "size": size})}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try {{ [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false }} catch {{ }}
$Destination = {ps.literal(dest)}
$ExpectedHash = {ps.literal(sha256)}
$ExpectedSize = [long]{int(size)}
$Temporary = $Destination + '.pyinfra-' + [guid]::NewGuid().ToString('N') + '.tmp'
$Stream = [System.IO.File]::Open($Temporary, 'CreateNew', 'Write', 'None')
$Hasher = [System.Security.Cryptography.SHA256]::Create()
foreach ($line in $input) {{
    $bytes = [System.Convert]::FromBase64String([string]$line)
    [void]$Hasher.TransformBlock($bytes, 0, $bytes.Length, $null, 0)
    $Stream.Write($bytes, 0, $bytes.Length)
}}
[void]$Hasher.TransformFinalBlock((New-Object byte[] 0), 0, 0)
$size = $Stream.Length
$Stream.Dispose()
$hash = -join ($Hasher.Hash | ForEach-Object {{ $_.ToString('x2') }})
$result = [ordered]@{{ sha256 = $hash; size = $size; replaced = $false }}
if ($hash -ne $ExpectedHash -or $size -ne $ExpectedSize) {{
    [System.IO.File]::Delete($Temporary)
    ConvertTo-Json -Compress -InputObject $result
    exit 3
}}
if ([System.IO.File]::Exists($Destination)) {{
    try {{
        [System.IO.File]::Replace($Temporary, $Destination, [NullString]::Value)
    }} catch [System.IO.IOException] {{
        # In use (a running program): Windows lets it be renamed, not replaced.
        $aside = $Destination + '.pyinfra-old-' + [guid]::NewGuid().ToString('N')
        [System.IO.File]::Move($Destination, $aside)
        [System.IO.File]::Move($Temporary, $Destination)
        try {{ [System.IO.File]::Delete($aside) }} catch {{ }}
    }}
    $result.replaced = $true
}} else {{
    [System.IO.File]::Move($Temporary, $Destination)
}}
ConvertTo-Json -Compress -InputObject $result"""


def _stat_script(path: str) -> str:
    return f"""\
{ps.comment("get_file stat", {"path": path})}
$Path = {ps.literal(path)}
$hash = (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
$size = (Get-Item -LiteralPath $Path -Force).Length
ConvertTo-Json -Compress -InputObject ([ordered]@{{ sha256 = $hash; size = $size }})"""


def _read_script(path: str, offset: int, length: int) -> str:
    return f"""\
{ps.comment("get_file read", {"path": path, "offset": offset, "length": length})}
$Stream = [System.IO.File]::Open({ps.literal(path)}, 'Open', 'Read', 'ReadWrite')
try {{
    [void]$Stream.Seek([long]{int(offset)}, 'Begin')
    $buffer = New-Object byte[] {int(length)}
    $read = $Stream.Read($buffer, 0, $buffer.Length)
    [Console]::Out.Write([System.Convert]::ToBase64String($buffer, 0, $read))
}} finally {{
    $Stream.Dispose()
}}"""


class WinRMConnector(BaseConnector):
    """
    Connect to Windows hosts over WinRM (HTTPS, NTLM/Kerberos/CredSSP) and run PowerShell.

    .. code:: python

        # inventory/windows.py; the password comes from $WINRM_PASSWORD
        hosts = [("@winrm/win-dev.example.net", {"winrm_user": "win-dev\\\\pavel"})]
    """

    handles_execution = True

    data_cls = ConnectorData
    data_meta = connector_data_meta
    data: ConnectorData

    #: Replaced in tests by a fake with the same constructor and ``protocol``.
    session_factory: Any = winrm.Session

    def __init__(self, state: State, host: Host) -> None:
        super().__init__(state, host)
        self.session: Any = None
        self.shell_id: str | None = None
        self._password = ""

    @override
    @staticmethod
    def make_names_data(name: str) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
        if not name:
            raise ValueError("@winrm needs a host: @winrm/HOST")
        yield f"@winrm/{name}", {"winrm_hostname": name}, []

    # ------------------------------------------------------------------ connection

    def _credentials(self) -> tuple[str | None, str | None]:
        env_user = os.environ.get(self.data["winrm_user_env"] or "WINRM_USER")
        env_password = os.environ.get(self.data["winrm_password_env"] or "WINRM_PASSWORD")
        user = self.data["winrm_user"] or env_user
        password = self.data["winrm_password"] or env_password
        return user, password

    def endpoint(self) -> str:
        """The WS-Management URL this host is reached at (no credentials in it)."""
        scheme = (self.data["winrm_scheme"] or "https").lower()
        host = self.data["winrm_hostname"] or self.host.name
        port = self.data["winrm_port"] or (5986 if scheme == "https" else 5985)
        path = (self.data["winrm_path"] or "wsman").lstrip("/")
        return f"{scheme}://{host}:{port}/{path}"

    def session_options(self) -> dict[str, Any]:
        """Keyword arguments for ``winrm.Session`` (without the credentials).

        Raises ConnectError for a combination the defaults refuse.
        """
        scheme = (self.data["winrm_scheme"] or "https").lower()
        transport = (self.data["winrm_transport"] or "ntlm").lower()
        if transport not in TRANSPORTS:
            raise ConnectError(
                f"winrm_transport {transport!r} is not supported: use one of "
                f"{', '.join(TRANSPORTS)} (basic authentication sends the password with every "
                "request)")
        _require_transport_support(transport)
        if scheme not in ("https", "http"):
            raise ConnectError(f"winrm_scheme {scheme!r}: use https (or http with "
                               "winrm_allow_plaintext: True)")
        options: dict[str, Any] = {
            "transport": transport,
            "read_timeout_sec": int(self.data["winrm_read_timeout"]),
            "operation_timeout_sec": int(self.data["winrm_operation_timeout"]),
        }
        if options["operation_timeout_sec"] >= options["read_timeout_sec"]:
            raise ConnectError("winrm_read_timeout must be larger than winrm_operation_timeout")
        if scheme == "http":
            if not self.data["winrm_allow_plaintext"]:
                raise ConnectError(
                    f"{self.endpoint()} is plain HTTP. Use HTTPS (docs/windows.md, "
                    "'Enable WinRM over HTTPS', shows how to enable it on the host), or set "
                    "host data winrm_allow_plaintext: True to "
                    "accept a connection whose server is not authenticated")
            logger.warning(
                f"{self.host.name}: WinRM over plain HTTP ({self.endpoint()}): the server is not "
                "authenticated by a certificate; messages are still encrypted by "
                f"{transport.upper()}")
            options["message_encryption"] = "always"
        else:
            validate = self.data["winrm_cert_validation"]
            if validate is False:
                logger.warning(f"{self.host.name}: WinRM server certificate validation is OFF "
                               "(winrm_cert_validation: False)")
            options["server_cert_validation"] = "validate" if validate is not False else "ignore"
            if self.data["winrm_ca_trust_path"]:
                options["ca_trust_path"] = self.data["winrm_ca_trust_path"]
        return options

    @override
    def connect(self) -> None:
        options = self.session_options()
        user, password = self._credentials()
        if options["transport"] != "kerberos" and (not user or not password):
            raise ConnectError(
                f"{self.host.name}: no WinRM credentials. Set WINRM_USER and WINRM_PASSWORD in "
                "the controller's environment (or host data winrm_user / winrm_password)")
        self._password = password or ""
        retries = max(0, int(self.data["winrm_connect_retries"]))
        delay = float(self.data["winrm_connect_retry_delay"])
        attempt = 0
        while True:
            attempt += 1
            try:
                factory = type(self).session_factory
                self.session = factory(self.endpoint(), auth=(user or "", password or ""),
                                       **options)
                self.shell_id = self.session.protocol.open_shell(codepage=UTF8_CODEPAGE,
                                                                 noprofile=True)
                logger.debug(f"{self.host.name}: WinRM shell open at {self.endpoint()}")
                return
            except InvalidCredentialsError as exc:
                raise ConnectError(self._error(
                    f"the WinRM credentials of {user!r} were rejected", exc)) from None
            except requests.exceptions.SSLError as exc:
                raise ConnectError(self._error(
                    f"the TLS certificate of {self.endpoint()} could not be verified; trust it "
                    "with winrm_ca_trust_path (the host's certificate, exported as PEM)",
                    exc)) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    WinRMTransportError) as exc:
                if attempt > retries:
                    raise ConnectError(self._error(
                        f"cannot reach {self.endpoint()} after {attempt} attempt(s)",
                        exc)) from None
                logger.warning(self._error(
                    f"{self.host.name}: WinRM connection attempt {attempt} failed, retrying",
                    exc))
                time.sleep(delay)
            except WinRMError as exc:
                raise ConnectError(self._error(f"WinRM error at {self.endpoint()}", exc)) from None

    def _error(self, message: str, exc: BaseException) -> str:
        """``message: cause`` with the password scrubbed from the cause."""
        cause = _scrub(f"{type(exc).__name__}: {exc}", [self._password])
        return f"{message} ({cause})"

    @override
    def disconnect(self) -> None:
        if self.session is not None and self.shell_id is not None:
            try:
                self.session.protocol.close_shell(self.shell_id)
            except Exception as exc:  # the connection may already be gone
                logger.debug(self._error("closing the WinRM shell failed", exc))
        self.shell_id = None
        self.session = None

    # ------------------------------------------------------------------ commands

    def execute(
        self,
        script: str,
        *,
        stdin: Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run one PowerShell script (already wrapped) and return (exit code, stdout, stderr).

        ``stdin`` chunks are sent in order and the stream is closed. A broken shell is reopened
        once. Raises TimeoutError past ``timeout`` seconds (the process is terminated).
        """
        if self.session is None or self.shell_id is None:
            raise WinRMCommandError("not connected")
        args = ps.command_args(script)
        # Piped (not console) stdin when there is input to send: PowerShell reads a pipe as
        # its pipeline input ($input), a console not at all.
        options = {"skip_cmd_shell": True, "console_mode_stdin": stdin is None}
        try:
            command_id = self.session.protocol.run_command(
                self.shell_id, ps.POWERSHELL_EXE, args, **options)
        except WinRMError as exc:
            logger.debug(self._error("run_command failed; reopening the shell", exc))
            self.shell_id = self.session.protocol.open_shell(codepage=UTF8_CODEPAGE,
                                                             noprofile=True)
            command_id = self.session.protocol.run_command(
                self.shell_id, ps.POWERSHELL_EXE, args, **options)
        protocol = self.session.protocol
        try:
            if stdin is not None:
                for chunk in stdin:
                    protocol.send_command_input(self.shell_id, command_id, chunk, end=False)
                protocol.send_command_input(self.shell_id, command_id, b"", end=True)
            deadline = None if timeout is None else time.monotonic() + timeout
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self.host.name}: command timed out after {timeout}s")
                try:
                    stdout, stderr, code, done = protocol.get_command_output_raw(
                        self.shell_id, command_id)
                except WinRMOperationTimeoutError:
                    continue  # no output yet: WS-Man's long poll expired
                out.append(stdout)
                err.append(stderr)
                if done:
                    return int(code), b"".join(out), b"".join(err)
        finally:
            try:
                protocol.cleanup_command(self.shell_id, command_id)
            except Exception as exc:
                logger.debug(self._error("cleanup_command failed", exc))

    @override
    def run_shell_command(
        self,
        command: StringCommand,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> tuple[bool, CommandOutput]:
        """Run ``command`` (PowerShell) and return (success, output lines)."""
        for name in REFUSED_ARGUMENTS:
            if arguments.get(name):
                message = (f"{name} is not supported on Windows hosts: WinRM runs commands as "
                           "the connected account (connect as an administrator instead)")
                logger.error(f"{self.host.name}: {message}")
                return False, CommandOutput([OutputLine("stderr", message)])

        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        masked = str(command)
        env = {k: (v.unmask() if isinstance(v, HiddenValue) else str(v))
               for k, v in (arguments.get("_env") or {}).items()}
        script = ps.wrap(text, chdir=arguments.get("_chdir") or None, env=env)
        stdin_value = arguments.get("_stdin")
        stdin = None if stdin_value is None else [_stdin_bytes(stdin_value)]
        timeout = arguments.get("_timeout")

        if print_input:
            echo(f"{self.host.print_prefix}>>> {masked}", err=True)
        logger.debug(f"{self.host.name}: running PowerShell: {masked}")

        try:
            code, stdout, stderr = self.execute(script, stdin=stdin, timeout=timeout)
        except (WinRMError, requests.exceptions.RequestException) as exc:
            message = self._error("the WinRM command could not be run", exc)
            logger.error(f"{self.host.name}: {message}")
            return False, CommandOutput([OutputLine("stderr", message)])
        output = _output(stdout, stderr)
        if print_output:
            for line in output:
                echo(f"{self.host.print_prefix}{line.line}", err=line.buffer_name == "stderr")
        success_codes = arguments.get("_success_exit_codes")
        status = code in success_codes if success_codes else code == 0
        if not status:
            logger.debug(f"{self.host.name}: exit code {code}")
        return status, output

    # ------------------------------------------------------------------ files

    def _chunks(self, data: bytes, progress: ByteProgress | None = None) -> Iterator[bytes]:
        size = min(max(1024, int(self.data["winrm_chunk_size"] or DEFAULT_CHUNK_SIZE)),
                   MAX_CHUNK_SIZE)
        for start in range(0, len(data), size):
            yield base64.b64encode(data[start:start + size]) + b"\r\n"
            if progress is not None:  # counted once the chunk was taken for sending
                progress.advance(min(size, len(data) - start))

    @override
    def put_file(
        self,
        filename_or_io: str | IOBase,
        remote_filename: str,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> bool:
        """Upload in chunks on stdin; the host and then the controller check SHA256 and size."""
        with get_file_io(filename_or_io, "rb") as handle:  # type: ignore[arg-type]
            data = handle.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        script = _upload_script(remote_filename, digest, len(data))
        if print_input:
            echo(f"{self.host.print_prefix}>>> put {remote_filename} ({len(data)} bytes, "
                 f"sha256 {digest})", err=True)
        try:
            # pyinfra shows an upload as one silent operation: a wheelhouse or a release zip
            # of ~100 MB over WinRM takes minutes, so it reports every tenth on stderr
            progress = (ByteProgress(f"{self.host.name}: upload {remote_filename}", len(data))
                        if len(data) >= PROGRESS_FROM else None)
            code, stdout, stderr = self.execute(script, stdin=self._chunks(data, progress),
                                                timeout=arguments.get("_timeout"))
        except (WinRMError, requests.exceptions.RequestException) as exc:
            logger.error(f"{self.host.name}: " + self._error(
                f"upload of {remote_filename} failed", exc))
            return False
        result = _json_object(stdout)
        if code != 0 or result.get("sha256") != digest or result.get("size") != len(data):
            detail = ps.decode_clixml(stderr).strip()
            if code == 3 or result:
                detail = (f"the host wrote sha256 {result.get('sha256')} size "
                          f"{result.get('size')}, expected {digest} size {len(data)}")
            logger.error(f"{self.host.name}: upload of {remote_filename} failed "
                         f"(exit code {code}): {detail}")
            return False
        if print_output:
            echo(f"{self.host.print_prefix}uploaded {remote_filename} ({len(data)} bytes)")
        return True

    @override
    def get_file(
        self,
        remote_filename: str,
        filename_or_io: str | IOBase,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> bool:
        """Download in 1 MiB pieces; the SHA256 of the whole is checked against the host's."""
        try:
            code, stdout, stderr = self.execute(ps.wrap(_stat_script(remote_filename)))
            stat = _json_object(stdout)
            if code != 0 or "sha256" not in stat:
                logger.error(f"{self.host.name}: cannot read {remote_filename}: "
                             f"{ps.decode_clixml(stderr).strip()}")
                return False
            size = int(stat["size"])
            data = bytearray()
            while len(data) < size:
                length = min(GET_CHUNK_SIZE, size - len(data))
                code, stdout, stderr = self.execute(
                    ps.wrap(_read_script(remote_filename, len(data), length)))
                piece = base64.b64decode(stdout.strip()) if code == 0 else b""
                if not piece:
                    logger.error(f"{self.host.name}: reading {remote_filename} at {len(data)} "
                                 f"failed: {ps.decode_clixml(stderr).strip()}")
                    return False
                data += piece
        except (WinRMError, requests.exceptions.RequestException) as exc:
            logger.error(f"{self.host.name}: " + self._error(
                f"download of {remote_filename} failed", exc))
            return False
        if hashlib.sha256(data).hexdigest() != stat["sha256"]:
            logger.error(f"{self.host.name}: {remote_filename} changed while it was read "
                         "(SHA256 differs); try again")
            return False
        _write_local(filename_or_io, bytes(data))
        return True


def _json_object(stdout: bytes) -> dict[str, Any]:
    """The last JSON object line of ``stdout`` ({} when there is none)."""
    for line in reversed(ps.decode_output(stdout).splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def _write_local(target: str | IOBase | IO[bytes], data: bytes) -> None:
    if isinstance(target, str):
        with open(target, "wb") as handle:
            handle.write(data)
        return
    try:
        target.write(data)
    except TypeError:
        target.write(data.decode("utf-8"))  # type: ignore[call-overload]

