"""Which build of the watchdog this is: its version and the SHA256 of the wheel it came from.

Why the hash and not only the version: the deploy reinstalls the watchdog when the wheel's
SHA256 differs from the one the host recorded (the version stays 0.1.0 across changes), so
"which build runs on this host" is answered by the hash. The deploy writes it into the venv
after a good install; this module reads it back from there.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

DIST: Final = "provider-fallback"
#: Beside the venv's Python (``sys.prefix``): the Linux deploy writes the wheel's SHA256 here.
LINUX_MARKER: Final = "provider-fallback.sha256"
#: The Windows deploy writes ``{"lock_sha256": ..., "wheel_sha256": ...}`` here.
WINDOWS_MARKER: Final = "provider-fallback-install.json"


@dataclass(frozen=True)
class BuildInfo:
    version: str
    wheel_sha256: str | None
    #: Where the hash was read: the deploy's marker, a wheel just built, or why there is none.
    source: str

    def line(self, prog: str = DIST) -> str:
        sha = self.wheel_sha256 or "unknown"
        return f"{prog} {self.version}\nwheel sha256: {sha} ({self.source})"


def version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:  # a checkout without an install
        return "unknown"


def installed(prefix: str | Path | None = None) -> BuildInfo:
    """The build installed in the venv at ``prefix`` (this interpreter's by default)."""
    root = Path(prefix or sys.prefix)
    linux = root / LINUX_MARKER
    windows = root / WINDOWS_MARKER
    try:
        return BuildInfo(version(), linux.read_text(encoding="utf-8").strip(), str(linux))
    except OSError:
        pass
    try:
        recorded = json.loads(windows.read_text(encoding="utf-8"))
        return BuildInfo(version(), str(recorded["wheel_sha256"]), str(windows))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return BuildInfo(version(), None, f"not installed by the deploy: no {LINUX_MARKER} or "
                                      f"{WINDOWS_MARKER} in {root}")
