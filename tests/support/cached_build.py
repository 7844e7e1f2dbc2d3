"""Build a heavy test tool once per machine: a folder, a lock, and a stamp when complete.

The LiteLLM venv and the agent programs take minutes to install, so the tests keep them in the
test cache. Two sessions may start at once: the lock makes the second wait for the first build
instead of racing it; the stamp, written last, marks a complete build, so an interrupted one is
wiped and redone.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

STAMP = ".complete"


def built_once(folder: Path, build: Callable[[Path], None], stamp: str) -> Path:
    """``folder``, built by ``build(folder)`` unless a complete build is already there."""
    done = folder / STAMP
    if done.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        done.write_text(stamp)
    return folder
