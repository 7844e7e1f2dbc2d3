"""Read a YAML file the way stack.yaml and host data must be read: bounded, strict, with lines.

PyYAML's safe loader is safe from code execution but not from cost or oddity. A hostile or
careless file can still make it build a billion-element tree from a few aliases (the "billion
laughs"), recurse until Python's stack overflows (an anchor that contains itself, or ten
thousand nested brackets), or raise a bare ``TypeError`` (a list used as a mapping key). So
the event stream is scanned first, without building anything, and the file is refused with a
:class:`YamlError` (line, what was found, what is expected) when it is:

* larger than :data:`MAX_BYTES` (checked before reading: a 10 MB file costs nothing);
* nested deeper than :data:`MAX_DEPTH`;
* larger than :data:`MAX_NODES` once every alias is expanded (that is what validation walks);
* holding an alias to an anchor that is still open (a self-containing anchor);
* using a list or a mapping as a key.

Only then is the document composed and constructed, by a loader that refuses a key given twice
in one mapping (PyYAML silently keeps the last) and supports merge keys (``<<: *defaults``),
which are standard YAML. :func:`line_index` gives the 1-based line of every key and item by
path; a key that came in through a merge key points at its own line in the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from monitoring.stack.checks import Path, Problem

#: stack.yaml is about 12 KB; a hundred times that is a mistake, not a stack.
MAX_BYTES = 1024 * 1024
#: The stack nests about 5 levels deep.
MAX_DEPTH = 32
#: Nodes after alias expansion: the stack has about 800.
MAX_NODES = 50_000

MERGE_TAG = "tag:yaml.org,2002:merge"
_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Tags of plain scalars YAML 1.1 reads as something else than a string (Off, No, 012, ~).
_NOT_STRING_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                    "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"}


class YamlError(ValueError):
    """The YAML cannot be read as a stack file; :attr:`problem` says where and why."""

    def __init__(self, problem: Problem, line: int | None = None) -> None:
        self.problem = problem
        self.line = line
        super().__init__(f"{problem.found}; expected {problem.expected}")


def _fail(found: str, expected: str, mark: Any = None) -> YamlError:
    line = mark.line + 1 if mark is not None else None
    where = f" at line {line}, column {mark.column + 1}" if mark is not None else ""
    return YamlError(Problem((), f"{found}{where}", expected), line)


# --------------------------------------------------------------------------- reading the bytes


def read_text(path: str | FsPath, what: str) -> str:
    """The UTF-8 text of ``path``, refusing a missing file, a directory, or one too large to be
    ``what`` before reading it."""
    path = FsPath(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise YamlError(Problem((), "a directory", f"{what}, not a directory"))
        if size > MAX_BYTES:
            raise YamlError(Problem((), f"a file of {size:,} bytes",
                                    f"at most {MAX_BYTES:,} bytes ({what})"))
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlError(Problem((), "no such file", what)) from None
    except OSError as exc:
        raise YamlError(Problem((), f"a file that cannot be read ({exc.strerror})", what)
                        ) from None
    if len(data) > MAX_BYTES:  # grew while we looked, or a special file
        raise YamlError(Problem((), f"more than {MAX_BYTES:,} bytes",
                                f"at most {MAX_BYTES:,} bytes ({what})"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(Problem((), f"bytes that are not UTF-8 ({exc.reason} at byte "
                                    f"{exc.start})", "a UTF-8 text file")) from None


# --------------------------------------------------------------------------- the scan


@dataclass
class _Open:
    """A collection being scanned: its anchor, where its expanded size started, and (for a
    mapping) whether the next node is a key."""

    anchor: str | None
    start: int
    mapping: bool
    key_next: bool = True
    scalar_anchors: set[str] = field(default_factory=set)


def _scan(text: str) -> None:
    """Refuse what would be costly or odd to build (see the module docstring), from events."""
    if len(text) > MAX_BYTES:
        raise YamlError(Problem((), f"{len(text):,} characters",
                                f"a file of at most {MAX_BYTES:,} bytes"))
    open_: list[_Open] = []
    sizes: dict[str, int] = {}
    scalars: set[str] = set()  # anchors of scalar nodes (fine as keys)
    total = 0
    loader = _BASE_LOADER(text)
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            is_node = isinstance(event, yaml.NodeEvent) and not isinstance(
                event, yaml.CollectionEndEvent)
            if is_node:
                parent = open_[-1] if open_ else None
                as_key = parent is not None and parent.mapping and parent.key_next
                if as_key and isinstance(event, yaml.CollectionStartEvent):
                    raise _fail("a list or mapping used as a key",
                                "a plain key (a name, quoted if needed)", event.start_mark)
                if isinstance(event, yaml.AliasEvent):
                    if event.anchor not in sizes:
                        if any(o.anchor == event.anchor for o in open_):
                            raise _fail(f"an alias *{event.anchor} inside its own anchor",
                                        "an anchor that does not contain itself",
                                        event.start_mark)
                        raise _fail(f"an alias *{event.anchor} to no anchor",
                                    f"an anchor &{event.anchor} before it", event.start_mark)
                    if as_key and event.anchor not in scalars:
                        raise _fail("a list or mapping used as a key (through an alias)",
                                    "a plain key (a name, quoted if needed)", event.start_mark)
                    total += sizes[event.anchor]
                else:
                    total += 1
                if total > MAX_NODES:
                    raise _fail(f"more than {MAX_NODES:,} values (each alias counted expanded)",
                                "a stack file (aliases that multiply are refused)",
                                event.start_mark)
                if parent is not None and parent.mapping and not isinstance(
                        event, yaml.CollectionStartEvent):
                    parent.key_next = not parent.key_next
                if isinstance(event, yaml.ScalarEvent) and event.anchor:
                    sizes[event.anchor] = 1
                    scalars.add(event.anchor)
                if isinstance(event, yaml.CollectionStartEvent):
                    if len(open_) >= MAX_DEPTH:
                        raise _fail(f"more than {MAX_DEPTH} levels of nesting",
                                    "a stack file (about 5 levels deep)", event.start_mark)
                    open_.append(_Open(event.anchor, total - 1,
                                       isinstance(event, yaml.MappingStartEvent)))
            elif isinstance(event, yaml.CollectionEndEvent):
                done = open_.pop()
                if done.anchor:
                    sizes[done.anchor] = total - done.start
                if open_ and open_[-1].mapping:
                    open_[-1].key_next = not open_[-1].key_next
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- building


class _StrictLoader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """The safe loader, refusing a key given twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in this mapping", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)  # merge keys: explicit keys win over merged ones
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Document:
    """A loaded YAML document: the data, the line of each path, and the source text of each
    plain scalar YAML did not read as a string (to say "quote it")."""

    data: Any
    lines: dict[Path, int]
    plain: dict[Path, str]


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], plain: dict[Path, str]) -> None:
    if isinstance(node, yaml.MappingNode):
        merged: list[yaml.Node] = []
        explicit = set()
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged += value_node.value if isinstance(value_node, yaml.SequenceNode) else [
                    value_node]
                continue
            child = (*path, key_node.value)
            explicit.add(key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, plain)
        # A merged key keeps the line where it is written (in the anchor); the first of
        # several merged mappings wins, and an explicit key wins over all of them.
        for source in merged:
            if not isinstance(source, yaml.MappingNode):
                continue
            sub_lines: dict[Path, int] = {}
            sub_plain: dict[Path, str] = {}
            _index(source, path, sub_lines, sub_plain)
            for sub, line in sub_lines.items():
                if sub[len(path)] not in explicit:
                    lines.setdefault(sub, line)
            for sub, text in sub_plain.items():
                if sub[len(path)] not in explicit:
                    plain.setdefault(sub, text)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, plain)
    elif isinstance(node, yaml.ScalarNode) and not node.style and (
            node.tag in _NOT_STRING_TAGS):
        plain[path] = node.value


def load(text: str) -> Document:
    """The document in ``text``, or :class:`YamlError` naming the line and what is wrong."""
    try:
        _scan(text)
        loader = _StrictLoader(text)
        try:
            root = loader.get_single_node()
            lines: dict[Path, int] = {}
            plain: dict[Path, str] = {}
            if root is not None:
                _index(root, (), lines, plain)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise _fail(f"a YAML syntax error: {problem}",
                    "valid YAML (check indentation and quoting there)", mark) from None
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, YamlError):
            raise
        # PyYAML's own constructors: an impossible date (2026-02-30), an integer of more
        # digits than Python converts. The message names the value; it holds no secret
        # from a well-formed file, and the report redacts what looks like one.
        raise _fail(f"a value YAML cannot convert ({exc})",
                    "a valid value (quote it if it is meant as text)") from None
    return Document(data, lines, plain)
