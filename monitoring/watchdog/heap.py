"""The watchdog's big transient buffers go back to the system when freed (glibc).

glibc serves an allocation of 128 KiB or more with its own mmap and unmaps it on free. But the
threshold adapts: once such a block is freed, the threshold rises to that block's size, and
the next big buffers come from the heap, which gives memory back only from its top. A daemon
that reads a few hundred KB on every tick (LiteLLM's /metrics under traffic, a busy machine's
socket table) then fragments its heap, and its RSS rises in steps that never come down. Issue
13, B9, with 3,000 sockets on the machine: 63 -> 79 MB in 700 ticks. The same code with the
threshold fixed stayed flat at 62.9 MB (bench/watchdog_memory.py). Setting the threshold
(``mallopt(M_MMAP_THRESHOLD)``) also turns the adaptation off, so every big transient stays
out of the heap, at the cost of one mmap/munmap pair per big buffer.

Elsewhere (musl, Windows, macOS) nothing is done: their allocators do not adapt this way.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

#: glibc's ``M_MMAP_THRESHOLD`` parameter number (malloc.h).
M_MMAP_THRESHOLD: Final = -3
#: glibc's default starting threshold, kept fixed.
MMAP_THRESHOLD: Final = 128 * 1024


def keep_big_buffers_out_of_the_heap() -> bool:
    """Fix glibc's mmap threshold for this process; True when it was set (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this interpreter runs on
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError on musl)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
