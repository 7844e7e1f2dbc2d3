"""What the project's proxy hooks cost on LiteLLM's request path (run by hand; issue 13, item 7).

    python -m bench.proxy_overhead [--seconds 8] [--rounds 3] [--null] [--rss-requests 100000]
                                   [--clients 1,16,64] [--modes plain,stream]
                                   [--warm-requests 1500]
                                   [--json bench/results/proxy-overhead.json]

Real, pinned LiteLLM proxies from the same rendered config, side by side against one fast local
fake upstream: one WITH the project's callback (``monitoring.proxy.litellm_hooks.
proxy_handler_instance``: cost log, kill switch, degraded cache), one WITHOUT it and, with
``--null``, one with a do-nothing callback that has the same hook methods
(:mod:`bench.null_hooks`), which tells LiteLLM's own cost of calling a callback from the
project's. Rounds are interleaved (with, without[, null], with, ...) at 1, 16 and 64
concurrent clients, non-streamed and streamed, so a change of the machine's load hits every
side alike. Each request has a prompt never sent before (LiteLLM's own response cache would
answer a repeat) and asks for the paid ``gpt-4``, so every request is charged.

Where the machine has two cores or more, the proxies are pinned to the last core and the load
generator and the fake upstream to the others, so a proxy's CPU is its own.

Per round and side: throughput (answered requests/s), p50 and p99 latency, the proxy's CPU
time per answered request (utime + stime of every thread of the proxy process, from /proc: it
counts what the proxy did, whatever else runs on the machine) and the share of the project's
I/O worker thread (named ``pf-proxy-io`` in /proc). Errors (a transport error, a status other
than 200) are counted per side and reported; the round goes on. Each round opens its own
connections, so no round reuses a keep-alive connection that the proxy closed while another
side's round ran. Reported: the median over the rounds for each side, the ratios (with /
without) and the 1-minute load average during the rounds (a shared machine: throughput ratios
are noisy there, CPU per request much less); then the same figures per round, each side
against the other side's round next to it (paired), as a median and its interquartile range,
and the I/O worker's voluntary context switches per request (a wait for the disk shows there
whatever the load). ``--warm-requests`` first sends that many requests to every side, so the
degraded cache is past ``max_entries`` (1000) and evicting, as in a proxy in use.

At the end the proxy with the hooks is stopped cleanly (SIGTERM) and its cost log counted: a
line per answered request, none lost and none twice.

``--rss-requests N``: afterwards, N more requests (64 clients) to the proxy with the hooks,
its RSS sampled every N/10: it must not grow with the request count (a cost record kept in
memory per request would add ~400 B each).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from monitoring.proxy.degraded_cache import segment_files
from monitoring.proxy.io_worker import THREAD_NAME
from monitoring.stack.layout import host_env_name, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import litellm, watchdog
from tests.support.fake_upstream import FakeUpstream
from tests.support.litellm_proxy import ProxyProcess, ensure_venv, free_port

REPO = Path(__file__).resolve().parents[1]
MODEL = "gpt-4"
CONCURRENCY = "1,16,64"
#: The callback each side registers beside ``prometheus`` (None: none of ours).
CALLBACKS: dict[str, str | None] = {"with": litellm.HOOKS_CALLBACK, "without": None,
                                    "null": "bench.null_hooks.null_handler_instance"}
_PROMPTS = itertools.count()
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(stat_text: str) -> float:
    fields = stat_text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (ended threads included)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def _thread_cpu_seconds(pid: int, name: str) -> float | None:
    """utime + stime of the threads of ``pid`` named ``name`` in /proc; None without one."""
    total, found = 0.0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                total += _stat_cpu((task / "stat").read_text())
                found = True
        except OSError:
            continue  # a thread that ended meanwhile
    return total if found else None


def _thread_switches(pid: int, name: str) -> int | None:
    """Voluntary context switches of the threads of ``pid`` named ``name``: a thread that
    blocks in the kernel (an unlink waiting for the disk) switches out; noise-free, unlike CPU
    time on a shared machine."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != name:
                continue
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
                    found = True
        except OSError:
            continue
    return total if found else None


def cache_lines(directory: Path) -> int:
    """Answers in a degraded cache's segments on disk (superseded copies included)."""
    return sum(path.read_bytes().count(b"\n") for path in segment_files(directory))


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
    cost_log: Path
    #: Requests this side answered with 200, over the whole run (warm-up and RSS included).
    answered: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def pid(self) -> int:
        assert self.proxy.process is not None
        return self.proxy.process.pid


class Rig:
    """One fake upstream for every provider, one proxy per side."""

    def __init__(self, work: Path, sides: tuple[str, ...]) -> None:
        self.work = work
        base = parse_stack((REPO / "inventory/stack.yaml").read_text())
        self.upstream = FakeUpstream(models=[m.upstream_model
                                             for m in base.litellm.models.values()]).start()
        self.master = "sk-master-" + os.urandom(16).hex()
        self.sides: dict[str, Side] = {}
        self.pinned = False
        venv = ensure_venv(base.litellm.version)
        for name in sides:
            port = free_port()
            stack = parse_stack((REPO / "inventory/stack.yaml").read_text(), overrides={
                "litellm": {"listen": {"port": port}, "models": {
                    alias: {"api_base": self.upstream.api_base}
                    for alias in base.litellm.models}}})
            self.sides[name] = Side(name, self._proxy(stack, venv, name, port),
                                    work / name / "log/provider_costs.log")

    def _proxy(self, stack: Stack, venv: Path, name: str, port: int) -> ProxyProcess:
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
        callbacks = proxy_config["litellm_settings"]["callbacks"]
        callbacks.remove(litellm.HOOKS_CALLBACK)
        if CALLBACKS[name] is not None:
            callbacks.append(CALLBACKS[name])
        (work / "config.yaml").write_text(yaml.safe_dump(proxy_config, sort_keys=False))
        env = {host_env_name(stack, m.api_key_env): "sk-bench" for m in
               stack.litellm.models.values()}
        env[stack.litellm.master_key_env] = self.master
        return ProxyProcess(venv, work / "config.yaml", port, env)

    def start(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        proxy_cpus, load_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (
            set(cpus), set(cpus))
        for side in self.sides.values():
            side.proxy.start(deadline_s=300)
            _pin(side.pid, proxy_cpus)
        os.sched_setaffinity(0, load_cpus)  # this process: load generator and fake upstream
        self.pinned = len(cpus) > 1

    def stop(self) -> None:
        for side in self.sides.values():
            side.proxy.stop()
        self.upstream.stop()


def _error_kind(exc: Exception) -> str:
    return type(exc).__name__


async def _send(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                stream: bool, tag: str) -> str | None:
    """One request; None when answered with 200, else what went wrong."""
    body = {"model": MODEL, "max_tokens": 1, "stream": stream,
            "messages": [{"role": "user", "content": f"{tag} {next(_PROMPTS)}"}]}
    try:
        if stream:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                     headers=headers) as reply:
                async for _ in reply.aiter_bytes():
                    pass
                status = reply.status_code
        else:
            status = (await client.post(f"{url}/v1/chat/completions", json=body,
                                        headers=headers)).status_code
    except httpx.HTTPError as exc:
        return _error_kind(exc)
    return None if status == 200 else f"HTTP {status}"


def _client(clients: int) -> httpx.AsyncClient:
    """A fresh pool: no keep-alive connection outlives the round it was opened in."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    return httpx.AsyncClient(timeout=120, limits=limits)


@dataclass
class Round:
    latencies: list[float]
    errors: collections.Counter[str]
    wall_s: float
    cpu_s: float
    worker_cpu_s: float | None
    worker_switches: int | None
    load: float


async def _round(side: Side, key: str, clients: int, seconds: float, stream: bool) -> Round:
    """``clients`` loops sending requests to ``side`` for ``seconds``."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    headers = {"Authorization": f"Bearer {key}"}
    async with _client(clients) as client:
        cpu0, worker0 = _cpu_seconds(side.pid), _thread_cpu_seconds(side.pid, THREAD_NAME)
        switches0 = _thread_switches(side.pid, THREAD_NAME)
        t0 = time.monotonic()
        deadline = t0 + seconds

        async def loop() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                error = await _send(client, side.proxy.url, headers, stream, "bench")
                if error is None:
                    latencies.append(time.monotonic() - started)
                else:
                    errors[error] += 1
                    await asyncio.sleep(0.05)  # no hot loop against a proxy that refuses

        await asyncio.gather(*(loop() for _ in range(clients)))
        wall = time.monotonic() - t0
        cpu, worker1 = _cpu_seconds(side.pid) - cpu0, _thread_cpu_seconds(side.pid, THREAD_NAME)
        switches1 = _thread_switches(side.pid, THREAD_NAME)
    side.answered += len(latencies)
    side.errors.update(errors)
    worker = (worker1 - worker0 if worker0 is not None and worker1 is not None
              else worker1 if worker1 is not None else None)
    switches = (switches1 - (switches0 or 0) if switches1 is not None else None)
    return Round(latencies, errors, wall, cpu, worker, switches, os.getloadavg()[0])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(r: Round) -> dict[str, float]:
    answered = len(r.latencies)
    per = 1000 / answered if answered else float("nan")
    return {"rps": answered / r.wall_s, "p50_ms": _pct(r.latencies, 0.5) * 1000,
            "p99_ms": _pct(r.latencies, 0.99) * 1000, "cpu_ms": r.cpu_s * per,
            "worker_cpu_ms": r.worker_cpu_s * per if r.worker_cpu_s is not None else
            float("nan"), "worker_switches": r.worker_switches * per / 1000
            if r.worker_switches is not None else float("nan"),
            "errors": sum(r.errors.values()), "load": r.load}


def _median(runs: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in runs if r[key] == r[key]]  # NaN: a round without a figure
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range of per-round figures."""
    if not values:
        return (float("nan"),) * 3
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q2, q1, q3


def _paired(per: dict[str, list[dict[str, float]]], other: str) -> dict[str, list[float]]:
    """Per-round figures of ``with`` against ``other`` in the same round: the ratio of
    throughputs and the CPU per request added (pairs cancel most of a shared machine's drift)."""
    pairs = list(zip(per["with"], per[other], strict=True))
    return {"ratio": [w["rps"] / o["rps"] for w, o in pairs if o["rps"]],
            "added_cpu_ms": [w["cpu_ms"] - o["cpu_ms"] for w, o in pairs]}


def _fmt(name: str, s: dict[str, Any]) -> str:
    worker = (f" (io {s['worker_cpu_ms']:4.2f}, {s['worker_switches']:.1f} sw)"
              if s["worker_cpu_ms"] == s["worker_cpu_ms"] else "")
    return (f"{name} {s['rps']:6.1f}/s p50 {s['p50_ms']:6.1f} p99 {s['p99_ms']:7.1f} "
            f"cpu {s['cpu_ms']:5.2f}{worker} err {s['errors']}")


async def warm(rig: Rig, requests: int) -> None:
    """``requests`` to every side (4 clients) before the rounds: past the degraded cache's
    ``max_entries`` its eviction runs on every store, the steady state of a proxy in use."""
    headers = {"Authorization": f"Bearer {rig.master}"}
    for side in rig.sides.values():
        todo = iter(range(requests))  # shared: the 4 loops take the requests one by one

        async def loop(client: httpx.AsyncClient, side: Side, todo: Any) -> None:
            for _ in todo:
                error = await _send(client, side.proxy.url, headers, False, "warm")
                if error is None:
                    side.answered += 1
                else:
                    side.errors[error] += 1

        async with _client(4) as client:
            await asyncio.gather(*(loop(client, side, todo) for _ in range(4)))


async def measure(rig: Rig, seconds: float, rounds: int, clients_list: tuple[int, ...],
                  modes: tuple[bool, ...]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for side in rig.sides.values():  # warm-up: imports, first connections, first scan
        await _round(side, rig.master, 4, 3, False)
    for stream in modes:
        for clients in clients_list:
            per: dict[str, list[dict[str, float]]] = {name: [] for name in rig.sides}
            for _ in range(rounds):
                for name, side in rig.sides.items():
                    per[name].append(_summary(await _round(side, rig.master, clients,
                                                           seconds, stream)))
            row: dict[str, Any] = {"stream": stream, "clients": clients}
            for name, runs in per.items():
                row[name] = {k: _median(runs, k) for k in runs[0] if k != "errors"}
                row[name]["errors"] = sum(int(r["errors"]) for r in runs)
            w, wo = row["with"], row["without"]
            row["throughput_ratio"] = w["rps"] / wo["rps"]
            row["added_p50_ms"] = w["p50_ms"] - wo["p50_ms"]
            row["added_p99_ms"] = w["p99_ms"] - wo["p99_ms"]
            row["added_cpu_ms"] = w["cpu_ms"] - wo["cpu_ms"]
            row["load"] = statistics.median(r["load"] for runs in per.values() for r in runs)
            text = " | ".join(_fmt(name, row[name]) for name in rig.sides)
            extra = ""
            if "null" in row:
                row["null_added_cpu_ms"] = row["null"]["cpu_ms"] - wo["cpu_ms"]
                extra = f" null {row['null_added_cpu_ms']:+.2f} ms"
            print(f"{'stream' if stream else 'plain ':6} {clients:3} clients: {text} | ratio "
                  f"{row['throughput_ratio']:.3f} +cpu {row['added_cpu_ms']:+.2f} ms{extra} "
                  f"(load {row['load']:.1f})", flush=True)
            for other in ("without", "null"):
                if other in per:
                    paired = {k: _spread(v) for k, v in _paired(per, other).items()}
                    row[f"paired_{other}"] = paired
                    r, c = paired["ratio"], paired["added_cpu_ms"]
                    print(f"    per round, with/{other}: ratio {r[0]:.3f} [IQR {r[1]:.3f}.."
                          f"{r[2]:.3f}] +cpu {c[0]:+.2f} [IQR {c[1]:+.2f}..{c[2]:+.2f}] ms",
                          flush=True)
            results.append(row)
    return results


async def rss_growth(rig: Rig, requests: int) -> list[tuple[int, float]]:
    """RSS of the hooked proxy every ``requests / 10`` requests (64 clients)."""
    side = rig.sides["with"]
    step = max(1, requests // 10)
    samples = [(0, _rss_mb(side.pid))]
    done = 0
    headers = {"Authorization": f"Bearer {rig.master}"}
    while done < requests:
        batch = min(step, requests - done)
        answered = 0

        async def loop(client: httpx.AsyncClient, todo: Any) -> None:
            nonlocal answered
            for _ in todo:
                error = await _send(client, side.proxy.url, headers, False, "rss")
                if error is None:
                    answered += 1
                else:
                    side.errors[error] += 1

        async with _client(64) as client:
            todo = iter(range(batch))  # shared: the 64 loops take the requests one by one
            await asyncio.gather(*(loop(client, todo) for _ in range(64)))
        side.answered += answered
        done += batch
        samples.append((done, _rss_mb(side.pid)))
        print(f"rss after {done:7d} requests: {samples[-1][1]:.1f} MB "
              f"(errors so far: {sum(side.errors.values())}, load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    return samples


def policy_cpu(requests: int, work: Path) -> dict[str, Any]:
    """CPU the project's policy costs per request, in-process and without LiteLLM: the
    pre-call decisions, the success callback's submit, and the I/O worker's share (cost-log
    batch, budget decision, degraded-cache entry). process_time counts every thread. Requests
    are submitted as fast as the loop goes, so the worker's batches are large: this is the
    floor of the policy's cost, not its cost at a proxy's request rate."""
    from datetime import UTC, datetime

    from monitoring.proxy.policy import Answer, ProxyPolicy, Served

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
            "cache_entries": cache_lines(work / "cache"),
            "rss_mb": [*rss, (requests, round(_rss_mb(os.getpid()), 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per side (0: only the RSS phase)")
    parser.add_argument("--clients", default=CONCURRENCY,
                        help="concurrent clients, comma-separated (default: %(default)s)")
    parser.add_argument("--modes", default="plain,stream",
                        help="plain and/or stream, comma-separated (default: %(default)s)")
    parser.add_argument("--warm-requests", type=int, default=0, metavar="N",
                        help="N requests to every side before the rounds (past the degraded "
                             "cache's max_entries: its steady state)")
    parser.add_argument("--null", action="store_true",
                        help="a third proxy with a do-nothing callback (bench/null_hooks.py)")
    parser.add_argument("--rss-requests", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--policy-cpu", type=int, default=0, metavar="N",
                        help="only: CPU per request of the policy alone, over N requests")
    args = parser.parse_args()
    if args.policy_cpu:
        with tempfile.TemporaryDirectory(prefix="pf-policy-bench-") as tmp:
            print(json.dumps(policy_cpu(args.policy_cpu, Path(tmp))))
        return
    names = ("with", "without", "null") if args.null else ("with", "without")
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    rss: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="pf-proxy-bench-") as tmp:
        rig = Rig(Path(tmp), names)
        try:
            rig.start()
            if args.warm_requests:
                asyncio.run(warm(rig, args.warm_requests))
            clients = tuple(int(c) for c in args.clients.split(","))
            modes = tuple(m == "stream" for m in args.modes.split(","))
            rows = (asyncio.run(measure(rig, args.seconds, args.rounds, clients, modes))
                    if args.rounds else [])
            rss = asyncio.run(rss_growth(rig, args.rss_requests)) if args.rss_requests else []
        finally:
            rig.stop()  # SIGTERM: a clean stop, so the hooked proxy drains its queue
        side = rig.sides["with"]
        lines = side.cost_log.read_bytes().count(b"\n") if side.cost_log.exists() else 0
        cache = cache_lines(Path(tmp) / "with/cache")
    out = {"cpus": len(os.sched_getaffinity(0)), "pinned": rig.pinned,
           "seconds_per_round": args.seconds, "rounds": args.rounds,
           "load_average": {"before": load_before, "after": os.getloadavg()},
           "results": rows, "rss_mb": rss,
           "errors": {name: dict(s.errors) for name, s in rig.sides.items()},
           "with_answered": side.answered, "cost_log_lines": lines,
           "degraded_cache_entries": cache}
    print(f"errors per side: {out['errors']}")
    print(f"hooked proxy: {side.answered} requests answered with 200, {lines} cost-log lines "
          f"after its clean stop; degraded-cache entries: {cache}; load average "
          f"{load_before[0]:.1f} before, {out['load_average']['after'][0]:.1f} after")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
