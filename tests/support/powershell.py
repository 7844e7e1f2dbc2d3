"""PowerShell syntax checks with tree-sitter-powershell, for tests on a machine without PowerShell.

Every script a Windows renderer emits, and every command a Windows operation sends over WinRM,
is checked here: :func:`problems` lists each ERROR or MISSING node the grammar produced, with its
line and column, so a test failure points at the broken spot instead of saying "bad script".

The grammar knows only the ASCII apostrophe as a single quote. PowerShell also ends a
single-quoted string at the typographic quotes U+2018, U+2019, U+201A and U+201B, so a value
holding one of them can break out of a literal that tree-sitter still sees as whole. The checks
here close that gap: :func:`problems` also reports an undoubled quote character inside a
single-quoted literal, and :func:`verbatim_strings` decodes literals by PowerShell's rules, so a
test can assert that a value arrives as ONE literal holding exactly that value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter
import tree_sitter_powershell

#: Characters PowerShell treats as a single quote (the tokenizer's ``IsSingleQuote``).
SINGLE_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")

_LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())
_BOM = "\ufeff"


@dataclass(frozen=True)
class Problem:
    """One place the parse failed: 1-based line and column (in characters), and what is there."""

    line: int
    column: int
    kind: str  # "ERROR", "MISSING" or "QUOTE"
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.kind} {self.detail}"


@dataclass(frozen=True)
class StringLiteral:
    """A single-quoted string literal: the value PowerShell reads and where it starts."""

    value: str
    raw: str
    line: int
    column: int
    start_byte: int
    end_byte: int


def _source_bytes(source: str | bytes) -> bytes:
    """UTF-8 bytes without a byte-order mark (rendered scripts carry one for Windows PS 5.1)."""
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    return text.removeprefix(_BOM).encode("utf-8")


def parse(source: str | bytes) -> tree_sitter.Tree:
    """The tree-sitter tree of ``source`` (str, or UTF-8 bytes with or without a BOM)."""
    return tree_sitter.Parser(_LANGUAGE).parse(_source_bytes(source))


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _position(data: bytes, point: tree_sitter.Point) -> tuple[int, int]:
    """1-based (line, column in characters) of a tree-sitter point (whose column is bytes)."""
    line_start = 0
    for _ in range(point.row):
        line_start = data.index(b"\n", line_start) + 1
    prefix = data[line_start:line_start + point.column]
    return point.row + 1, len(prefix.decode("utf-8", errors="replace")) + 1


def _snippet(node: tree_sitter.Node) -> str:
    text = (node.text or b"").decode("utf-8", errors="replace")
    return repr(text if len(text) <= 60 else text[:57] + "...")


def verbatim_value(raw: str) -> str:
    """The value PowerShell reads from a single-quoted literal ``raw`` (quotes included).

    A quote character inside must be doubled (any of :data:`SINGLE_QUOTES` followed by another
    one); a lone one is where PowerShell would end the string, and is a ``ValueError`` here.
    """
    if raw.startswith("@"):  # verbatim here-string: @'<newline> ... <newline>'@, taken as is
        body = raw[2:-2]
        return body.removeprefix("\r\n").removeprefix("\n").removesuffix("\n").removesuffix("\r")
    if len(raw) < 2 or raw[0] not in SINGLE_QUOTES or raw[-1] not in SINGLE_QUOTES:
        raise ValueError(f"not a single-quoted literal: {raw!r}")
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char in SINGLE_QUOTES:
            if i + 1 >= len(body) or body[i + 1] not in SINGLE_QUOTES:
                raise ValueError(f"PowerShell ends this string at the {char!r} at offset {i + 1}")
            out.append(char)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _string_nodes(tree: tree_sitter.Tree) -> Iterator[tree_sitter.Node]:
    for node in _walk(tree.root_node):
        if node.type in ("verbatim_string_characters", "verbatim_here_string_characters"):
            yield node


def problems(source: str | bytes) -> list[Problem]:
    """Every ERROR and MISSING node of the parse, and every single-quoted literal that
    PowerShell would end early at an undoubled (typographic) quote; empty when all is well."""
    data = _source_bytes(source)
    tree = parse(data)
    found: list[Problem] = []
    for node in _walk(tree.root_node):
        if node.is_error:
            line, col = _position(data, node.start_point)
            found.append(Problem(line, col, "ERROR", f"cannot parse {_snippet(node)}"))
        elif node.is_missing:
            line, col = _position(data, node.start_point)
            found.append(Problem(line, col, "MISSING", f"expected {node.type!r} here"))
    for node in _string_nodes(tree):
        try:
            verbatim_value((node.text or b"").decode("utf-8"))
        except ValueError as exc:
            line, col = _position(data, node.start_point)
            found.append(Problem(line, col, "QUOTE", f"{exc}: {_snippet(node)}"))
    return sorted(found, key=lambda p: (p.line, p.column))


def verbatim_strings(source: str | bytes) -> list[StringLiteral]:
    """Every single-quoted literal of ``source`` with the value PowerShell reads from it.

    Literals PowerShell would end early (see :func:`problems`) are left out, so a value that
    breaks out of its quotes is never found whole.
    """
    data = _source_bytes(source)
    out: list[StringLiteral] = []
    for node in _string_nodes(parse(data)):
        raw = (node.text or b"").decode("utf-8")
        try:
            value = verbatim_value(raw)
        except ValueError:
            continue
        line, col = _position(data, node.start_point)
        out.append(StringLiteral(value, raw, line, col, node.start_byte, node.end_byte))
    return out


def expandable_strings(source: str | bytes) -> list[str]:
    """The raw text of every double-quoted (expanding) string and here-string of ``source``."""
    tree = parse(source)
    return [(n.text or b"").decode("utf-8") for n in _walk(tree.root_node)
            if n.type in ("expandable_string_literal", "expandable_here_string_literal")]


@dataclass(frozen=True)
class Command:
    """One command invocation: its name (or the expression after ``&``), the ``-Parameter``
    words it passes, and where it is."""

    name: str
    parameters: tuple[str, ...]
    line: int
    text: str


def commands(source: str | bytes) -> list[Command]:
    """Every command invocation of ``source``, in order (to assert what a script runs)."""
    data = _source_bytes(source)
    out: list[Command] = []
    for node in _walk(parse(data).root_node):
        if node.type != "command":
            continue
        name = ""
        parameters: list[str] = []
        for child in node.children:
            if child.type in ("command_name", "command_name_expr"):
                name = (child.text or b"").decode("utf-8")
            elif child.type == "command_elements":
                parameters += [(c.text or b"").decode("utf-8") for c in child.children
                               if c.type == "command_parameter"]
        line, _ = _position(data, node.start_point)
        out.append(Command(name, tuple(parameters), line, (node.text or b"").decode("utf-8")))
    return out


def _strings_under(node: tree_sitter.Node, literals: dict[int, StringLiteral]) -> list[str]:
    return [literals[n.start_byte].value for n in _walk(node) if n.start_byte in literals
            and n.type in ("verbatim_string_characters", "verbatim_here_string_characters")]


def script_assignments(source: str | bytes) -> dict[str, list[str]]:
    """The single-quoted values assigned at script level: ``$Name = 'x'`` gives
    ``{"Name": ["x"]}``, an ``@(...)`` list or a hashtable gives all its literals in order.

    Only statements at the top of the script count (not those inside functions or blocks);
    the first assignment of a name wins. Names are as written, without the ``$``.
    """
    data = _source_bytes(source)
    tree = parse(data)
    literals = {lit.start_byte: lit for lit in verbatim_strings(data)}
    out: dict[str, list[str]] = {}
    for statements in tree.root_node.children:
        if statements.type != "statement_list":
            continue
        for pipeline in statements.children:
            assignment = pipeline.children[0] if pipeline.children else None
            if assignment is None or assignment.type != "assignment_expression":
                continue
            left, right = assignment.children[0], assignment.children[-1]
            variables = [n for n in _walk(left) if n.type == "variable"]
            if len(variables) != 1:
                continue
            name = (variables[0].text or b"").decode("utf-8").removeprefix("$")
            out.setdefault(name, _strings_under(right, literals))
    return out


def attribute_strings(source: str | bytes, attribute: str) -> list[list[str]]:
    """The single-quoted arguments of each ``[attribute(...)]`` named ``attribute`` (any case):
    ``[ValidateSet('a', 'b')]`` gives ``[["a", "b"]]``."""
    data = _source_bytes(source)
    literals = {lit.start_byte: lit for lit in verbatim_strings(data)}
    out: list[list[str]] = []
    for node in _walk(parse(data).root_node):
        if node.type != "attribute":
            continue
        names = [c for c in node.children if c.type == "attribute_name"]
        if names and (names[0].text or b"").decode("utf-8").lower() == attribute.lower():
            out.append(_strings_under(node, literals))
    return out


def report(source: str | bytes, name: str = "<script>") -> str:
    """A readable list of :func:`problems` with the offending source lines; "" when none."""
    found = problems(source)
    if not found:
        return ""
    lines = _source_bytes(source).decode("utf-8").splitlines()
    out = [f"{name}: {len(found)} PowerShell syntax problem(s)"]
    for problem in found:
        out.append(f"  {problem}")
        if 0 < problem.line <= len(lines):
            out.append(f"    | {lines[problem.line - 1]}")
            out.append(f"    | {' ' * (problem.column - 1)}^")
    return "\n".join(out)


def assert_parses(source: str | bytes, name: str = "<script>") -> None:
    """Fail the test with :func:`report` when ``source`` has any syntax problem."""
    text = report(source, name)
    assert not text, text
