"""Watchdog benchmark (run by hand): failover and restore latency, RSS, CPU, paid calls.

    python -m bench.watchdog_bench [--trials 20] [--json bench/results.json]

Everything is real but the upstream: the pinned LiteLLM proxy (cached venv), the project's
fake OpenAI-compatible upstreams, the watchdog with the DEFAULT settings of
inventory/stack.yaml. An "agent" sends requests through the proxy, one after another, until
the agents are switched away (as real agents would stop using the proxy then).

Two settings differ, so that trials can follow each other: ``min_dwell`` is cut to 1 s and
the hourly switch cap is lifted (the bench switches hundreds of times an hour, which the cap
exists to prevent). Neither is on the failover path; every fault below lasts longer than the
cut dwell, so the restore figures are what the default 30 s dwell gives to a fault that lasts
longer than 30 s (a shorter fault is restored 30 s after the fallback, by design).

Failover latency: fault injected -> every agent file switched. Restore latency: fault
cleared -> agent files back on the primary.

The completion faults (``chat-503``: every provider answers ``GET /models`` with 200 and every
chat completion with 503, issue 11's scenario B) run with B2's agent instead: one request a
second, sent only while its agent file points at the proxy (a switched agent sends the proxy
nothing). The fault is held ``--hold`` seconds after the failover (the window in which the
watchdog used to flap), then cleared; the switches of each incident are counted from the event
log until ``--settle`` seconds after the restore, with the agent back on the proxy: exactly 2
(one out, one back) is right.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from monitoring.events import EventLog, read_events
from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import host_env_name, layout
from monitoring.stack.load import parse_stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.probes import Prober
from tasks.render import litellm, watchdog
from tests.support.fake_upstream import FakeUpstream, FaultKind
from tests.support.litellm_proxy import ProxyProcess, ensure_venv, free_port
from tests.support.watchdog_harness import provider_in_file

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_OF = {"groq": "groq", "openrouter": "openrouter", "google": "paid", "openai": "paid"}


class Rig:
    """Proxy, fakes, keys and the default-settings watchdog config, in a scratch directory."""

    def __init__(self, work: Path) -> None:
        self.work = work
        base = parse_stack((REPO / "inventory/stack.yaml").read_text())
        self.keys = {"GROQ_API_KEY": "gsk_" + os.urandom(20).hex(),
                     "OPENROUTER_API_KEY": "sk-or-v1-" + os.urandom(20).hex(),
                     "GEMINI_API_KEY": "AIza" + os.urandom(16).hex(),
                     "OPENAI_API_KEY": "sk-proj-" + os.urandom(20).hex()}
        self.master = "sk-master-" + os.urandom(16).hex()
        # Under the host's names (PF_GROQ_API_KEY...), as the deploy gives them.
        self.env = {host_env_name(base, name): key for name, key in self.keys.items()}
        self.env[base.litellm.master_key_env] = self.master
        models = base.litellm.models
        self.upstreams = {
            "groq": FakeUpstream(api_key=self.keys["GROQ_API_KEY"], models=[
                m.upstream_model for m in models.values() if m.provider == "groq"]).start(),
            "openrouter": FakeUpstream(api_key=self.keys["OPENROUTER_API_KEY"], models=[
                m.upstream_model for m in models.values() if m.provider == "openrouter"]).start(),
            "paid": FakeUpstream(models=[m.upstream_model for m in models.values()
                                         if UPSTREAM_OF[m.provider] == "paid"]).start(),
        }
        self.port = free_port()
        self.stack = parse_stack((REPO / "inventory/stack.yaml").read_text(), overrides={
            "litellm": {"listen": {"port": self.port}, "models": {
                alias: {"api_base": self.upstreams[UPSTREAM_OF[m.provider]].api_base}
                for alias, m in models.items()}}})
        self.config_file = work / "litellm.yaml"
        self.config_file.write_text(yaml.safe_dump(litellm.config(self.stack), sort_keys=False))
        self.venv = ensure_venv(self.stack.litellm.version)
        self.proxy = ProxyProcess(self.venv, self.config_file, self.port, self.env)
        home = work / "home"
        base_config = watchdog.build(self.stack, layout(self.stack, "linux"))
        paths = base_config.paths.model_copy(update={
            "log_dir": str(work), "state_dir": str(work), "event_log": str(work / "events.log"),
            "event_jsonl": str(work / "events.jsonl"), "state_file": str(work / "state.json")})
        self.default_config = base_config.model_copy(update={
            "paths": paths, "agent_home": str(home)})
        self.url = f"http://127.0.0.1:{self.port}"

    def start_proxy(self) -> float:
        started = time.monotonic()
        self.proxy.start()
        return time.monotonic() - started

    def stop_proxy(self) -> None:
        self.proxy.stop()

    def close(self) -> None:
        self.stop_proxy()
        for up in self.upstreams.values():
            up.stop()


class Agent:
    """Requests through the proxy, one after another, while ``running``."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.running = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.done.is_set():
                if not self.running.wait(0.1):
                    continue
                try:
                    client.post(f"{self.rig.url}/v1/chat/completions",
                                headers={"Authorization": f"Bearer {self.rig.master}"},
                                json={"model": "groq-70b", "max_tokens": 1,
                                      "messages": [{"role": "user", "content": "hi"}],
                                      "cache": {"no-cache": True, "no-store": True}})
                except httpx.HTTPError:
                    time.sleep(0.05)


class FollowingAgent:
    """Issue 11's B2 agent: one request a second, each on its own thread (open loop, as a user
    keeps typing), sent only while the agent file points at the proxy."""

    def __init__(self, rig: Rig, config: WatchdogConfig, rate_hz: float = 1.0) -> None:
        self.rig, self.config, self.period = rig, config, 1.0 / rate_hz
        self.done = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _one(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{self.rig.url}/v1/chat/completions", timeout=120,
                       headers={"Authorization": f"Bearer {self.rig.master}"},
                       json={"model": "groq-70b", "max_tokens": 1,
                             "messages": [{"role": "user", "content": "hi"}],
                             "cache": {"no-cache": True, "no-store": True}})

    def _loop(self) -> None:
        while not self.done.wait(self.period):
            if provider_in_file(self.config) == "litellm":
                self.sent += 1
                threading.Thread(target=self._one, daemon=True).start()


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``predicate`` holds (polled every 10 ms); raises after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        time.sleep(0.01)
    return time.monotonic() - start


class Fault:
    """How to inject and clear one kind of fault on the rig."""

    def __init__(self, name: str, inject: Callable[[Rig], None],
                 clear: Callable[[Rig], None]) -> None:
        self.name, self.inject, self.clear = name, inject, clear


def _upstream(kind: FaultKind) -> Fault:
    def inject(rig: Rig) -> None:
        for name in ("groq", "openrouter"):
            rig.upstreams[name].set_fault(kind)

    def clear(rig: Rig) -> None:
        for name in ("groq", "openrouter"):
            rig.upstreams[name].clear_fault()
    return Fault(f"upstream {kind}", inject, clear)


def _completions(status: int) -> Fault:
    """Issue 11's B: chat completions fail at every upstream, ``/models`` still answers."""
    def inject(rig: Rig) -> None:
        for up in rig.upstreams.values():
            up.set_fault("500", status=status, paths=("/chat/completions",))

    def clear(rig: Rig) -> None:
        for up in rig.upstreams.values():
            up.clear_fault()
    return Fault(f"completions {status}", inject, clear)


def _proxy_hang() -> Fault:
    def inject(rig: Rig) -> None:
        assert rig.proxy.process is not None
        rig.proxy.process.send_signal(signal.SIGSTOP)

    def clear(rig: Rig) -> None:
        assert rig.proxy.process is not None
        rig.proxy.process.send_signal(signal.SIGCONT)
    return Fault("proxy hung (SIGSTOP)", inject, clear)


def _proxy_down() -> Fault:
    def clear(rig: Rig) -> None:
        rig.start_proxy()
    return Fault("proxy down (connection refused)", lambda rig: rig.stop_proxy(), clear)


FAULTS = {
    "refused": _upstream("refused"), "hang": _upstream("hang"), "5xx": _upstream("500"),
    "401": _upstream("401"), "404": _upstream("404"), "429": _upstream("429"),
    "chat-503": _completions(503),
    "proxy-hang": _proxy_hang(),
    "proxy-down": _proxy_down(),
}


def run_watchdog(rig: Rig, config: WatchdogConfig, stop: threading.Event) -> threading.Thread:
    """The watchdog in a thread of its own (its own event loop), like the service."""
    class NoRestart:
        name = "none"

        def restart(self) -> str:
            return "not restarted (the bench owns the proxy)"

    async def main() -> None:
        async with Prober.from_config(config, env=rig.env) as prober:
            dog = Watchdog(config, prober=prober, backend=NoRestart(),
                           events=EventLog.from_config(config), exporter=Exporter())
            done = asyncio.Event()
            task = asyncio.create_task(dog.run(done))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()
            await task

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    return thread


def trials(rig: Rig, fault: Fault, count: int,
           provider_interval: float | None = None) -> dict[str, list[float]]:
    config = rig.default_config.model_copy(update={
        "hysteresis": rig.default_config.hysteresis.model_copy(update={
            "min_dwell": 1.0, "max_switches_per_hour": 1_000_000})})
    if provider_interval is not None:  # --provider-interval: the trade-off, measured
        config = config.model_copy(update={"probes": config.probes.model_copy(
            update={"provider_interval": provider_interval})})
    agent = Agent(rig)
    stop = threading.Event()
    thread = run_watchdog(rig, config, stop)
    failover: list[float] = []
    restore: list[float] = []
    try:
        wait_for(lambda: provider_in_file(config) == "litellm", 60)
        for _ in range(count):
            agent.running.set()
            time.sleep(1.5)  # traffic flowing and the metrics baseline read, as in use
            fault.inject(rig)
            failover.append(wait_for(lambda: provider_in_file(config) == "z-ai", 120))
            agent.running.clear()  # the agents now use Kilo Code, not the proxy
            time.sleep(1.2)  # the fault outlasts the (cut) dwell
            fault.clear(rig)  # returns once the fault is gone (a restarted proxy answers)
            started = time.monotonic()
            try:
                wait_for(lambda: provider_in_file(config) == "litellm", 180)
            except TimeoutError:
                print(Path(config.paths.event_log).read_text(), file=sys.stderr)
                print(Path(config.paths.state_file).read_text(), file=sys.stderr)
                raise
            restore.append(time.monotonic() - started)
    finally:
        agent.done.set()
        stop.set()
        thread.join(30)
        fault.clear(rig) if fault.name.startswith("upstream") else None
    return {"failover_s": failover, "restore_s": restore}


def switches(config: WatchdogConfig) -> int:
    """Automatic switches of the agents recorded so far (FALLBACK/RESTORED that switched)."""
    try:
        events = read_events(config.paths.event_jsonl)
    except FileNotFoundError:
        return 0
    return sum(1 for e in events if e.kind in ("FALLBACK", "RESTORED") and "switched" in e.message)


def following_trials(rig: Rig, fault: Fault, count: int, hold: float,
                     settle: float) -> dict[str, list[float]]:
    """Trials with B2's following agent; also the switches of each incident."""
    config = rig.default_config.model_copy(update={
        "hysteresis": rig.default_config.hysteresis.model_copy(update={
            "min_dwell": 1.0, "max_switches_per_hour": 1_000_000})})
    stop = threading.Event()
    thread = run_watchdog(rig, config, stop)
    out: dict[str, list[float]] = {"failover_s": [], "restore_s": [], "switches": [],
                                   "canaries": [], "sent_while_away": []}
    try:
        wait_for(lambda: provider_in_file(config) == "litellm", 60)
        agent = FollowingAgent(rig, config)
        for _ in range(count):
            time.sleep(3)  # traffic flowing and the metrics baseline read, as in use
            before = switches(config)
            fault.inject(rig)
            out["failover_s"].append(wait_for(lambda: provider_in_file(config) == "z-ai", 120))
            sent = agent.sent
            chats = sum(1 for up in rig.upstreams.values() for r in up.requests
                        if r.path.endswith("/chat/completions"))
            time.sleep(hold)
            out["canaries"].append(sum(1 for up in rig.upstreams.values() for r in up.requests
                                       if r.path.endswith("/chat/completions")) - chats)
            out["sent_while_away"].append(agent.sent - sent)
            fault.clear(rig)
            out["restore_s"].append(wait_for(lambda: provider_in_file(config) == "litellm", 180))
            time.sleep(settle)
            out["switches"].append(switches(config) - before)
        agent.done.set()
    finally:
        stop.set()
        thread.join(30)
        fault.clear(rig)
    return out


def steady_state(rig: Rig, seconds: float) -> dict[str, float]:
    """RSS, CPU share and upstream calls of ``provider-fallback watch`` at default settings."""
    # The exporter on a free port: 9464 belongs to a deployed watchdog, if any.
    config = rig.default_config.model_copy(update={"listen": rig.default_config.listen.model_copy(
        update={"port": free_port()})})
    path = rig.work / "watchdog.json"
    path.write_text(config.model_dump_json())
    for up in rig.upstreams.values():
        up.clear_requests()
    proc = subprocess.Popen([sys.executable, "-m", "monitoring.cli", "watch", "--config",
                             str(path)], env={**os.environ, **rig.env}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        time.sleep(5)  # start-up (imports) is not the steady state
        stat0 = Path(f"/proc/{proc.pid}/stat").read_text().split()
        t0 = time.monotonic()
        for up in rig.upstreams.values():
            up.clear_requests()
        rss: list[int] = []
        while time.monotonic() - t0 < seconds:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss.append(int(next(line.split()[1] for line in status.splitlines()
                                if line.startswith("VmRSS:"))))
            time.sleep(1)
        stat1 = Path(f"/proc/{proc.pid}/stat").read_text().split()
        wall = time.monotonic() - t0
        cpu = (int(stat1[13]) + int(stat1[14]) - int(stat0[13]) - int(stat0[14])) / ticks
        requests = [r for up in rig.upstreams.values() for r in up.requests]
        paid = [r for r in requests if r.path.endswith("/chat/completions")]
        return {"rss_mb_median": statistics.median(rss) / 1024, "rss_mb_max": max(rss) / 1024,
                "cpu_share": cpu / wall, "wall_s": wall,
                "paid_calls_per_hour": len(paid) * 3600 / wall,
                "unbilled_models_calls_per_hour": (len(requests) - len(paid)) * 3600 / wall}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--steady-seconds", type=float, default=120)
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--provider-interval", type=float,
                        help="override watchdog.provider_probe_interval (default: stack.yaml)")
    parser.add_argument("--hold", type=float, default=40,
                        help="completion faults: seconds the fault lasts after the failover")
    parser.add_argument("--settle", type=float, default=15,
                        help="completion faults: seconds watched after the restore for flaps")
    args = parser.parse_args()
    results: dict[str, Any] = {"settings": {}, "faults": {}}
    with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
        rig = Rig(Path(tmp))
        try:
            results["proxy_start_s"] = rig.start_proxy()
            results["settings"] = {
                "probes": rig.default_config.probes.model_dump(),
                "hysteresis": rig.default_config.hysteresis.model_dump()}
            for name in args.faults.split(","):
                if name.startswith("chat-"):
                    runs = following_trials(rig, FAULTS[name], args.trials, args.hold,
                                            args.settle)
                else:
                    runs = trials(rig, FAULTS[name], args.trials, args.provider_interval)
                results["faults"][name] = runs
                fo, rs = runs["failover_s"], runs["restore_s"]
                extra = (f"  switches per incident {sorted(set(runs['switches']))}, canaries "
                         f"while held median {statistics.median(runs['canaries']):g}"
                         if "switches" in runs else "")
                print(f"{name:12s} failover p50 {statistics.median(fo):5.2f} s  p95 "
                      f"{pct(fo, 0.95):5.2f} s | restore p50 {statistics.median(rs):5.2f} s  "
                      f"p95 {pct(rs, 0.95):5.2f} s  ({len(fo)} trials){extra}", flush=True)
            results["steady"] = steady_state(rig, args.steady_seconds)
            print(json.dumps(results["steady"], indent=2))
        finally:
            rig.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
