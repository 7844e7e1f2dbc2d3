"""The cost log: JSON lines the runbook's parser still reads, and crash safety."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from monitoring.proxy.cost_log import CostLedger, CostRecord, append_record, iter_records
from tests.support.runbook import runbook_total

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def record(cost: float, model: str = "gpt-4", **kw: object) -> CostRecord:
    return CostRecord(ts=T0, model=model, served_by=str(kw.get("served_by", model)),
                      provider="openai", tokens_in=12, tokens_out=40, cost_usd=cost,
                      fallback=bool(kw.get("fallback", False)))




def test_a_line_is_json_with_a_dollar_word(tmp_path: Path) -> None:
    path = tmp_path / "provider_costs.log"
    append_record(path, record(0.0123))
    line = path.read_text()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    data = json.loads(line)
    assert data["cost_usd"] == 0.0123
    assert data["ts"] == "2026-11-26T10:00:00Z"
    assert "$0.01230000" in line.split()
    assert runbook_total(path) == 0.0123


def test_a_line_holds_every_field_of_the_record() -> None:
    """to_json spells the fields out (no dataclasses.asdict on the hot path): a field added
    to CostRecord must reach the line too."""
    data = record(0.5, fallback=True).to_json()
    assert set(data) == {f.name for f in dataclasses.fields(CostRecord)} | {"charge"}
    assert CostRecord.from_json(json.loads(record(0.5, fallback=True).line())) == record(
        0.5, fallback=True)


def test_the_runbook_parser_and_ours_agree(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    costs = [0.00009, 0.0, 1.5, 0.000125, 20.41]
    for cost in costs:
        append_record(path, record(cost))
    assert [r.cost_usd for r in iter_records(path)] == costs
    assert abs(runbook_total(path) - sum(costs)) < 1e-9


def test_a_torn_tail_is_never_counted_and_is_cut_before_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    append_record(path, record(1.0))
    whole = record(2.0).line()
    with open(path, "a") as f:  # what a crash in the middle of a line leaves
        f.write(whole[: whole.index("$") + 3])
    assert [r.cost_usd for r in iter_records(path)] == [1.0]
    ledger = CostLedger(path)
    assert [r.cost_usd for r in ledger.refresh()] == [1.0]
    append_record(path, record(3.0))
    assert [r.cost_usd for r in iter_records(path)] == [1.0, 3.0]
    assert runbook_total(path) == 4.0, "the runbook's parser never sees the torn amount"
    assert [r.cost_usd for r in ledger.refresh()] == [3.0]


def test_the_ledger_reads_only_new_lines_and_restarts_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    ledger = CostLedger(path)
    assert ledger.refresh() == []
    append_record(path, record(1.0))
    append_record(path, record(2.0))
    assert len(ledger.refresh()) == 2
    append_record(path, record(3.0))
    assert [r.cost_usd for r in ledger.refresh()] == [3.0]
    path.rename(tmp_path / "c.log.1")
    append_record(path, record(4.0))
    assert [r.cost_usd for r in ledger.refresh()] == [4.0]
    assert [r.cost_usd for r in ledger.records] == [4.0]


def test_the_ledger_reads_a_log_made_anew_with_the_same_inode_from_its_start(
        tmp_path: Path) -> None:
    """A log deleted and created again (same inode back on ext4 and tmpfs) or truncated and
    written again is read from its start, not from the old file's offset."""
    path = tmp_path / "c.log"
    ledger = CostLedger(path)
    append_record(path, record(1.0))
    assert [r.cost_usd for r in ledger.refresh()] == [1.0]
    path.unlink()
    append_record(path, record(2.0))  # as long as the old file
    assert [r.cost_usd for r in ledger.refresh()] == [2.0]
    path.write_bytes(b"")
    append_record(path, record(3.0))
    append_record(path, record(4.0))
    assert [r.cost_usd for r in ledger.refresh()] == [3.0, 4.0]
    assert [r.cost_usd for r in ledger.records] == [3.0, 4.0]


WRITER = """
import sys
from datetime import UTC, datetime
from monitoring.proxy.cost_log import CostRecord, append_record
i = 0
while True:
    append_record(sys.argv[1], CostRecord(ts=datetime.now(UTC), model="gpt-4", served_by="gpt-4",
                  provider="openai", tokens_in=i, tokens_out=1, cost_usd=0.001))
    i += 1
"""


def test_sigkill_mid_write_loses_nothing_counted_and_breaks_no_reader(tmp_path: Path) -> None:
    """A writer appending as fast as it can is SIGKILLed; then a crash mid-line is left on
    top. Every complete line parses, each is counted once, and the next append repairs."""
    path = tmp_path / "c.log"
    repo = Path(__file__).resolve().parents[3]
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=repo,
                             env={**os.environ, "PYTHONPATH": str(repo)})
    deadline = time.monotonic() + 30
    while (not path.exists() or path.read_bytes().count(b"\n") < 200):
        assert time.monotonic() < deadline, "the writer wrote too little"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    raw = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"ts":"2026-11-26T10:00:00Z","model":"gpt-4","cost_usd":0.0')  # torn
    complete = raw.count(b"\n")
    found = list(iter_records(path))
    assert len(found) == complete
    assert [r.tokens_in for r in found] == list(range(complete)), "no line lost or doubled"
    append_record(path, record(0.001))
    after = list(iter_records(path))
    assert len(after) == complete + 1
    assert abs(runbook_total(path) - 0.001 * (complete + 1)) < 1e-9
    assert all(json.loads(line) for line in path.read_text().splitlines())
