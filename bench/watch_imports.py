"""What importing ``provider-fallback watch``'s entry point costs, package by package (by hand).

    python bench/watch_imports.py [--repo DIR] [--python PY] [--module monitoring.cli] [--top 30]

Issue 13, B9: the watchdog's goal is 60 MB of RSS, and most of it is code imported at start-up.
For any checkout (``--repo``, first on ``PYTHONPATH``), a fresh interpreter of the host venv
(``/opt/provider-fallback/venv`` when this machine has one, the locked host dependencies)
imports ``--module`` and every module's first import is timed by RSS and by tracemalloc,
EXCLUSIVE of the modules it imports in turn; the figures are summed per top-level package
(per module for ``monitoring``), with the ``monitoring`` module that first pulled each package
in. RSS per import is coarse (pages, arenas), tracemalloc exact for Python's own allocations;
``python -X importtime`` gives the times. Figures: bench/results/watchdog-memory.txt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HOST_PYTHON = Path("/opt/provider-fallback/venv/bin/python")
HERE = Path(__file__).resolve()

# Runs in the measured interpreter: no project import before the hook is in place.
CHILD = r"""
import collections, importlib, importlib._bootstrap as bootstrap, os, sys, tracemalloc

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE

tracemalloc.start()
real = bootstrap._find_and_load
frames, names = [], []
own = collections.Counter()
first = {}

def find_and_load(name, import_):
    top = name if name.startswith("monitoring") else name.split(".")[0]
    if top not in first:
        first[top] = next((n for n in reversed(names) if n.startswith("monitoring")), "")
    names.append(name)
    frames.append([rss(), tracemalloc.get_traced_memory()[0], 0, 0])
    try:
        return real(name, import_)
    finally:
        names.pop()
        r0, t0, r_children, t_children = frames.pop()
        r, t = rss() - r0, tracemalloc.get_traced_memory()[0] - t0
        own[(top, "rss")] += r - r_children
        own[(top, "traced")] += t - t_children
        if frames:
            frames[-1][2] += r
            frames[-1][3] += t

start = rss()
bootstrap._find_and_load = find_and_load
importlib.import_module(sys.argv[1])
bootstrap._find_and_load = real
tracemalloc.stop()
tops = sorted({k for k, _ in own}, key=lambda k: -own[(k, "traced")])
print(f"{'RSS MB':>7} {'traced MB':>9}  {'package':32} first imported by")
for top in tops[:int(sys.argv[2])]:
    print(f"{own[(top, 'rss')] / 2**20:7.2f} {own[(top, 'traced')] / 2**20:9.2f}  "
          f"{top:32} {first[top]}")
print(f"RSS {start / 2**20:.1f} MB at start, {rss() / 2**20:.1f} MB after "
      f"(tracemalloc's own tables included); {len(sys.modules)} modules")
print("loaded: " + ", ".join(m for m in ("rich", "click", "pygments", "ruamel", "tomlkit",
                                          "packaging", "psutil", "filelock", "yaml")
                             if m in sys.modules))
"""


def rss_alone(python: str, repo: Path, module: str) -> float:
    """RSS in MB after importing ``module`` without the hook or tracemalloc (the real cost)."""
    code = (f"import os, {module}\n"
            "print(int(open('/proc/self/statm').read().split()[1]) * "
            "os.sysconf('SC_PAGE_SIZE') / 2**20)")
    done = subprocess.run([python, "-c", code], cwd=repo, env=_env(repo), check=True,
                          capture_output=True, text=True)
    return float(done.stdout)


def _env(repo: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(repo),
            "PYTHONDONTWRITEBYTECODE": "1"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repo", default=str(HERE.parents[1]), help="the checkout to measure")
    p.add_argument("--python", help="the interpreter (default: the host venv's)")
    p.add_argument("--module", default="monitoring.cli", help="what to import")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--runs", type=int, default=5, help="plain imports for the RSS median")
    args = p.parse_args(argv)
    repo = Path(args.repo).resolve()
    python = args.python or str(HOST_PYTHON if HOST_PYTHON.exists() else sys.executable)
    print(f"repo {repo}, python {python}, module {args.module}")
    # ``-c`` puts the working directory first on sys.path: run in the checkout measured.
    subprocess.run([python, "-c", CHILD, args.module, str(args.top)], cwd=repo, env=_env(repo),
                   check=True)
    runs = sorted(rss_alone(python, repo, args.module) for _ in range(args.runs))
    print(f"RSS after `import {args.module}` alone: median {runs[len(runs) // 2]:.1f} MB "
          f"of {args.runs} runs ({runs[0]:.1f}-{runs[-1]:.1f})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
