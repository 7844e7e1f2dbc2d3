"""The PowerShell checker must find what is broken, or every test built on it proves nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.render.common import ps_literal
from tests.support.powershell import (
    SINGLE_QUOTES,
    assert_parses,
    attribute_strings,
    commands,
    expandable_strings,
    problems,
    report,
    script_assignments,
    verbatim_strings,
    verbatim_value,
)

GOOD = """\
[CmdletBinding()]
param(
    [ValidateSet('start', 'stop')]
    [string]$Action = 'start'
)
Set-StrictMode -Version Latest
$Name = 'it''s'
$List = @(
    'a'
    'b'
)
function Get-Thing {
    param([string]$Value)
    if ($Value -eq 'x') {
        return 1
    }
    return 2
}
switch ($Action) {
    'start' {
        exit (Get-Thing -Value $Name)
    }
    default {
        exit 3
    }
}
"""


def test_a_valid_script_has_no_problem() -> None:
    assert problems(GOOD) == []
    assert report(GOOD) == ""
    assert_parses(GOOD)


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("$a = 1\nif ($a {\n    $b = 2\n}\n", 2),          # unclosed parenthesis
        ("$a = 1\nfunction F {\n    $b = 2\n", 2),          # unclosed brace
        ("$x = 'ok'\n$y = 'never closed\n", 2),            # unterminated string
        ("$a = @(1, 2\n", 1),                              # unclosed array
    ],
)
def test_a_broken_script_is_reported_with_its_line(source: str, line: int) -> None:
    found = problems(source)
    assert found, "the checker accepted a broken script"
    assert {p.kind for p in found} <= {"ERROR", "MISSING"}
    assert min(p.line for p in found) >= line - 1
    assert any(p.line >= line for p in found)
    with pytest.raises(AssertionError, match="syntax problem"):
        assert_parses(source, "broken.ps1")


def test_report_points_at_the_line_and_column() -> None:
    text = report("$ok = 1\n$x = 'é' + (\n", "t.ps1")
    assert text.startswith("t.ps1: ")
    assert "line 2" in text
    assert "| $x = 'é' + (" in text


@pytest.mark.parametrize("quote", sorted(SINGLE_QUOTES - {"'"}))
def test_a_typographic_quote_that_ends_a_string_is_reported(quote: str) -> None:
    # tree-sitter sees one string; PowerShell ends it at the typographic quote and runs the rest.
    source = f"$name = 'abc{quote}; Stop-Computer; {quote}'\n"
    found = problems(source)
    assert [p.kind for p in found] == ["QUOTE"]
    assert found[0].line == 1
    assert found[0].column == 9
    assert verbatim_strings(source) == []


def test_columns_count_characters_not_bytes() -> None:
    found = problems("$a = 'ééé' + ( \n")
    assert found
    assert found[0].line == 1


def test_a_byte_order_mark_is_not_a_problem() -> None:
    assert problems("\ufeff$a = 'x'\n".encode()) == []
    assert verbatim_strings("\ufeff$a = 'x'\n".encode())[0].column == 6


def test_verbatim_value_decodes_doubled_quotes() -> None:
    assert verbatim_value("'it''s'") == "it's"
    assert verbatim_value("'a\u2019\u2019b'") == "a\u2019b"
    assert verbatim_value("'$(x) `n $env:Y'") == "$(x) `n $env:Y"
    with pytest.raises(ValueError, match="ends this string"):
        verbatim_value("'a\u2018b'")
    with pytest.raises(ValueError, match="not a single-quoted"):
        verbatim_value('"a"')


NASTY = ["it's", "\u2018a\u2019 \u201ab\u201b", "$(Stop-Computer)", "$env:USERNAME", "`n`$",
         "a; b", "C:\\Program Files\\x", "line\nbreak", "''", "@'", "'@", "#", "<# x #>"]


@pytest.mark.parametrize("value", NASTY)
def test_ps_literal_gives_one_string_with_the_value(value: str) -> None:
    source = f"$v = {ps_literal(value)}\nWrite-Output $v\n"
    assert problems(source) == []
    assert [s.value for s in verbatim_strings(source)] == [value]
    assert script_assignments(source) == {"v": [value]}


# Any text a stack value can hold: every printable character, the quotes, tabs and line breaks
# (other control characters are no text; tree-sitter stops reading at a NUL).
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"))
                | st.sampled_from([*sorted(SINGLE_QUOTES), "\t", "\n", "\r", "$", "`", "@"]),
                max_size=40)


@given(_TEXT)
def test_ps_literal_round_trips_any_text(value: str) -> None:
    source = f"$v = {ps_literal(value)}\n"
    assert problems(source) == []
    assert [s.value for s in verbatim_strings(source)] == [value]


def test_a_naive_literal_with_a_typographic_quote_fails_the_check() -> None:
    value = "x\u2019; Remove-Item C:\\ -Recurse; \u2019"
    assert problems(f"$v = '{value}'\n")
    assert not problems(f"$v = {ps_literal(value)}\n")


def test_expandable_strings_are_listed() -> None:
    assert expandable_strings('$a = "x $y"\n$b = \'z\'\n') == ['"x $y"']


def test_script_assignments_lists_and_hashtables() -> None:
    assigned = script_assignments(GOOD + "$H = [ordered]@{\n    'K' = 'V'\n}\n")
    assert assigned["Name"] == ["it's"]
    assert assigned["List"] == ["a", "b"]
    assert assigned["H"] == ["K", "V"]
    assert "Value" not in assigned  # inside a function, not at script level


def test_attribute_strings() -> None:
    assert attribute_strings(GOOD, "validateset") == [["start", "stop"]]
    assert attribute_strings(GOOD, "ValidateRange") == []


def test_commands_lists_names_and_parameters() -> None:
    found = commands("taskkill /F /IM python.exe\nStop-Process -Id 4 -Force\n& $Python 'x'\n")
    assert [(c.name, c.parameters, c.line) for c in found] == [
        ("taskkill", (), 1),
        ("Stop-Process", ("-Id", "-Force"), 2),
        ("$Python", (), 3),
    ]
