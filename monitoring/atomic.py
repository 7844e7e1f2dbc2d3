"""Crash-safe file replacement, shared by the agent-file switch and the watchdog state.

A watchdog that is killed (OOM, reboot, power loss) halfway through rewriting a user's agent
config must never leave a truncated or empty file behind: the user would lose settings the
watchdog does not even own. So every write here is the classic sequence

1. write the new bytes to a temp file in the SAME directory (a rename is only atomic within one
   file system), created 0600 so nobody can read a half-written file holding keys;
2. give it the mode (and, when running as root, the owner) of the file it replaces;
3. ``fsync`` it, so its data is on disk before the rename can be;
4. ``os.replace`` it over the target (atomic on POSIX and on Windows/NTFS);
5. ``fsync`` the directory (POSIX), so the rename itself survives a power loss.

At every instant a reader sees either the whole old file or the whole new one. A crash can at
worst leave an orphaned ``.<name>.*.tmp`` beside the target, never a broken target.

Symlinks are followed: a dotfile managed as a symlink (GNU stow, a dotfiles repo) keeps being a
symlink and its target is what gets replaced, instead of the link being swapped for a copy.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import filelock

StrPath = str | os.PathLike[str]

_IS_WINDOWS: Final = os.name == "nt"
#: Windows refuses to replace a file another process holds open without FILE_SHARE_DELETE
#: (antivirus scanners, editors, indexers do, for a moment). Retry briefly before giving up.
_WINDOWS_REPLACE_TRIES: Final = 10
_WINDOWS_REPLACE_DELAY: Final = 0.05


class FileChangedError(OSError):
    """The target changed between the caller's read and the replace: re-read and merge again.

    Raised instead of writing, so a switch never silently overwrites an edit that the user (or
    the agent itself) saved while the watchdog was merging.
    """


@dataclass(frozen=True)
class FileStamp:
    """Identity and version of a file as seen by ``stat``: enough to notice that it changed."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


#: The stamp of a file that does not exist.
ABSENT: Final = FileStamp(dev=0, ino=0, size=-1, mtime_ns=-1)


def stamp(path: StrPath) -> FileStamp:
    """The stamp of ``path`` now (following symlinks), or :data:`ABSENT`."""
    try:
        return FileStamp.of(os.stat(path))
    except FileNotFoundError:
        return ABSENT


def read_consistent(path: StrPath, retries: int = 3) -> tuple[FileStamp, bytes | None]:
    """A consistent (stamp, bytes) pair of ``path``, (:data:`ABSENT`, None) when missing.

    Re-read when the file moved while it was being read, so the stamp a later compare-and-swap
    (``atomic_write(expect=...)``) checks is the one of the bytes in hand.
    :class:`FileChangedError` when it kept changing; other ``OSError`` as raised.
    """
    for _ in range(retries):
        try:
            with open(path, "rb") as fh:
                before = FileStamp.of(os.fstat(fh.fileno()))
                raw = fh.read()
        except FileNotFoundError:
            return ABSENT, None
        if stamp(path) == before:
            return before, raw
    raise FileChangedError(f"{path} kept changing while it was read")


def expand_user(path: StrPath, home: StrPath | None = None) -> Path:
    """``path`` with a leading ``~`` replaced by the home of the user the watchdog runs as.

    That home is ``$HOME`` when set (systemd sets it for ``User=`` units, login shells and
    ``sudo -H`` do too) and else the passwd entry of the effective user, exactly as
    :func:`os.path.expanduser`; on Windows it is ``%USERPROFILE%`` and both ``~\\`` and ``~/``
    are understood. ``home`` overrides it (tests, or a watchdog switching another user's files).
    """
    text = os.fspath(path)
    if home is not None and (text == "~" or text.startswith(("~/", "~" + os.sep))):
        return Path(os.fspath(home), text[2:]) if len(text) > 1 else Path(os.fspath(home))
    return Path(os.path.expanduser(text))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``: ``os.write`` may write less (a full disk, a signal)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: StrPath) -> None:
    """Make a rename or create inside ``directory`` durable (POSIX; a no-op on Windows).

    Windows cannot open a directory as a file and NTFS journals the rename itself.
    """
    if _IS_WINDOWS:
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: StrPath, mode: int = 0o700) -> None:
    """Create ``directory`` and any missing parents, each with ``mode``.

    :func:`os.makedirs` applies ``mode`` to the leaf only; a new ``~/.kilocode`` may hold keys,
    so every directory created here is private. When running as root, each new directory is
    given the owner of the directory it was created in, so creating ``~user/.kilocode`` for a
    user leaves it usable by that user.
    """
    target = Path(directory)
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=mode)
        except FileExistsError:
            continue  # created by someone else meanwhile: fine
        if _is_root() and hasattr(os, "chown"):
            parent_st = os.stat(new.parent)
            os.chown(new, parent_st.st_uid, parent_st.st_gid)


def _replace(src: str, dst: str) -> None:
    if not _IS_WINDOWS:
        os.replace(src, dst)
        return
    for attempt in range(_WINDOWS_REPLACE_TRIES):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == _WINDOWS_REPLACE_TRIES - 1:
                raise
            time.sleep(_WINDOWS_REPLACE_DELAY)


def _write_replace(
    target: Path,
    data: bytes,
    mode: int,
    owner: tuple[int, int] | None,
    expect: FileStamp | None,
    durable: bool = True,
) -> None:
    """Steps 1-5 of the module docstring for one file (3 and 5 only when ``durable``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            if not _IS_WINDOWS:
                os.fchmod(fd, mode)
                if owner is not None and _is_root():
                    os.fchown(fd, *owner)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if _IS_WINDOWS:
            # Only the read-only bit exists there; mirror it as far as it goes.
            os.chmod(tmp, mode)
        if expect is not None and stamp(target) != expect:
            raise FileChangedError(f"{target} changed while it was being rewritten")
        _replace(tmp, str(target))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write(
    path: StrPath,
    data: bytes,
    *,
    new_mode: int = 0o600,
    backup_suffix: str | None = None,
    expect: FileStamp | None = None,
    durable: bool = True,
) -> Path | None:
    """Replace the content of ``path`` with ``data`` so that no crash can leave it torn.

    - An existing file keeps its mode and, when running as root, its owner and group (a user's
      0644 config stays 0644 and stays theirs). A new file gets ``new_mode`` (0600 by default:
      these files hold endpoints and sometimes keys) and, as root, the owner of its directory.
    - ``backup_suffix`` (e.g. ``".bak"``): the content being replaced is first written, with
      the same atomic sequence, mode and owner, to ``<name><suffix>``; nothing is backed up
      when there was no file. Returns the backup path, or None.
    - ``expect``: the :class:`FileStamp` the caller read the file at (:data:`ABSENT` if it did
      not exist); checked again just before the rename, :class:`FileChangedError` if it moved.
    - ``durable=False`` skips both fsyncs: still never torn for a reader, but a power loss may
      lose the write (or leave an empty file). For caches that can be rebuilt, on a hot path.

    The parent directory must exist (see :func:`ensure_dir`): creating directories is a
    decision for the caller, not a side effect of writing a file.
    """
    target = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(f"{target} is not a regular file")
    if expect is not None and (FileStamp.of(st) if st else ABSENT) != expect:
        raise FileChangedError(f"{target} changed since it was read")

    backup: Path | None = None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
        if backup_suffix:
            backup = target.with_name(target.name + backup_suffix)
            _write_replace(backup, target.read_bytes(), mode, owner, None)
    else:
        mode = new_mode
        parent_st = os.stat(target.parent)
        owner = (parent_st.st_uid, parent_st.st_gid)
    _write_replace(target, data, mode, owner, expect, durable)
    return backup


def create_private(path: StrPath, mode: int = 0o600) -> int:
    """Create the NEW file ``path`` with ``mode`` and return a descriptor that appends to it
    (the proxy's degraded-cache segments: one write per answer on a file kept open).

    Never an existing file or a link planted at ``path`` (``O_EXCL``: :class:`FileExistsError`),
    so nothing someone else prepared is written through. The mode is set whatever the umask;
    when root creates it in a directory another account owns, it is that account's
    (:func:`_to_directory_owner`), so the service can still read and delete it.
    """
    target = Path(path)
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    fd = os.open(target, flags, mode)
    try:
        if not _IS_WINDOWS:
            os.fchmod(fd, mode)
        _to_directory_owner(fd, target)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return fd


#: How often a waiting writer retries a held lock (filelock polls a non-blocking lock): the
#: proxy appends a cost line per request, so a wait must end soon after the holder's write.
LOCK_POLL_S: Final = 0.002


def _to_directory_owner(fd: int, path: Path) -> None:
    """Root opened ``path`` (``fd``) in a directory another account owns (a CLI run through
    sudo, a proxy started by hand as root): a root-owned file there is handed to that account,
    so the service that owns the directory can still open, append to and read it. Without
    this, a root-owned ``provider_costs.log`` made the watchdog's budget check fail on every
    tick. A file some other account owns is left alone."""
    if _is_root() and hasattr(os, "fchown"):
        parent = os.stat(path.parent)
        if os.fstat(fd).st_uid == 0 != parent.st_uid:
            os.fchown(fd, parent.st_uid, parent.st_gid)


def _open_lock_file(path: Path, mode: int) -> int:
    """Open (creating it with ``mode``) the lock file ``path``, as the directory's owner's
    (:func:`_to_directory_owner`)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_CLOEXEC", 0), mode)
    _to_directory_owner(fd, path)
    return fd


@contextlib.contextmanager
def locked(path: StrPath, mode: int = 0o640) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created) for a read-decide-write shared
    with another process: the proxy's hook, the watchdog and the CLI all write the kill switch
    and the event log.

    One mechanism on every platform, :func:`filelock.lock_descriptor`: ``flock`` on POSIX,
    ``LockFileEx`` on Windows; the kernel drops it when the holder dies.
    """
    target = Path(path)
    ensure_dir(target.parent, 0o750)
    fd = _open_lock_file(target, mode)
    try:
        filelock.lock_descriptor(fd, poll_interval=LOCK_POLL_S)
        try:
            yield
        finally:
            filelock.unlock_descriptor(fd)
    finally:
        os.close(fd)


def lock_file_for(path: StrPath) -> Path:
    """The lock file that serialises appends to ``path``: ``.<name>.lock`` beside it.

    Not the appended file itself: on Windows a lock is a byte-range lock that also stops
    READERS of the locked range (LockFileEx: an exclusive lock "denies all other processes
    both read and write access"), and the watchdog and the CLI read these logs while the
    proxy appends.
    """
    target = Path(path)
    return target.with_name(f".{target.name}.lock")


def append_locked(path: StrPath, data: bytes, mode: int,
                  repair: Callable[[int], bytes] | None = None) -> None:
    """Append ``data`` as ONE ``write`` on an ``O_APPEND`` descriptor, then fsync.

    Appenders are serialised by :func:`locked` on :func:`lock_file_for`, so ``repair`` (given
    the descriptor, called under the lock) can look at the file's end, deal with a line a
    crash left torn, and return bytes to write before ``data`` (or ``b""``). The file is
    opened per call: a log rotated away meanwhile is simply re-created, with ``mode``.
    """
    target = Path(path)
    ensure_dir(target.parent, 0o750)
    with locked(lock_file_for(target), mode):
        flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
        fd = os.open(target, flags, mode)
        try:
            _to_directory_owner(fd, target)
            if repair is not None:
                data = repair(fd) + data
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
