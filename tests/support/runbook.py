"""The runbook's own code, where tests check that its readers still work on our files."""

from __future__ import annotations

from pathlib import Path


def runbook_total(path: str | Path) -> float:
    """Runbook 9.1's CostMonitor._load_costs, verbatim in substance: the sum of every
    ``$<amount>`` token of the cost log."""
    total = 0.0
    with open(path) as f:
        for line in f:
            if "$" in line:
                for part in line.strip().split():
                    if part.startswith("$"):
                        total += float(part.replace("$", ""))
    return total
