"""``provider-fallback watch`` never imports the big libraries it does not use (issue 13, B9).

The daemon's goal is 60 MB of RSS; each library below costs it megabytes at import alone
(bench/results/watchdog-memory.txt) and serves only the CLI's other commands or a file format
of an agent the host may not enroll. They are imported where they are used (rich by the
functions that print, ruamel.yaml and tomlkit by the formats' methods that parse), and httpx's
command-line client is kept out (monitoring/watchdog/__init__.py).

The real command runs in its own process under ``python -X importtime``, which logs the first
import of every module, at start-up or later in a tick, to stderr. It runs against the
session's real proxy until it has seen the proxy answer several times and served a scrape,
so the log holds what a tick imports too (httpx's transport, the agents' engine, the exporter).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from monitoring.host_config import Listen
from monitoring.watchdog.probes import PROXY_ROUTE
from monitoring.watchdog.state import load_state
from tests.monitoring.conftest import LiveStack
from tests.support.litellm_proxy import free_port
from tests.support.polling import until
from tests.support.watchdog_harness import fast_config, seed_agent_file

REPO = Path(__file__).resolve().parents[3]

#: Modules (and their submodules) `watch` must not import, and why it does not need them. RSS
#: at import in the host venv (bench/watch_imports.py, bench/results/watchdog-memory.txt).
HEAVY = {
    "rich": "the other commands' tables and colours (monitoring/console.py): 3.9 MB",
    "click": "httpx's command-line client (httpx._main), with pygments and rich: 2.6 MB",
    "pygments": "httpx's command-line client (httpx._main)",
    "ruamel": "YAML agent files (Aider, Continue), parsed only when one is enrolled: 1.6 MB",
    "tomlkit": "TOML agent files (Codex), parsed only when one is enrolled: 0.8 MB",
    "yaml": "PyYAML: stack.yaml, read on the controller (monitoring.stack.reader)",
    "jinja2": "templates, rendered on the controller",
    "pyinfra": "the deploy, on the controller",
    "tasks": "the controller's code (never on a host)",
    "monitoring.stack.schema": "stack.yaml's pydantic models, built at import: 2.8 MB "
                               "(the watch needs monitoring/stack/scalars.py only)",
    "monitoring.stack.load": "reading stack.yaml, on the controller",
}
#: Modules that must be in the log: the run did reach a tick's requests and the parse works.
REACHED = ("monitoring.watchdog.loop", "monitoring.agents.engine", "httpx", "httpcore",
           "prometheus_client")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


def imported_by_watch(live: LiveStack, tmp_path: Path) -> tuple[set[str], str]:
    """Every module the real ``watch`` imported in a run that saw the proxy answer 3 times
    and served one scrape; and its log."""
    config = fast_config(live.config, tmp_path,
                         listen=Listen(host="127.0.0.1", port=free_port()))
    path = tmp_path / "watchdog.json"
    path.write_text(config.model_dump_json(indent=2))
    seed_agent_file(config)
    env = {**os.environ, **live.env, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "monitoring.cli",
                             "watch", "--config", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[datetime] = []

    def answered_three_times() -> bool:
        try:
            state = load_state(config.paths.state_file).state
        except (OSError, ValueError):
            return False
        success = state.route(PROXY_ROUTE).last_success
        if success is not None and success not in seen:
            seen.append(success)
        return len(seen) >= 3

    try:
        until(answered_three_times, 60, "three answers of the proxy seen by the watchdog",
              interval=0.1)
        scrape = httpx.get(f"http://127.0.0.1:{config.listen.port}/metrics", timeout=10)
        assert scrape.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    modules = {m.group(1) for line in err.splitlines() if (m := IMPORT_LINE.match(line))}
    return modules, err


def heavy_among(modules: set[str]) -> list[str]:
    return sorted(name for name in HEAVY
                  if any(m == name or m.startswith(name + ".") for m in modules))


def test_the_entry_point_imports_none_of_them() -> None:
    """The quick check, without a proxy: what ``import monitoring.cli`` loads."""
    done = subprocess.run([sys.executable, "-c", "import sys, monitoring.cli; "
                           "print('\\n'.join(sys.modules))"], cwd=REPO, check=True,
                          capture_output=True, text=True)
    modules = set(done.stdout.split())
    assert "monitoring.watchdog.loop" in modules
    heavy = heavy_among(modules)
    assert not heavy, "monitoring.cli imports " + "; ".join(f"{m} ({HEAVY[m]})" for m in heavy)


@pytest.mark.live
def test_watch_imports_none_of_them_in_its_ticks(live: LiveStack, tmp_path: Path) -> None:
    modules, log = imported_by_watch(live, tmp_path)
    for name in REACHED:
        assert name in modules, f"{name} not imported: the run did not get far\n{log[-2000:]}"
    # httpx._main itself is logged (its import is attempted, and refused); what it would
    # load (click, pygments, rich) is not.
    heavy = heavy_among(modules)
    assert not heavy, "watch imported " + "; ".join(f"{m} ({HEAVY[m]})" for m in heavy)
