"""How values enter PowerShell and how scripts travel: literals, encoding, CLIXML, and every
operation's commands with hostile values (they parse, and each value is ONE literal)."""

from __future__ import annotations

import base64
import importlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.windows import powershell as ps
from tests.support.powershell import assert_parses, commands, verbatim_strings
from tests.tasks.windows.opcases import run_operation

HOSTILE = [
    "it's",
    "$(Remove-Item C:\\ -Recurse)",
    "`n`$x",
    "\u2018typo\u2019 \u201aquotes\u201b",
    '"double" ; exit 0',
    "@'\nhere'@",
    "C:\\Program Files\\x y\\",
    "line\nbreak",
]


@given(st.text().filter(lambda v: "\0" not in v))
def test_literal_round_trips_any_text(value: str) -> None:
    script = f"$X = {ps.literal(value)}"
    assert_parses(script)
    [lit] = verbatim_strings(script)
    assert lit.value == value


def test_literal_refuses_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        ps.literal("a\0b")


@pytest.mark.parametrize("value", HOSTILE)
def test_comment_cannot_be_broken_by_a_value(value: str) -> None:
    line = ps.comment("fact File", {"path": value})
    assert "\n" not in line
    assert "\r" not in line
    assert line.isascii()
    assert_parses(line + "\n$null")
    assert commands(line) == []


def test_comment_label_must_be_plain() -> None:
    with pytest.raises(ValueError, match="plain words"):
        ps.comment("x\nRemove-Item")


def test_encode_is_base64_utf16le() -> None:
    script = "Write-Output 'Jürgen €'"
    encoded = ps.encode(script)
    assert base64.b64decode(encoded) == script.encode("utf-16-le")
    assert ps.decode(encoded) == script


def test_command_args_and_the_length_limit() -> None:
    args = ps.command_args("Write-Output 1")
    assert args[:-1] == [*ps.POWERSHELL_ARGS, "-EncodedCommand"]
    assert ps.decode(args[-1]) == "Write-Output 1"
    with pytest.raises(ValueError, match="characters once encoded"):
        ps.command_args("#" * 13000)


def test_wrap_sets_errors_encoding_environment_and_directory() -> None:
    script = ps.wrap("Get-Item x", chdir="C:\\it's", env={"A": "$b"})
    assert_parses(script)
    assert script.startswith("$ErrorActionPreference = 'Stop'\n")
    values = [lit.value for lit in verbatim_strings(script)]
    assert "C:\\it's" in values
    assert "$b" in values
    assert script.endswith("Get-Item x")


def test_native_refuses_a_double_quote() -> None:
    with pytest.raises(ValueError, match="double quote"):
        ps.native("python.exe", '-c "x"')
    assert_parses(ps.native("C:\\p y\\python.exe", "-m", "venv"))


def test_script_puts_values_only_in_assignments() -> None:
    text = ps.script("op x", {"Name": "a'b", "Flag": True, "Count": 3, "Items": ["x", "y"]},
                     "Write-Output $Name")
    assert text.splitlines()[1:5] == ["$Name = 'a''b'", "$Flag = $true", "$Count = 3",
                                      "$Items = @('x', 'y')"]
    with pytest.raises(ValueError, match="letters and digits"):
        ps.script("op x", {"bad-name": 1}, "")


# --------------------------------------------------------------------------- CLIXML

CLIXML = (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/'
          b'powershell/2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.'
          b'Automation.PSCustomObject</T></TN><MS><I64 N="SourceId">1</I64></MS></Obj>'
          b'<S S="Error">Get-Item : Cannot find path \'C:\\nope\' because it does not exist.'
          b'_x000D__x000A_'
          b'</S><S S="Error">At line:1 char:1_x000D__x000A_</S>'
          b'<S S="warning">R\xc3\xa8gle ignor\xc3\xa9e_x000A_</S></Objs>')


def test_clixml_becomes_readable_lines() -> None:
    text = ps.decode_clixml(CLIXML)
    assert text.splitlines() == [
        "Get-Item : Cannot find path 'C:\\nope' because it does not exist.",
        "At line:1 char:1",
        "Règle ignorée",
    ]


def test_plain_stderr_and_broken_clixml_pass_through() -> None:
    assert ps.decode_clixml(b"plain error\r\n") == "plain error\r\n"
    assert "<Objs" in ps.decode_clixml(b"#< CLIXML\r\n<Objs><S S='Error'>cut")


def test_decode_output_is_utf8_without_bom_and_crlf() -> None:
    assert ps.decode_output("\ufeffJürgen\r\nx\r\n".encode()) == "Jürgen\nx\n"


# --------------------------------------------------------------------------- injection


def _op(path: str) -> Any:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"tasks.windows.{module}"), name)


def _absent(cls: str) -> Any:
    answers: dict[str, Any] = {
        "Directory": {"exists": False, "type": None},
        "File": {"exists": False, "type": None, "sha256": None, "size": None},
        "FirewallRule": [],
        "ScheduledTask": {"exists": False},
        "EventLogSource": {"exists": False, "log": None},
        "PythonInterpreter": {"exists": False, "version": None},
        "Venv": {"exists": False},
        "UserEnvironmentVariable": {"present": False, "digest": None},
    }
    return answers[cls]


class AbsentFacts(dict[str, Any]):
    """Every fact answers "absent", whatever its arguments."""

    def get(self, key: str, default: Any = None) -> Any:
        return _KeyAll(_absent(key))


class _KeyAll(dict[str, Any]):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return self.value


TASK = ('<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">'
        '<Actions><Exec><Command>{v}</Command><Arguments>{v}</Arguments></Exec></Actions></Task>')


def _calls(value: str) -> list[tuple[str, dict[str, Any]]]:
    from xml.sax.saxutils import escape

    return [
        ("files.directory", {"path": value}),
        ("files.file", {"path": value}),
        ("firewall.rule", {"rule": value, "description": value, "program": value,
                           "protocol": "tcp", "local_port": "4000"}),
        ("scheduled_tasks.task", {"task": value, "folder": "\\PF\\",
                                  "definition": TASK.format(v=escape(value)), "user": value,
                                  "started": True}),
        ("eventlog.source", {"source": value, "log": value}),
        ("python.interpreter", {"path": value, "installer": value}),
        ("python.venv", {"path": value, "python": value}),
        ("python.pip_install", {"venv": value, "wheelhouse": value, "lock": value,
                                "wheel": value, "lock_sha256": "a", "wheel_sha256": "b"}),
        ("environment.user_variable", {"variable": "X"}),
    ]


@pytest.mark.parametrize("value", [v for v in HOSTILE if '"' not in v])
def test_hostile_values_reach_every_operation_as_one_literal(value: str) -> None:
    for path, args in _calls(value):
        result = run_operation(_op(path), args, AbsentFacts(), {"X": value})
        assert result.commands, path
        for command in result.commands:
            script = command if isinstance(command, str) else command.get("script", "")
            assert_parses(script, path)  # run_operation checked it wrapped, too
            literals = [lit.value for lit in verbatim_strings(script)]
            if path != "environment.user_variable":
                assert any(value in lit for lit in literals), (path, script)
            # Outside literals the value never appears: it cannot become code.
            assert value not in _outside_literals(script), (path, script)


def _outside_literals(script: str) -> str:
    data = script.encode("utf-8")
    out = bytearray()
    last = 0
    for lit in verbatim_strings(script):
        out += data[last:lit.start_byte]
        last = lit.end_byte
    out += data[last:]
    return out.decode("utf-8", errors="replace")


def test_a_secret_never_appears_in_the_set_command() -> None:
    secret = "sk-live-0123456789abcdefghijklmnop"
    result = run_operation(_op("environment.user_variable"), {"variable": "X"}, AbsentFacts(),
                           {"X": secret})
    [command] = result.commands
    assert isinstance(command, dict)
    assert command["stdin"] == "masked"
    assert secret not in repr(result.commands)
    assert base64.b64encode(secret.encode()).decode() not in repr(result.commands)
