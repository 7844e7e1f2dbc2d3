"""Deploy benchmark (run by hand, as root): first deploy, no-op deploy, reprovision, fleet.

    python -m bench.deploy_bench [--runs 3] [--fleet 1,2,4] [--json bench/results/deploy.json]

Everything is real: throwaway Debian hosts booted with systemd-nspawn (tests/support/
testhost.py), the real ``pyinfra INVENTORY deploy.py`` over SSH, apt through a local cache,
the hash-pinned wheelhouse pushed from this controller. The default stack is deployed (its
providers unreachable: no traffic is measured here, only provisioning).

Measured, each ``--runs`` times, medians reported:
- first deploy of a bare host (a fresh boot each run; the controller's wheelhouse and the
  apt cache are warm after the first run, as they are for a user's second host);
- no-op deploy (nothing to change);
- reprovision: the host broken in every way of the reprovision test, then one deploy;
- fleet: 1, 2 and 4 hosts in ONE pyinfra run (first deploy, then no-op).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from tests.support.deploy_run import breakage, fake_key, run_deploy, write_inventory
from tests.support.testhost import booted_hosts

REPO = Path(__file__).resolve().parent.parent


def _keys() -> dict[str, str]:
    stack = load_stack(REPO / "inventory" / "stack.yaml")
    return {name: fake_key("bench-") for name in stack.secret_env_names()}


def single_host(runs: int, keys: dict[str, str]) -> dict[str, list[float]]:
    stack = load_stack(REPO / "inventory" / "stack.yaml")
    lay = layout(stack, "linux")
    out: dict[str, list[float]] = {"first": [], "noop": [], "reprovision": []}
    for run in range(runs):
        with booted_hosts(1) as hosts, tempfile.TemporaryDirectory() as tmp:
            inventory = write_inventory(Path(tmp) / "inventory.py", hosts)
            first = run_deploy(inventory, keys).check()
            out["first"].append(first.seconds)
            noop = run_deploy(inventory, keys).check()
            assert noop.changed == 0, noop.output[-3000:]
            out["noop"].append(noop.seconds)
            for command in breakage(stack, lay):
                done = hosts[0].ssh(command)
                assert done.returncode == 0, f"{command}: {done.stderr}"
            repaired = run_deploy(inventory, keys).check()
            out["reprovision"].append(repaired.seconds)
            print(f"run {run + 1}: first {first.seconds:.1f} s, no-op {noop.seconds:.1f} s, "
                  f"reprovision {repaired.seconds:.1f} s", flush=True)
    return out


def fleet(sizes: list[int], keys: dict[str, str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for size in sizes:
        with booted_hosts(size) as hosts, tempfile.TemporaryDirectory() as tmp:
            inventory = write_inventory(Path(tmp) / "inventory.py", hosts)
            first = run_deploy(inventory, keys, timeout=3600).check()
            noop = run_deploy(inventory, keys).check()
            assert noop.changed == 0, noop.output[-3000:]
            out[str(size)] = {"first": first.seconds, "noop": noop.seconds}
            print(f"fleet of {size}: first {first.seconds:.1f} s, no-op {noop.seconds:.1f} s",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deploy_bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fleet", default="1,2,4")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    keys = _keys()
    single = single_host(args.runs, keys) if args.runs > 0 else {}
    sizes = [int(n) for n in args.fleet.split(",") if n]
    fleet_times = fleet(sizes, keys)
    result: dict[str, Any] = {
        "runs": args.runs,
        "median_s": {name: round(statistics.median(v), 1) for name, v in single.items()},
        "all_s": {name: [round(x, 1) for x in v] for name, v in single.items()},
        "fleet_s": {n: {k: round(v, 1) for k, v in t.items()} for n, t in fleet_times.items()},
    }
    one = fleet_times.get("1", {}).get("first")
    if one:
        result["fleet_ratio_vs_1"] = {n: round(t["first"] / one, 2)
                                      for n, t in fleet_times.items()}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
