"""How far a reader of an append-only log has read, and whether that still holds.

Logs are read incrementally: the proxy's month total, the watchdog's cost ledger and
``events --follow`` each read only the bytes appended since their last look. That is right
only while the file is the one they read so far. A rotation (a new inode) or a cut (a smaller
size) shows in ``stat``, but a file deleted and created again usually gets the SAME inode back
(ext4 and tmpfs hand out the inode just freed: 50 of 50 times on the test machine), and by the
next look it may already be as long as the old one. Trusting the offset then skips the new
file's first lines, or parses from the middle of one: the proxy's budget missed a charge that
way, and its kill switch did not trip (CI, stop 19).

So the cursor also keeps the bytes it read at the start of the file and the bytes just before
its offset, and reads them again (two small reads on the open file) before it trusts the
offset. A new file would have to repeat both to be taken for the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Final

from monitoring.atomic import StrPath

#: How many bytes of the file's start, and before the offset, identify what was read.
PROBE_BYTES: Final = 64


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` (seek and read: ``os.pread`` does not exist on Windows)."""
    fh.seek(offset)
    return fh.read(size)


class FileCursor:
    """The offset read up to in one file, with what identifies that file's bytes."""

    def __init__(self) -> None:
        self.offset = 0
        self._file: tuple[int, int] | None = None  # (device, inode)
        self._head = b""
        self._tail = b""

    def check(self, fh: BinaryIO, st: os.stat_result) -> bool:
        """True when ``fh`` (``st`` its fstat) continues what was read: the same file, not cut,
        its first bytes and the bytes before :attr:`offset` unchanged. Otherwise the cursor
        starts again at 0 for this file, and False says everything must be read again."""
        if ((st.st_dev, st.st_ino) == self._file and st.st_size >= self.offset
                and _read_at(fh, 0, len(self._head)) == self._head
                and _read_at(fh, self.offset - len(self._tail), len(self._tail)) == self._tail):
            return True
        self.offset, self._file, self._head, self._tail = 0, (st.st_dev, st.st_ino), b"", b""
        return False

    def advance(self, fh: BinaryIO, offset: int) -> None:
        """The reader has consumed ``fh`` up to ``offset``: remember where and what."""
        self.offset = offset
        if len(self._head) < PROBE_BYTES:
            self._head = _read_at(fh, 0, min(PROBE_BYTES, offset))
        start = max(0, offset - PROBE_BYTES)
        self._tail = _read_at(fh, start, offset - start)

    def read_lines(self, path: StrPath) -> tuple[bool, list[bytes]]:
        """The complete lines appended to ``path`` since the last call (without their
        newlines), and whether they continue what was read (False: the file is new,
        replaced or cut, and these are its lines from the start). A missing file has none; a
        line still being written is read next time."""
        try:
            with Path(path).open("rb") as fh:
                st = os.fstat(fh.fileno())
                kept = self.check(fh, st)
                start = self.offset
                fh.seek(start)
                chunk = fh.read(max(0, st.st_size - start))
                end = chunk.rfind(b"\n")
                if end >= 0:
                    self.advance(fh, start + end + 1)
        except FileNotFoundError:
            self.forget()
            return False, []
        return kept, chunk[:end].split(b"\n") if end >= 0 else []

    def rewind(self) -> None:
        """Read this file again from its start (a reader that starts a new sum)."""
        self.offset, self._head, self._tail = 0, b"", b""

    def forget(self) -> None:
        """The file is gone: whatever comes next is read from its start."""
        self.rewind()
        self._file = None
