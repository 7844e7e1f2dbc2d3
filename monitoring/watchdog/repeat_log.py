"""One log line for a failure that repeats every tick, not one a second.

The watchdog ticks every second. A condition that makes a step fail on every tick (a cost log
it may not read, a state directory it may not write) used to log the same error every second:
86,400 lines a day that bury the events and grow the log. A failure is logged when it first
appears and whenever its message changes; while it repeats unchanged, one reminder every
:data:`REMIND_EVERY_S` says how many times it failed since; when it stops, one line says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: While a failure repeats unchanged, how often it is logged again (seconds of the clock
#: given): often enough that a reader of the recent log sees it is still there.
REMIND_EVERY_S: Final = 600.0


@dataclass
class _Failing:
    message: str
    logged_at: float
    since_logged: int = 0
    total: int = 1


class RepeatLog:
    """Failures by step (``key``), logged on change and at a bounded rate while they repeat."""

    def __init__(self, logger: logging.Logger, *, every_s: float = REMIND_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._failing: dict[str, _Failing] = {}

    def failed(self, key: str, message: str, *, exc_info: bool = False) -> None:
        """Step ``key`` failed with ``message`` (``exc_info``: add the current traceback when
        the line is logged)."""
        now = self.clock()
        seen = self._failing.get(key)
        if seen is None or seen.message != message:
            self._failing[key] = _Failing(message, now)
            self.logger.error("%s", message, exc_info=exc_info)
            return
        seen.since_logged += 1
        seen.total += 1
        if now - seen.logged_at >= self.every_s:
            self.logger.error("%s (still failing: %d more times since it was last logged)",
                              message, seen.since_logged, exc_info=exc_info)
            seen.logged_at, seen.since_logged = now, 0

    def ok(self, key: str) -> None:
        """Step ``key`` worked: if it was failing, say once that it works again."""
        seen = self._failing.pop(key, None)
        if seen is not None:
            self.logger.info("works again after %d failures: %s", seen.total, seen.message)
