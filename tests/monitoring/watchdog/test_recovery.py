"""Restarting the proxy: the three backends and the gate (backoff, start-up time, cap)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.host_config import Restart
from monitoring.watchdog.recovery import (
    CommandBackend,
    HangEvidence,
    ProcessBackend,
    RecoveryError,
    RestartGate,
    SystemdBackend,
)
from monitoring.watchdog.state import WatchdogState
from tests.support.polling import until

T0 = datetime(2026, 2, 13, 3, 0, tzinfo=UTC)
POLICY = Restart(backoff_initial=2, backoff_max=300, max_per_hour=6, startup_timeout=20)


class FakeRunner:
    """Answers management commands from a script of (argv prefix -> result)."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        for prefix, (code, out, err) in self.answers.items():
            if " ".join(argv).startswith(prefix):
                return subprocess.CompletedProcess(list(argv), code, out, err)
        raise AssertionError(f"unexpected command {argv}")


def test_systemd_restart_when_allowed() -> None:
    runner = FakeRunner({"systemctl restart": (0, "", "")})
    assert "systemctl restart" in SystemdBackend("litellm-proxy.service", runner).restart()
    assert runner.calls == [["systemctl", "restart", "--no-block", "litellm-proxy.service"]]


def test_systemd_without_privilege_kills_the_main_process() -> None:
    runner = FakeRunner({
        "systemctl restart": (1, "", "Failed to restart: Access denied"),
        "systemctl show": (0, "4242\n", ""),
    })
    killed: list[tuple[int, int]] = []
    backend = SystemdBackend("litellm-proxy.service", runner,
                             kill=lambda pid, sig: killed.append((pid, sig)))
    assert "4242" in backend.restart()
    assert killed == [(4242, signal.SIGKILL)]


def test_systemd_with_nothing_to_kill_says_why() -> None:
    runner = FakeRunner({
        "systemctl restart": (1, "", "Failed to restart: Access denied"),
        "systemctl show": (0, "0\n", ""),
    })
    with pytest.raises(RecoveryError, match="Access denied"):
        SystemdBackend("litellm-proxy.service", runner).restart()


def test_command_backend_expands_the_program_and_reports_failure() -> None:
    argv = ["%SystemRoot%\\powershell.exe", "-File", "C:\\pf\\manage-litellm.ps1",
            "-Action", "restart"]
    runner = FakeRunner({"": (3, "", "proxy did not answer /health/liveliness")})
    backend = CommandBackend(argv, runner)
    with pytest.raises(RecoveryError, match="exited 3: proxy did not answer"):
        backend.restart()
    assert runner.calls[0][1:] == argv[1:]


def _sleeper(tmp_path: Path) -> ProcessBackend:
    marker = str(tmp_path / "proxy-config.yaml")
    command = [sys.executable, "-c", "import time,sys; time.sleep(600)", marker]
    return ProcessBackend(command, {}, tmp_path / "litellm.pid", tmp_path / "litellm.log",
                          match=marker, cwd=tmp_path, stop_timeout=5)


def test_process_backend_starts_restarts_and_adopts(tmp_path: Path) -> None:
    backend = _sleeper(tmp_path)
    try:
        assert "started" in backend.start()
        first = backend.running_pid()
        assert first is not None
        assert int((tmp_path / "litellm.pid").read_text()) == first
        # A new watchdog (a new backend object) adopts the running proxy instead of a second.
        again = _sleeper(tmp_path)
        assert again.start() == f"adopted the running proxy (pid {first})"
        assert "started" in backend.restart()
        second = backend.running_pid()
        assert second is not None
        assert second != first
    finally:
        backend.stop()
    assert backend.running_pid() is None


def test_process_backend_notices_a_proxy_killed_with_sigkill(tmp_path: Path) -> None:
    backend = _sleeper(tmp_path)
    try:
        backend.start()
        pid = backend.running_pid()
        assert pid is not None
        subprocess.run(["kill", "-9", str(pid)], check=True)
        deadline = time.monotonic() + 10
        while backend.running_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.running_pid() is None
    finally:
        backend.stop()


def test_a_stale_pid_file_of_another_process_is_not_adopted(tmp_path: Path) -> None:
    (tmp_path / "litellm.pid").write_text("1\n")  # init: alive, but not our proxy
    assert _sleeper(tmp_path).running_pid() is None


def test_first_restart_is_immediate_then_backoff_and_startup_time() -> None:
    gate = RestartGate(POLICY)
    state = WatchdogState()
    assert gate.verdict(state, T0, streak=0).allowed
    state.record_restart(T0)
    waiting = gate.verdict(state, T0 + timedelta(seconds=10), streak=1)
    assert not waiting.allowed
    assert "waiting" in waiting.reason
    assert gate.verdict(state, T0 + timedelta(seconds=20), streak=1).allowed
    assert gate.backoff(1) == 2
    assert gate.backoff(5) == 32
    assert gate.backoff(20) == 300


def test_the_hourly_cap_is_the_crash_loop() -> None:
    gate = RestartGate(POLICY)
    state = WatchdogState()
    for i in range(POLICY.max_per_hour):
        state.record_restart(T0 + timedelta(minutes=i * 5))
    now = T0 + timedelta(minutes=40)
    verdict = gate.verdict(state, now, streak=POLICY.max_per_hour)
    assert not verdict.allowed
    assert verdict.crash_loop
    assert gate.verdict(state, T0 + timedelta(minutes=61), streak=0).allowed


# --------------------------------------------------------------------------- hang evidence


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(cpu: dict[int, float], clock: Clock) -> HangEvidence:
    return HangEvidence(20.0, cpu=lambda pid: cpu.get(pid), clock=clock)


def _silence(evidence: HangEvidence, clock: Clock, cpu: dict[int, float], seconds: int,
             burn: float) -> None:
    """``seconds`` ticks of 1 s with no answer, the process using ``burn`` CPU s a tick."""
    for _ in range(seconds):
        clock.now += 1
        cpu[7] += burn
        evidence.observe(answered, lambda: 7, 1.5)


answered = 1000.0  # the proxy's last reply, at the start of each scenario


def test_a_busy_silent_proxy_is_not_hung() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    _silence(evidence, clock, cpu, 60, burn=0.5)
    assert evidence.strong(answered, gone=False, refused=False) is None


def test_a_silent_proxy_without_cpu_progress_is_hung_after_hang_after() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    _silence(evidence, clock, cpu, 19, burn=0.0)
    assert evidence.strong(answered, gone=False, refused=False) is None  # not yet
    _silence(evidence, clock, cpu, 4, burn=0.0)
    reason = evidence.strong(answered, gone=False, refused=False)
    assert reason is not None
    assert reason.startswith("hung: no answer for 23 s and 0.00 s of CPU")


def test_busy_then_stuck_is_hung_once_a_whole_window_made_no_progress() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    _silence(evidence, clock, cpu, 10, burn=1.0)
    _silence(evidence, clock, cpu, 15, burn=0.0)
    assert evidence.strong(answered, gone=False, refused=False) is None
    _silence(evidence, clock, cpu, 8, burn=0.0)
    assert evidence.strong(answered, gone=False, refused=False) is not None


def test_progress_is_cpu_used_in_the_recent_window() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    _silence(evidence, clock, cpu, 12, burn=0.3)
    assert evidence.progressing(10.0)
    _silence(evidence, clock, cpu, 11, burn=0.0)
    assert not evidence.progressing(10.0)


def test_a_refused_port_or_a_gone_process_needs_no_wait() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    assert evidence.strong(answered, gone=False, refused=True) == "connection refused"
    assert evidence.strong(answered, gone=True, refused=False) == "process gone"
    assert evidence.strong(clock.now, gone=False, refused=False) is None


def test_an_answer_resets_the_watch() -> None:
    clock, cpu = Clock(), {7: 5.0}
    evidence = _watch(cpu, clock)
    _silence(evidence, clock, cpu, 30, burn=0.0)
    evidence.observe(clock.now, lambda: 7, 1.5)  # it answered just now
    assert evidence.strong(clock.now, gone=False, refused=False) is None


def test_a_stopped_process_is_continued_so_sigterm_stops_it_at_once(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "p.pid"
    pid_file.write_text(f"{child.pid}\n")
    backend = ProcessBackend([sys.executable], {}, pid_file, tmp_path / "log", "time.sleep",
                             stop_timeout=30)
    child.send_signal(signal.SIGSTOP)
    stat = Path(f"/proc/{child.pid}/stat")
    until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", 10, "the child stopped")
    started = time.monotonic()
    backend.stop()
    child.wait(20)
    # Far below the 30 s stop timeout a stopped process would otherwise cost.
    assert time.monotonic() - started < 15, "SIGTERM waited for the stop timeout"
    assert child.returncode == -signal.SIGTERM
