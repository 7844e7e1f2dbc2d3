"""The stack.yaml reference (``docs/stack-reference.md``), generated from the schema.

Every key, type, allowed value, default and description comes from the pydantic models of
:mod:`monitoring.stack.schema` (descriptions are the models' attribute docstrings, allowed values
their constraints and the docstrings of their validators), so the page cannot drift from what
validation accepts: ``tests/tasks/test_stack_reference.py`` fails when the committed page is
not what this prints.

    python -m tasks.stack_reference > docs/stack-reference.md      (make docs)
    python -m tasks.stack_reference --check docs/stack-reference.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from monitoring.stack import schema

PAGE = Path("docs/stack-reference.md")
COMMAND = "python -m tasks.stack_reference > docs/stack-reference.md"

_PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean"}

_INTRO = f"""\
# stack.yaml reference

<!-- Generated from monitoring/stack/schema.py by `{COMMAND}` (make docs). Do not edit by hand:
     edit the models' docstrings and regenerate. A test fails when this page is not current. -->

Every key `inventory/stack.yaml` may hold, generated from the schema that validates it
(`monitoring/stack/schema.py`). The shipped file is commented and sets every required key; start
from it. Unknown keys are errors, so a typo is never silently ignored. Per-host changes go in
pyinfra host data under `stack` (same shape, merged key by key over the file, lists replaced)
and are validated the same way; `python -m tasks.render --host-data FILE` renders with such a
file.

"required" means the key has no default and must be in the file; a section whose keys all
have defaults may still be required as a whole (its row in the parent table says so).
"""


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) \
        else (tp,)


def _base(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _is_model_alias(value: Any) -> bool:
    return any(_is_model(m) for m in _members(_base(value)))


#: The named value types of the schema (``Duration``, ``Port``...), found by identity in the
#: annotations, so the types table and the field tables use the schema's own names.
ALIASES: dict[str, Any] = {
    name: value for name, value in vars(schema).items()
    if typing.get_origin(value) is Annotated and not _is_model_alias(value)
}


def _flat(metadata: Sequence[Any]) -> list[Any]:
    """Annotated metadata with pydantic's ``Field(...)`` objects opened into their parts."""
    out: list[Any] = []
    for item in metadata:
        out += _flat(item.metadata) if isinstance(item, FieldInfo) else [item]
    return out


def _first_sentence(doc: str | None) -> str | None:
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "`")


def _constraint(item: Any) -> str | None:
    """A human reading of one piece of Annotated metadata (None for what says nothing)."""
    bounds = {annotated_types.Ge: ("ge", ">="), annotated_types.Gt: ("gt", ">"),
              annotated_types.Le: ("le", "<="), annotated_types.Lt: ("lt", "<")}
    for kind, (attr, sign) in bounds.items():
        if isinstance(item, kind):
            return f"{sign} {_number(getattr(item, attr))}"
    if isinstance(item, annotated_types.MinLen):
        return f"length >= {item.min_length}"
    if isinstance(item, annotated_types.MaxLen):
        return f"length <= {item.max_length}"
    pattern = getattr(item, "pattern", None)
    if isinstance(pattern, str):
        return f"matching `{pattern}`"
    func = getattr(item, "func", None)
    text = _first_sentence(func.__doc__) if func is not None else None
    if not text:
        return None
    text = text.rstrip(".")
    first = text.split()[0]
    return text if first.isupper() and len(first) > 1 else text[0].lower() + text[1:]


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _alias_name(tp: Any) -> str | None:
    for name, alias in ALIASES.items():
        if tp is alias:
            return name
    return None


def _alias_prefix(tp: Any) -> tuple[str | None, list[Any]]:
    """The named type an inline Annotated type extends, and the metadata it adds to it."""
    base, *meta = typing.get_args(tp)
    best: tuple[str | None, list[Any]] = (None, meta)
    for name, alias in ALIASES.items():
        a_base, *a_meta = typing.get_args(alias)
        longer = best[0] is None or len(a_meta) > len(typing.get_args(ALIASES[best[0]])) - 1
        if a_base is base and a_meta and meta[:len(a_meta)] == a_meta and longer:
            best = (name, meta[len(a_meta):])
    return best


@dataclass
class Section:
    """One model of the schema, shown once, at the first path where it occurs."""

    model: type[BaseModel]
    path: str
    also: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.path.lower()).strip("-") or "top-level"


@dataclass
class Reference:
    """The walk's result: sections in the order a reader meets them, and the types used."""

    sections: dict[type[BaseModel], Section] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    def describe(self, tp: Any) -> tuple[str, list[str]]:
        """(type, allowed values) of an annotation, in words."""
        if tp is type(None):
            return "null", []
        name = _alias_name(tp)
        if name is not None:
            self._use(name)
            return f"`{name}`", []
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            alias, extra = _alias_prefix(tp)
            if alias is not None:
                self._use(alias)
                shown, allowed = f"`{alias}`", list[str]()
            else:
                shown, allowed = self.describe(args[0])
            return shown, allowed + [c for c in map(_constraint, _flat(extra)) if c]
        if origin is Literal:
            return "string", ["one of " + ", ".join(f"`{v}`" for v in args)]
        if origin in (typing.Union, types.UnionType):
            parts = [self.describe(a) for a in args]
            return " or ".join(p[0] for p in parts), [c for p in parts for c in p[1]]
        if origin is list:
            inner, allowed = self.describe(args[0])
            return f"list of {inner}", allowed
        if origin is dict:
            key, k_allowed = self.describe(args[0])
            value, v_allowed = self.describe(args[1])
            return f"mapping of {key} to {value}", [f"keys: {c}" for c in k_allowed] + v_allowed
        if _is_model(tp):
            section = self.sections[tp]
            return f"[`{section.path}`](#{section.anchor})", []
        if tp in _PRIMITIVES:
            return _PRIMITIVES[tp], []
        return f"`{getattr(tp, '__name__', tp)}`", []

    def _use(self, name: str) -> None:
        if name not in self.aliases:
            self.aliases.append(name)


def _nested(tp: Any, path: str) -> Iterator[tuple[type[BaseModel], str]]:
    """The models inside an annotation, each with the path a user writes to reach it."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        yield from _nested(args[0], path)
    elif origin in (typing.Union, types.UnionType):
        models = [a for a in args if _is_model(a)]
        for member in args:
            kind = member.model_fields.get("kind") if _is_model(member) else None
            if kind is not None and len(models) > 1:
                yield member, f"{path} (kind: {typing.get_args(kind.annotation)[0]})"
            else:
                yield from _nested(member, path)
    elif origin is list:
        yield from _nested(args[0], f"{path}[]")
    elif origin is dict:
        yield from _nested(args[1], f"{path}.<name>")
    elif _is_model(tp):
        yield tp, path


def _hints(model: type[BaseModel]) -> dict[str, Any]:
    return typing.get_type_hints(model, vars(schema), include_extras=True)


def _walk(ref: Reference, model: type[BaseModel], path: str) -> None:
    if model in ref.sections:
        ref.sections[model].also.append(path)
        return
    ref.sections[model] = Section(model, path)
    hints = _hints(model)
    for name in model.model_fields:
        for sub, sub_path in _nested(hints[name], f"{path}.{name}" if path else name):
            _walk(ref, sub, sub_path)


def _default(info: FieldInfo, shown_type: str) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if shown_type == "`Duration`" and isinstance(value, int | float):
        return f"`{schema.prom_duration(value)}`"
    return f"`{json.dumps(_plain(value), ensure_ascii=False)}`"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(ref: Reference, section: Section) -> list[str]:
    hints = _hints(section.model)
    rows = ["| key | type | allowed | default | description |", "| --- | --- | --- | --- | --- |"]
    for name, info in section.model.model_fields.items():
        shown, allowed = ref.describe(hints[name])
        own = _flat(typing.get_args(hints[name])[1:]) \
            if typing.get_origin(hints[name]) is Annotated else []
        extra = [c for c in map(_constraint, [m for m in info.metadata if m not in own]) if c]
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{name}`", shown, "; ".join(allowed + extra), _default(info, shown),
            " ".join((info.description or "").split()))) + " |")
    return rows


def _types_table(ref: Reference) -> list[str]:
    rows = ["## Value types", "",
            "The named types the tables below use, with what each accepts.", "",
            "| type | base | accepts |", "| --- | --- | --- |"]
    for name in ref.aliases:
        base, *meta = typing.get_args(ALIASES[name])
        accepts = "; ".join(c for c in map(_constraint, _flat(meta)) if c)
        rows.append(f"| `{name}` | {_PRIMITIVES.get(base, str(base))} | {_cell(accepts)} |")
    return rows


def render() -> str:
    """The whole page, as committed in ``docs/stack-reference.md``."""
    ref = Reference()
    _walk(ref, schema.Stack, "")
    body: list[str] = []
    for section in ref.sections.values():
        title = f"`{section.path}`" if section.path else "Top level"
        body += [f'<a id="{section.anchor}"></a>', "", f"## {title}", ""]
        doc = _first_sentence(section.model.__doc__) if section.model.__doc__ else None
        if doc:
            body += [doc, ""]
        if section.also:
            body += ["Also at " + ", ".join(f"`{p}`" for p in section.also) + ".", ""]
        body += [*_table(ref, section), ""]
    return "\n".join([_INTRO, *_types_table(ref), "", *body]).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.stack_reference",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, metavar="FILE",
                        help="exit 1 if FILE is not what would be generated")
    args = parser.parse_args(argv)
    page = render()
    if args.check is None:
        sys.stdout.write(page)
        return 0
    current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
    if current != page:
        print(f"{args.check} is not current: run `make docs` ({COMMAND})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
