"""``make deploy`` on this machine (pyinfra @local, no systemd as PID 1): checked when CI ran
it first (``.ci/run`` sets PF_LOCAL_DEPLOYED=1); skipped, with that reason, otherwise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from monitoring.stack.layout import layout
from monitoring.stack.load import load_stack
from tests.host.conftest import STACK_FILE
from tests.support.deploy_run import REPO, run_deploy
from tests.support.polling import until

pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(os.environ.get("PF_LOCAL_DEPLOYED") != "1",
                       reason="`make deploy` did not run on this machine first (PF_LOCAL_DEPLOYED"
                              " is set by .ci/run after it)"),
]

STACK = load_stack(STACK_FILE)
LAYOUT = layout(STACK, "linux")


def test_the_local_stack_runs_from_init_scripts() -> None:
    watchdog = STACK.linux.units.watchdog.removesuffix(".service")
    for script in (watchdog, "prometheus", "prometheus-alertmanager"):
        done = subprocess.run([f"/etc/init.d/{script}", "status"], capture_output=True,
                              check=False)
        assert done.returncode == 0, f"{script}: {done.stdout!r}"
    until(lambda: httpx.get(f"{STACK.proxy_url}/health/liveliness", timeout=2).status_code
          == 200, 120, "the proxy (supervised by the watchdog) answering")
    prom = STACK.prometheus.listen
    until(lambda: httpx.get(f"http://{prom.host}:{prom.port}/-/ready", timeout=2)
          .status_code == 200, 60, "Prometheus ready")
    am = STACK.alertmanager.listen
    assert httpx.get(f"http://{am.host}:{am.port}/-/ready", timeout=5).status_code == 200


def test_status_tells_the_truth_no_provider_is_reachable() -> None:
    cli = Path(LAYOUT.watchdog_bin)

    def reported() -> str | None:
        done = subprocess.run([str(cli), "status", "--config", LAYOUT.watchdog_config],
                              capture_output=True, text=True, check=False)
        return done.stdout if "failed" in done.stdout else None

    out = until(reported, 120, "status reporting the providers as failed")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.split() and line.split()[0] in {m.provider for m in
                                                    STACK.litellm.models.values()}}
    providers = {m.provider for m in STACK.litellm.models.values()}
    assert set(rows) == providers
    assert set(rows.values()) <= {"failed", "suspect"}, rows  # no key and no internet here


def test_a_second_make_deploy_changes_nothing() -> None:
    again = run_deploy(REPO / "inventory" / "local.py", {}).check()
    assert again.changed == 0, again.output[-5000:]
