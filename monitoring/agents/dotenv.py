"""A dotenv editor that changes one line per variable and nothing else.

Gemini CLI reads ``~/.gemini/.env``; Aider's key file is one too. ``python-dotenv``'s
``set_key`` rewrites the quoting of the line it touches and knows nothing of CRLF; here the
value span alone is replaced, the quoting style, ``export`` prefix, trailing comment and line
ending stay. A variable the target must NOT set (Gemini CLI falling back to Google's own
endpoint) is commented out with a marker instead of deleted, so switching back uncomments the
very same line: the round trip gives the same bytes.
"""

from __future__ import annotations

import re
from typing import Final

from monitoring.agents.jsonc import MISSING

#: Prefix of a line provider-fallback turned off; removed again when the value comes back.
OFF: Final = "#[provider-fallback off] "
_LINE: Final = re.compile(
    r"^(?P<lead>[ \t]*)(?P<export>export[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*"
    r"(?P<value>\"(?:\\.|[^\"\\])*\"|'[^']*'|[^\r\n]*?)(?P<tail>[ \t]+#[^\r\n]*|[ \t]*)"
    r"(?P<nl>\r?\n?)$")
_PLAIN: Final = re.compile(r"^[^\s\"'#\\]*$")


class DotenvError(ValueError):
    pass


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _unquote(raw: str) -> str:
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw[1:-1])
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1]
    return raw


def _quote(value: str, like: str) -> str:
    if like.startswith("'") and "'" not in value and "\n" not in value:
        return f"'{value}'"
    if like.startswith('"') or not _PLAIN.match(value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return value


def check(text: str) -> None:
    """Every line is blank, a comment or ``[export] NAME=value``."""
    for number, line in enumerate(_lines(text), start=1):
        body = line.strip()
        if body and not body.startswith("#") and not _LINE.match(line):
            raise DotenvError(f"line {number} is not NAME=value")


def get(text: str, key: str) -> object:
    """The value the last assignment of ``key`` gives, or :data:`MISSING`."""
    found: object = MISSING
    for line in _lines(text):
        match = _LINE.match(line)
        if match and match.group("key") == key:
            found = _unquote(match.group("value"))
    return found


def set_value(text: str, key: str, value: str) -> str:
    """``text`` with ``key`` set to ``value``: its line edited, a line we turned off turned
    back on, or a new line at the end."""
    lines = _lines(text)
    for i in range(len(lines) - 1, -1, -1):
        match = _LINE.match(lines[i])
        if match and match.group("key") == key:
            if _unquote(match.group("value")) == value:
                return text
            lines[i] = (lines[i][:match.start("value")] + _quote(value, match.group("value"))
                        + lines[i][match.end("value"):])
            return "".join(lines)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(OFF):
            match = _LINE.match(lines[i][len(OFF):])
            if match and match.group("key") == key:
                lines[i] = lines[i][len(OFF):]
                return set_value("".join(lines), key, value)
    newline = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith("\n"):
        text += newline
    return f"{text}{key}={_quote(value, '')}{newline}"


def unset(text: str, key: str) -> str:
    """``text`` with every assignment of ``key`` turned off (commented with :data:`OFF`)."""
    lines = _lines(text)
    for i, line in enumerate(lines):
        match = _LINE.match(line)
        if match and match.group("key") == key:
            lines[i] = OFF + line
    return "".join(lines)


def delete(text: str, key: str) -> str:
    """``text`` without the lines of ``key`` (on or off): the inverse of an appended line."""
    kept = []
    for line in _lines(text):
        body = line[len(OFF):] if line.startswith(OFF) else line
        match = _LINE.match(body)
        if not (match and match.group("key") == key):
            kept.append(line)
    return "".join(kept)
