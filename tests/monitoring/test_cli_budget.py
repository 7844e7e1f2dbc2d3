"""`provider-fallback budget|select|report|history` end to end through main()."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitoring.cli import EXIT_OK, EXIT_USAGE, main
from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.cost_log import CostRecord, append_record
from monitoring.stack.schema import Stack
from tests.support.cli_host import temp_host_config


@pytest.fixture
def config_file(stack: Stack, tmp_path: Path) -> tuple[Path, WatchdogConfig]:
    return temp_host_config(stack, tmp_path)


def spend(config: WatchdogConfig, usd: float) -> None:
    append_record(config.paths.cost_log, CostRecord(
        ts=datetime.now(UTC), model="gpt-4", served_by="gpt-4", provider="openai",
        tokens_in=1000, tokens_out=500, cost_usd=usd))


def test_budget_json_and_text(config_file: tuple[Path, WatchdogConfig],
                              capsys: pytest.CaptureFixture[str]) -> None:
    path, config = config_file
    spend(config, 16.0)
    assert main(["budget", "--config", str(path), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "WARNING"
    assert data["total_spent"] == 16.0
    assert data["kill_switch_active"] is False
    assert data["daily_threshold"] == 0.67
    assert main(["budget", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Budget Status: WARNING" in out
    assert "Spent: $16.00 of $20.00" in out


def test_reset_needs_yes_and_releases_the_kill_switch(
        config_file: tuple[Path, WatchdogConfig], capsys: pytest.CaptureFixture[str]) -> None:
    path, config = config_file
    spend(config, 21.0)
    from monitoring.proxy.kill_switch import KillSwitch
    assert KillSwitch(config).update(21.0, True, datetime.now(UTC)) == "activated"
    assert main(["budget", "--config", str(path)]) == EXIT_OK
    assert "KILL-SWITCH" in capsys.readouterr().out
    assert main(["budget", "reset", "--config", str(path)]) == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
    assert KillSwitch(config).state().active, "nothing changed without --yes"
    assert main(["budget", "reset", "--yes", "--config", str(path)]) == EXIT_OK
    assert not KillSwitch(config).state().active


SERVICE = (4321, 4322)


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="only root can run the CLI as root")
def test_a_reset_run_as_root_leaves_no_root_owned_file_to_the_service(
        config_file: tuple[Path, WatchdogConfig]) -> None:
    """``sudo provider-fallback budget reset`` on a host whose logs the service owns, before the
    service ever wrote an event: the logs the reset starts belong to the service, not to root
    (a root-owned file there failed the watchdog every tick: it runs as the service user)."""
    path, config = config_file
    spend(config, 21.0)
    from monitoring.proxy.kill_switch import KillSwitch
    assert KillSwitch(config).update(21.0, True, datetime.now(UTC)) == "activated"
    service_dirs = [Path(config.paths.log_dir), Path(config.paths.state_dir),
                    Path(config.paths.provider_config).parent]
    for directory in service_dirs:  # what the service wrote is the service's
        for item in [directory, *directory.rglob("*")]:
            os.chown(item, *SERVICE)
    for log in (config.paths.event_log, config.paths.event_jsonl, config.paths.alert_log):
        Path(log).unlink()
    assert main(["budget", "reset", "--yes", "--config", str(path)]) == EXIT_OK
    written = [p for d in service_dirs for p in [d, *d.rglob("*")]]
    assert Path(config.paths.alert_log) in written, "the reset wrote its line"
    assert not KillSwitch(config).state().active
    assert [str(p) for p in written if (p.stat().st_uid, p.stat().st_gid) != SERVICE] == []


def test_select_and_reports(config_file: tuple[Path, WatchdogConfig],
                            capsys: pytest.CaptureFixture[str]) -> None:
    path, config = config_file
    assert main(["select", "--task", "coding", "--config", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "kilo-code"
    assert main(["select", "--task", "research", "--config", str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["provider"] == "groq-70b"
    EventLog.from_config(config).fallback("litellm", "kilo-code", "connection refused",
                                          error_class="network", from_label="LiteLLM",
                                          to_label="Kilo Code")
    assert main(["report", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("## Provider Outage Report")
    assert "FALLBACK: LiteLLM" in out
    assert main(["history", "--config", str(path)]) == EXIT_OK
    assert "| LiteLLM connection refused | open | 1x |" in capsys.readouterr().out
