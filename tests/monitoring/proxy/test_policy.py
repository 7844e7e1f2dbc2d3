"""The proxy's policy without a proxy (issue 13, item 7): the I/O worker keeps order and loses
nothing on a clean stop, the month's spend is a running sum of what the disk holds, the
degraded cache is fed within its bounds, and the call-type allow-list (the cache itself:
test_degraded_cache.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.atomic import stamp
from monitoring.proxy.cost_log import CostRecord, MonthTotal, append_record, iter_records
from monitoring.proxy.degraded_cache import segment_files
from monitoring.proxy.io_worker import ProxyIO
from monitoring.proxy.policy import RECORDED_CALL_TYPES, Answer, ProxyPolicy, Served
from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from tasks.render import watchdog
from tests.support.polling import until
from tests.support.watchdog_harness import fast_config

STACK_FILE = Path(__file__).resolve().parents[3] / "inventory" / "stack.yaml"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _record(cost: float, when: datetime = NOW) -> CostRecord:
    return CostRecord(ts=when, model="gpt-4", served_by="gpt-4", provider="openai",
                      tokens_in=1, tokens_out=1, cost_usd=cost)


# --------------------------------------------------------------------------- MonthTotal


def test_the_month_total_reads_only_new_lines_and_restarts_after_a_rotation(
        tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    total = MonthTotal(path)
    assert total.refresh("2026-11") == 0
    append_record(path, _record(1.0))
    append_record(path, _record(5.0, NOW - timedelta(days=40)))  # another month
    assert total.refresh("2026-11") == 1.0
    append_record(path, _record(2.0))
    assert total.refresh("2026-11") == 3.0
    assert total.count == 2
    path.rename(tmp_path / "c.log.1")
    append_record(path, _record(4.0))
    assert total.refresh("2026-11") == 4.0
    assert total.refresh("2026-12") == 0.0, "a new month starts from zero"


def test_the_month_total_trusts_the_callers_bytes_only_when_they_are_all_that_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    total = MonthTotal(path)
    append_record(path, _record(1.0))
    assert total.refresh("2026-11") == 1.0
    line = _record(2.0).line().encode()
    append_record(path, _record(2.0))
    assert total.refresh("2026-11", (len(line), 2.0, 1)) == 3.0
    append_record(path, _record(7.0))  # someone else's line too: parsed, not trusted
    append_record(path, _record(2.0))
    assert total.refresh("2026-11", (len(line), 2.0, 1)) == 12.0


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_the_month_total_starts_again_when_the_log_is_made_anew_with_the_same_inode(
        tmp_path: Path, how: str) -> None:
    """CI, stop 19: a cost log deleted and created again gets its inode back (ext4, tmpfs);
    its first line, as long as the old file, was neither parsed nor trusted, so the month's
    total missed a charge and the kill switch did not trip. Truncation keeps the inode for
    certain; deletion does on this machine's file systems."""
    path = tmp_path / "c.log"
    total = MonthTotal(path)
    append_record(path, _record(1.0))
    assert total.refresh("2026-11") == 1.0
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    line = _record(2.0).line().encode()
    append_record(path, _record(2.0))
    assert path.stat().st_size == len(line) == len(_record(1.0).line().encode())
    assert total.refresh("2026-11", (len(line), 2.0, 1)) == 2.0
    assert total.count == 1
    append_record(path, _record(3.0))
    assert total.refresh("2026-11", (len(line), 3.0, 1)) == 5.0


def test_the_month_total_never_counts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    append_record(path, _record(1.0))
    whole = _record(2.0).line()
    with open(path, "a") as f:
        f.write(whole[:20])
    total = MonthTotal(path)
    assert total.refresh("2026-11") == 1.0
    append_record(path, _record(3.0))  # cuts the torn tail first
    assert total.refresh("2026-11") == 4.0


# --------------------------------------------------------------------------- ProxyIO


def test_the_worker_keeps_order_batches_and_drains_on_close() -> None:
    seen: list[int] = []
    batches: list[int] = []
    gate = threading.Event()

    def process(jobs: list[int]) -> None:
        gate.wait(10)
        seen.extend(jobs)
        batches.append(len(jobs))

    io: ProxyIO[int] = ProxyIO(process)
    for n in range(500):
        io.put(n)
    gate.set()
    io.close()
    assert seen == list(range(500)), "every job once, in order"
    assert len(batches) < 500, "jobs that waited were processed together"


def test_a_failing_batch_does_not_stop_the_worker() -> None:
    seen: list[int] = []

    def process(jobs: list[int]) -> None:
        if 0 in jobs:
            raise RuntimeError("boom")
        seen.extend(jobs)

    io: ProxyIO[int] = ProxyIO(process)
    io.put(0)
    assert io.flush(10)
    io.put(1)
    assert io.flush(10)
    assert seen == [1]
    io.close()


def test_jobs_wait_for_one_batch_until_the_linger_ends_or_a_batch_is_full() -> None:
    """Group commit: one fsync for the requests of a linger, not one per request."""
    batches: list[list[int]] = []
    more = threading.Event()

    def process(jobs: list[int]) -> None:
        batches.append(jobs)
        more.set()

    io: ProxyIO[int] = ProxyIO(process, max_batch=4, linger_s=60)
    for n in range(4):  # the fourth fills a batch: no need to wait out the linger
        io.put(n)
    until(lambda: batches, 30, "a full batch processed", interval=0.01)
    more.clear()
    io.put(4)
    # A negative check: a worker without a linger writes job 4 alone within milliseconds.
    assert not more.wait(1.0), "a lone job waits for others"
    io.put(5)
    assert io.flush(30), "a flush ends the linger at once"
    assert batches == [[0, 1, 2, 3], [4, 5]]
    io.close()


def test_a_job_put_after_the_close_is_processed_once_and_in_order() -> None:
    """LiteLLM's logging worker runs the success callbacks still queued from its own atexit
    handler, AFTER ours closed the worker: those lines must land too."""
    seen: list[int] = []
    io: ProxyIO[int] = ProxyIO(seen.extend, linger_s=60)
    for n in range(3):
        io.put(n)
    io.close()
    io.put(3)
    io.put(4)
    assert seen == [0, 1, 2, 3, 4]
    assert io.backlog == 0
    assert io.flush(1)


def test_jobs_queued_by_an_earlier_atexit_handler_land_at_exit(tmp_path: Path) -> None:
    """The real order at a clean stop: LiteLLM registers its logging worker's atexit flush
    at import, before the proxy's worker starts (atexit runs handlers last-in first-out)."""
    out = tmp_path / "lines"
    script = textwrap.dedent(f"""
        import atexit
        from monitoring.proxy.io_worker import ProxyIO

        def write(jobs):
            with open({str(out)!r}, "a") as fh:
                fh.write(" ".join(map(str, jobs)) + " ")

        io = ProxyIO(write, linger_s=60)
        # Registered before the worker starts, like LiteLLM's flush: runs after io.close.
        atexit.register(lambda: [io.put(n) for n in (100, 101, 102)])
        io.put(1)  # starts the worker, which registers its close
        io.put(2)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[3])
    assert out.read_text().split() == ["1", "2", "100", "101", "102"]


# --------------------------------------------------------------------------- ProxyPolicy


@pytest.fixture
def policy(tmp_path: Path) -> ProxyPolicy:
    stack = load_stack(STACK_FILE)
    config = fast_config(watchdog.build(stack, layout(stack, "linux")), tmp_path)
    paths = config.paths.model_copy(update={
        "cost_log": str(tmp_path / "log" / "costs.log"),
        "alert_log": str(tmp_path / "log" / "alerts.log"),
        "provider_config": str(tmp_path / "home" / "provider-config.json")})
    assert config.degraded is not None
    degraded = config.degraded.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    budget = config.budget.model_copy(update={"monthly_usd": 1.0})
    config = config.model_copy(update={"paths": paths, "degraded": degraded, "budget": budget})
    return ProxyPolicy(config, clock=lambda: datetime.now(UTC))


def _served(cost: float) -> Served:
    return Served(model="gpt-4", routed="gpt-4", served_by="gpt-4", provider="openai",
                  tokens_in=1, tokens_out=1, cost_usd=cost)


def test_submitted_lines_land_once_in_order_and_the_switch_trips_at_once(
        policy: ProxyPolicy) -> None:
    for _ in range(3):
        policy.submit(_served(0.3))
    assert policy.flush(10)
    assert not policy.kill_switch_active()
    policy.submit(_served(0.3))  # 1.2 of 1.0: over
    # The next request is substituted at once, before the worker wrote the switch's file.
    assert policy.kill_switch_active()
    assert policy.substitute("gpt-4") is not None
    policy.io.close()  # a clean stop drains the queue
    found = list(iter_records(policy.config.paths.cost_log))
    assert [r.cost_usd for r in found] == [0.3] * 4
    assert policy.kill.state().active
    assert policy.spend.total == pytest.approx(1.2)


def test_the_worker_keeps_answers_in_the_bounded_cache(policy: ProxyPolicy) -> None:
    assert policy.cache is not None
    policy.cache.max_entries = 2
    for n in range(4):
        answer = Answer("groq-70b", [{"role": "user", "content": f"q{n}"}], {},
                        {"choices": [{"message": {"content": "ok"}}]}, "groq-70b")
        policy.submit(_served(0.0), answer=answer)
    assert policy.flush(10)
    assert sum(p.read_bytes().count(b"\n") for p in segment_files(policy.cache.directory)) == 2
    kept = policy.degraded_answer("groq-70b", [{"role": "user", "content": "q3"}], {})
    assert kept is not None
    policy.io.close()


def test_only_the_recorded_call_types_and_the_opened_ones_are_allowed(
        policy: ProxyPolicy) -> None:
    assert all(policy.allowed_call_type(c) for c in RECORDED_CALL_TYPES)
    for refused in ("acreate_batch", "acreate_file", "avector_store_create", "moderation",
                    "acreate_realtime_client_secret", "alist_containers", "aimage_generation"):
        assert not policy.allowed_call_type(refused)
    opened = ProxyPolicy(policy.config.model_copy(update={"proxy": policy.config.proxy.model_copy(
        update={"open_call_types": ["amoderation", "pass_through_endpoint"]})}))
    assert opened.allowed_call_type("amoderation")
    assert not opened.allowed_call_type("pass_through_endpoint"), "never opened"


def test_the_switch_file_is_written_for_decisions_not_for_every_batch(
        policy: ProxyPolicy) -> None:
    """The spend alone changing is the watchdog's to write (each tick): a durable rewrite per
    batch was most of the worker's cost per request."""
    path = policy.kill.path
    policy.submit(_served(0.3))
    assert policy.flush(10)
    first = stamp(path)
    assert first.size > 0, "the first decision of the month is written"
    for _ in range(2):
        policy.submit(_served(0.3))
        assert policy.flush(10)
    assert stamp(path) == first, "0.9 of 1.0: no decision, no write"
    policy.submit(_served(0.3))  # 1.2 of 1.0: the switch turns on
    assert policy.flush(10)
    state = policy.kill.state()
    assert state.active
    assert state.current_spend == pytest.approx(1.2)
    policy.io.close()
