"""Read stack.yaml (plus per-host overrides) into a :class:`~monitoring.stack.Stack`, or fail
with ONE report that lists every problem, its YAML path and line, what was found and what is
expected.

Nothing downstream runs on a bad file: render and deploy only ever receive a validated Stack.
Values that look like secrets are never echoed in a report (they are exactly the values a user
pastes by mistake into an ``*_env`` field).
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from monitoring.stack import ENV_NAME, Stack, looks_like_secret
from monitoring.stack_checks import Path, Problem, cross_check


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
            out.append(f"  - {prefix}{where}{origin}")
            out.append(f"      found:    {problem.found}")
            out.append(f"      expected: {problem.expected}")
        return "\n".join(out)


# --------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in this mapping", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_index(node: yaml.Node | None, path: Path = ()) -> dict[Path, int]:
    """1-based line of every key and item, by path, from the composed YAML tree."""
    lines: dict[Path, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines[child] = key_node.start_mark.line + 1
            lines.update(_line_index(value_node, child))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines[child] = item.start_mark.line + 1
            lines.update(_line_index(item, child))
    return lines


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
        return repr(value)
    return repr(value)


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


def _problems_from(error: ValidationError, data: Any) -> list[Problem]:
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
                                    "this required key (see inventory/stack.yaml for its meaning)"))
        else:
            problems.append(Problem(path, _describe(err.get("input"), path), _expected(err)))
    # A typo shows up twice (the unknown key and the missing one): keep the "did you mean".
    return [p for p in problems if not (p.found.startswith("nothing") and p.path in suggested)]


# --------------------------------------------------------------------------- entry points


def parse_stack(text: str, source: str = "stack.yaml",
                overrides: Mapping[str, Any] | None = None) -> Stack:
    """A validated Stack from YAML text and optional host overrides, or :class:`StackError`."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StackError(source, [Problem((), f"a YAML syntax error{where}: {problem}",
                                          "valid YAML (check indentation and quoting there)")
                                  ]) from None
    lines = _line_index(root)
    if data is None:
        raise StackError(source, [Problem((), "an empty file",
                                          "the sections of inventory/stack.yaml (copy it)")])
    if not isinstance(data, dict):
        raise StackError(source, [Problem((), _describe(data, ()),
                                          "a mapping of sections (litellm, targets, ...)")], lines)
    touched: set[Path] = set()
    if overrides:
        if not isinstance(overrides, Mapping):
            raise StackError(source, [Problem(("host data",), _describe(overrides, ()),
                                              "a mapping shaped like stack.yaml")], lines)
        data = merge(data, overrides, (), touched)
    try:
        stack = Stack.model_validate(data)
    except ValidationError as exc:
        raise StackError(source, _problems_from(exc, data), lines, touched) from None
    problems = cross_check(stack)
    if problems:
        raise StackError(source, problems, lines, touched)
    return stack


def load_stack(path: str | FsPath, overrides: Mapping[str, Any] | None = None) -> Stack:
    """A validated Stack from a stack.yaml file (see :func:`parse_stack`)."""
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackError(str(path), [Problem((), "no such file",
                                             "a stack file; the default is inventory/stack.yaml")]
                         ) from None
    except UnicodeDecodeError as exc:
        raise StackError(str(path), [Problem((), f"bytes that are not UTF-8 ({exc.reason})",
                                             "a UTF-8 text file")]) from None
    return parse_stack(text, str(path), overrides)
