"""Big transient buffers stay out of glibc's heap in the watchdog (issue 13, B9).

Run in a fresh interpreter each: the setting is process-wide and the test process must not
keep it. The sequence is the one that fragmented the watchdog's heap: a big buffer freed
(glibc then raises its mmap threshold to that size), then a smaller big buffer, which came
from the heap instead of its own mapping.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = """
import ctypes, sys
from monitoring.watchdog.heap import keep_big_buffers_out_of_the_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert keep_big_buffers_out_of_the_heap()
big = bytearray(4 << 20)
del big
before = mallinfo2().hblkhd
buffer = bytearray(512 << 10)
print(mallinfo2().hblkhd - before)
"""


def mapped_bytes(mode: str) -> int:
    """Bytes mapped for a 512 KiB buffer allocated after a 4 MiB one was freed."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=REPO, check=True,
                          capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_big_buffer_after_a_bigger_one_gets_its_own_mapping() -> None:
    try:
        default = mapped_bytes("default")
    except subprocess.CalledProcessError as exc:  # no mallinfo2: not glibc >= 2.33
        pytest.skip(f"not glibc: {exc.stderr[-200:]}")
    assert default == 0, "glibc's adaptive threshold put it in the heap (what fragmented it)"
    assert mapped_bytes("fixed") >= 512 << 10
