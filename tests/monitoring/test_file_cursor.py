"""The cursor of an incremental reader: it trusts its offset only while the file is the one it
read. The case that matters is a log deleted and created again, which on ext4 and tmpfs gets
the same inode back (CI, stop 19: the proxy's month total missed a charge that way)."""

from __future__ import annotations

import os
from pathlib import Path

from monitoring.file_cursor import PROBE_BYTES, FileCursor


def look(cursor: FileCursor, path: Path) -> tuple[bool, bytes]:
    """One incremental read: (whether the offset held, the bytes read after it)."""
    with path.open("rb") as fh:
        st = os.fstat(fh.fileno())
        kept = cursor.check(fh, st)
        fh.seek(cursor.offset)
        new = fh.read()
        cursor.advance(fh, cursor.offset + len(new))
    return kept, new


def test_an_appended_file_keeps_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\n")
    cursor = FileCursor()
    assert look(cursor, path) == (False, b"one\n")  # a first look reads everything
    with path.open("ab") as f:
        f.write(b"two\n" + b"x" * (2 * PROBE_BYTES) + b"\n")
    assert look(cursor, path) == (True, b"two\n" + b"x" * (2 * PROBE_BYTES) + b"\n")
    assert look(cursor, path) == (True, b"")


def test_a_file_deleted_and_created_again_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"old line\n")
    cursor = FileCursor()
    look(cursor, path)
    path.unlink()
    path.write_bytes(b"new line\nand more\n")  # as long as the old one, and longer
    # Whether or not the inode came back (it does on ext4 and tmpfs), nothing is skipped.
    assert look(cursor, path) == (False, b"new line\nand more\n")


def test_a_file_rewritten_in_place_is_read_from_its_start(tmp_path: Path) -> None:
    """Same inode for certain: the same bytes up to the offset or everything is read again."""
    path = tmp_path / "log"
    path.write_bytes(b"a" * 100 + b"\n")
    cursor = FileCursor()
    look(cursor, path)
    path.write_bytes(b"b" * 100 + b"\n" + b"c\n")  # the start differs
    assert look(cursor, path) == (False, b"b" * 100 + b"\nc\n")
    path.write_bytes(b"b" * 50 + b"d" * 50 + b"\nc\ne\n")  # only the bytes before the offset
    assert look(cursor, path) == (False, b"b" * 50 + b"d" * 50 + b"\nc\ne\n")


def test_a_cut_or_a_rotation_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\n")
    cursor = FileCursor()
    look(cursor, path)
    with path.open("r+b") as f:
        f.truncate(4)
    assert look(cursor, path) == (False, b"one\n")
    path.rename(tmp_path / "log.1")
    path.write_bytes(b"one\n")  # a new inode, the same bytes
    assert look(cursor, path) == (False, b"one\n")


def test_forget_and_rewind_start_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\n")
    cursor = FileCursor()
    look(cursor, path)
    cursor.rewind()
    assert look(cursor, path) == (True, b"one\n"), "the same file, read again from its start"
    cursor.forget()
    assert look(cursor, path) == (False, b"one\n")
