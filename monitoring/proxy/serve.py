"""Start the LiteLLM proxy so that a clean stop (SIGTERM) ends the interpreter normally.

Why a wrapper. LiteLLM 1.108.7's proxy runs uvicorn 0.54. On SIGTERM uvicorn shuts down
gracefully (in-flight answers finish), then restores the signal handlers it found at start and
re-raises the signal it caught (``uvicorn/server.py``, ``capture_signals``). With the default
handler that kills the process by the signal: no ``atexit`` handler runs, neither LiteLLM's
logging worker (which still holds the success callbacks of the last answers) nor the project's
I/O worker (which still holds their cost-log lines). A stop right after a burst lost them.

This module installs a SIGTERM handler that raises :class:`SystemExit` before LiteLLM starts.
uvicorn captures SIGTERM during the run exactly as before; after its shutdown it restores this
handler and calls it, so the interpreter unwinds and exits with status 0 after running every
``atexit`` handler in order: LiteLLM's flush (whose callbacks put their last jobs) before the
I/O worker's drain (registered earlier, so run later). SIGINT already behaves that way
(Python's default handler raises KeyboardInterrupt).

Windows has no SIGTERM to send: ``Stop-Process`` ends a process at once, mid-answer, and runs
nothing. So ``--stop-file PATH`` (first, before LiteLLM's own arguments; the Windows layout
passes it) starts a thread that waits for that file to appear, then delivers SIGTERM to the
main thread (``_thread.interrupt_main``): the same graceful shutdown and normal exit as a
SIGTERM on Linux. ``manage-litellm.ps1 stop`` creates the file and waits for the proxy to exit
before it ends what is left by force. A stale file is removed at start.

Run it with the proxy's own arguments: ``python -m monitoring.proxy.serve [--stop-file PATH]
--config ... --port ...``; it is what :func:`monitoring.stack.layout.proxy_command` starts.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Final, NoReturn

from monitoring.stack.layout import STOP_FILE_OPTION

#: The status of a clean stop: 0, so systemd and the Windows task see a success.
CLEAN_STOP_STATUS: Final = 0
#: How often the stop file is looked for: one stat, so a stop waits at most this long.
STOP_POLL_S: Final = 0.5


def exit_cleanly(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM's handler outside uvicorn's run: unwind the interpreter, so atexit runs."""
    raise SystemExit(CLEAN_STOP_STATUS)


def split_stop_file(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the stop file, LiteLLM's arguments): ``--stop-file PATH`` is taken only in front, and
    not passed on to LiteLLM."""
    if len(argv) >= 2 and argv[0] == STOP_FILE_OPTION:
        return argv[1], argv[2:]
    return None, argv


def watch_stop_file(path: str, poll_s: float = STOP_POLL_S) -> threading.Thread:
    """Remove a stale ``path``, then, in a daemon thread, wait for it and deliver SIGTERM to
    the main thread once it appears (removing it, so the next start is not stopped)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    def wait() -> None:
        while True:
            time.sleep(poll_s)
            if os.path.exists(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                _thread.interrupt_main(signal.SIGTERM)
                return

    thread = threading.Thread(target=wait, name="pf-stop-file", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    """Install the handler, then run LiteLLM's proxy command line (its console script)."""
    signal.signal(signal.SIGTERM, exit_cleanly)
    stop_file, args = split_stop_file(sys.argv[1:] if argv is None else argv)
    if stop_file is not None:
        watch_stop_file(stop_file)
    from litellm.proxy.proxy_cli import run_server  # heavy: only once the handler is set

    run_server.main(args=args, prog_name="litellm")


if __name__ == "__main__":
    main()
