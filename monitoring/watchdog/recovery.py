"""Auto-recovery of the proxy (runbook 5.2): how to restart it, and when it may be restarted.

Three backends, chosen at start-up by what the host has:

- **systemd** (Linux with systemd as PID 1 and the unit loaded): ``systemctl restart``. A
  watchdog without the right to do that (it runs unprivileged) kills the unit's main process
  instead; the unit's ``Restart=always`` brings it back, so no privilege is needed.
- **command** (Windows): ``manage-litellm.ps1 -Action restart``, which stops only the proxy's own
  processes and starts its scheduled task again.
- **process** (no init system to use: WSL without systemd, a container): the watchdog starts the
  proxy itself as a detached child (its own session, so it outlives a watchdog restart), keeps
  its PID in a file, and adopts a running proxy on start instead of starting a second one.

:class:`RestartGate` decides when: exponential backoff between attempts (``backoff_initial``
doubling up to ``backoff_max``), never while a restarted proxy is still inside its
``startup_timeout``, and at most ``max_per_hour``; past that the watchdog is in the crash-loop
state, stops restarting and says so until the proxy is healthy again.

:class:`HangEvidence` decides whether a restart is deserved at all (issue 13, item 6): a proxy
is restarted only when its process is gone, its port refuses connections, or it has answered
nothing for ``hang_after`` AND its CPU time has not moved over that time. A busy proxy (a
request blocking its event loop for seconds, both cores saturated) keeps using CPU and is left
alone; a hung one (deadlocked, stopped) makes no progress.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from monitoring.atomic import atomic_write
from monitoring.host_config import ProxySpec, Restart, WatchdogConfig
from monitoring.watchdog.listener import cpu_seconds, pid_listening
from monitoring.watchdog.state import WatchdogState

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


#: manage-litellm.ps1 may give the proxy 20 s to exit cleanly, take 30 s more to end it by
#: force and 120 s to see it start again.
COMMAND_TIMEOUT_S = 200


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a management command; never raises for a non-zero exit (output decoded leniently:
    localized Windows tools do not always write UTF-8)."""
    return subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                          timeout=COMMAND_TIMEOUT_S, check=False)


#: The process backend's PID file for the proxy, in the state directory (the sysvinit script
#: stops the proxy through it).
PROXY_PID_FILE = "litellm.pid"
#: ...and its output, in the log directory.
PROXY_LOG_FILE = "litellm.log"


class RecoveryError(RuntimeError):
    """A restart could not be done; the message says why, for the event log."""


class Backend(Protocol):
    """Restarts the proxy one way."""

    name: str

    def restart(self) -> str:
        """Restart the proxy; return what was done. Raises :class:`RecoveryError`."""
        ...


# --------------------------------------------------------------------------- systemd


class SystemdBackend:
    """``systemctl restart``; unprivileged, kill the main process and let systemd restart it."""

    name = "systemd"

    def __init__(self, unit: str, runner: Runner = run_command,
                 kill: Callable[[int, int], None] = os.kill) -> None:
        self.unit = unit
        self._run = runner
        self._kill = kill

    def restart(self) -> str:
        done = self._run(["systemctl", "restart", "--no-block", self.unit])
        if done.returncode == 0:
            return f"systemctl restart {self.unit}"
        shown = self._run(["systemctl", "show", "--property=MainPID", "--value", self.unit])
        pid = int(shown.stdout.strip() or 0) if shown.returncode == 0 else 0
        if pid <= 0:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RecoveryError(f"systemctl restart {self.unit} failed ({why[0]}) and the unit "
                                "has no main process to kill")
        self._kill(pid, signal.SIGKILL)
        return f"killed {self.unit}'s main process {pid}; its Restart= policy starts it again"


def systemd_manages(unit: str, runner: Runner = run_command) -> bool:
    """True when systemd is PID 1 here and knows ``unit``."""
    if not Path("/run/systemd/system").is_dir():
        return False
    shown = runner(["systemctl", "show", "--property=LoadState", "--value", unit])
    return shown.returncode == 0 and shown.stdout.strip() == "loaded"


# --------------------------------------------------------------------------- command


class CommandBackend:
    """A restart command owned by a script (Windows: manage-litellm.ps1 -Action restart)."""

    name = "command"

    def __init__(self, argv: Sequence[str], runner: Runner = run_command) -> None:
        # Task Scheduler-style %SystemRoot% paths are expanded as cmd.exe would.
        self.argv = [os.path.expandvars(argv[0]), *argv[1:]]
        self._run = runner

    def restart(self) -> str:
        done = self._run(self.argv)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RecoveryError(f"{Path(self.argv[-3]).name} restart exited "
                                f"{done.returncode}: {tail[0]}")
        return "manage-litellm restart"


# --------------------------------------------------------------------------- process


class ProcessBackend:
    """The watchdog as the proxy's supervisor, where no init system can be used."""

    name = "process"

    def __init__(self, command: Sequence[str], env: Mapping[str, str], pid_file: Path,
                 log_file: Path, match: str, cwd: Path | None = None,
                 stop_timeout: float = 10.0) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.pid_file = pid_file
        self.log_file = log_file
        self.match = match
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self._child: subprocess.Popen[bytes] | None = None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is alive and is this proxy (its command line names our config)."""
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            if cmdline.exists():
                return self.match.encode() in cmdline.read_bytes()
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def running_pid(self) -> int | None:
        """The proxy's PID if it runs (our child, or one adopted from the PID file)."""
        if self._child is not None:
            if self._child.poll() is None:
                return self._child.pid
            self._child = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def start(self) -> str:
        """Start the proxy detached, unless it already runs."""
        pid = self.running_pid()
        if pid is not None:
            return f"adopted the running proxy (pid {pid})"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        with os.fdopen(fd, "ab") as out:
            self._child = subprocess.Popen(
                self.command, env={**os.environ, **self.env}, cwd=self.cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=sys.platform != "win32")
        atomic_write(self.pid_file, f"{self._child.pid}\n".encode(), new_mode=0o644)
        return f"started the proxy (pid {self._child.pid})"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL once ``stop_timeout`` has passed."""
        pid = self.running_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM and sys.platform != "win32":
                    # A stopped (SIGSTOP) process acts on SIGTERM only once continued, as
                    # systemd does it: otherwise a hung proxy costs the whole stop_timeout.
                    os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                break
            if self._wait_gone(pid, wait):
                break
        self._child = None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._child is not None and self._child.pid == pid:
                if self._child.poll() is not None:
                    return True
            elif not self._is_ours(pid):
                return True
            time.sleep(0.05)
        return False

    def restart(self) -> str:
        self.stop()
        return self.start()


def choose_backend(config: WatchdogConfig, runner: Runner = run_command) -> Backend:
    """The backend this host supports, most managed first."""
    proxy: ProxySpec = config.proxy
    if proxy.restart_command:
        return CommandBackend(proxy.restart_command, runner)
    if proxy.systemd_unit and systemd_manages(proxy.systemd_unit, runner):
        return SystemdBackend(proxy.systemd_unit, runner)
    state_dir = Path(config.paths.state_dir)
    return ProcessBackend(proxy.command, proxy.env, state_dir / PROXY_PID_FILE,
                          Path(config.paths.log_dir) / PROXY_LOG_FILE, proxy.config_path,
                          cwd=state_dir)


# --------------------------------------------------------------------------- when


@dataclass(frozen=True)
class Verdict:
    """Whether a restart may happen now, and if not, why (for status and events)."""

    allowed: bool
    reason: str
    crash_loop: bool = False


class RestartGate:
    """Backoff, start-up grace and the hourly cap, from the restart history in the state."""

    def __init__(self, policy: Restart) -> None:
        self.policy = policy

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th restart in a row (1-based)."""
        return float(min(self.policy.backoff_initial * 2 ** max(attempt - 1, 0),
                         self.policy.backoff_max))

    def verdict(self, state: WatchdogState, now: datetime, streak: int, *,
                answered: bool = False) -> Verdict:
        """May the proxy be restarted at ``now``?

        ``streak``: restarts since it was last healthy; ``answered``: whether it answered
        after the last restart (then it did start, and only the backoff applies, not the
        start-up time).
        """
        hour = state.restarts_since(now - timedelta(hours=1))
        if hour >= self.policy.max_per_hour:
            return Verdict(False, f"{hour} restarts in the last hour (cap "
                                  f"{self.policy.max_per_hour}): crash loop, not restarting",
                           crash_loop=True)
        if streak and state.restarts:
            last = state.restarts[-1].at
            wait = self.backoff(streak)
            if not answered:
                wait = max(wait, self.policy.startup_timeout)
            ready = last + timedelta(seconds=wait)
            if now < ready:
                return Verdict(False, f"waiting {(ready - now).total_seconds():.0f} s "
                                      "(backoff and start-up time)")
        return Verdict(True, "allowed")


# --------------------------------------------------------------------------- whether


#: CPU seconds under which a process counts as having made no progress (clock-tick noise).
CPU_PROGRESS_S = 0.02


class HangEvidence:
    """Whether a proxy that fails its probes deserves a restart, from strong evidence only.

    :meth:`observe` runs every tick with the time of the proxy's last reply of any kind; while
    the proxy is silent it samples the CPU time of the process behind the port, keeping just
    enough samples to look ``hang_after`` back. :meth:`strong` gives the reason for a restart,
    or None for a proxy that is merely slow or busy.
    """

    def __init__(self, hang_after: float, *,
                 cpu: Callable[[int], float | None] = cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hang_after = hang_after
        self._cpu = cpu
        self._clock = clock
        self._since = clock()  # a watchdog that starts next to a hung proxy counts from here
        self._pid: int | None = None
        self._samples: deque[tuple[float, float]] = deque()

    def silent_for(self, answered_at: float | None) -> float:
        """Seconds since the proxy last answered (or since this watchdog started)."""
        last = max(answered_at, self._since) if answered_at is not None else self._since
        return max(0.0, self._clock() - last)

    def observe(self, answered_at: float | None, pid: Callable[[], int | None],
                quiet_after: float) -> None:
        """Sample the proxy's CPU time while it has been silent for ``quiet_after`` seconds;
        forget the samples once it answers. ``pid`` is called only while it is silent (finding
        the process behind a port walks the process table)."""
        now = self._clock()
        if self.silent_for(answered_at) < quiet_after:
            self._samples.clear()
            return
        current = pid()
        if current != self._pid:
            self._pid = current
            self._samples.clear()
        used = self._cpu(current) if current is not None else None
        if used is None:
            self._samples.clear()
            return
        self._samples.append((now, used))
        # Keep the newest sample at least hang_after old as the baseline, and what follows.
        while len(self._samples) >= 2 and self._samples[1][0] <= now - self.hang_after:
            self._samples.popleft()

    def progressing(self, window: float) -> bool:
        """Whether the silent proxy used CPU within the last ``window`` seconds (busy)."""
        if len(self._samples) < 2:
            return False
        now = self._clock()
        recent = [cpu for t, cpu in self._samples if t >= now - window]
        older = [cpu for t, cpu in self._samples if t < now - window]
        base = older[-1] if older else self._samples[0][1]
        return bool(recent) and recent[-1] - base >= CPU_PROGRESS_S

    def strong(self, answered_at: float | None, *, gone: bool, refused: bool) -> str | None:
        """The reason to restart, or None: gone, refusing, or silent and making no progress."""
        if refused:
            return "connection refused"
        if gone:
            return "process gone"
        silent = self.silent_for(answered_at)
        if silent < self.hang_after:
            return None
        if self._pid is None or not self._samples:
            # Nothing to tell busy from hung (the process is not visible to this user): the
            # silence alone, past hang_after, is the evidence.
            return f"hung: no answer for {silent:.0f} s"
        now = self._clock()
        base_t, base_cpu = self._samples[0]
        last_t, last_cpu = self._samples[-1]
        if base_t > now - self.hang_after + 1e-6:
            return None  # not watched for a whole hang_after yet
        if last_cpu - base_cpu >= CPU_PROGRESS_S:
            return None  # busy, not hung: it used CPU in the window
        return (f"hung: no answer for {silent:.0f} s and {last_cpu - base_cpu:.2f} s of CPU "
                f"in the last {math.floor(last_t - base_t):.0f} s")


def proxy_pid(backend: Backend, host: str, port: int) -> int | None:
    """The proxy's pid: the supervised child, else whoever of ours listens on its port."""
    if isinstance(backend, ProcessBackend):
        return backend.running_pid()
    return pid_listening(host, port)
