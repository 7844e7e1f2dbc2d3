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

Run it with the proxy's own arguments: ``python -m monitoring.proxy.serve --config ... --port
...``; it is what :func:`monitoring.stack.layout.proxy_command` starts on every host.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import NoReturn

#: The status of a clean stop: 0, so systemd and the Windows task see a success.
CLEAN_STOP_STATUS = 0


def exit_cleanly(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM's handler outside uvicorn's run: unwind the interpreter, so atexit runs."""
    raise SystemExit(CLEAN_STOP_STATUS)


def main(argv: list[str] | None = None) -> None:
    """Install the handler, then run LiteLLM's proxy command line (its console script)."""
    signal.signal(signal.SIGTERM, exit_cleanly)
    from litellm.proxy.proxy_cli import run_server  # heavy: only once the handler is set

    run_server.main(args=sys.argv[1:] if argv is None else argv, prog_name="litellm")


if __name__ == "__main__":
    main()
