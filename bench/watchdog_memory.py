"""The deployed watchdog's memory over time, any commit (run by hand): RSS and tracemalloc.

    python bench/watchdog_memory.py [--repo DIR] [--keys none|invalid] [--ticks 6000] \
        [--interval 0.05] [--frames 0] [--out DIR]

What the soak test (tests/monitoring/watchdog/test_soak.py) does not: it measures the
watchdog as a host runs it, and the code of any checkout, so an old commit can be compared
with the current one (issue 13, B9):

- the real ``provider-fallback watch`` command (``monitoring.cli.main``) in a process of its
  own, started with a clean environment (as the init script's ``env -i`` does), by the host's
  interpreter and venv when this machine has one (``/opt/provider-fallback/venv``, the locked
  host dependencies) and the checkout ``--repo`` first on ``PYTHONPATH``;
- the real pinned LiteLLM proxy WITH the project's hooks and the degraded cache, rendered by
  that checkout, in front of the project's fake upstreams;
- the watchdog's exporter scraped over HTTP once a second, as Prometheus does;
- the proxy supervised as on a host without systemd (``ProcessBackend``, by its PID file);
- with ``--sockets N``, a busy machine's socket table (N loopback connections, churned).

``--keys none``: no provider key anywhere, the reviewer's account of the host (every provider
fails "auth" without a request, degraded mode on). ``--keys invalid``: keys set but refused,
every provider answers 401. The watchdog's tick is
cut to ``--interval`` and its clocks run ``1 / interval`` times faster, so one tick is one
second of the host's time, as with the default ``probe_interval: 1s``.

The child records RSS, anonymous and file pages and glibc's heap in use and free
(``mallinfo2``: growth in "free" with "in use" flat is fragmentation, not live objects) every
``--every`` ticks, and with ``--frames N`` tracemalloc's traced bytes, the peak since the
previous sample and a snapshot at the warm-up and at the end; the report gives the growth per
tick by least squares after the warm-up, and the top allocation sites grown between the
snapshots. ``--env NAME=VALUE`` and ``--trim N`` (``malloc_trim`` every N ticks) test
allocator settings. Figures: bench/results/watchdog-memory.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HOST_PYTHON = Path("/opt/provider-fallback/venv/bin/python")
HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- the child


def glibc_mallinfo() -> Any:
    """glibc's ``mallinfo2`` (2.33+), or None elsewhere."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = MallInfo2
    return function


def child(args: argparse.Namespace) -> int:
    """Run ``provider-fallback watch`` with a tick counter, accelerated clocks and samples."""
    import ctypes
    import ctypes.util
    import gc
    import tracemalloc

    if args.frames:
        tracemalloc.start(args.frames)
    from monitoring import cli
    from monitoring.watchdog import loop as wd

    out = Path(args.out)
    mallinfo = glibc_mallinfo()
    trim = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim",
                   None)
    samples = (out / "samples.jsonl").open("a", encoding="utf-8")
    page = os.sysconf("SC_PAGE_SIZE")
    speed = 1.0 / float(args.interval)
    origin_m, origin_w = time.monotonic(), datetime.now(UTC)
    count = {"ticks": 0}

    def mono() -> float:
        return (time.monotonic() - origin_m) * speed

    def clock() -> datetime:
        return origin_w + timedelta(seconds=mono())

    def native() -> dict[str, float]:
        """Where RSS sits: anonymous or file pages, threads; glibc's heap in use and free
        (Python's small objects live in pymalloc's mmapped arenas, not in this heap)."""
        status = dict(line.split(":", 1) for line in
                      Path("/proc/self/status").read_text().splitlines() if ":" in line)
        out = {k.lower(): round(int(status[k].split()[0]) / 1024, 3)
               for k in ("RssAnon", "RssFile") if k in status}
        out["threads"] = int(status.get("Threads", "0"))
        if mallinfo is not None:
            info = mallinfo()
            out["heap_used_mb"] = round(info.uordblks / 2**20, 3)
            out["heap_free_mb"] = round(info.fordblks / 2**20, 3)
            out["mmapped_mb"] = round(info.hblkhd / 2**20, 3)
        return out

    class Measured(wd.Watchdog):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, clock=clock, **k)
            self.mono = mono
            self._booted = mono()

        async def tick(self) -> None:
            await super().tick()
            count["ticks"] += 1
            n = count["ticks"]
            if n % args.every == 0 or n in (args.warmup, args.ticks):
                rss = int(Path("/proc/self/statm").read_text().split()[1]) * page
                row = {"tick": n, "t": round(time.monotonic() - origin_m, 2),
                       "rss_mb": round(rss / 2**20, 3), **native()}
                if n % (args.every * 10) == 0 or n in (args.warmup, args.ticks):
                    row["objects"] = len(gc.get_objects())
                if args.frames:
                    traced, peak = tracemalloc.get_traced_memory()
                    row["traced_mb"] = round(traced / 2**20, 3)
                    # The largest transient since the last sample: a step in RSS that stays
                    # is often the allocator keeping the heap such a moment grew.
                    row["peak_mb"] = round(peak / 2**20, 3)
                    tracemalloc.reset_peak()
                    if n in (args.warmup, args.ticks):
                        tracemalloc.take_snapshot().dump(str(out / f"snap-{n}.bin"))
                samples.write(json.dumps(row) + "\n")
                samples.flush()
            if args.trim and n % args.trim == 0 and trim is not None:
                trim(0)
            if n >= args.ticks:
                os.kill(os.getpid(), signal.SIGTERM)  # the loop's own stop handler

    cli.Watchdog = Measured  # type: ignore[attr-defined]
    return int(cli.main(["watch", "--config", args.config]))


# --------------------------------------------------------------------------- the parent


def _stack(repo: Path, port: int, bases: dict[str, str]) -> Any:
    from monitoring.stack.load import parse_stack

    text = (repo / "inventory" / "stack.yaml").read_text(encoding="utf-8")
    base = parse_stack(text)
    providers = {m.provider for m in base.litellm.models.values()}
    models = {a: {"api_base": bases[m.provider]} for a, m in base.litellm.models.items()}
    assert providers <= set(bases), providers
    return parse_stack(text, overrides={"litellm": {"listen": {"port": port},
                                                    "models": models}})


def _relocate(value: str, root: Path) -> str:
    path = root / value.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


Prepared = tuple[Any, Path, dict[str, str], dict[str, str], list[Any]]


def prepare(repo: Path, tmp: Path, keys_mode: str, interval: float) -> Prepared:
    """Fakes, the rendered proxy config (with hooks) and the watchdog config, under ``tmp``."""
    import yaml

    from monitoring.stack.layout import layout
    from monitoring.watchdog import recovery
    from tasks.render import litellm, watchdog
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.litellm_proxy import ensure_venv, free_port, proxy_argv

    port = free_port()
    # Every fake refuses every key the watchdog or the proxy will send: 401, as a provider
    # does with a wrong key.
    names = ("groq", "openrouter", "google", "openai")
    fakes = [FakeUpstream(api_key="pf-bench-the-right-key-" + os.urandom(8).hex())
             for _ in names]
    for fake in fakes:
        fake.start()
    stack = _stack(repo, port, {n: f.api_base for n, f in zip(names, fakes, strict=True)})
    config = watchdog.build(stack, layout(stack, "linux"))
    root = tmp / "host"
    paths = {k: (_relocate(v, root) if isinstance(v, str) and v.startswith("/") else v)
             for k, v in config.paths.model_dump().items()}
    venv = ensure_venv(stack.litellm.version)
    proxy_yaml = tmp / "litellm.yaml"
    command = proxy_argv(venv, proxy_yaml, port)
    proxy = config.proxy.model_copy(update={
        "command": command, "config_path": str(proxy_yaml), "systemd_unit": None})
    # The loop's pause is real time; every other cadence is read on the watchdog's clocks,
    # which the child accelerates by the same factor.
    probes = config.probes.model_copy(update={"interval": interval})
    update: dict[str, Any] = {"paths": config.paths.model_validate(paths), "proxy": proxy,
                              "probes": probes,
                              "listen": config.listen.model_copy(update={"port": free_port()})}
    if config.degraded is not None:
        update["degraded"] = config.degraded.model_copy(update={
            "cache_dir": _relocate(config.degraded.cache_dir, root)})
    if "agent_home" in type(config).model_fields:
        update["agent_home"] = str(tmp / "home")
    config = config.model_copy(update=update)
    watchdog_json = tmp / "watchdog.json"
    watchdog_json.write_text(config.model_dump_json(indent=2), encoding="utf-8")
    rendered = litellm.config(stack)
    rendered["environment_variables"] = {litellm.CONFIG_ENV: str(watchdog_json)}
    proxy_yaml.write_text(yaml.safe_dump(rendered, sort_keys=False), encoding="utf-8")
    master = {config.proxy.master_key_env: "sk-bench-master-" + os.urandom(12).hex()}
    keys = ({} if keys_mode == "none" else
            {p.api_key_env: "sk-bench-wrong-" + os.urandom(12).hex() for p in config.providers})
    pid_file = Path(config.paths.state_dir) / recovery.PROXY_PID_FILE
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    return config, watchdog_json, master, keys, [fakes, pid_file, venv, proxy_yaml, port]


def slope(rows: list[dict[str, Any]], key: str) -> float:
    """Least-squares growth of ``key`` per tick."""
    xs = [r["tick"] for r in rows]
    ys = [r[key] for r in rows]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def report(out: Path, warmup: int, frames: int, top: int) -> None:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    print(f"{'tick':>7} {'s':>8} {'RSS MB':>8} {'traced MB':>9} {'peak MB':>8} {'objects':>8}")
    for r in rows:
        if r["tick"] % (rows[0]["tick"] * 10) == 0 or r["tick"] == warmup or r is rows[-1]:
            print(f"{r['tick']:>7} {r['t']:>8.1f} {r['rss_mb']:>8.2f} "
                  f"{r.get('traced_mb', float('nan')):>9.3f} "
                  f"{r.get('peak_mb', float('nan')):>8.3f} {r.get('objects', ''):>8}")
    after = [r for r in rows if r["tick"] >= warmup]
    if len(after) >= 2:
        kb = slope(after, "rss_mb") * 1024
        print(f"after the warm-up ({warmup} ticks): RSS {after[0]['rss_mb']:.2f} -> "
              f"{after[-1]['rss_mb']:.2f} MB over {after[-1]['tick'] - after[0]['tick']} "
              f"ticks; slope {kb:.3f} KB/tick = {kb * 3600 / 1024:.2f} MB per hour at 1 tick/s")
        if frames:
            kb = slope(after, "traced_mb") * 1024
            print(f"traced (Python allocations) slope {kb:.3f} KB/tick")
    first, last = out / f"snap-{warmup}.bin", out / f"snap-{rows[-1]['tick']}.bin"
    if frames and first.exists() and last.exists():
        import tracemalloc

        noise = [tracemalloc.Filter(False, tracemalloc.__file__)]
        a = tracemalloc.Snapshot.load(str(first)).filter_traces(noise)
        b = tracemalloc.Snapshot.load(str(last)).filter_traces(noise)
        print(f"top {top} allocation sites grown between ticks {warmup} and {rows[-1]['tick']}:")
        for stat in b.compare_to(a, "traceback")[:top]:
            print(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
            for line in stat.traceback.format(limit=frames)[-2 * min(frames, 8):]:
                print("    " + line)


class BusySockets:
    """``count`` connected socket pairs on loopback, some replaced every second: a busy
    workstation's /proc/net/tcp (browsers, IDEs, agents), which the watchdog reads before
    every request to the proxy, with a size that varies as on a host."""

    def __init__(self, count: int) -> None:
        import socket

        self.server = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.pairs: list[tuple[Any, Any]] = []
        for _ in range(count):
            self.add()

    def add(self) -> None:
        import socket

        client = socket.create_connection(self.server.getsockname())
        self.pairs.append((client, self.server.accept()[0]))

    def churn(self, n: int) -> None:
        import random

        for _ in range(min(n, len(self.pairs))):
            for sock in self.pairs.pop(random.randrange(len(self.pairs))):  # noqa: S311
                sock.close()
        for _ in range(random.randint(0, 2 * n)):  # noqa: S311 (not a secret)
            self.add()

    def close(self) -> None:
        for pair in self.pairs:
            for sock in pair:
                sock.close()
        self.server.close()


def stop_restarted_proxy(pid_file: Path, proxy_yaml: Path) -> None:
    """A proxy the watchdog restarted is its child, not ours: stop it by its PID file."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if str(proxy_yaml) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            os.kill(pid, signal.SIGTERM)


def parent(args: argparse.Namespace) -> int:
    repo = Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    # A SIGTERM still stops the proxy, the fakes and the watchdog (the cleanup below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import httpx

    from tests.support.litellm_proxy import ProxyProcess

    tmp = Path(args.out or tempfile.mkdtemp(prefix="pf-wd-memory-"))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "samples.jsonl").unlink(missing_ok=True)
    config, watchdog_json, master, keys, (fakes, pid_file, venv, proxy_yaml, port) = prepare(
        repo, tmp, args.keys, args.interval)
    python = args.python or str(HOST_PYTHON if HOST_PYTHON.exists() else sys.executable)
    print(f"repo {repo}, keys {args.keys}, watchdog python {python}, files in {tmp}")
    stop = threading.Event()
    with contextlib.ExitStack() as cleanup:
        for fake in fakes:
            cleanup.callback(fake.stop)
        proxy = ProxyProcess(venv, proxy_yaml, port, {**master, **keys})
        cleanup.callback(proxy.stop)
        cleanup.callback(stop_restarted_proxy, pid_file, proxy_yaml)
        proxy.start()
        assert proxy.process is not None
        pid_file.write_text(f"{proxy.process.pid}\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp / "home"), "LANG": "C.UTF-8",
               "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1", **master, **keys,
               **dict(item.split("=", 1) for item in args.env)}
        command = [python, str(HERE), "child", "--config", str(watchdog_json), "--out",
                   str(tmp), "--ticks", str(args.ticks), "--interval", str(args.interval),
                   "--every", str(args.every), "--warmup", str(args.warmup),
                   "--frames", str(args.frames), "--trim", str(args.trim)]
        with open(tmp / "watchdog.log", "ab") as log:
            dog = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        cleanup.callback(lambda: None if dog.poll() is not None else dog.kill())
        metrics = f"http://{config.listen.host}:{config.listen.port}/metrics"

        busy = BusySockets(args.sockets) if args.sockets else None
        if busy is not None:
            cleanup.callback(busy.close)

        def scrape() -> None:  # Prometheus' scrape, on its own cadence
            while not stop.wait(args.scrape):
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(metrics, timeout=5)
                if busy is not None:
                    busy.churn(max(1, args.sockets // 20))

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        cleanup.callback(stop.set)
        try:
            code = dog.wait(timeout=args.deadline)
        except subprocess.TimeoutExpired:
            print(f"the watchdog did not finish {args.ticks} ticks in {args.deadline} s")
            return 1
    print(f"watchdog exit code {code}")
    report(tmp, args.warmup, args.frames, args.top)
    return 0 if code == 0 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("mode", nargs="?", default="parent", choices=("parent", "child"))
    p.add_argument("--repo", default=str(HERE.parents[1]), help="the checkout to measure")
    p.add_argument("--python", help="the watchdog's interpreter (default: the host venv's)")
    p.add_argument("--keys", choices=("none", "invalid"), default="none")
    p.add_argument("--ticks", type=int, default=6000)
    p.add_argument("--warmup", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--scrape", type=float, default=1.0)
    p.add_argument("--frames", type=int, default=0, help="tracemalloc frames (0: off)")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--sockets", type=int, default=0,
                   help="hold this many loopback connections, churned (a busy machine)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="more environment for the watchdog (e.g. MALLOC_MMAP_THRESHOLD_=131072)")
    p.add_argument("--trim", type=int, default=0,
                   help="call glibc's malloc_trim(0) every N ticks (0: never)")
    p.add_argument("--deadline", type=float, default=3600)
    p.add_argument("--config")
    p.add_argument("--out")
    args = p.parse_args(argv)
    return child(args) if args.mode == "child" else parent(args)


if __name__ == "__main__":
    sys.exit(main())
