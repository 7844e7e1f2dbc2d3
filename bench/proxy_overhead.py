"""What the project's proxy hooks cost on LiteLLM's request path (run by hand; issue 13, item 7).

    python -m bench.proxy_overhead [--seconds 8] [--rounds 3] [--rss-requests 100000]
                                   [--json bench/results/proxy-overhead.json]

Two real, pinned LiteLLM proxies from the same rendered config, one WITH the project's
callback (``monitoring.litellm_hooks.proxy_handler_instance``: cost log, kill switch, degraded
cache) and one WITHOUT it, side by side against one fast local fake upstream. Rounds are
interleaved (with, without, with, without...) at 1, 16 and 64 concurrent clients, non-streamed
and streamed, so a change of the machine's load hits both alike. Each request has a prompt
never sent before (LiteLLM's own response cache would answer a repeat) and asks for the paid
``gpt-4``, so every request is charged and the kill switch's file is kept up to date.

Where the machine has two cores or more, both proxies are pinned to the last core and the
load generator and the fake upstream to the others, so the proxy's CPU is its own.

Per round: throughput (requests/s), p50 and p99 latency, and the proxy's CPU time per request
(utime + stime of the proxy process from /proc, divided by the requests). Reported: the
median over rounds for each side, and the ratios (with / without).

``--rss-requests N``: afterwards, N more requests (64 clients) to the proxy with the hooks,
its RSS sampled every N/10: it must not grow with the request count (a cost record kept in
memory per request would add ~400 B each).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from monitoring.layout import host_env_name, layout
from monitoring.stack import Stack
from monitoring.stack_load import parse_stack
from tasks.render import litellm, watchdog
from tests.support.fake_upstream import FakeUpstream
from tests.support.litellm_proxy import ProxyProcess, ensure_venv, free_port

REPO = Path(__file__).resolve().parents[1]
MODEL = "gpt-4"
CONCURRENCY = (1, 16, 64)
_PROMPTS = itertools.count()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pin(pid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
        for task in Path(f"/proc/{pid}/task").iterdir():  # threads started already
            os.sched_setaffinity(int(task.name), cpus)
    except OSError:
        pass


@dataclass
class Side:
    name: str
    proxy: ProxyProcess

    @property
    def pid(self) -> int:
        assert self.proxy.process is not None
        return self.proxy.process.pid


class Rig:
    """One fake upstream for every provider, two proxies (with and without the hooks)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        base = parse_stack((REPO / "inventory/stack.yaml").read_text())
        self.upstream = FakeUpstream(models=[m.upstream_model
                                             for m in base.litellm.models.values()]).start()
        self.master = "sk-master-" + os.urandom(16).hex()
        self.ports = {"with": free_port(), "without": free_port()}
        self.sides: dict[str, Side] = {}
        venv = ensure_venv(base.litellm.version)
        for name, port in self.ports.items():
            stack = parse_stack((REPO / "inventory/stack.yaml").read_text(), overrides={
                "litellm": {"listen": {"port": port}, "models": {
                    alias: {"api_base": self.upstream.api_base}
                    for alias in base.litellm.models}}})
            self.sides[name] = Side(name, self._proxy(stack, venv, name))

    def _proxy(self, stack: Stack, venv: Path, name: str) -> ProxyProcess:
        work = self.work / name
        (work / "log").mkdir(parents=True)
        (work / "state").mkdir()
        config = watchdog.build(stack, layout(stack, "linux"))
        paths = config.paths.model_copy(update={
            "log_dir": str(work / "log"), "state_dir": str(work / "state"),
            "event_log": str(work / "log/events.log"),
            "event_jsonl": str(work / "log/events.jsonl"),
            "state_file": str(work / "state/state.json"),
            "cost_log": str(work / "log/provider_costs.log"),
            "alert_log": str(work / "log/cost-alerts.log"),
            "provider_config": str(work / "state/provider-config.json")})
        assert config.degraded is not None
        degraded = config.degraded.model_copy(update={"cache_dir": str(work / "cache")})
        config = config.model_copy(update={"paths": paths, "degraded": degraded})
        (work / "watchdog.json").write_text(config.model_dump_json(indent=2))
        proxy_config = litellm.config(stack)
        proxy_config["environment_variables"] = {litellm.CONFIG_ENV: str(work / "watchdog.json")}
        if name == "without":
            callbacks = proxy_config["litellm_settings"]["callbacks"]
            callbacks.remove(litellm.HOOKS_CALLBACK)
        (work / "config.yaml").write_text(yaml.safe_dump(proxy_config, sort_keys=False))
        env = {host_env_name(stack, m.api_key_env): "sk-bench" for m in
               stack.litellm.models.values()}
        env[stack.litellm.master_key_env] = self.master
        return ProxyProcess(venv, work / "config.yaml", self.ports[name], env)

    def start(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        proxy_cpus, load_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (
            set(cpus), set(cpus))
        for side in self.sides.values():
            side.proxy.start(deadline_s=240)
            _pin(side.pid, proxy_cpus)
        os.sched_setaffinity(0, load_cpus)  # this process: load generator and fake upstream
        self.pinned = len(cpus) > 1

    def stop(self) -> None:
        for side in self.sides.values():
            side.proxy.stop()
        self.upstream.stop()


async def _round(client: httpx.AsyncClient, url: str, key: str, clients: int, seconds: float,
                 stream: bool) -> list[float]:
    """``clients`` loops sending requests for ``seconds``; every request's latency."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}

    async def loop() -> None:
        while time.monotonic() < deadline:
            body = {"model": MODEL, "max_tokens": 1, "stream": stream,
                    "messages": [{"role": "user", "content": f"bench {next(_PROMPTS)}"}]}
            started = time.monotonic()
            if stream:
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                         headers=headers) as reply:
                    async for _ in reply.aiter_bytes():
                        pass
                    status = reply.status_code
            else:
                status = (await client.post(f"{url}/v1/chat/completions", json=body,
                                            headers=headers)).status_code
            if status != 200:
                raise RuntimeError(f"{url}: HTTP {status}")
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(loop() for _ in range(clients)))
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(rig: Rig, seconds: float, rounds: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for side in rig.sides.values():  # warm-up: imports, first connections, first scan
            await _round(client, side.proxy.url, rig.master, 4, 3, False)
        for stream in (False, True):
            for clients in CONCURRENCY:
                per: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
                for _ in range(rounds):
                    for name in ("with", "without"):
                        side = rig.sides[name]
                        cpu0, t0 = _cpu_seconds(side.pid), time.monotonic()
                        lat = await _round(client, side.proxy.url, rig.master, clients,
                                           seconds, stream)
                        wall, cpu = time.monotonic() - t0, _cpu_seconds(side.pid) - cpu0
                        per[name].append({"rps": len(lat) / wall,
                                          "p50_ms": _pct(lat, 0.5) * 1000,
                                          "p99_ms": _pct(lat, 0.99) * 1000,
                                          "cpu_ms": cpu / len(lat) * 1000})
                row: dict[str, Any] = {"stream": stream, "clients": clients}
                for name, runs in per.items():
                    row[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                w, wo = row["with"], row["without"]
                row["throughput_ratio"] = w["rps"] / wo["rps"]
                row["added_p50_ms"] = w["p50_ms"] - wo["p50_ms"]
                row["added_p99_ms"] = w["p99_ms"] - wo["p99_ms"]
                row["added_cpu_ms"] = w["cpu_ms"] - wo["cpu_ms"]
                print(f"{'stream' if stream else 'plain ':6} {clients:3} clients: "
                      f"with {w['rps']:6.1f}/s p50 {w['p50_ms']:6.1f} p99 {w['p99_ms']:7.1f} "
                      f"cpu {w['cpu_ms']:5.2f} ms | without {wo['rps']:6.1f}/s "
                      f"p50 {wo['p50_ms']:6.1f} p99 {wo['p99_ms']:7.1f} cpu {wo['cpu_ms']:5.2f}"
                      f" ms | ratio {row['throughput_ratio']:.3f} "
                      f"+cpu {row['added_cpu_ms']:+.2f} ms", flush=True)
                results.append(row)
    return results


async def rss_growth(rig: Rig, requests: int) -> list[tuple[int, float]]:
    """RSS of the hooked proxy every ``requests / 10`` requests (64 clients)."""
    side = rig.sides["with"]
    step = max(1, requests // 10)
    samples = [(0, _rss_mb(side.pid))]
    done = 0
    headers = {"Authorization": f"Bearer {rig.master}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        while done < requests:
            batch = min(step, requests - done)
            todo = iter(range(batch))

            async def loop(todo: Any = todo) -> None:
                for _ in todo:
                    body = {"model": MODEL, "max_tokens": 1, "messages": [
                        {"role": "user", "content": f"rss {next(_PROMPTS)}"}]}
                    for attempt in range(3):  # a keep-alive connection the server closed
                        try:
                            reply = await client.post(f"{side.proxy.url}/v1/chat/completions",
                                                      json=body, headers=headers)
                            break
                        except httpx.TransportError:
                            if attempt == 2:
                                raise
                    if reply.status_code != 200:
                        raise RuntimeError(f"HTTP {reply.status_code}")

            await asyncio.gather(*(loop() for _ in range(64)))
            done += batch
            samples.append((done, _rss_mb(side.pid)))
            print(f"rss after {done:7d} requests: {samples[-1][1]:.1f} MB", flush=True)
    return samples


def policy_cpu(requests: int, work: Path) -> dict[str, Any]:
    """CPU the project's policy costs per request, in-process and without LiteLLM: the
    pre-call decisions, the success callback's submit, and the I/O worker's share (cost-log
    batch, budget decision, degraded-cache entry). process_time counts every thread."""
    from datetime import UTC, datetime

    from monitoring.proxy_policy import Answer, ProxyPolicy, Served

    stack = parse_stack((REPO / "inventory/stack.yaml").read_text())
    config = watchdog.build(stack, layout(stack, "linux"))
    paths = config.paths.model_copy(update={
        "log_dir": str(work), "state_dir": str(work), "cost_log": str(work / "costs.log"),
        "alert_log": str(work / "alerts.log"), "event_log": str(work / "events.log"),
        "event_jsonl": str(work / "events.jsonl"),
        "provider_config": str(work / "provider-config.json")})
    assert config.degraded is not None
    degraded = config.degraded.model_copy(update={"cache_dir": str(work / "cache")})
    policy = ProxyPolicy(config.model_copy(update={"paths": paths, "degraded": degraded}),
                         clock=lambda: datetime.now(UTC))
    response = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": "ok"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    deployments = [{"model_name": "gpt-4"}]
    started, wall = time.process_time(), time.monotonic()
    rss: list[tuple[int, float]] = []
    for n in range(requests):
        if n % max(1, requests // 10) == 0:
            policy.flush(600)
            rss.append((n, round(_rss_mb(os.getpid()), 1)))
        policy.substitute(MODEL)
        policy.allowed_deployments(deployments, MODEL)
        messages = [{"role": "user", "content": f"bench {n}"}]
        policy.submit(Served(MODEL, MODEL, MODEL, "openai", 1, 1, 0.00009),
                      answer=Answer(MODEL, messages, {}, response, MODEL))
    policy.flush(600)
    cpu = time.process_time() - started
    policy.io.close()
    return {"requests": requests, "cpu_ms_per_request": cpu / requests * 1000,
            "wall_s": time.monotonic() - wall,
            "cost_log_lines": (work / "costs.log").read_bytes().count(b"\n"),
            "cache_entries": len(list((work / "cache").glob("*.json"))),
            "rss_mb": [*rss, (requests, round(_rss_mb(os.getpid()), 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per side (0: only the RSS phase)")
    parser.add_argument("--rss-requests", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--policy-cpu", type=int, default=0, metavar="N",
                        help="only: CPU per request of the policy alone, over N requests")
    args = parser.parse_args()
    if args.policy_cpu:
        with tempfile.TemporaryDirectory(prefix="pf-policy-bench-") as tmp:
            print(json.dumps(policy_cpu(args.policy_cpu, Path(tmp))))
        return
    with tempfile.TemporaryDirectory(prefix="pf-proxy-bench-") as tmp:
        rig = Rig(Path(tmp))
        try:
            rig.start()
            rows = asyncio.run(measure(rig, args.seconds, args.rounds)) if args.rounds else []
            rss = asyncio.run(rss_growth(rig, args.rss_requests)) if args.rss_requests else []
            lines = (Path(tmp) / "with/log/provider_costs.log").read_bytes().count(b"\n")
            cache = len(list((Path(tmp) / "with/cache").glob("*.json")))
        finally:
            rig.stop()
    out = {"cpus": len(os.sched_getaffinity(0)), "pinned": rig.pinned,
           "seconds_per_round": args.seconds, "rounds": args.rounds, "results": rows,
           "rss_mb": rss, "cost_log_lines": lines, "degraded_cache_entries": cache}
    print(f"cost-log lines written by the hooked proxy: {lines}; degraded-cache entries: {cache}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
