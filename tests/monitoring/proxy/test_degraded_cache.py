"""The degraded cache in segments (issue 13, B7): TTL, bounds and their eviction rule, the newest
copy winning, restart and torn lines, expiry, files and owners, lookups during stores, and one
append per stored answer instead of a file created and later unlinked."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitoring import atomic
from monitoring.proxy import degraded_cache
from monitoring.proxy.degraded_cache import DegradedCache, segment_files

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TTL = 3600
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def caches() -> Iterator[list[DegradedCache]]:
    """Caches a test opens, their newest segment closed at the end."""
    opened: list[DegradedCache] = []
    yield opened
    for cache in opened:
        cache.close()


def _cache(caches: list[DegradedCache], directory: Path, **bounds: int) -> DegradedCache:
    cache = DegradedCache(directory, TTL, **bounds)
    caches.append(cache)
    return cache


def _filled(caches: list[DegradedCache], directory: Path, count: int,
            **bounds: int) -> DegradedCache:
    """A cache holding ``k0`` .. ``k<count-1>`` (answer ``n``), stored at NOW."""
    cache = _cache(caches, directory, **bounds)
    for n in range(count):
        _store(cache, f"k{n}", n)
    return cache


def _store(cache: DegradedCache, key: str, n: Any, now: datetime = NOW, **extra: Any) -> None:
    cache.store(key, {"n": n, **extra}, model="m", served_by="m", now=now)


def _found(cache: DegradedCache, key: str, now: datetime = NOW) -> Any:
    answer = cache.lookup(key, now)
    return None if answer is None else answer.response["n"]


def _on_disk(directory: Path) -> tuple[int, int]:
    """(lines, bytes) of the segments on disk."""
    files = segment_files(directory)
    return (sum(p.read_bytes().count(b"\n") for p in files), sum(p.stat().st_size for p in files))


# --------------------------------------------------------------------------- answers and TTL


def test_a_stored_answer_is_served_within_the_ttl_and_never_after(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c")
    _store(cache, "k", 1)
    answer = cache.lookup("k", NOW + timedelta(seconds=TTL))
    assert answer is not None
    assert (answer.response, answer.model, answer.served_by) == ({"n": 1}, "m", "m")
    assert answer.age_s(NOW + timedelta(seconds=TTL)) == TTL
    assert cache.lookup("k", NOW + timedelta(seconds=TTL + 1)) is None
    assert cache.lookup("k", NOW) is None, "an expired answer is forgotten"
    assert cache.lookup("never stored", NOW) is None


def test_an_expired_lookup_removes_its_segment_once_nothing_newer_is_in_it(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c", max_entries=20)  # segments of 2 lines
    for n in range(4):
        _store(cache, f"k{n}", n, NOW + timedelta(seconds=n))
    first, second = segment_files(tmp_path / "c")
    later = NOW + timedelta(seconds=TTL + 2)  # k0 and k1 expired, k2 and k3 not
    assert cache.lookup("k0", later) is None
    assert not first.exists(), "its newest line (k1) has expired too"
    assert cache.lookup("k2", later) is not None
    assert second.exists()
    assert cache.lookup("k1", later) is None


# --------------------------------------------------------------------------- bounds


def test_the_oldest_segments_are_evicted_first_and_a_stored_again_answer_is_newest(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _filled(caches, tmp_path / "c", 5, max_entries=3)  # one line a segment: exact
    assert [_found(cache, f"k{n}") for n in range(5)] == [None, None, 2, 3, 4]
    _store(cache, "k2", 22)  # stored again: newest
    _store(cache, "k5", 5)
    assert [_found(cache, f"k{n}") for n in range(6)] == [None, None, 22, None, 4, 5]
    assert _on_disk(tmp_path / "c")[0] == 3


def test_the_newest_copy_wins_and_outlives_the_segment_of_the_old_one(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c", max_entries=40)  # segments of 4 lines
    _store(cache, "kept", "old")
    for n in range(6):
        _store(cache, f"k{n}", n)
    _store(cache, "kept", "new")  # its old copy stays in the first segment until it goes
    assert _found(cache, "kept") == "new"
    for n in range(6, 40):  # past the bound: the first segments are evicted
        _store(cache, f"k{n}", n)
    assert _found(cache, "k0") is None
    assert _found(cache, "kept") == "new"


def test_the_bounds_are_never_exceeded_and_eviction_frees_at_most_one_segment(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    """The documented overshoot: none. Deleting whole segments costs at most one segment (a
    tenth of the bound) below it, plus the line being stored."""
    directory = tmp_path / "c"
    cache = _cache(caches, directory, max_entries=100, max_bytes=100_000)
    for n in range(350):
        _store(cache, f"k{n}", n)
        lines, size = _on_disk(directory)
        assert lines <= 100
        assert size <= 100_000
        assert (lines, size) == (cache.lines, cache.size)
        if n >= 100:
            assert lines >= 100 - cache.segment_entries
    assert len(segment_files(directory)) <= 10
    assert _found(cache, "k349") == 349
    assert _found(cache, f"k{349 - 100 + cache.segment_entries}") is not None


def test_the_bytes_bound_holds_and_an_answer_over_a_tenth_of_it_is_not_kept(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    directory = tmp_path / "c"
    cache = _cache(caches, directory, max_entries=1000, max_bytes=4_000)
    for n in range(50):
        _store(cache, f"k{n}", n, text="x" * 200)
        assert _on_disk(directory)[1] <= 4_000
    assert _on_disk(directory)[0] >= 8
    assert _found(cache, "k49") == 49
    _store(cache, "big", 0, text="x" * 400)
    assert _found(cache, "big") is None, "over a tenth of the bound: not kept"
    assert _found(cache, "k49") == 49


def test_a_stored_answer_is_one_append_not_a_file_created_and_unlinked(
        tmp_path: Path, caches: list[DegradedCache], monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 answers past a bound of 1,000: one file per 100 answers created and deleted, where
    one per answer cost the I/O worker a create, a rename and a blocking unlink each."""
    created: list[Path] = []
    unlinked: list[str] = []
    create, unlink = atomic.create_private, os.unlink

    def counting_create(path: Any, mode: int = 0o600) -> int:
        created.append(Path(path))
        return create(path, mode)

    def counting_unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        unlinked.append(os.fspath(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(degraded_cache, "create_private", counting_create)
    monkeypatch.setattr(os, "unlink", counting_unlink)
    monkeypatch.setattr(os, "replace", None)  # no temp file renamed over an entry
    monkeypatch.setattr(os, "rename", None)
    cache = _cache(caches, tmp_path / "c", max_entries=1000)
    for n in range(3000):
        _store(cache, f"k{n}", n)
    monkeypatch.undo()
    assert len(created) == 30
    assert len(unlinked) == 20
    assert len(segment_files(tmp_path / "c")) == len(created) - len(unlinked) <= 10
    assert _found(cache, "k2999") == 2999


# --------------------------------------------------------------------------- files


def test_segments_are_private_and_hold_one_json_line_per_answer(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c")
    _store(cache, "k", 1)
    (segment,) = segment_files(tmp_path / "c")
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700
    assert segment.read_bytes().count(b"\n") == 1
    assert b'"key": "k"' in segment.read_bytes()


@pytest.mark.skipif(not IS_ROOT, reason="owners can only be set by root")
def test_root_writes_segments_as_the_owner_of_the_cache_directory(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    """A proxy started by hand as root must leave segments the service account can read and
    delete."""
    directory = tmp_path / "c"
    directory.mkdir(mode=0o700)
    os.chown(directory, 4321, 4322)
    cache = _cache(caches, directory)
    _store(cache, "k", 1)
    (segment,) = segment_files(directory)
    assert (segment.stat().st_uid, segment.stat().st_gid) == (4321, 4322)


def test_the_cache_recreates_its_directory_removed_behind_its_back(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c")
    _store(cache, "k0", 0)
    for entry in (tmp_path / "c").iterdir():
        entry.unlink()
    (tmp_path / "c").rmdir()
    _store(cache, "k1", 1)
    assert _found(cache, "k1") == 1
    assert _found(cache, "k0") is None


def test_a_segment_deleted_behind_its_back_is_replaced_at_the_next_store(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    cache = _cache(caches, tmp_path / "c")
    _store(cache, "k0", 0)
    for segment in segment_files(tmp_path / "c"):
        segment.unlink()  # the watchdog's prune, an operator
    _store(cache, "k1", 1)
    assert _found(cache, "k1") == 1
    assert _on_disk(tmp_path / "c")[0] == 1
    assert cache.lines == 1


# --------------------------------------------------------------------------- restart


def test_a_restarted_cache_rebuilds_its_index_from_the_segments(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    directory = tmp_path / "c"
    first = _filled(caches, directory, 10, max_entries=40)
    _store(first, "k3", 33)  # the newest copy, in a later segment
    first.close()
    again = _cache(caches, directory, max_entries=40)
    assert [_found(again, f"k{n}") for n in range(10)] == [0, 1, 2, 33, 4, 5, 6, 7, 8, 9]
    assert (again.lines, again.size) == _on_disk(directory)
    for n in range(10, 40):  # the bound counts what the first process left
        _store(again, f"k{n}", n)
    assert _on_disk(directory)[0] <= 40
    assert _found(again, "k0") is None
    assert _found(again, "k3") == 33, "stored again: newer than k4, which is also kept"
    assert _found(again, "k4") == 4


def test_a_torn_last_line_is_skipped_never_served_nor_appended_to(
        tmp_path: Path, caches: list[DegradedCache], caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "c"
    first = _cache(caches, directory)
    _store(first, "k0", 0)
    _store(first, "k1", 1)
    first.close()
    (segment,) = segment_files(directory)
    whole = segment.read_bytes()
    last = whole[:-1].rindex(b"\n") + 1
    torn = whole[:last] + whole[last:last + 40]  # a power loss cut k1's line short
    segment.write_bytes(torn)
    again = _cache(caches, directory)
    with caplog.at_level(logging.WARNING):
        assert _found(again, "k1") is None
    assert "torn" in caplog.text
    assert _found(again, "k0") == 0
    _store(again, "k2", 2)
    assert segment.read_bytes() == torn, "a later process starts its own segment"
    assert _found(again, "k2") == 2
    assert len(segment_files(directory)) == 2


def test_expired_segments_and_the_one_file_per_answer_layout_are_removed_at_start(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    directory = tmp_path / "c"
    first = _cache(caches, directory, max_entries=20)
    for n in range(4):
        _store(first, f"k{n}", n, NOW + timedelta(seconds=n))
    first.close()
    legacy = directory / ("ab" * 32 + ".json")
    legacy.write_bytes(b"{}")
    again = _cache(caches, directory, max_entries=20)
    again.load(NOW + timedelta(seconds=TTL + 2))  # the first segment (k0, k1) has expired
    assert len(segment_files(directory)) == 1
    assert not legacy.exists()
    assert _found(again, "k3", NOW + timedelta(seconds=TTL + 2)) == 3


def test_the_watchdogs_prune_removes_segments_not_appended_to_within_the_ttl(
        tmp_path: Path, caches: list[DegradedCache]) -> None:
    directory = tmp_path / "c"
    proxy = _filled(caches, directory, 6, max_entries=20)
    old, older, newest = segment_files(directory)
    stale = NOW.timestamp() - TTL - 10
    for path in (old, older, newest):
        os.utime(path, (stale, stale))
    watchdog = DegradedCache(directory, TTL)  # its own process: no index
    assert watchdog.prune(NOW) == 3
    assert segment_files(directory) == []
    _store(proxy, "k6", 6)  # the proxy notices its segment gone and starts another
    assert _found(proxy, "k6") == 6
    for n in range(7, 10):
        _store(proxy, f"k{n}", n)
    first = segment_files(directory)[0]
    os.utime(first, (stale, stale))
    assert proxy.prune(NOW) == 1, "in the proxy's process: all but its newest segment"
    assert _found(proxy, "k7") is None
    assert _found(proxy, "k9") == 9


# --------------------------------------------------------------------------- threads


def test_lookups_during_stores_see_whole_answers_or_none(
        tmp_path: Path, caches: list[DegradedCache], caplog: pytest.LogCaptureFixture) -> None:
    """The worker stores (and evicts every 20 answers) while the event loop looks up: every
    lookup finds the answer of its own key or nothing, never a half-written or foreign one."""
    cache = _cache(caches, tmp_path / "c", max_entries=200)
    stored = 0
    done = threading.Event()

    def worker() -> None:
        nonlocal stored
        for n in range(3000):
            _store(cache, f"k{n}", n, text="y" * (n % 500))
            stored = n + 1
        done.set()

    thread = threading.Thread(target=worker)
    hits = misses = 0
    with caplog.at_level(logging.WARNING):
        thread.start()
        while not done.is_set():
            latest = stored
            for n in (latest - 1, latest - 150, latest - 199):
                if n < 0:
                    continue
                answer = cache.lookup(f"k{n}", NOW)
                if answer is None:
                    misses += 1
                else:
                    assert answer.response == {"n": n, "text": "y" * (n % 500)}
                    hits += 1
        thread.join()
    assert hits > 0
    assert caplog.text == "", "no lookup met a torn or foreign line"
    assert [_found(cache, f"k{n}") for n in (2999, 2810)] == [2999, 2810]
