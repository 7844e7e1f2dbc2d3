"""Read stack.yaml (plus per-host overrides) into a :class:`~monitoring.stack.schema.Stack`, or fail
with ONE report that lists every problem, its YAML path and line, what was found and what is
expected.

Nothing downstream runs on a bad file: render and deploy only ever receive a validated Stack.
Values that look like secrets are never echoed in a report (they are exactly the values a user
pastes by mistake into an ``*_env`` field): the whole report passes
:func:`~monitoring.stack.schema.redact_secrets`, YAML paths included. The YAML itself is read
bounded and strict by :mod:`monitoring.stack.reader`; host data (a YAML file or pyinfra's Python
values) goes through the same checks as the file before it is merged.
"""

from __future__ import annotations

import copy
import difflib
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from monitoring.stack import reader as stack_yaml
from monitoring.stack.checks import Path, Problem, cross_check
from monitoring.stack.reader import YamlError
from monitoring.stack.schema import ENV_NAME, Stack, looks_like_secret, redact_secrets


class StackError(ValueError):
    """stack.yaml (or a host override) is not valid; ``str()`` is the whole report."""

    def __init__(self, source: str, problems: list[Problem], lines: dict[Path, int] | None = None,
                 overridden: set[Path] | None = None) -> None:
        self.source = source
        self.problems = problems
        self.lines = lines or {}
        self.overridden = overridden or set()
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        head = (f"{self.source}: {count} problem{'s' if count != 1 else ''}; "
                "nothing was rendered or deployed. Fix these and run again:")
        out = [head]
        for problem in sorted(self.problems, key=lambda p: _line_for(self.lines, p.path) or 0):
            where = ".".join(str(p) for p in problem.path) or "(the whole file)"
            line = _line_for(self.lines, problem.path)
            origin = " (from host data)" if _is_overridden(self.overridden, problem.path) else ""
            prefix = f"line {line}: " if line else ""
            out.append(f"  - {prefix}{_one_line(where)}{origin}")
            out.append(f"      found:    {_one_line(problem.found)}")
            out.append(f"      expected: {_one_line(problem.expected)}")
        return redact_secrets("\n".join(out))


def _one_line(text: str) -> str:
    """A report line stays one line: a value's own line breaks are shown escaped."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _line_for(lines: dict[Path, int], path: Path) -> int | None:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _is_overridden(overridden: set[Path], path: Path) -> bool:
    return any(path[: len(o)] == o for o in overridden)


# --------------------------------------------------------------------------- overrides


def merge(base: Any, override: Any, path: Path = (), touched: set[Path] | None = None) -> Any:
    """Deep-merge host data over stack.yaml: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value, (*path, key), touched)
        return out
    if touched is not None:
        touched.add(path)
    return copy.deepcopy(override)


# --------------------------------------------------------------------------- pydantic errors


#: Longest value echoed in a report (a pasted file is not).
_MAX_SHOWN = 80


def _describe(value: Any, path: Path) -> str:
    """What was found, short, with anything secret-shaped redacted."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        key = str(path[-1]) if path else ""
        secret_field = key.endswith(("_env", "key", "password", "token"))
        if looks_like_secret(value) or (secret_field and not ENV_NAME.match(value)):
            return f"{value[:4]!r}... ({len(value)} characters, redacted: looks like a secret)"
        if len(value) > _MAX_SHOWN:
            return f"{value[:_MAX_SHOWN]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _strip_tags(loc: tuple[Any, ...], data: Any) -> Path:
    """Drop the discriminator tag pydantic inserts into the path of a tagged-union member."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _unwrap(tp: Any, node: Any) -> Any:
    """The model class (or container) a type annotation stands for, given the data at it."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            kind = node.get("kind") if isinstance(node, dict) else None
            chosen = members[0]
            for member in members:
                if isinstance(member, type) and issubclass(member, BaseModel):
                    field = member.model_fields.get("kind")
                    if field is not None and kind in typing.get_args(field.annotation):
                        chosen = member
            tp = chosen
        else:
            return tp


def _model_at(path: Path, data: Any) -> type[BaseModel] | None:
    """The model class that holds the keys at ``path`` (used for "did you mean")."""
    tp: Any = Stack
    node = data
    for part in path:
        tp = _unwrap(tp, node)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else None)
    tp = _unwrap(tp, node)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _meaning(path: Path, data: Any) -> str:
    """What a key is for, from the schema's description of it (docs/stack-reference.md)."""
    model = _model_at(path[:-1], data)
    info = model.model_fields.get(str(path[-1])) if model else None
    if info is None or not info.description:
        return " (see inventory/stack.yaml for its meaning)"
    return ": " + " ".join(info.description.split())


def _expected(error: Any) -> str:
    msg = str(error["msg"])
    for prefix in ("Input should be ", "Value error, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if error["type"] == "string_pattern_mismatch":
        msg = f"a value matching {error['ctx']['pattern']}"
    if error["type"] == "union_tag_invalid":
        msg = f"kind: one of {error['ctx']['expected_tags']}"
    return msg


def _not_a_string(err: Any, path: Path, plain: Mapping[Path, str]) -> Problem | None:
    """YAML 1.1 reads plain Off, No, Yes, 012, 1e3, ~ as booleans, numbers or null: where a
    string belongs, say so and say how to write it."""
    if err["type"] != "string_type" or path not in plain:
        return None
    text = plain[path]
    return Problem(path, f"{text} (which YAML reads as {err.get('input')!r}, not as text)",
                   f'a string: quote it, e.g. "{text}"')


def _problems_from(error: ValidationError, data: Any,
                   plain: Mapping[Path, str] | None = None) -> list[Problem]:
    problems: list[Problem] = []
    suggested: set[Path] = set()
    for err in error.errors():
        path = _strip_tags(tuple(err["loc"]), data)
        if err["type"] == "extra_forbidden":
            model = _model_at(path[:-1], data)
            fields = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(path[-1]), fields, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(fields)}"
            if close:
                suggested.add((*path[:-1], close[0]))
            problems.append(Problem(path, f"unknown key {str(path[-1])!r}",
                                    f"a known key; {hint}"))
        elif err["type"] == "missing":
            problems.append(Problem(path, "nothing: this key is missing",
                                    "this required key" + _meaning(path, data)))
        else:
            quoted = _not_a_string(err, path, plain or {})
            problems.append(quoted or Problem(path, _describe(err.get("input"), path),
                                              _expected(err)))
    # A typo shows up twice (the unknown key and the missing one): keep the "did you mean".
    return [p for p in problems if not (p.found.startswith("nothing") and p.path in suggested)]


# --------------------------------------------------------------------------- host data

#: Only what YAML (and JSON) can express reaches validation; pyinfra host data is Python.
_PLAIN = (str, int, float, bool, type(None))


def check_values(value: Any, path: Path = (), depth: int = 0) -> list[Problem]:
    """Problems no type annotation catches, in YAML and host data alike: a number that is not
    finite, a key that is not a string, nesting deeper than stack.yaml could need."""
    if depth > stack_yaml.MAX_DEPTH:
        return [Problem(path, f"more than {stack_yaml.MAX_DEPTH} levels of nesting",
                        "the shape of stack.yaml")]
    if isinstance(value, Mapping):
        problems: list[Problem] = []
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem((*path, str(key)), f"the key {_describe(key, ())} "
                                        f"(a {type(key).__name__})",
                                        "a name: quote it if YAML reads it as something else"))
                continue
            problems += check_values(item, (*path, key), depth + 1)
        return problems
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in check_values(item, (*path, i),
                                                                          depth + 1)]
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(path, repr(value), "a finite number")]
    if not isinstance(value, _PLAIN):
        return [Problem(path, f"a Python {type(value).__name__}",
                        "a string, number, boolean, list or mapping")]
    return []


def check_overrides(overrides: Any, origin: str = "host data") -> Mapping[str, Any]:
    """Host data ``stack``, refused unless it is a non-empty mapping of plain values.

    An empty or null ``stack:`` is refused rather than ignored: it is almost always an
    indentation slip that left the intended overrides somewhere else.
    """
    if not isinstance(overrides, Mapping):
        raise StackError(origin, [Problem(("stack",), _describe(overrides, ()),
                                          "a mapping shaped like stack.yaml")])
    if not overrides:
        raise StackError(origin, [Problem(("stack",), "an empty mapping (it changes nothing)",
                                          "the keys to override under stack:, or no stack: "
                                          "at all")])
    problems = check_values(overrides)
    if problems:
        raise StackError(origin, problems, overridden={()})
    return overrides


def load_host_data(path: str | FsPath) -> Mapping[str, Any]:
    """The ``stack`` overrides of a host-data YAML file (or the whole file, without that key),
    read as strictly as stack.yaml itself."""
    source = str(path)
    try:
        doc = stack_yaml.load(stack_yaml.read_text(path, "a host-data YAML file"))
    except YamlError as exc:
        raise StackError(source, [exc.problem]) from None
    if not isinstance(doc.data, dict):
        raise StackError(source, [Problem((), _describe(doc.data, ()),
                                           "a mapping (the overrides, under the key stack)")],
                         doc.lines)
    if "stack" in doc.data:
        return check_overrides(doc.data["stack"], source)
    return check_overrides(doc.data, source)


# --------------------------------------------------------------------------- entry points


def parse_stack(text: str, source: str = "stack.yaml",
                overrides: Mapping[str, Any] | None = None) -> Stack:
    """A validated Stack from YAML text and optional host overrides, or :class:`StackError`.

    ``overrides=None`` means no host data; anything else must be a non-empty mapping.
    """
    try:
        doc = stack_yaml.load(text)
    except YamlError as exc:
        raise StackError(source, [exc.problem]) from None
    data, lines = doc.data, doc.lines
    if data is None:
        raise StackError(source, [Problem((), "an empty file",
                                          "the sections of inventory/stack.yaml (copy it)")])
    if not isinstance(data, dict):
        raise StackError(source, [Problem((), _describe(data, ()),
                                          "a mapping of sections (litellm, targets, ...)")], lines)
    problems = check_values(data)
    if problems:
        raise StackError(source, problems, lines)
    touched: set[Path] = set()
    if overrides is not None:
        data = merge(data, check_overrides(overrides), (), touched)
    try:
        stack = Stack.model_validate(data)
    except ValidationError as exc:
        raise StackError(source, _problems_from(exc, data, doc.plain), lines, touched) from None
    problems = cross_check(stack)
    if problems:
        raise StackError(source, problems, lines, touched)
    return stack


def load_stack(path: str | FsPath, overrides: Mapping[str, Any] | None = None) -> Stack:
    """A validated Stack from a stack.yaml file (see :func:`parse_stack`)."""
    try:
        text = stack_yaml.read_text(path, "a stack file; the default is inventory/stack.yaml")
    except YamlError as exc:
        raise StackError(str(path), [exc.problem]) from None
    return parse_stack(text, str(path), overrides)


def line_index(path: str | FsPath) -> dict[Path, int]:
    """The line of every path of a stack file that loaded (for reports made after loading)."""
    try:
        return stack_yaml.load(stack_yaml.read_text(path, "a stack file")).lines
    except YamlError:
        return {}
