"""The shared atomic write: modes, owners, backups, symlinks, failures, Windows retries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from monitoring import atomic
from monitoring.atomic import (
    ABSENT,
    FileChangedError,
    atomic_write,
    create_private,
    ensure_dir,
    expand_user,
    stamp,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_new_file_is_private_and_complete(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    assert atomic_write(target, b'{"a": 1}\n') is None
    assert target.read_bytes() == b'{"a": 1}\n'
    assert _mode(target) == 0o600
    assert _leftovers(tmp_path) == []


def test_new_mode_is_applied_exactly_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", b"x", new_mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f") == 0o644


def test_existing_mode_is_kept_and_backup_holds_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "kilocode.json"
    target.write_bytes(b"old\n")
    target.chmod(0o644)
    backup = atomic_write(target, b"new\n", backup_suffix=".bak")
    assert backup == tmp_path / "kilocode.json.bak"
    assert target.read_bytes() == b"new\n"
    assert backup.read_bytes() == b"old\n"
    assert _mode(target) == 0o644
    assert _mode(backup) == 0o644
    assert _leftovers(tmp_path) == []


def test_no_backup_when_there_was_no_file(tmp_path: Path) -> None:
    assert atomic_write(tmp_path / "f", b"x", backup_suffix=".bak") is None
    assert not (tmp_path / "f.bak").exists()


def test_a_symlink_stays_a_symlink_and_its_target_is_replaced(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "kilocode.json"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "kilocode.json"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def test_changed_since_read_raises_and_leaves_the_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"one")
    seen = stamp(target)
    target.write_bytes(b"two, longer")
    with pytest.raises(FileChangedError):
        atomic_write(target, b"three", expect=seen)
    assert target.read_bytes() == b"two, longer"
    assert _leftovers(tmp_path) == []


def test_expect_absent_refuses_a_file_that_appeared(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"someone else's")
    with pytest.raises(FileChangedError):
        atomic_write(target, b"mine", expect=ABSENT)
    assert target.read_bytes() == b"someone else's"


def test_change_just_before_the_rename_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"one")
    seen = stamp(target)
    real_fsync = os.fsync

    def fsync_then_edit(fd: int) -> None:  # the user saves while the temp file is flushed
        real_fsync(fd)
        monkeypatch.setattr(os, "fsync", real_fsync)
        target.write_bytes(b"user edit!")

    monkeypatch.setattr(os, "fsync", fsync_then_edit)
    with pytest.raises(FileChangedError):
        atomic_write(target, b"ours", expect=seen)
    assert target.read_bytes() == b"user edit!"
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_original_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"original")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"replacement")
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_a_directory_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir()


def test_windows_replace_retries_a_briefly_locked_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_IS_WINDOWS", True)
    monkeypatch.setattr(atomic, "_WINDOWS_REPLACE_DELAY", 0.0)
    real_replace = os.replace
    calls: list[str] = []

    def locked_twice(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", locked_twice)
    atomic_write(tmp_path / "f", b"x")
    assert len(calls) == 3
    assert (tmp_path / "f").read_bytes() == b"x"


def test_windows_replace_gives_up_after_its_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_IS_WINDOWS", True)
    monkeypatch.setattr(atomic, "_WINDOWS_REPLACE_DELAY", 0.0)

    def always_locked(src: str, dst: str) -> None:
        raise PermissionError(13, "locked")

    monkeypatch.setattr(os, "replace", always_locked)
    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "f", b"x")
    assert _leftovers(tmp_path) == []


def test_ensure_dir_makes_every_new_level_private(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    ensure_dir(deep)
    for level in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert _mode(level) == 0o700
    ensure_dir(deep)  # idempotent


def test_expand_user_with_an_explicit_home(tmp_path: Path) -> None:
    assert expand_user("~/.kilocode/kilocode.json", tmp_path) == (
        tmp_path / ".kilocode" / "kilocode.json")
    assert expand_user("~", tmp_path) == tmp_path
    assert expand_user("/etc/x", tmp_path) == Path("/etc/x")


def test_expand_user_defaults_to_home_of_the_running_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_user("~/.gemini/provider.json") == tmp_path / ".gemini" / "provider.json"


@pytest.mark.skipif(not IS_ROOT, reason="owners can only be set by root")
def test_root_hands_appended_files_to_the_directory_owner(tmp_path: Path) -> None:
    """``sudo provider-fallback ...`` (or a proxy started by hand as root) appending to a log in
    the service's directory must not leave it root-owned: the service could no longer append
    to it, or read it (a root-owned cost log failed the watchdog's budget check every tick)."""
    logs = tmp_path / "log"
    logs.mkdir()
    os.chown(logs, 4321, 4322)
    new, old, foreign = logs / "new.log", logs / "old.log", logs / "foreign.log"
    old.write_bytes(b"a root-owned log an earlier run as root left\n")
    foreign.write_bytes(b"")
    os.chown(foreign, 5555, 5556)
    for path in (new, old, foreign):
        atomic.append_locked(path, b"line\n", 0o640)
    for path in (new, old, atomic.lock_file_for(new), atomic.lock_file_for(old)):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322), path
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    assert (foreign.stat().st_uid, foreign.stat().st_gid) == (5555, 5556), "not root's: kept"
    assert old.read_bytes().endswith(b"line\n")


@pytest.mark.skipif(not IS_ROOT, reason="owners can only be kept by root")
def test_root_keeps_the_owner_of_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chown(target, 4321, 4322)
    atomic_write(target, b"new", backup_suffix=".bak")
    for path in (target, tmp_path / "f.bak"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


@pytest.mark.skipif(not IS_ROOT, reason="owners can only be set by root")
def test_root_gives_new_files_and_dirs_the_owner_of_their_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 4321, 4322)
    ensure_dir(home / ".kilocode")
    atomic_write(home / ".kilocode" / "kilocode.json", b"{}")
    for path in (home / ".kilocode", home / ".kilocode" / "kilocode.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


def test_a_private_file_is_new_0600_whatever_the_umask_and_appends(tmp_path: Path) -> None:
    target = tmp_path / "seg-1.jsonl"
    old_umask = os.umask(0o777)  # the mode is set, not left to the umask
    try:
        fd = create_private(target, 0o600)
    finally:
        os.umask(old_umask)
    try:
        os.write(fd, b"one\n")
        os.write(fd, b"two\n")
    finally:
        os.close(fd)
    assert target.read_bytes() == b"one\ntwo\n"
    assert _mode(target) == 0o600


def test_a_private_file_is_never_an_existing_file_or_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "link.jsonl").symlink_to(victim)
    (tmp_path / "there.jsonl").write_bytes(b"theirs")
    for name in ("link.jsonl", "there.jsonl"):
        with pytest.raises(FileExistsError):
            create_private(tmp_path / name)
    assert victim.read_bytes() == b"keep"
    assert (tmp_path / "there.jsonl").read_bytes() == b"theirs"


@pytest.mark.skipif(not IS_ROOT, reason="owners can only be set by root")
def test_root_creates_a_private_file_as_the_owner_of_its_directory(tmp_path: Path) -> None:
    service = tmp_path / "cache"
    service.mkdir()
    os.chown(service, 4321, 4322)
    os.close(create_private(service / "seg-1.jsonl"))
    st = (service / "seg-1.jsonl").stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322)
