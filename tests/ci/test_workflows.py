"""The two GitHub Actions workflows a fork of this repository gets: .github/workflows/ci.yml
(the Linux suite, .ci/run) and windows-host.yml (a real Windows runner deployed over WinRM).
Neither can run here: actionlint checks them, every command they run is in a script checked
here (tree-sitter-powershell, ``bash -n``) or run here (windows_ci_stack.py)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.stack.load import load_stack
from tests.conftest import REPO, STACK_FILE
from tests.support import actionlint
from tests.support.powershell import assert_parses, attribute_strings

WORKFLOWS = REPO / ".github" / "workflows"
LINUX_SCRIPT = REPO / "scripts" / "ci" / "linux-ci.sh"
WINDOWS_SCRIPT = REPO / "scripts" / "ci" / "windows-host.ps1"
ENABLE_WINRM = REPO / "scripts" / "windows" / "enable-winrm-https.ps1"
STACK_SCRIPT = REPO / "scripts" / "ci" / "windows_ci_stack.py"

needs_actionlint = pytest.mark.skipif(actionlint.available() is not None,
                                      reason=str(actionlint.available()))


def _workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _runs(name: str) -> list[str]:
    return [step["run"].strip() for job in _workflow(name)["jobs"].values()
            for step in job["steps"] if "run" in step]


@needs_actionlint
@pytest.mark.parametrize("name", ["ci.yml", "windows-host.yml"])
def test_actionlint_passes(name: str) -> None:
    assert actionlint.lint(WORKFLOWS / name) == []


@needs_actionlint
def test_actionlint_can_fail(tmp_path: Path) -> None:
    broken = (WORKFLOWS / "ci.yml").read_text().replace("runs-on: ubuntu-latest",
                                                       "runs-on: ${{ matrix.os }}")
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    assert actionlint.lint(path)


def test_the_linux_workflow_runs_only_the_checked_script() -> None:
    subprocess.run(["bash", "-n", str(LINUX_SCRIPT)], check=True)
    text = LINUX_SCRIPT.read_text()
    steps = set(re.findall(r"^  ([a-z]+)\)$", text, re.MULTILINE))
    assert steps == {"restore", "run", "save"}
    for run in _runs("ci.yml"):
        match = re.fullmatch(r"scripts/ci/linux-ci\.sh ([a-z]+)", run)
        assert match, run
        assert match.group(1) in steps
    assert ".ci/run" in text  # what the project's CI runs, not a copy of it


def test_the_linux_cache_key_covers_what_the_cache_is_built_from() -> None:
    [job] = _workflow("ci.yml")["jobs"].values()
    [restore] = [s for s in job["steps"] if str(s.get("uses", "")).startswith(
        "actions/cache/restore")]
    key = restore["with"]["key"]
    for source in ("locks/*.txt", "tests/support/testhost.py",
                   "tests/support/litellm_proxy.py", "tasks/wheelhouse.py"):
        assert source in key


def test_the_windows_workflow_runs_only_the_checked_script() -> None:
    text = WINDOWS_SCRIPT.read_text(encoding="utf-8")
    assert_parses(text, str(WINDOWS_SCRIPT))
    assert_parses(ENABLE_WINRM.read_text(encoding="utf-8"), str(ENABLE_WINRM))
    [steps] = attribute_strings(text, "ValidateSet")
    used = []
    for run in _runs("windows-host.yml"):
        match = re.fullmatch(r"\.\\scripts\\ci\\windows-host\.ps1 -Step ([a-z]+)", run)
        assert match, run
        used.append(match.group(1))
    assert used == steps, "every step, in the script's order"
    job = _workflow("windows-host.yml")["jobs"]["windows-host"]
    assert job["runs-on"] == "windows-latest"
    assert job["defaults"]["run"]["shell"] == "powershell"  # Windows PowerShell 5.1
    # WinRM is enabled by the documented script, and the password is masked.
    assert "scripts\\windows\\enable-winrm-https.ps1" in text
    assert "::add-mask::" in text
    # The user's guide names the script and the workflow where a Windows user looks for them.
    assert "scripts/windows/enable-winrm-https.ps1" in (REPO / "docs/windows.md").read_text(
        encoding="utf-8")
    assert ".github/workflows/windows-host.yml" in (REPO / "docs/verification.md").read_text(
        encoding="utf-8")


def _sums(*names: str) -> str:
    return "".join(f"{hashlib.sha256(n.encode()).hexdigest()}  {n}\n" for n in names)


def test_the_ci_stack_takes_the_hashes_from_sha256sums(tmp_path: Path) -> None:
    prom = "prometheus-3.5.0.windows-amd64.zip"
    am = "alertmanager-0.28.1.windows-amd64.zip"
    (tmp_path / "p.txt").write_text(_sums("prometheus-3.5.0.linux-amd64.tar.gz", prom))
    (tmp_path / "a.txt").write_text(_sums(am))
    out = tmp_path / "ci-stack.yaml"
    python = "C:\\hostedtoolcache\\windows\\Python\\3.11.9\\x64\\python.exe"
    args = [sys.executable, str(STACK_SCRIPT), "write", "--stack", str(STACK_FILE),
            "--out", str(out), "--python", python,
            "--prometheus-url", f"https://example.invalid/v3.5.0/{prom}",
            "--prometheus-sums", str(tmp_path / "p.txt"),
            "--alertmanager-url", f"https://example.invalid/v0.28.1/{am}",
            "--alertmanager-sums", str(tmp_path / "a.txt")]
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, timeout=60)
    stack = load_stack(out)
    assert stack.windows.python == python
    assert stack.windows.prometheus_release is not None
    assert stack.windows.prometheus_release.sha256 == hashlib.sha256(prom.encode()).hexdigest()
    assert stack.windows.alertmanager_release is not None
    assert stack.windows.alertmanager_release.sha256 == hashlib.sha256(am.encode()).hexdigest()
    paths = subprocess.run([sys.executable, str(STACK_SCRIPT), "paths", "--stack", str(out)],
                           cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    assert json.loads(paths.stdout)["install_root"] == stack.windows.install_root

    (tmp_path / "a.txt").write_text(_sums("something-else.zip"))
    out.unlink()
    failed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert failed.returncode == 2
    assert f"{am} is not listed" in failed.stderr
    assert not out.exists()
