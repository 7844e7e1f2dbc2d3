"""The stack's durations and secret shapes, without its models (issue 13, B9).

``provider-fallback watch`` needs these few scalars (``switch --for 30m``, the redaction of
events and errors) but none of :mod:`monitoring.stack.schema`'s models, whose import builds
the whole pydantic schema of stack.yaml: 2.8 MB of the daemon's RSS. The schema re-exports
them, so the rest of the code base imports them from either place.
"""

from __future__ import annotations

import math
import re

from pydantic_core import PydanticCustomError

# ASCII digits only: Python's float() also reads "٣" as 3, which no other tool would.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


_DURATION_HELP = "a duration such as 30s, 5m, 1h or a number of seconds"
#: Prometheus and Alertmanager keep durations in whole milliseconds: anything shorter renders
#: as ``0s``, which they read as "unset" (or refuse), so it is refused here.
MIN_DURATION_S = 0.001
#: Ten years: longer is a typo, and Prometheus' own limit (int64 ms) is not far off in y units.
MAX_DURATION_S = 10 * 365 * 86400


def parse_duration(value: object) -> float:
    """A number of seconds or a Prometheus-style duration (``800ms``, ``30s``, ``5m``,
    ``1h30m``, ``15d``), at least 1ms and at most 10 years, as seconds.

    One duration type for the whole file, so a user writes ``30s`` for an alert and for a probe
    alike; render turns seconds back into Prometheus syntax where Prometheus reads it.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("duration", _DURATION_HELP)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip()
        if not text or _DURATION_PART.sub("", text) != "":
            raise PydanticCustomError(
                "duration", "a duration such as 30s, 5m, 1h30m or a number of seconds"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise PydanticCustomError("duration", _DURATION_HELP)
    if not seconds > 0:  # also NaN
        raise PydanticCustomError("duration", "a positive duration (greater than 0)")
    if seconds < MIN_DURATION_S:
        raise PydanticCustomError(
            "duration", "at least 1ms: Prometheus and Alertmanager round shorter durations to "
            "0s, which they read as unset")
    if not seconds <= MAX_DURATION_S:  # also inf
        raise PydanticCustomError("duration", "a finite duration of at most 10 years (3650d)")
    return seconds


def prom_duration(seconds: float) -> str:
    """Prometheus duration syntax for a number of seconds (``90`` -> ``1m30s``)."""
    millis = round(seconds * 1000)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


#: ``\Z``, not ``$`` (which also matches before a trailing newline).
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")

# Shapes of real provider keys; anything long, mixed and without spaces is treated alike.
_SECRET_SHAPES = re.compile(
    r"^(gsk_|sk-|sk_|xai-|AIza|ghp_|github_pat_|hf_|pk-|rk-|eyJ)|^[A-Za-z0-9_\-./+=]{24,}$"
)


def looks_like_secret(value: str) -> bool:
    """True for a value shaped like an API key or token (used to refuse and to redact)."""
    return bool(_SECRET_SHAPES.search(value)) and not ENV_NAME.match(value)
