"""Render's final gate: two files on one host path, a renderer's refusal and a file its real
tool rejects all end in the one report (exit 2) with nothing written; the gate can fail."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from monitoring.stack.load import StackError, parse_stack
from tasks.render import render
from tasks.render.__main__ import EXIT_INVALID, main
from tasks.render.common import Artifact, Rendered
from tasks.render.validate import available_tools, tool_problems
from tests.conftest import REPO, STACK_FILE

TEXT = STACK_FILE.read_text(encoding="utf-8")
TOOLS = ("promtool", "amtool", "systemd-analyze", "sh")


def _tools() -> dict[str, str]:
    have = available_tools()
    missing = [t for t in TOOLS if t not in have]
    if missing:
        pytest.fail(f"not installed: {missing} (make tools installs them)")
    return {t: have[t] for t in TOOLS}


@pytest.mark.parametrize(("os_", "overrides", "field"), [
    # The dashboard, named by its uid, lands on the watchdog's config.
    ("linux", {"grafana": {"dashboards_dir": {"linux": "/etc/provider-fallback"},
                           "dashboard": {"uid": "watchdog"}}}, "linux.config_dir"),
    # Windows compares paths without case.
    ("windows", {"grafana": {"dashboards_dir": {"windows": "c:\\programdata\\PROVIDERFALLBACK"
                                                           "\\Config"},
                             "dashboard": {"uid": "watchdog"}}}, "grafana.dashboards_dir.windows"),
    # ... or on the proxy's logging config.
    ("linux", {"grafana": {"dashboards_dir": {"linux": "/etc/provider-fallback/"},
                           "dashboard": {"uid": "litellm-logging"}}}, "linux.config_dir"),
])
def test_two_artifacts_on_one_host_path_get_the_report(
        os_: str, overrides: dict[str, object], field: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    host = tmp_path / "host.yaml"
    host.write_text(json.dumps({"stack": overrides}))
    out = tmp_path / "build"
    code = main(["--stack", str(STACK_FILE), "--out", str(out), "--os", os_,
                 "--host-data", str(host)])
    report = capsys.readouterr().err
    assert code == EXIT_INVALID, report
    assert "both land on" in report, report
    assert "one file per host path" in report
    assert field in report or "grafana" in report, report
    assert "Traceback" not in report
    assert not out.exists()


def test_a_renderer_refusal_is_the_one_report(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Task names that give one file name: the Windows renderer refuses, the CLI reports."""
    host = tmp_path / "host.yaml"
    host.write_text('stack:\n  windows:\n    tasks: {litellm: "A<", watchdog: "A>"}\n')
    assert main(["--stack", str(STACK_FILE), "--out", str(tmp_path / "b"), "--os", "windows",
                 "--host-data", str(host)]) == EXIT_INVALID
    report = capsys.readouterr().err
    assert "same file name" in report
    assert "found:" in report


def _broken(rendered: Rendered, rel: str, old: bytes, new: bytes) -> Rendered:
    artifact = rendered[rel]
    assert old in artifact.data, rel
    return {**rendered, rel: Artifact(artifact.data.replace(old, new, 1), artifact.dest,
                                      artifact.mode)}


def test_the_real_tools_accept_the_default_render() -> None:
    stack = parse_stack(TEXT)
    for target in ("linux", "windows"):
        assert tool_problems(render(stack, target), _tools()) == []


@pytest.mark.parametrize(("rel", "old", "new", "tool"), [
    ("prometheus/prometheus.yml", b"scrape_interval:", b"scrape_intervall:", "promtool"),
    ("prometheus/rules/provider-fallback.rules.yml", b"expr: ", b"expr: sum(( ", "promtool"),
    ("alertmanager/alertmanager.yml", b"group_wait:", b"group_wayt:", "amtool"),
    ("systemd/litellm-proxy.service", b"[Service]\n", b"[Service]\nRestartt=always\n",
     "systemd-analyze"),
    ("sysvinit/provider-fallback-watchdog", b"\n", b"\nif then fi\n", "sh"),
    ("default/prometheus", b"ARGS=", b"ARGS=\"unclosed ", "sh"),
])
def test_each_tool_catches_a_broken_file(rel: str, old: bytes, new: bytes, tool: str) -> None:
    rendered = _broken(render(parse_stack(TEXT), "linux"), rel, old, new)
    problems = tool_problems(rendered, _tools())
    assert problems, f"{tool} accepted a broken {rel}"
    assert any(tool in p.found for p in problems), problems


def test_the_cli_runs_the_tools_before_writing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A tool's refusal stops the CLI: the rule file is broken on its way out of render."""
    import tasks.render.__main__ as cli

    real = render

    def broken_render(*args: Any, **kwargs: Any) -> Rendered:
        out = real(*args, **kwargs)
        rel = "prometheus/rules/provider-fallback.rules.yml"
        return _broken(out, rel, b"expr: ", b"expr: sum(( ") if rel in out else out

    monkeypatch.setattr(cli, "render", broken_render)
    out = tmp_path / "build"
    assert main(["--stack", str(STACK_FILE), "--out", str(out), "--no-secrets"]) == EXIT_INVALID
    report = capsys.readouterr().err
    assert "promtool refuses it" in report, report
    assert not out.exists()


def test_deploy_refuses_bad_host_data_with_the_report_and_exit_2(tmp_path: Path) -> None:
    """The real pyinfra run of deploy.py (--dry; it stops before any operation)."""
    pyinfra = Path(shutil.which("pyinfra") or REPO / ".venv/bin/pyinfra")
    # One run (pyinfra starts slowly); the other host-data cases are checked in-process by
    # tests/monitoring/stack/test_hostile.py through the same load_stack.
    for data, words in (({"stack": {"litellm": {"version": "1.82.07"}}}, "compromised"),):
        inventory = tmp_path / "inventory.py"
        inventory.write_text(f"hosts = [('@local', {data!r})]\n")
        done = subprocess.run([str(pyinfra), "--dry", str(inventory), "deploy.py"], cwd=REPO,
                              capture_output=True, text=True, timeout=300, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == EXIT_INVALID, output
        assert words in output, output
        assert "Traceback" not in output


def test_a_stack_error_is_a_value_error_for_callers() -> None:
    with pytest.raises(ValueError, match="compromised"):
        parse_stack(TEXT.replace('version: "1.108.7"', 'version: "1.82.07"'))
    assert issubclass(StackError, ValueError)
