"""``provider-fallback``: check, status, switch/restore, events, and watch as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from monitoring import metrics
from monitoring.cli import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, main
from monitoring.host_config import Listen, WatchdogConfig
from monitoring.watchdog.probes import PROXY_ROUTE
from monitoring.watchdog.state import load_state, save_state
from tests.monitoring.conftest import LiveStack
from tests.support.cli_json import errors
from tests.support.litellm_proxy import free_port
from tests.support.polling import until
from tests.support.watchdog_harness import (
    agent_file,
    fast_config,
    provider_in_file,
    seed_agent_file,
)

pytestmark = pytest.mark.live


@pytest.fixture
def config_file(live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[WatchdogConfig, Path]:
    for name, value in live.env.items():
        monkeypatch.setenv(name, value)
    config = fast_config(live.config, tmp_path,
                         listen=Listen(host="127.0.0.1", port=free_port()))
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json(indent=2))
    return config, path


@pytest.fixture
def running_watchdog(live: LiveStack, config_file: tuple[WatchdogConfig, Path]
                     ) -> Iterator[subprocess.Popen[bytes]]:
    """The real watchdog (`provider-fallback watch`) on the config, until the test ends."""
    config, path = config_file
    seed_agent_file(config)
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "watch", "--config",
                             str(path)], env={**os.environ, **live.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_file = Path(config.paths.state_file).with_name("watchdog.pid")
        # Past its start-up: it has written its PID and seen the proxy answer once (on a
        # loaded machine a probe during the start-up burst can time out).
        until(lambda: pid_file.exists() and load_state(config.paths.state_file).state
              .route(PROXY_ROUTE).last_success is not None, 60,
              "the watchdog's PID file and its first proxy success")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_check_passes_with_enough_healthy_providers(
        config_file: tuple[WatchdogConfig, Path], running_watchdog: subprocess.Popen[bytes],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, path = config_file
    assert main(["check", "--config", str(path), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert errors("check", report) == []
    assert report["ok"] is True
    assert report["watchdog"]["state"] == "running"
    assert report["watchdog"]["pid"] == running_watchdog.pid
    assert set(report["healthy"]) == {"litellm", *(p.name for p in config.providers)}, report


def test_check_fails_when_the_watchdog_is_not_running(
        config_file: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Every provider answers, but nothing would act on a failure: `check` fails."""
    config, path = config_file
    assert main(["check", "--config", str(path), "--json"]) == EXIT_UNHEALTHY
    report = json.loads(capsys.readouterr().out)
    assert errors("check", report) == []
    assert set(report["healthy"]) == {"litellm", *(p.name for p in config.providers)}, report
    assert report["ok"] is False
    assert report["watchdog"]["state"] == "never-run"
    assert main(["check", "--config", str(path)]) == EXIT_UNHEALTHY
    out = capsys.readouterr().out
    assert "FAILED: o watchdog: inactive (it has never run here)" in out \
        or "FAILED: ○ watchdog: inactive (it has never run here)" in out


def test_check_fails_below_the_minimum_and_says_so(
        live: LiveStack, config_file: tuple[WatchdogConfig, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, path = config_file
    for upstream in live.upstreams.values():
        upstream.set_fault(500, paths=("/v1/models", "/models"))
    assert main(["check", "--config", str(path)]) == EXIT_UNHEALTHY
    out = capsys.readouterr().out
    assert f"WARNING: 1 providers healthy (minimum {config.min_healthy_providers})" in out
    for secret in live.secret_values():
        assert secret not in out


def _status(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["status", "--config", str(path), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict)
    return data


def test_switch_and_restore_without_a_running_watchdog(
        config_file: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, path = config_file
    seed_agent_file(config)
    assert main(["switch", "openrouter", "--config", str(path), "--for", "30m"]) == EXIT_OK
    assert provider_in_file(config) == "openrouter"
    status = _status(path, capsys)
    assert status["active_target"] == "openrouter"
    pin = status["pin"]
    assert isinstance(pin, dict)
    assert pin["target"] == "openrouter"
    assert pin["expires_at"] is not None
    assert main(["restore", "--config", str(path)]) == EXIT_OK
    assert _status(path, capsys)["pin"] is None
    assert main(["events", "--config", str(path), "--since", "1h"]) == EXIT_OK
    assert "manual switch to OpenRouter" in capsys.readouterr().out


def test_status_prints_a_table_per_route(
        config_file: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, path = config_file
    assert main(["status", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ROUTE" in out
    assert "DIAGNOSIS" in out
    for route in ("litellm", *(p.name for p in config.providers)):
        assert re.search(rf"^{route}\s+healthy", out, re.MULTILINE), out


def test_a_switch_to_an_unknown_target_changes_nothing(
        config_file: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, path = config_file
    seed_agent_file(config)
    before = agent_file(config).read_bytes()
    assert main(["switch", "nowhere", "--config", str(path)]) == EXIT_USAGE
    assert "unknown target 'nowhere'; one of: litellm, kilo-code" in capsys.readouterr().err
    assert agent_file(config).read_bytes() == before
    assert not Path(config.paths.state_file).exists()


def test_a_bad_since_is_a_usage_error(config_file: tuple[WatchdogConfig, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, path = config_file
    assert main(["events", "--config", str(path), "--since", "yesterday-ish"]) == EXIT_USAGE
    assert "--since 'yesterday-ish'" in capsys.readouterr().err


def test_a_missing_config_is_a_usage_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--config", str(tmp_path / "none.json")])
    assert exit_.value.code == EXIT_USAGE
    assert "no watchdog config" in capsys.readouterr().err


def test_watch_runs_serves_metrics_and_stops_on_sigterm(
        live: LiveStack, config_file: tuple[WatchdogConfig, Path]) -> None:
    config, path = config_file
    seed_agent_file(config)
    env = {**os.environ, **live.env}
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "watch", "--config",
                             str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config.listen.port}/metrics"
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(url, timeout=1).text
                if re.search(rf'^{metrics.HEALTH.name}{{provider="litellm"}} 1\.0$', text,
                             re.MULTILINE):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        for spec in (metrics.FALLBACK_EVENTS, metrics.HEALTH, metrics.LATENCY,
                     metrics.ACTIVE_TARGET, metrics.CIRCUIT_STATE, metrics.PROXY_RESTARTS):
            assert f"# TYPE {spec.name} {spec.kind}" in text, spec.name
        assert "_created" not in text  # no clutter series
        assert re.search(rf'^{metrics.ACTIVE_TARGET.name}{{target="litellm"}} 1\.0$', text,
                         re.MULTILINE), text[-2000:]
        assert Path(config.paths.state_file).with_name("watchdog.pid").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert not Path(config.paths.state_file).with_name("watchdog.pid").exists()
    for secret in live.secret_values():
        assert secret not in out.decode(errors="replace")


def test_status_wait_returns_once_the_watchdog_saw_the_proxy(
        config_file: tuple[WatchdogConfig, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``status --wait`` (what `make deploy` prints): it waits for a proxy success recorded
    AFTER it started, and says so when none comes."""
    config, path = config_file
    assert main(["status", "--wait", "0.6", "--config", str(path)]) == EXIT_OK
    assert "did not answer the watchdog within" in capsys.readouterr().err

    def watchdog_sees_the_proxy() -> None:
        state = load_state(config.paths.state_file).state
        state.active_target = config.targets[0].name
        state.route(PROXY_ROUTE).last_success = datetime.now(UTC)
        save_state(state, config.paths.state_file)

    timer = threading.Timer(0.3, watchdog_sees_the_proxy)
    timer.start()
    try:
        assert main(["status", "--wait", "30", "--config", str(path)]) == EXIT_OK
    finally:
        timer.cancel()
    captured = capsys.readouterr()
    assert "did not answer" not in captured.err
    assert f"active target: {config.targets[0].label}" in captured.out
