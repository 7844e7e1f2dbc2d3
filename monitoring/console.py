"""How the ``provider-fallback`` CLI writes to a terminal, a pipe or a program.

Why a module of its own: every subcommand prints the same kinds of things (a table, a
``key: value`` line with a level that must stand out, a timestamp, an age, JSON), and a new
subcommand or a new ``status`` field should be one call, not new formatting code.

- Colour and tables come from ``rich`` (in the host venv with LiteLLM): no escapes at all
  when output is not a terminal (a pipe, a file, ``| grep``) or when ``NO_COLOR`` is set
  (https://no-color.org: set and not empty), so scripts and logs see plain text.
- Output never crashes on a console that cannot encode a character (cp1252 on Windows when
  redirected): stdout and stderr replace what they cannot encode, and the few symbols the
  CLI uses fall back to ASCII there.
- JSON has one timestamp format, ISO 8601 UTC with ``Z`` and whole seconds (the event log's
  own, :func:`monitoring.events.format_ts`), wherever the value came from.
- ``rich`` is imported by the functions that print, never with this module (nor with
  ``monitoring.cli``): ``provider-fallback watch`` prints nothing with it, and rich is 4 MB of
  the daemon's RSS (issue 13, B9; ``tests/monitoring/watchdog/test_footprint.py``).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Final

from monitoring.events import format_ts

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

#: rich style per word that must stand out (circuit states, budget levels, switches, liveness).
STYLES: Final[dict[str, str]] = {
    "healthy": "green", "ok": "green", "running": "green", "active": "green", "yes": "green",
    "suspect": "yellow", "half-open": "cyan", "warning": "yellow", "stale": "bold yellow",
    "failed": "bold red", "no": "bold red", "critical": "bold red", "exceeded": "bold red",
    "stopped": "bold red", "on": "bold red", "crash loop": "bold red",
}
#: Columns wide enough that a piped table is never wrapped (rich assumes 80 otherwise).
PIPE_WIDTH: Final = 200


def harden_streams() -> None:
    """Make stdout and stderr replace characters their encoding lacks instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def console(stream: IO[str] | None = None) -> Console:
    """A rich console on ``stream`` (stdout): colour only on a terminal without NO_COLOR."""
    from rich.console import Console

    stream = stream or sys.stdout
    terminal = stream.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS") or PIPE_WIDTH)
    # NO_COLOR: rich alone would drop the colours but keep bold; plain text means no escapes.
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(file=stream, width=width, highlight=False, emoji=False, markup=False,
                   soft_wrap=not terminal, color_system=None if plain else "auto")


def glyph(symbol: str, fallback: str, stream: IO[str] | None = None) -> str:
    """``symbol`` if ``stream`` can encode it, else the ASCII ``fallback``."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        symbol.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return fallback
    return symbol


def styled(text: str, key: str | None = None) -> Text:
    """``text`` in the style of ``key`` (default: the text itself, lower-cased)."""
    from rich.text import Text

    return Text(text, style=STYLES.get((key or text).lower(), ""))


def table(headers: Sequence[str], rows: Iterable[Sequence[str | Text]],
          *, title: str | None = None) -> Table:
    """A borderless table like ``kubectl get``: bold headers; every column keeps its width
    and only the last one (free text) is cut, with an ellipsis, to fit the terminal."""
    from rich.table import Table

    body = [list(row) for row in rows]
    out = Table(box=None, pad_edge=False, show_edge=False, title=title, title_justify="left",
                header_style="bold", expand=False)
    for i, header in enumerate(headers):
        if i == len(headers) - 1:
            out.add_column(header, no_wrap=True, overflow="ellipsis", max_width=90)
            continue
        natural = max([len(header), *(len(str(row[i])) for row in body)])
        out.add_column(header, no_wrap=True, min_width=natural)
    for row in body:
        out.add_row(*row)
    return out


def show(con: Console, renderable: Table) -> None:
    """Print a table; on a terminal its last column is cut to what the others leave, in a
    pipe the blanks rich pads cells with are dropped."""
    *fixed, last = renderable.columns
    room = con.width - sum((c.min_width or 0) + 3 for c in fixed)
    last.max_width = max(10, min(last.max_width or room, room))
    if con.is_terminal:
        con.print(renderable)
        return
    with con.capture() as captured:
        con.print(renderable)
    con.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


# --------------------------------------------------------------------------- time


def iso(when: datetime | None) -> str | None:
    """ISO 8601 UTC with ``Z``: the one timestamp format of the CLI's JSON."""
    return None if when is None else format_ts(when)


def human_age(seconds: float) -> str:
    """``42s``, ``3m 5s``, ``3h 12m``, ``2d 4h``: two units at most, as people read ages."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def ago(when: datetime | None, now: datetime) -> str:
    """``3h 12m ago``, or ``-`` when it never happened."""
    return "-" if when is None else f"{human_age((now - when).total_seconds())} ago"


def duration(delta: timedelta) -> str:
    return human_age(delta.total_seconds())


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """``value`` with every datetime as :func:`iso` (nested dicts and lists included)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(data: Any, *, lines: bool = False) -> None:
    """One JSON document (indented), or with ``lines`` one compact object per line (JSONL)."""
    if lines:
        print(json.dumps(jsonable(data), separators=(",", ":")), flush=True)
    else:
        print(json.dumps(jsonable(data), indent=2))
