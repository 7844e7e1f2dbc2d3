"""PowerShell text for Windows hosts: literals, commands sent over WinRM, and their output.

One place for how a value enters a script and how a script travels:

* Every value enters as a single-quoted literal (:func:`literal`, the same quoting render
  uses), so ``$``, backticks, ``;`` and quotes in a value stay text. Never a double-quoted
  string, a format string or a comment: :func:`comment` turns a value into one line of JSON,
  so a newline in it cannot end the comment and start code.
* A script travels as ``powershell.exe -EncodedCommand`` (base64 of UTF-16LE, what
  ``-EncodedCommand`` reads), so nothing in it is parsed by cmd.exe or by Windows' command-line
  splitting. :func:`wrap` gives every script the same preamble: errors stop the script and
  exit 1 with a readable message, progress records are off (they come back as CLIXML noise),
  and output is UTF-8, so non-ASCII values survive the console code page.
* Error output that still comes as CLIXML (``#< CLIXML``) is decoded by :func:`decode_clixml`.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from pyinfra.api.command import PyinfraCommand

from tasks.render.common import ps_literal

#: What an operation yields: PowerShell scripts (str or StringCommand) and file uploads.
Commands = Generator["str | PyinfraCommand", None, None]

#: What runs every script: Windows PowerShell 5.1, present on every supported Windows.
POWERSHELL_EXE = "powershell.exe"
POWERSHELL_ARGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
#: CreateProcess refuses a command line longer than this (characters, terminator included).
MAX_COMMAND_LINE = 32767

PREAMBLE = (
    "$ErrorActionPreference = 'Stop'\n"
    "$ProgressPreference = 'SilentlyContinue'\n"
    "try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }\n"
    "trap {\n"
    "    [Console]::Error.WriteLine(($_ | Out-String).Trim())\n"
    "    exit 1\n"
    "}\n"
)


def literal(value: object) -> str:
    """A single-quoted PowerShell literal holding exactly ``value`` (nothing is expanded).

    A NUL character is refused: no Windows name or path can hold one, and PowerShell's
    parser does not take it inside a literal.
    """
    if "\0" in str(value):
        raise ValueError(f"a NUL character cannot go into a PowerShell literal: {value!r}")
    return ps_literal(value)


def array(values: Iterable[object]) -> str:
    """``@('a', 'b')``: an array of literals (``@()`` when empty)."""
    return "@(" + ", ".join(literal(v) for v in values) + ")"


def boolean(value: bool) -> str:
    return "$true" if value else "$false"


def comment(label: str, data: Mapping[str, Any] | None = None) -> str:
    """One comment line naming what a script does: ``# fact File {"path": "C:\\\\x"}``.

    The data is JSON with every non-ASCII and control character escaped, so the line cannot be
    broken by a value; it is what a reader of the host's PowerShell logs sees first.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.:\- ]+", label):
        raise ValueError(f"comment label {label!r} must be plain words")
    text = f"# {label}"
    if data is not None:
        text += " " + json.dumps(dict(data), sort_keys=True, ensure_ascii=True)
    return text


def native(program: str, *args: str) -> str:
    """Run a native program with literal arguments and stop with its exit code on failure.

    Windows PowerShell 5.1 does not fail on a native program's non-zero exit code by itself.
    Arguments must not contain ``"``: PowerShell 5.1 passes them to the program's command line
    without escaping embedded quotes.
    """
    for arg in (program, *args):
        if '"' in arg:
            raise ValueError(f"a double quote cannot be passed to a native program: {arg!r}")
    call = " ".join(["&", literal(program), *(literal(a) for a in args)])
    return f"{call}\nif ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}"


def wrap(script: str, *, chdir: str | None = None,
         env: Mapping[str, str] | None = None) -> str:
    """The script with the common preamble, an optional working directory and environment."""
    lines = [PREAMBLE.rstrip("\n")]
    for name, value in (env or {}).items():
        lines.append(f"[Environment]::SetEnvironmentVariable({literal(name)}, {literal(value)}, "
                     "'Process')")
    if chdir:
        lines.append(f"Set-Location -LiteralPath {literal(chdir)}")
    lines.append(script)
    return "\n".join(lines)


def encode(script: str) -> str:
    """Base64 of the UTF-16LE script: the argument of ``-EncodedCommand``."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def decode(encoded: str) -> str:
    """The inverse of :func:`encode` (tests and logs use it)."""
    return base64.b64decode(encoded).decode("utf-16-le")


def command_args(script: str) -> list[str]:
    """The arguments after ``powershell.exe`` that run ``script``.

    Raises ValueError when the command line would be longer than Windows accepts.
    """
    args = [*POWERSHELL_ARGS, "-EncodedCommand", encode(script)]
    length = len(POWERSHELL_EXE) + sum(len(a) + 1 for a in args) + 1
    if length > MAX_COMMAND_LINE:
        raise ValueError(f"the PowerShell command is {length} characters once encoded; Windows "
                         f"accepts {MAX_COMMAND_LINE}. Put large data in a file first")
    return args


# --------------------------------------------------------------------------- output

_CLIXML_HEADER = b"#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(text: str) -> str:
    """CLIXML escapes characters XML cannot carry as ``_xHHHH_`` (``_x000D__x000A_`` = CRLF)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def decode_clixml(data: bytes) -> str:
    """Readable text from PowerShell's error stream.

    ``#< CLIXML`` documents (what PowerShell writes to a redirected stderr) become their error,
    warning, verbose and information strings, one message per line; progress records are
    dropped. Anything else is decoded as UTF-8 as it is.
    """
    text = data.decode("utf-8", errors="replace")
    if not data.lstrip().startswith(_CLIXML_HEADER):
        return text
    out: list[str] = []
    rest = text.lstrip()
    # A stream may hold several documents, each after its own header line.
    for chunk in rest.split("#< CLIXML"):
        body = chunk.strip()
        if not body:
            continue
        try:
            # From our own PowerShell; expat refuses entity expansion bombs since 2.4.1.
            root = ET.fromstring(body)  # noqa: S314
        except ET.ParseError:
            out.append(body)
            continue
        for node in root.iter():
            if node.tag.rsplit("}", 1)[-1] == "S" and node.get("S") and node.text:
                if node.get("S", "").lower() == "progress":
                    continue
                out.append(_unescape(node.text))
    joined = "".join(out)
    return "\n".join(line.rstrip() for line in joined.splitlines() if line.strip())


def decode_output(data: bytes) -> str:
    """Standard output as text: UTF-8 (the preamble sets it), a BOM dropped, CRLF as LF."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text.replace("\r\n", "\n")


def script(label: str, values: Mapping[str, object], body: str) -> str:
    """An operation's script: a comment naming it, then every value as a top-level
    ``$Name = <literal>`` assignment, then the body that only uses those variables.

    Values never appear inside the body's text, so the body is the same for every value and
    the only place a value is quoted is here. Strings become single-quoted literals, booleans
    ``$true``/``$false``, integers numbers, lists and tuples arrays of literals.
    """
    lines = [comment(label)]
    for name, value in values.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
            raise ValueError(f"variable name {name!r} must be letters and digits")
        if isinstance(value, bool):
            text = boolean(value)
        elif isinstance(value, int):
            text = str(int(value))
        elif isinstance(value, list | tuple):
            text = array(value)
        else:
            text = literal(value)
        lines.append(f"${name} = {text}")
    lines.append(body.strip())
    return "\n".join(lines)
