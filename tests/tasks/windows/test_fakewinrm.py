"""The fake pywinrm decides what a script gets as powershell.exe does (see fakewinrm.py)."""

from __future__ import annotations

import pytest

from tasks.windows.connector import _upload_script
from tasks.windows.environment import SET_BODY
from tests.tasks.windows.fakewinrm import parse_error, reads_stdin


@pytest.mark.parametrize("script", [
    "foreach ($line in $input) { $line }",
    "$x = (@($input) -join '')",
    "$INPUT | ForEach-Object { $_ }",
    "${input} | Out-Null",
    "$global:input | Out-Null",
    SET_BODY,
    _upload_script("C:\\x", "0" * 64, 0),
])
def test_a_script_naming_dollar_input_gets_stdin(script: str) -> None:
    assert reads_stdin(script)


@pytest.mark.parametrize("script", [
    "process { [Convert]::FromBase64String([string]$_) }",
    "# reads $input\n$x = 1",
    "$s = 'not $input'",
    "ConvertTo-Json -InputObject $x",
    "$inputs = 1; $input2 = 2",
    "1 | ForEach-Object { $input }",         # a nested script block is not searched
    "function Read-All { $input }\nRead-All",
    "$env:input",                            # a drive path, not the variable
])
def test_a_script_not_naming_dollar_input_gets_none(script: str) -> None:
    assert not reads_stdin(script)


def test_a_script_that_does_not_parse_does_not_run() -> None:
    error = parse_error("if ($x {")
    assert error is not None
    assert b"ParserError" in error
    assert parse_error("if ($x) { 1 }") is None
