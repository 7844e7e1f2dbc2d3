"""The lock, the host's cut of it, and the reproducible watchdog wheel."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from monitoring.stack.load import load_stack, parse_stack
from tasks import wheelhouse
from tasks.wheelhouse import (
    WINDOWS_MARKERS,
    LockError,
    build_project_wheel,
    linux_platforms,
    load_pins,
    parse_lock,
)

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "inventory" / "stack.yaml"
DEBIAN_12 = {"python_version": "3.11", "python_full_version": "3.11.2", "os_name": "posix",
             "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
             "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def test_the_lock_pins_the_stacks_litellm_with_hashes_for_every_entry() -> None:
    stack = load_stack(STACK)
    pins = load_pins(stack, DEBIAN_12)
    names = {p.name: p.version for p in pins}
    assert names["litellm"] == stack.litellm.version
    for companion in wheelhouse.PROXY_COMPANIONS:
        name, version = companion.split("==")
        assert names[name] == version
    assert all(p.hashes and all(h.startswith("sha256:") for h in p.hashes) for p in pins)


def test_markers_cut_the_lock_per_host() -> None:
    text = wheelhouse.lock_path(load_stack(STACK).litellm.version).read_text()
    linux = {p.name for p in parse_lock(text, DEBIAN_12)}
    windows = {p.name for p in parse_lock(text, WINDOWS_MARKERS)}
    assert "uvloop" in linux
    assert "uvloop" not in windows
    assert "pywin32" in windows
    assert "pywin32" not in linux
    # Debian 12's Python 3.11.2 still needs async-timeout (< 3.11.3); 3.11.9 does not.
    assert "async-timeout" in linux
    assert "async-timeout" not in windows


def test_a_lock_for_another_litellm_is_refused_with_the_fix() -> None:
    text = STACK.read_text().replace('version: "1.108.7"', 'version: "1.108.6"')
    other = parse_stack(text)
    with pytest.raises(LockError, match=r"no lock for litellm 1\.108\.6.*make lock"):
        load_pins(other, DEBIAN_12)


def test_an_unpinned_or_unhashed_entry_is_refused() -> None:
    with pytest.raises(LockError, match="not pinned with hashes"):
        parse_lock("httpx>=0.27 --hash=sha256:00\n", DEBIAN_12)
    with pytest.raises(LockError, match="not pinned with hashes"):
        parse_lock("httpx==0.28.1\n", DEBIAN_12)


def test_linux_platform_tags_go_down_to_the_oldest_manylinux() -> None:
    tags = linux_platforms("x86_64", (2, 36))
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {"manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(tags)
    assert "manylinux2014_x86_64" not in linux_platforms("x86_64", (2, 12))


def test_the_watchdog_wheel_is_reproducible(tmp_path: Path) -> None:
    first = build_project_wheel(tmp_path / "a")
    second = build_project_wheel(tmp_path / "b")
    assert first.name == second.name
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(
        second.read_bytes()).digest()


def test_a_lock_that_misses_an_input_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dependency added to pyproject.toml without `make lock`: the watchdog (installed
    with --no-deps) would fail at import on every host, so the deploy stops first."""
    stack = load_stack(STACK)
    inputs = wheelhouse.lock_inputs(stack)
    monkeypatch.setattr(wheelhouse, "lock_inputs", lambda _stack: [*inputs, "httpx>=99"])
    with pytest.raises(LockError, match=r"does not satisfy httpx>=99 .*make lock"):
        load_pins(stack, DEBIAN_12)


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory index holding the watchdog wheel, and its SHA256."""
    index = tmp_path_factory.mktemp("index")
    wheel = build_project_wheel(index)
    return index, hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_the_download_reports_its_progress_and_size(
        local_index: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `pip download` (from a local index instead of PyPI): its output is read line by
    line and turned into counts and megabytes, not swallowed by --quiet."""
    index, sha = local_index
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    lines: list[str] = []
    pin = wheelhouse.Pin("provider-fallback", "0.1.0", (f"sha256:{sha}",))
    wheelhouse._download([pin], tmp_path, ["any"], "3.11", lines.append)
    size = (tmp_path / "wheels" / next(index.glob("*.whl")).name).stat().st_size
    megabytes = f"{size / 1e6:.1f} MB"
    assert lines[0].startswith("downloading 1 wheels for any / CPython 3.11")
    assert lines[1] == f"1/1 wheels, {megabytes}"
    assert lines[2].startswith(f"downloaded 1 wheels, {megabytes} in ")


def test_a_failed_download_keeps_pips_own_words(
        local_index: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, _ = local_index
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    pin = wheelhouse.Pin("provider-fallback", "0.1.0", ("sha256:" + "0" * 64,))
    with pytest.raises(LockError, match=r"(?s)downloading the wheelhouse .*failed: .*HASH"):
        wheelhouse._download([pin], tmp_path, ["any"], "3.11", lambda line: None)


def test_byte_progress_reports_each_tenth_once() -> None:
    lines: list[str] = []
    progress = wheelhouse.ByteProgress("upload", 10_000_000, lines.append)
    for _ in range(40):
        progress.advance(250_000)
    assert lines[0] == "upload: 1.0 MB of 10.0 MB (10%)"
    assert lines[-1] == "upload: 10.0 MB of 10.0 MB (100%)"
    assert len(lines) == 10


def test_render_version_is_the_hash_a_deploy_installs(
        local_index: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """The deploy builds the same wheel (reproducible), so the same hash."""
    from tasks.render.__main__ import main

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("provider-fallback (render) 0.1.0\nwheel sha256: ")
    sha = out.split("wheel sha256: ")[1].split()[0]
    assert sha == local_index[1]
