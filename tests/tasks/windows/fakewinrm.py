"""A stand-in for pywinrm at the boundary the connector uses: ``winrm.Session(endpoint, auth,
**options)`` and its ``protocol`` (open_shell, run_command, send_command_input,
get_command_output_raw, cleanup_command, close_shell).

It checks what a real WinRM service would need (a command of ``powershell.exe`` with an
``-EncodedCommand`` argument, started without cmd.exe, stdin messages under pywinrm's envelope
limit) and hands the decoded script and its standard input to a responder, which plays the
host.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.windows import powershell as ps

#: pywinrm's maximum envelope (Protocol.DEFAULT_MAX_ENV_SIZE); a Send message carries its
#: stdin bytes base64-encoded, plus about 1.5 KiB of SOAP around them.
MAX_ENVELOPE = 153600
SOAP_OVERHEAD = 2048

Responder = Callable[[str, bytes], tuple[int, bytes, bytes]]


@dataclass
class Call:
    script: str
    stdin: bytes
    stdin_messages: int
    code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class FakeProtocol:
    responder: Responder
    calls: list[Call] = field(default_factory=list)
    shells: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    open_shell_errors: list[BaseException] = field(default_factory=list)
    shell_options: dict[str, Any] = field(default_factory=dict)
    #: get_command_output_raw answers "no output yet" (WinRMOperationTimeoutError) this often
    #: before the real answer.
    pending_polls: int = 0
    _pending: dict[str, tuple[str, list[bytes], int]] = field(default_factory=dict)
    console_stdin: dict[str, bool] = field(default_factory=dict)

    def open_shell(self, **options: Any) -> str:
        if self.open_shell_errors:
            raise self.open_shell_errors.pop(0)
        self.shell_options = options
        shell = f"shell-{len(self.shells) + 1}"
        self.shells.append(shell)
        return shell

    def run_command(self, shell_id: str, command: str, arguments: list[str] = (),  # type: ignore[assignment]
                    console_mode_stdin: bool = True, skip_cmd_shell: bool = False) -> str:
        assert shell_id in self.shells
        assert shell_id not in self.closed
        assert command == ps.POWERSHELL_EXE, command
        assert skip_cmd_shell, "commands must not go through cmd.exe"
        args = list(arguments)
        assert args[-2] == "-EncodedCommand", args
        assert len(command) + sum(len(a) + 1 for a in args) < ps.MAX_COMMAND_LINE
        script = base64.b64decode(args[-1]).decode("utf-16-le")
        command_id = f"cmd-{len(self.calls) + len(self._pending) + 1}"
        self._pending[command_id] = (script, [], self.pending_polls)
        self.console_stdin[command_id] = console_mode_stdin
        return command_id

    def send_command_input(self, shell_id: str, command_id: str, stdin_input: bytes,
                           end: bool = False) -> None:
        assert isinstance(stdin_input, bytes)
        assert not self.console_stdin[command_id], "stdin must be a pipe to reach $input"
        encoded = len(base64.b64encode(stdin_input))
        assert encoded + SOAP_OVERHEAD <= MAX_ENVELOPE, f"stdin message of {encoded} bytes"
        self._pending[command_id][1].append(stdin_input)

    def get_command_output_raw(self, shell_id: str, command_id: str
                               ) -> tuple[bytes, bytes, int, bool]:
        from winrm.exceptions import WinRMOperationTimeoutError

        script, chunks, polls = self._pending[command_id]
        if polls > 0:
            self._pending[command_id] = (script, chunks, polls - 1)
            raise WinRMOperationTimeoutError()
        del self._pending[command_id]
        stdin = b"".join(chunks)
        code, out, err = self.responder(script, stdin)
        self.calls.append(Call(script, stdin, len(chunks), code, out, err))
        return out, err, code, True

    def cleanup_command(self, shell_id: str, command_id: str) -> None:
        self.cleaned.append(command_id)

    def close_shell(self, shell_id: str, close_session: bool = True) -> None:
        self.closed.append(shell_id)


class FakeSessionFactory:
    """Builds sessions like ``winrm.Session`` and remembers how it was called."""

    def __init__(self, responder: Responder) -> None:
        self.protocol = FakeProtocol(responder)
        self.created: list[tuple[str, tuple[str, str], dict[str, Any]]] = []

    def __call__(self, endpoint: str, auth: tuple[str, str], **options: Any) -> Any:
        self.created.append((endpoint, auth, options))
        session = type("FakeSession", (), {})()
        session.protocol = self.protocol
        return session


def body(script: str) -> str:
    """The script an operation or fact sent, without the connector's preamble."""
    return script.split(ps.PREAMBLE.rstrip("\n") + "\n", 1)[-1]
