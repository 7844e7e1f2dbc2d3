"""The agent-file switch (runbook 3.1 / 4.3): a merge that never loses what the user wrote."""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring import agent_files, atomic
from monitoring.agent_files import (
    merge_settings,
    read_active,
    switch_agent_file,
    switch_agents,
)
from monitoring.layout import Layout
from monitoring.stack import Stack
from monitoring.watchdog_config import OWNED_KEYS, AgentSpec, TargetSpec
from tasks.render.watchdog import build

REPO = Path(__file__).resolve().parents[2]

LITELLM = {"provider": "litellm", "endpoint": "http://localhost:4000", "model": "groq-70b"}
KILO = {"provider": "z-ai", "model": "glm-5:free"}

USER_FILE = """{
  "theme": "dark",
  "provider": "litellm",
  "telemetry": false,
  "endpoint": "http://localhost:4000",
  "history": {"max": 200, "paths": ["a", "b"]},
  "model": "groq-70b",
  "zzz-last": null
}
"""


@pytest.fixture(scope="module")
def targets(stack: Stack, linux_layout: Layout) -> list[TargetSpec]:
    """The real targets render makes of stack.yaml."""
    return build(stack, linux_layout).targets


def _load(path: Path) -> dict[str, Any]:
    obj = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(obj, dict)
    return obj


def _user_items(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in obj.items() if k not in OWNED_KEYS]


# ------------------------------------------------------------------------- the merge


def test_user_keys_keep_their_values_and_order(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)
    result = switch_agent_file(path, KILO)
    assert result.ok
    assert result.changed
    assert list(_load(path).items()) == [
        ("theme", "dark"), ("provider", "z-ai"), ("telemetry", False),
        ("history", {"max": 200, "paths": ["a", "b"]}), ("model", "glm-5:free"),
        ("zzz-last", None)]


def test_switching_back_replaces_owned_keys_and_appends_the_missing_endpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)
    switch_agent_file(path, KILO)
    switch_agent_file(path, LITELLM)
    assert list(_load(path)) == ["theme", "provider", "telemetry", "history", "model",
                                 "zzz-last", "endpoint"]
    assert {k: _load(path)[k] for k in OWNED_KEYS} == LITELLM


def test_a_stale_endpoint_is_dropped_when_the_target_has_none(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(json.dumps(LITELLM))
    switch_agent_file(path, KILO)
    assert _load(path) == KILO


def test_merge_settings_is_pure_and_owns_keys_the_target_sets() -> None:
    current = {"a": 1, "model": "old", "extra": "x"}
    merged = merge_settings(current, {"model": "new", "extra": "owned-now"}, ("model",))
    assert merged == {"a": 1, "model": "new", "extra": "owned-now"}
    assert current == {"a": 1, "model": "old", "extra": "x"}


# ------------------------------------------------------------------------- creating files


def test_a_missing_file_is_created_private_with_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".kilocode" / "kilocode.json"
    result = switch_agent_file(path, LITELLM)
    assert result.ok
    assert result.changed
    assert result.created
    assert result.backup is None
    assert _load(path) == LITELLM
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().endswith("}\n")


def test_tilde_is_the_home_of_the_running_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = switch_agent_file("~/.kilocode/kilocode.json", KILO)
    assert result.path == tmp_path / ".kilocode" / "kilocode.json"
    assert _load(result.path) == KILO
    other = tmp_path / "other"
    assert switch_agent_file("~/.gemini/provider.json", KILO, home=other).path == (
        other / ".gemini" / "provider.json")


# ------------------------------------------------------------------------- no needless writes


def test_no_write_at_all_when_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text('{"theme": "dark",   "provider": "z-ai", "model": "glm-5:free"}')
    before = path.stat()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))  # an old mtime
    before = path.stat()
    result = switch_agent_file(path, KILO)
    after = path.stat()
    assert result.ok
    assert not result.changed
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino, before.st_mtime_ns, before.st_size)
    assert not (tmp_path / "kilocode.json.bak").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kilocode.json"]


def test_backup_holds_exactly_the_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)
    first = switch_agent_file(path, KILO)
    assert first.backup == tmp_path / "kilocode.json.bak"
    assert first.backup.read_text() == USER_FILE
    after_first = path.read_bytes()
    second = switch_agent_file(path, LITELLM)
    assert second.backup is not None
    assert second.backup.read_bytes() == after_first


def test_the_mode_of_an_existing_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)
    path.chmod(0o644)
    switch_agent_file(path, KILO)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ------------------------------------------------------------------------- files we must not touch


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{\n  // my comment\n  "provider": "litellm"\n}\n', "invalid_json"),
        (b'{"provider": "litellm", ', "invalid_json"),
        (b"", "invalid_json"),
        (b'{"model": "a", "model": "b"}', "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'["provider", "litellm"]', "not_object"),
        (b'"just a string"', "not_object"),
    ],
    ids=["comment", "truncated", "empty", "duplicate-key", "not-utf8", "array", "string"],
)
def test_a_file_that_is_not_a_json_object_is_left_untouched_and_reported(
    tmp_path: Path, content: bytes, kind: str
) -> None:
    path = tmp_path / "kilocode.json"
    path.write_bytes(content)
    before = path.stat()
    result = switch_agent_file(path, KILO)
    assert not result.ok
    assert not result.changed
    assert result.error_kind == kind
    assert result.error is not None
    assert str(path) in result.error
    assert path.read_bytes() == content
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kilocode.json"]


def test_a_write_failure_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(agent_files, "atomic_write", denied)  # the name the module calls
    result = switch_agent_file(path, KILO)
    assert result.error_kind == "write_failed"
    assert result.error is not None
    assert "Permission denied" in result.error
    assert path.read_text() == USER_FILE


def test_an_edit_saved_during_the_switch_is_merged_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kilocode.json"
    path.write_text(USER_FILE)
    real = atomic.atomic_write
    calls: list[int] = []

    def user_saves_first(*args: Any, **kwargs: Any) -> Path | None:
        calls.append(1)
        if len(calls) == 1:  # the user saves between our read and our replace
            path.write_text(json.dumps({**json.loads(USER_FILE), "new-user-key": 1}, indent=2))
        return real(*args, **kwargs)

    monkeypatch.setattr(agent_files, "atomic_write", user_saves_first)
    result = switch_agent_file(path, KILO)
    assert result.ok
    assert len(calls) == 2
    assert _load(path)["new-user-key"] == 1
    assert _load(path)["model"] == "glm-5:free"


# ------------------------------------------------------------------------- formatting kept


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ('{\n\t"a": 1,\n\t"model": "x"\n}\n', '{\n\t"a": 1,\n\t"model": "glm-5:free",\n'
                                             '\t"provider": "z-ai"\n}\n'),
        ('{\n    "a": 1\n}',
         '{\n    "a": 1,\n    "provider": "z-ai",\n    "model": "glm-5:free"\n}'),
        ('{\r\n  "a": "é"\r\n}\r\n', '{\r\n  "a": "é",\r\n  "provider": "z-ai",\r\n'
                                     '  "model": "glm-5:free"\r\n}\r\n'),
        ('{"a": [1, 2]}\n', '{"a": [1, 2], "provider": "z-ai", "model": "glm-5:free"}\n'),
    ],
    ids=["tabs", "four-spaces-no-final-newline", "crlf", "one-line"],
)
def test_the_file_style_is_kept(tmp_path: Path, original: str, expected: str) -> None:
    path = tmp_path / "kilocode.json"
    path.write_bytes(original.encode())
    assert switch_agent_file(path, KILO).changed
    assert path.read_bytes() == expected.encode()


def test_a_utf8_bom_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "kilocode.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert switch_agent_file(path, KILO).ok
    assert path.read_bytes().startswith(b'\xef\xbb\xbf{"a": 1, "provider"')


# ------------------------------------------------------------------------- which target is active


def test_read_active_names_the_target_the_file_points_at(
    tmp_path: Path, targets: list[TargetSpec]
) -> None:
    path = tmp_path / "kilocode.json"
    assert read_active(path, targets) is None  # missing
    for target in targets:
        switch_agent_file(path, target.settings)
        assert read_active(path, targets) == target.name
    by_name = {t.name: t.settings for t in targets}
    assert read_active(path, by_name) == targets[-1].name


def test_read_active_is_none_for_hand_edits_and_stale_keys(
    tmp_path: Path, targets: list[TargetSpec]
) -> None:
    kilo = next(t for t in targets if t.kind == "agent")
    path = tmp_path / "kilocode.json"
    path.write_text(json.dumps({**kilo.settings, "endpoint": "http://stale:4000"}))
    assert read_active(path, targets) is None  # the stale endpoint: not what a switch writes
    path.write_text(json.dumps({**kilo.settings, "model": "something-else"}))
    assert read_active(path, targets) is None
    path.write_text("{broken")
    assert read_active(path, targets) is None


def test_switch_agents_switches_every_file_and_reports_each(tmp_path: Path) -> None:
    agents = [AgentSpec(name="kilo-code", path="~/.kilocode/kilocode.json"),
              AgentSpec(name="gemini-cli", path="~/.gemini/provider.json")]
    (tmp_path / ".gemini").mkdir()
    (tmp_path / ".gemini" / "provider.json").write_text("not json")
    results = switch_agents(agents, LITELLM, home=tmp_path)
    assert results["kilo-code"].ok
    assert results["kilo-code"].changed
    assert results["gemini-cli"].error_kind == "invalid_json"


# ------------------------------------------------------------------------- property


_json_scalars = (st.none() | st.booleans() | st.integers()
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8,
)
_user_keys = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in OWNED_KEYS),
                             _json_values, max_size=6)
_stale_owned = st.dictionaries(st.sampled_from(OWNED_KEYS), st.text(max_size=8))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=_user_keys, stale=_stale_owned, order_seed=st.randoms(use_true_random=False),
       indent=st.sampled_from([None, 2, 4, "\t"]), data=st.data())
def test_any_switch_sequence_keeps_user_keys_and_ends_on_the_last_target(
    targets: list[TargetSpec], user: dict[str, Any], stale: dict[str, str],
    order_seed: random.Random, indent: int | str | None, data: st.DataObject,
) -> None:
    items = [*user.items(), *stale.items()]
    order_seed.shuffle(items)
    sequence = data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=6))
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.json"
        path.write_text(json.dumps(dict(items), indent=indent, ensure_ascii=False))
        expected_user = _user_items(dict(items))
        for target in sequence:
            previous = path.read_bytes()
            result = switch_agent_file(path, target.settings)
            assert result.ok, result.error
            now = _load(path)
            assert _user_items(now) == expected_user
            assert {k: v for k, v in now.items() if k in OWNED_KEYS} == target.settings
            assert read_active(path, targets) == target.name
            if result.changed:
                assert result.backup is not None
                assert result.backup.read_bytes() == previous
            else:
                assert path.read_bytes() == previous


# ------------------------------------------------------------------------- crash safety

_CHILD = r"""
import json, sys
from monitoring.agent_files import switch_agent_file
path, targets = sys.argv[1], list(json.loads(sys.argv[2]).values())
done = 0
while True:
    result = switch_agent_file(path, targets[done % len(targets)])
    if not result.ok:
        sys.stdout.write("ERR " + str(result.error) + "\n")
        sys.stdout.flush()
        sys.exit(1)
    done += 1
    sys.stdout.write(f"{done}\n")
    sys.stdout.flush()
"""

LANES = 3
KILLS_PER_LANE = 17  # 51 kills in all
DEADLINE = 20.0


def _wait_for_switches(proc: subprocess.Popen[bytes], count: int, deadline: float) -> None:
    """Block until the child says it has done ``count`` switches (or fail at the deadline)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            lines = buffer.split(b"\n")
            for line in lines[:-1]:
                if line.startswith(b"ERR"):
                    pytest.fail(f"child failed: {line.decode()}")
                if int(line) >= count:
                    return
            buffer = lines[-1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"child did not report {count} switches in time")
            if sel.select(remaining):
                chunk = os.read(fd, 65536)
                if not chunk:
                    pytest.fail(f"child exited early with {proc.wait()}")
                buffer += chunk


def _kill_lane(lane: int, root: Path, by_name: dict[str, dict[str, str]],
               check: Callable[[Path], None]) -> int:
    rng = random.Random(1000 + lane)
    path = root / f"lane{lane}" / "kilocode.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_CRASH_USER_FILE, indent=2))
    kills = 0
    for _ in range(KILLS_PER_LANE):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), json.dumps(by_name)],
                                cwd=REPO, stdout=subprocess.PIPE)
        try:
            _wait_for_switches(proc, rng.randint(1, 40), time.monotonic() + DEADLINE)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        kills += 1
        check(path)
    return kills


_CRASH_USER_FILE: dict[str, Any] = {
    "theme": "dark",
    "provider": "litellm",
    "history": [{"prompt": f"question {i}", "answer": "x" * 200} for i in range(150)],
    "unicode": "naïve ☃",
    "model": "groq-70b",
    "telemetry": False,
}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_at_any_moment_never_breaks_the_file(
    tmp_path: Path, targets: list[TargetSpec]
) -> None:
    by_name = {t.name: t.settings for t in targets}
    expected_user = _user_items(_CRASH_USER_FILE)

    def check(path: Path) -> None:
        for candidate in (path, path.with_name(path.name + ".bak")):
            if not candidate.exists():
                continue
            obj = _load(candidate)  # valid JSON, whatever moment the kill hit
            assert _user_items(obj) == expected_user
            assert read_active(candidate, by_name) is not None or obj["model"] == "groq-70b"
        assert read_active(path, by_name) is not None

    with ThreadPoolExecutor(LANES) as pool:
        kills = sum(pool.map(lambda lane: _kill_lane(lane, tmp_path, by_name, check),
                             range(LANES)))
    assert kills >= 50
