"""The watchdog's per-agent switch, without a proxy: each agent to its own target, the event
and status naming the agents switched and those not (issue 11 item 6)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from monitoring.cli import main
from monitoring.events import EventLog, read_events
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.load import parse_stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.state import save_state
from tasks.render import watchdog
from tests.conftest import STACK_FILE
from tests.support.watchdog_harness import RecordingBackend, fast_config

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class _Prober:
    env: ClassVar[dict[str, str]] = {"LITELLM_MASTER_KEY": "sk-master-test-0123456789",
                                     "GEMINI_API_KEY": "AIza-test-01234"}


def _dog(tmp_path: Path) -> tuple[Watchdog, WatchdogConfig]:
    stack = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    config = fast_config(watchdog.build(stack, layout(stack, "linux")), tmp_path)
    dog = Watchdog(config, prober=_Prober(), backend=RecordingBackend(),  # type: ignore[arg-type]
                   events=EventLog.from_config(config), exporter=Exporter())
    return dog, config


def test_a_fallback_names_each_agents_own_target_and_the_ones_not_switched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dog, config = _dog(tmp_path)
    targets = {t.name: t for t in config.targets}
    dog._switch(targets["litellm"], NOW, pinned=False)
    gemini = Path(str(config.agent_home), ".gemini", "settings.json")
    gemini.chmod(0o444)  # the user locked it
    dog._switch(targets["kilo-code"], NOW, pinned=False)
    line = Path(config.paths.event_log).read_text().splitlines()[-1]
    assert "FALLBACK: LiteLLM failed, switched to Kilo Code; agents: kilo-code on kilo-code " \
           "(restart Kilo CLI, or reload the VS Code window, to follow); not switched: " \
           "gemini-cli (" in line
    # (the test's long temporary folder name is redacted like a key; the rest is shown)
    assert "/home/.gemini/settings.json is read-only: make it writable" in line
    errors = [e for e in read_events(config.paths.event_log) if e.kind == "ERROR"]
    dog._write_agents(targets["kilo-code"])  # the next tick: not reported again
    assert len([e for e in read_events(config.paths.event_log) if e.kind == "ERROR"]) == len(
        errors) == 1
    save_state(dog.state, config.paths.state_file)
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json())
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "agent kilo-code: on kilo-code (restart Kilo CLI" in out
    assert "agent gemini-cli: NOT switched: " in out
    assert "/home/.gemini/settings.json is read-only" in out
    gemini.chmod(0o644)  # fixed: Gemini CLI goes to its own fallback, Google
    dog._write_agents(targets["kilo-code"])
    assert dog.agents.current("gemini-cli") == "google"


def test_a_pin_moves_each_agent_that_can_speak_to_it_and_the_others_to_their_own(
        tmp_path: Path) -> None:
    dog, config = _dog(tmp_path)
    targets = {t.name: t for t in config.targets}
    dog.state.set_pin("openrouter", NOW, None)
    assert dog.agent_target("kilo-code", targets["openrouter"]) == targets["openrouter"]
    assert dog.agent_target("gemini-cli", targets["openrouter"]) == targets["google"]
    assert dog.agent_target("gemini-cli", targets["litellm"]) == targets["litellm"]
