"""monitoring.proxy.serve without LiteLLM: its arguments, and the stop file ending the main
thread through the SIGTERM handler with a normal exit (atexit runs). The real proxy's clean
stop, both ways, is test_litellm_hooks.py::test_a_clean_stop_right_after_a_burst_..."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitoring.proxy.serve import split_stop_file
from monitoring.stack.layout import STOP_FILE_OPTION

REPO = Path(__file__).resolve().parents[3]

_CHILD = """
import atexit, signal, sys, time
from pathlib import Path
from monitoring.proxy import serve

signal.signal(signal.SIGTERM, serve.exit_cleanly)
atexit.register(lambda: Path(sys.argv[2]).write_text("atexit ran"))
serve.watch_stop_file(sys.argv[1], poll_s=0.05)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_the_stop_file_option_is_taken_only_in_front() -> None:
    assert split_stop_file([STOP_FILE_OPTION, "/s/litellm.stop", "--config", "c.yaml"]) == (
        "/s/litellm.stop", ["--config", "c.yaml"])
    assert split_stop_file(["--config", "c.yaml"]) == (None, ["--config", "c.yaml"])
    # Anywhere else it is LiteLLM's business (which refuses an unknown option).
    assert split_stop_file(["--config", "c.yaml", STOP_FILE_OPTION, "x"]) == (
        None, ["--config", "c.yaml", STOP_FILE_OPTION, "x"])


def test_the_stop_file_ends_the_process_normally_and_a_stale_one_is_ignored(
        tmp_path: Path) -> None:
    stop, marker = tmp_path / "litellm.stop", tmp_path / "atexit"
    stop.write_text("left by a proxy killed before it saw it")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(stop), str(marker)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        assert not stop.exists(), "a stale stop file must be removed at start, not obeyed"
        assert child.poll() is None
        stop.write_text("stop")
        assert child.wait(timeout=30) == 0
        assert marker.read_text() == "atexit ran"
        assert not stop.exists(), "taken away, so the next start is not stopped by it"
    finally:
        child.kill()
        child.wait()
