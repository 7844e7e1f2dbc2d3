"""What every renderer shares: the artifact type, stable dumpers and the Jinja environment.

Machine formats (YAML, JSON) are built as Python data and dumped here with a fixed key order,
so the same stack gives the same bytes on every run. Jinja is only for text formats (units,
PowerShell, XML) and has no say in Prometheus' own ``{{ $labels }}`` templates, which never
pass through it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class Artifact:
    """One rendered file: its bytes, where it goes on the host, and its mode there.

    ``secret`` marks a file that holds secret values: it is written 0600 (user-only) and is the
    only artifact allowed to contain a key.
    """

    data: bytes
    dest: str
    mode: int = 0o644
    secret: bool = False


Rendered = dict[str, Artifact]


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, long strings never folded."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(data: Any, header: str = "") -> bytes:
    """YAML in the order the builder gave, with an optional comment header."""
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=4096)
    return (header + text).encode("utf-8")


def dump_json(data: Any) -> bytes:
    """JSON in the order the builder gave, two-space indented, newline-terminated.

    ``allow_nan=False``: Python would write ``NaN``/``Infinity``, which no JSON reader accepts.
    """
    return (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            ).encode("utf-8")


def ps_literal(value: object) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded (``$``, backticks)."""
    text = str(value)
    for quote in ("'", "\u2018", "\u2019", "\u201a", "\u201b"):
        text = text.replace(quote, quote * 2)
    return f"'{text}'"


def systemd_quote(value: object) -> str:
    """A double-quoted word for a unit's command line; ``%`` and ``$`` are escaped."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("%", "%%").replace("$", "$$") + '"'


def env_file_line(name: str, value: str) -> str:
    """One ``NAME="value"`` line for a systemd EnvironmentFile; refuses a newline."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"the value of {name} contains a line break; an environment file "
                         "cannot hold it (remove the line break from the variable)")
    # \ " $ and ` escaped: the same line is read by systemd and sourced by sh (sysvinit).
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("`", "\\`"))
    return f'{name}="{escaped}"'


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("xml", "xml.j2"), default=False),
    )
    env.filters["ps"] = ps_literal
    env.filters["sd"] = systemd_quote
    env.filters["sh"] = shlex.quote
    return env


_ENV = _environment()


def template(name: str, **context: Any) -> bytes:
    """Render ``templates/<name>`` with ``context`` (undefined names are errors)."""
    return _ENV.get_template(name).render(**context).encode("utf-8")
