"""A surgical JSONC editor: change one value in the user's text, keep every other byte.

Kilo Code, OpenCode and Gemini CLI read JSON with comments and trailing commas; Claude Code
reads strict JSON. A ``json.loads``/``json.dumps`` round trip would drop the comments and
reformat the file, so instead the text is tokenised, the span of the value at a key path is
found, and only that span is replaced. A missing key is inserted after the last member of its
object, indented like the file. So switching a value and switching it back gives the same
bytes, which the property tests check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

KeyPath = tuple[str, ...]
_NUMBER: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERAL: Final = re.compile(r"true|false|null")


class JsoncError(ValueError):
    """The text is not JSON(C): the message names the line and column."""


@dataclass
class Node:
    """A value's span in the text; objects and arrays also hold their members."""

    kind: str  # "object", "array" or "scalar"
    start: int
    end: int
    members: list[Member] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)


@dataclass
class Member:
    key: str
    start: int  # where the key's opening quote is
    value: Node


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


class _Parser:
    def __init__(self, text: str, comments: bool) -> None:
        self.text = text
        self.pos = 0
        self.comments = comments

    def fail(self, what: str) -> JsoncError:
        return JsoncError(f"{what} at {_where(self.text, self.pos)}")

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif text.startswith("//", self.pos) and self.comments:
                nl = text.find("\n", self.pos)
                self.pos = len(text) if nl < 0 else nl
            elif text.startswith("/*", self.pos) and self.comments:
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.fail("unterminated comment")
                self.pos = close + 2
            elif text.startswith("/", self.pos):
                raise self.fail("a comment, which this file's program does not accept")
            else:
                return

    def string(self) -> str:
        start = self.pos
        text = self.text
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                self.pos = i + 1
                try:
                    value: str = json.loads(text[start:i + 1])
                except ValueError:
                    self.pos = start
                    raise self.fail("a bad string") from None
                return value
            if ch == "\n":
                break
            i += 1
        self.pos = start
        raise self.fail("an unterminated string")

    def value(self) -> Node:
        self.skip()
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.fail("unexpected end of file")
        ch = text[start]
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.arr()
        if ch == '"':
            self.string()
            return Node("scalar", start, self.pos)
        match = _NUMBER.match(text, start) or _LITERAL.match(text, start)
        if not match:
            raise self.fail("a value (string, number, object, array, true, false or null)")
        self.pos = match.end()
        return Node("scalar", start, self.pos)

    def obj(self) -> Node:
        node = Node("object", self.pos, -1)
        self.pos += 1
        seen: set[str] = set()
        while True:
            self.skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            if not self.text.startswith('"', self.pos):
                raise self.fail("a key in double quotes or '}'")
            key_start = self.pos
            key = self.string()
            if key in seen:
                self.pos = key_start
                raise self.fail(f"the key {key!r} a second time")
            seen.add(key)
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail("':' after a key")
            self.pos += 1
            node.members.append(Member(key, key_start, self.value()))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("}", self.pos):
                raise self.fail("',' or '}'")

    def arr(self) -> Node:
        node = Node("array", self.pos, -1)
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            node.items.append(self.value())
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                raise self.fail("',' or ']'")


def parse(text: str, *, comments: bool = True) -> Node:
    """The tree of spans of ``text``; :class:`JsoncError` if it is not JSON(C) or repeats a key.

    ``comments=False`` is strict JSON (Claude Code discards a settings file with a comment).
    Trailing commas are accepted only with comments (JSONC).
    """
    parser = _Parser(text, comments)
    root = parser.value()
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("text after the end of the value")
    if not comments and re.search(r",\s*[}\]]", _strip_strings(text)):
        raise JsoncError("a trailing comma, which strict JSON does not accept")
    return root


def _strip_strings(text: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def to_python(text: str, node: Node) -> Any:
    """The Python value of ``node``."""
    if node.kind == "object":
        return {m.key: to_python(text, m.value) for m in node.members}
    if node.kind == "array":
        return [to_python(text, item) for item in node.items]
    return json.loads(text[node.start:node.end])


def find(root: Node, path: KeyPath) -> Node | None:
    node: Node | None = root
    for key in path:
        if node is None or node.kind != "object":
            return None
        node = next((m.value for m in node.members if m.key == key), None)
    return node


MISSING: Final = object()


def get(text: str, path: KeyPath, root: Node | None = None) -> Any:
    """The value at ``path``, or :data:`MISSING`."""
    node = find(root or parse(text), path)
    return MISSING if node is None else to_python(text, node)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Style:
    indent: str
    newline: str

    @classmethod
    def of(cls, text: str) -> Style:
        match = re.search(r"\n([ \t]+)\S", text)
        return cls(indent=match.group(1) if match else "  ",
                   newline="\r\n" if "\r\n" in text else "\n")


def dumps(value: Any, style: Style, level: int) -> str:
    """``value`` as JSON text for depth ``level``, in the file's indent and line ending."""
    text = json.dumps(value, indent=style.indent, ensure_ascii=False)
    pad = style.indent * level
    return text.replace("\n", style.newline + pad)


def _line_end_after(text: str, pos: int) -> int:
    """After trailing spaces and a comment on the same line as ``pos``."""
    match = re.compile(r"[ \t]*(//[^\r\n]*|/\*.*?\*/)?").match(text, pos)
    return match.end() if match and match.group(1) else pos


def set_value(text: str, path: KeyPath, value: Any, *, comments: bool = True) -> str:
    """``text`` with ``value`` at ``path`` (replaced in place, or inserted minimally)."""
    root = parse(text, comments=comments)
    style = Style.of(text)
    node = find(root, path)
    if node is not None:
        if to_python(text, node) == value and node.kind == "scalar":
            return text
        return text[:node.start] + dumps(value, style, _base(text, node)) + text[node.end:]
    # The deepest existing object on the path gets the rest as one nested member.
    for cut in range(len(path) - 1, -1, -1):
        parent = find(root, path[:cut])
        if parent is not None:
            break
    if parent is None or parent.kind != "object":
        raise JsoncError(f"{'.'.join(path[:cut]) or 'the file'} is not an object")
    nested: Any = value
    for key in reversed(path[cut + 1:]):
        nested = {key: nested}
    return _insert(text, parent, path[cut], nested, style)


def _base(text: str, node: Node) -> int:
    """The indentation level of the line ``node`` starts on, in units of the file's indent."""
    line_start = text.rfind("\n", 0, node.start) + 1
    lead = len(text[line_start:node.start]) - len(text[line_start:node.start].lstrip(" \t"))
    unit = len(Style.of(text).indent) or 2
    return lead // unit


def _insert(text: str, obj: Node, key: str, value: Any, style: Style) -> str:
    level = _base(text, obj) + 1
    pad = style.indent * level
    member = f"{json.dumps(key, ensure_ascii=False)}: {dumps(value, style, level)}"
    multiline = "\n" in text[obj.start:obj.end] or not obj.members
    if not obj.members:
        close_pad = style.indent * (level - 1)
        inner = f"{style.newline}{pad}{member}{style.newline}{close_pad}"
        return text[:obj.start + 1] + inner + text[obj.end - 1:]
    last = obj.members[-1].value
    after = re.compile(r"(?:\s|//[^\n]*|/\*.*?\*/)*", re.S).match(text, last.end)
    trailing = after is not None and text.startswith(",", after.end())
    if not multiline:
        return text[:last.end] + f", {member}" + text[last.end:]
    if trailing:
        assert after is not None
        comma = after.end() + 1
        at = _line_end_after(text, comma)
        return text[:at] + f"{style.newline}{pad}{member}," + text[at:]
    at = _line_end_after(text, last.end)
    return (text[:last.end] + "," + text[last.end:at] + f"{style.newline}{pad}{member}"
            + text[at:])


def delete(text: str, path: KeyPath, *, comments: bool = True) -> str:
    """``text`` without the member at ``path`` (unchanged when it is not there).

    The exact inverse of an insertion by :func:`set_value` (so a key added at takeover and
    removed at release leaves the original bytes); otherwise the member and its separating
    comma go, and the rest stays.
    """
    root = parse(text, comments=comments)
    parent = find(root, path[:-1])
    if parent is None or parent.kind != "object":
        return text
    index = next((i for i, m in enumerate(parent.members) if m.key == path[-1]), None)
    if index is None:
        return text
    member = parent.members[index]
    end = member.value.end
    if index == len(parent.members) - 1 and text.startswith(",", end):
        end += 1  # its own trailing comma
    if index > 0:
        prev = parent.members[index - 1].value
        if text.startswith(",", prev.end):
            at = _line_end_after(text, prev.end + 1)
            if not text[at:member.start].strip():
                if end > member.value.end:  # trailing-comma style: the previous keeps its comma
                    return text[:at] + text[end:]
                return text[:prev.end] + text[prev.end + 1:at] + text[end:]
        return text[:prev.end] + text[member.value.end:]
    if len(parent.members) > 1:
        return text[:member.start] + text[parent.members[1].start:]
    return text[:parent.start] + "{}" + text[parent.end:]


def apply(text: str, changes: Sequence[tuple[KeyPath, Any]], *, comments: bool = True,
          delete_marker: object = None) -> str:
    """Every change in order: a value, or ``delete_marker`` to remove the key."""
    for path, value in changes:
        if value is delete_marker and delete_marker is not None:
            text = delete(text, path, comments=comments)
        else:
            text = set_value(text, path, value, comments=comments)
    return text


def iter_paths(value: Any, prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Leaf paths of a nested dict (used to compare owned subtrees)."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from iter_paths(sub, (*prefix, key))
    else:
        yield prefix, value
