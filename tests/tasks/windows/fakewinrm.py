"""A stand-in for pywinrm at the boundary the connector uses: ``winrm.Session(endpoint, auth,
**options)`` and its ``protocol`` (open_shell, run_command, send_command_input,
get_command_output_raw, cleanup_command, close_shell).

It checks what a real WinRM service would need (a command of ``powershell.exe`` with an
``-EncodedCommand`` argument, started without cmd.exe, stdin messages under pywinrm's envelope
limit) and hands the decoded script and its standard input to a responder, which plays the
host. Where ``powershell.exe`` itself decides what a script gets, the fake decides the same
way, so a script that works here for a reason PowerShell 5.1 does not honour fails here too:

* standard input reaches a ``-EncodedCommand`` script only when its text uses the variable
  ``$input`` (:func:`reads_stdin`);
* a script with a syntax error does not run at all: exit 1 and a ParserError on stderr
  (:func:`parse_error`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.windows import powershell as ps
from tests.support.powershell import parse, problems

#: pywinrm's maximum envelope (Protocol.DEFAULT_MAX_ENV_SIZE); a Send message carries its
#: stdin bytes base64-encoded, plus about 1.5 KiB of SOAP around them.
MAX_ENVELOPE = 153600
SOAP_OVERHEAD = 2048

Responder = Callable[[str, bytes], tuple[int, bytes, bytes]]


#: Scope qualifiers that still name a variable (VariablePath.IsVariable); ``$env:input`` is a
#: drive path, not the variable.
_SCOPES = ("global", "local", "script", "private")


def reads_stdin(script: str) -> bool:
    """Whether ``powershell.exe -EncodedCommand`` hands its redirected stdin to ``script``.

    PowerShell/PowerShell src/Microsoft.PowerShell.ConsoleHost/host/msh/ConsoleHost.cs,
    DoRunspaceInitialization: the initial command is parsed and
    ``if (AstSearcher.IsUsingDollarInput(parsedInput)) executionOptions |=
    ExecutionOptions.ReadInputObjects``; without it Executor.ExecuteCommandAsyncHelper
    closes the pipeline's input ("close the input pipeline so the command will do something
    if we are not reading input"). Windows PowerShell 5.1's ConsoleHost does the same.
    IsUsingDollarInput (engine/parser/AstVisitor.cs) looks for a VariableExpressionAst with
    ``VariablePath.IsVariable`` whose unqualified name is ``input`` (any case), with
    ``searchNestedScriptBlocks: false``: ``$input`` inside ``{ ... }`` or a function body
    does not count, and neither does a comment, a string or ``-InputObject``.
    """
    stack = [parse(script).root_node]
    while stack:
        node = stack.pop()
        if node.type in ("script_block_expression", "function_statement"):
            continue
        if node.type == "variable":
            name = (node.text or b"").decode("utf-8").lstrip("$").strip("{}")
            scope, _, rest = name.rpartition(":")
            if rest.casefold() == "input" and (not scope or scope.casefold() in _SCOPES):
                return True
        stack.extend(node.children)
    return False


def parse_error(script: str) -> bytes | None:
    """The CLIXML stderr of a script PowerShell refuses to parse, or None when it parses.

    PowerShell parses the whole ``-EncodedCommand`` text before running any of it
    (Parser.ParseInput in ConsoleHost); a ParseException reports every error and nothing
    runs. tree-sitter-powershell stands in for PowerShell's parser here.
    """
    found = problems(script)
    if not found:
        return None
    message = "; ".join(str(p) for p in found[:3])
    return (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/'
            b'powershell/2004/04"><S S="Error">ParserError: '
            + message.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8")
            + b"</S></Objs>")


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
        refused = parse_error(script)
        if refused is not None:
            code, out, err = 1, b"", refused
        else:
            code, out, err = self.responder(script, stdin if reads_stdin(script) else b"")
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
