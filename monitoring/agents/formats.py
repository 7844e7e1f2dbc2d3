"""One interface over the four formats agents keep their settings in.

Every format offers ``check`` (refuse a file it cannot edit safely), ``get``, ``set`` and
``delete`` at a key path, on the TEXT of the file, so an edit changes the owned values and
keeps comments, order, quoting, line endings and unknown keys. ``unset`` is what a target that
must not set a key does: delete it, or (dotenv) turn the line off so it comes back in place.

A path element is a key, or :class:`Item` selecting the list entry whose field has a value
(Continue's ``models:`` entry named ``provider-fallback``).

``tomlkit`` and ``ruamel.yaml`` are imported by the methods that parse, never with this
module: the watchdog imports every adapter, most hosts enroll no TOML or YAML agent, and the
two libraries are 2.4 MB of the daemon's RSS (issue 13, B9; ``tests/monitoring/watchdog/
test_footprint.py``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from monitoring.agents import dotenv, jsonc

if TYPE_CHECKING:
    import tomlkit
    from ruamel.yaml import YAML

MISSING: Final = jsonc.MISSING


@dataclass(frozen=True)
class Item:
    """A list entry selected by one of its fields (``models[name=provider-fallback]``)."""

    field: str
    value: str

    def __str__(self) -> str:
        return f"[{self.field}={self.value}]"


PathElem = str | Item
Path = tuple[PathElem, ...]


class FormatError(ValueError):
    """The file cannot be read as its format: the message says where."""


def show(path: Path) -> str:
    return ".".join(str(p) for p in path).replace(".[", "[")


class Format(Protocol):
    name: str

    def check(self, text: str) -> None: ...
    def get(self, text: str, path: Path) -> Any: ...
    def set(self, text: str, path: Path, value: Any) -> str: ...
    def unset(self, text: str, path: Path) -> str: ...
    def delete(self, text: str, path: Path) -> str: ...
    def new(self, newline: str) -> str: ...


def _keys(path: Path) -> tuple[str, ...]:
    if not all(isinstance(p, str) for p in path):
        raise FormatError(f"{show(path)}: list entries are not supported in this format")
    return tuple(str(p) for p in path)


def _crlf(text: str, like: str) -> str:
    """New lines a library wrote with ``\\n`` into a CRLF file get ``\\r\\n`` too."""
    return re.sub(r"(?<!\r)\n", "\r\n", text) if "\r\n" in like else text


class Jsonc:
    """JSON with comments (Kilo Code, OpenCode, Gemini CLI), or strict JSON (Claude Code)."""

    def __init__(self, *, comments: bool = True) -> None:
        self.comments = comments
        self.name = "JSONC" if comments else "JSON"

    def check(self, text: str) -> None:
        try:
            root = jsonc.parse(text, comments=self.comments)
        except jsonc.JsoncError as exc:
            raise FormatError(f"not valid {self.name}: {exc}") from None
        if root.kind != "object":
            raise FormatError(f"holds a JSON {root.kind}, not an object")

    def get(self, text: str, path: Path) -> Any:
        return jsonc.get(text, _keys(path), jsonc.parse(text, comments=self.comments))

    def set(self, text: str, path: Path, value: Any) -> str:
        return jsonc.set_value(text, _keys(path), value, comments=self.comments)

    def unset(self, text: str, path: Path) -> str:
        return self.delete(text, path)

    def delete(self, text: str, path: Path) -> str:
        return jsonc.delete(text, _keys(path), comments=self.comments)

    def new(self, newline: str) -> str:
        return "{}" + newline


class Dotenv:
    """``NAME=value`` lines (Gemini CLI's ``.env``, Aider's key file)."""

    name = "dotenv"

    def check(self, text: str) -> None:
        try:
            dotenv.check(text)
        except dotenv.DotenvError as exc:
            raise FormatError(str(exc)) from None

    def get(self, text: str, path: Path) -> Any:
        return dotenv.get(text, _keys(path)[0])

    def set(self, text: str, path: Path, value: Any) -> str:
        return dotenv.set_value(text, _keys(path)[0], str(value))

    def unset(self, text: str, path: Path) -> str:
        return dotenv.unset(text, _keys(path)[0])

    def delete(self, text: str, path: Path) -> str:
        return dotenv.delete(text, _keys(path)[0])

    def new(self, newline: str) -> str:
        return ""


def _unwrap(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


class Toml:
    """TOML through ``tomlkit``, which keeps comments, order and quoting (Codex CLI)."""

    name = "TOML"

    def _doc(self, text: str) -> tomlkit.TOMLDocument:
        import tomlkit

        try:
            return tomlkit.parse(text)
        except Exception as exc:  # tomlkit raises its own ParseError family
            raise FormatError(f"not valid TOML: {exc}") from None

    def check(self, text: str) -> None:
        self._doc(text)

    def get(self, text: str, path: Path) -> Any:
        node: Any = self._doc(text)
        for key in _keys(path):
            if not hasattr(node, "get") or key not in node:
                return MISSING
            node = node[key]
        return _unwrap(node)

    def set(self, text: str, path: Path, value: Any) -> str:
        import tomlkit
        import tomlkit.items

        keys = _keys(path)
        doc = self._doc(text)
        node: Any = doc
        for key in keys[:-1]:
            if key not in node:
                node[key] = tomlkit.table(is_super_table=True)
            node = node[key]
        old = node.get(keys[-1]) if hasattr(node, "get") else None
        if _unwrap(old) == value:
            return text
        if (isinstance(old, tomlkit.items.String) and isinstance(value, str)
                and old.type is tomlkit.items.StringType.SLL and "'" not in value):
            node[keys[-1]] = tomlkit.string(value, literal=True)  # keep 'literal' quoting
        else:
            node[keys[-1]] = value
        return _crlf(tomlkit.dumps(doc), text)

    def unset(self, text: str, path: Path) -> str:
        return self.delete(text, path)

    def delete(self, text: str, path: Path) -> str:
        import tomlkit

        keys = _keys(path)
        doc = self._doc(text)
        node: Any = doc
        for key in keys[:-1]:
            if key not in node:
                return text
            node = node[key]
        if keys[-1] not in node:
            return text
        del node[keys[-1]]
        return _crlf(tomlkit.dumps(doc), text)

    def new(self, newline: str) -> str:
        return ""


def _yaml() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


class Yaml:
    """YAML (Aider, Continue). A scalar that changes is spliced into the text at the position
    ``ruamel.yaml`` reports, so nothing else moves; structure we add (our ``models:`` entry, a
    missing key) goes through a ``ruamel.yaml`` round trip with the file's indentation."""

    name = "YAML"

    def _load(self, text: str) -> Any:
        from ruamel.yaml.comments import CommentedMap
        from ruamel.yaml.error import YAMLError

        try:
            data = _yaml().load(text)
        except YAMLError as exc:
            raise FormatError(f"not valid YAML: {exc}".replace("\n", " ")) from None
        return CommentedMap() if data is None else data

    def check(self, text: str) -> None:
        if not isinstance(self._load(text), dict):
            raise FormatError("is not a YAML mapping")

    def _walk(self, data: Any, path: Path) -> tuple[Any, Any] | None:
        """(container, key or index) of the node at ``path``; None when missing."""
        node = data
        for i, elem in enumerate(path):
            if isinstance(elem, Item):
                if not isinstance(node, list):
                    return None
                index = next((j for j, e in enumerate(node) if isinstance(e, dict)
                              and e.get(elem.field) == elem.value), None)
                if index is None:
                    return None
                key: Any = index
            else:
                if not isinstance(node, dict) or elem not in node:
                    return None
                key = elem
            if i == len(path) - 1:
                return node, key
            node = node[key]
        return None

    def get(self, text: str, path: Path) -> Any:
        found = self._walk(self._load(text), path)
        return MISSING if found is None else _to_plain(found[0][found[1]])

    def set(self, text: str, path: Path, value: Any) -> str:
        data = self._load(text)
        found = self._walk(data, path)
        if found is not None:
            container, key = found
            if _to_plain(container[key]) == value:
                return text
            spliced = self._splice(text, container, key, value)
            if spliced is not None:
                return spliced
        return self._dump(self._insert(data, path, value), text)

    def _splice(self, text: str, container: Any, key: Any, value: Any) -> str | None:
        """Replace a one-line scalar in place; None when it is not one (then round trip)."""
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        old = container[key]
        if isinstance(old, dict | list) or isinstance(value, dict | list):
            return None
        if not isinstance(container, CommentedMap | CommentedSeq):
            return None
        try:
            line, col = (container.lc.value(key) if isinstance(container, CommentedMap)
                         else container.lc.item(key))
        except (KeyError, TypeError, IndexError):
            return None
        lines = text.splitlines(keepends=True)
        if line >= len(lines):
            return None
        row = lines[line]
        body = row.rstrip("\r\n")
        rest = body[col:]
        if rest[:1] in ("|", ">", "&", "*", "!", "{", "["):
            return None
        match = re.match(r"\"(?:\\.|[^\"\\])*\"|'(?:''|[^'])*'|[^#]*?(?=\s+#|\s*$)", rest)
        if not match or not match.group(0):
            return None
        if _yaml().load(rest[:match.end()] or "''") != old:
            return None  # a multi-line scalar: the first line is not all of it
        quote = match.group(0)[:1]
        lines[line] = body[:col] + _yaml_scalar(value, quote, old) + rest[match.end():] + row[
            len(body):]
        return "".join(lines)

    def _insert(self, data: Any, path: Path, value: Any) -> Any:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        node = data
        for i, elem in enumerate(path):
            last = i == len(path) - 1
            if isinstance(elem, Item):
                entry = next((e for e in node if isinstance(e, dict)
                              and e.get(elem.field) == elem.value), None)
                if entry is None:
                    entry = CommentedMap({elem.field: elem.value})
                    node.append(entry)
                if last:
                    entry.clear()
                    entry.update(value)
                node = entry
                continue
            if last:
                node[elem] = value
            else:
                if elem not in node or node[elem] is None:
                    nxt = path[i + 1]
                    node[elem] = CommentedSeq() if isinstance(nxt, Item) else CommentedMap()
                node = node[elem]
        return data

    def _dump(self, data: Any, like: str) -> str:
        yaml = _yaml()
        indent = re.search(r"\n( +)\S", like)
        seq = re.search(r"\n( *)- ", like)
        mapping = len(indent.group(1)) if indent else 2
        offset = len(seq.group(1)) if seq else 2
        yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
        out = io.StringIO()
        yaml.dump(data, out)
        return _crlf(out.getvalue(), like)

    def unset(self, text: str, path: Path) -> str:
        return self.delete(text, path)

    def delete(self, text: str, path: Path) -> str:
        data = self._load(text)
        found = self._walk(data, path)
        if found is None:
            return text
        container, key = found
        del container[key]
        return self._dump(data, text)

    def new(self, newline: str) -> str:
        return ""


def _needs_quotes(text: str) -> bool:
    """Whether ``text`` written plain would not read back as the same string."""
    from ruamel.yaml.error import YAMLError

    if not text or text != text.strip() or "\n" in text or ": " in text or " #" in text:
        return True
    try:
        return bool(_yaml().load(text) != text)
    except YAMLError:
        return True


def _yaml_scalar(value: Any, quote: str, old: Any = None) -> str:
    """``value`` as a YAML scalar: the current quoting kept when it was a style choice (the
    old value did not need it), else quoted only when needed. So a switch and a restore give
    the same bytes; a value that itself needs quotes (``0``) cannot tell us the user's style.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    chosen = quote and isinstance(old, str) and not _needs_quotes(old)
    if quote == "'" and chosen and "\n" not in text:
        return "'" + text.replace("'", "''") + "'"
    if (quote == '"' and chosen) or _needs_quotes(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text
