"""``provider-fallback agents``: where each agent points, whose files, traps, release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitoring.cli import EXIT_OK, main
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.load import parse_stack
from monitoring.watchdog.loop import agent_manager
from tasks.render import watchdog
from tests.conftest import STACK_FILE


@pytest.fixture
def config(tmp_path: Path) -> tuple[WatchdogConfig, Path]:
    stack = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    base = watchdog.build(stack, layout(stack, "linux"))
    paths = base.paths.model_copy(update={"state_dir": str(tmp_path / "state"),
                                          "state_file": str(tmp_path / "state" / "s.json")})
    cfg = base.model_copy(update={"paths": paths, "agent_home": str(tmp_path / "home")})
    path = tmp_path / "watchdog.json"
    path.write_text(cfg.model_dump_json())
    return cfg, path


def test_agents_lists_every_known_agent_and_where_it_points(
        config: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, path = config
    monkeypatch.setenv("GEMINI_MODEL", "gemini-x")
    agent_manager(cfg, env={"LITELLM_MASTER_KEY": "k", "GEMINI_API_KEY": "g"}).apply(
        "kilo-code", cfg.targets[0])
    assert main(["agents", "--config", str(path), "--json"]) == EXIT_OK
    rows = {r["agent"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"kilo-code", "gemini-cli", "claude-code", "codex", "opencode",
                         "aider", "continue"}
    assert rows["kilo-code"]["points_at"] == "litellm"
    assert rows["kilo-code"]["managed"]
    assert rows["kilo-code"]["whose"] == cfg.agent_home
    assert rows["gemini-cli"]["points_at"] is None
    assert not rows["codex"]["enrolled"]
    assert any("GEMINI_MODEL" in t["what"] for t in rows["gemini-cli"]["traps"])
    assert main(["agents", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"agent files of: {cfg.agent_home}" in out
    assert "Codex CLI (codex): not enrolled" in out
    assert "TRAP: GEMINI_MODEL is set" in out


def test_release_gives_the_file_back(config: tuple[WatchdogConfig, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg, path = config
    kilo = Path(str(cfg.agent_home), ".config", "kilo", "kilo.jsonc")
    kilo.parent.mkdir(parents=True)
    kilo.write_text('{\n  // mine\n  "model": "a/b"\n}\n')
    agent_manager(cfg, env={"LITELLM_MASTER_KEY": "k"}).apply("kilo-code", cfg.targets[0])
    assert main(["agents", "release", "kilo-code", "--config", str(path)]) == EXIT_OK
    assert kilo.read_text() == '{\n  // mine\n  "model": "a/b"\n}\n'
    assert "released" in capsys.readouterr().out


def test_agents_key_prints_the_variable(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_TEST_KEY", "value-1")
    assert main(["agents", "key", "PF_TEST_KEY"]) == EXIT_OK
    assert capsys.readouterr().out == "value-1\n"
