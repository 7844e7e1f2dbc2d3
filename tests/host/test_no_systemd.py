"""Hosts whose PID 1 is not systemd (a container; WSL before ``systemd=true``): the deploy
installs the watchdog's init script, the watchdog supervises the LiteLLM proxy itself, and
Debian's Prometheus and Alertmanager run from their init scripts. Still a running stack,
still idempotent, and a killed proxy comes back without any init system's help.

Two such hosts are deployed in ONE pyinfra run, as a fleet is: pyinfra prepares hosts in
concurrent greenlets, which share one wheelhouse build."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from monitoring.watchdog.recovery import PROXY_LOG_FILE, PROXY_PID_FILE
from tests.host.conftest import STACK_FILE, guest_get, parse_guest_get, unavailable
from tests.support.deploy_run import DeployResult, fake_key, run_deploy, write_inventory
from tests.support.polling import until
from tests.support.testhost import TestHost, booted_hosts

pytestmark = pytest.mark.host


@dataclass
class Plain:
    guest: TestHost
    others: list[TestHost]
    stack: Stack
    layout: Layout
    inventory: Path
    env: dict[str, str]
    first: DeployResult

    def sh(self, command: str) -> str:
        done = self.guest.ssh(command)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        return done.stdout

    def http_status(self, url: str) -> int:
        return parse_guest_get(self.guest.ssh(guest_get(url, timeout=3)).stdout)[0]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    stack = load_stack(STACK_FILE)
    env = {name: fake_key("sk-") for name in stack.secret_env_names()}
    with contextlib.ExitStack() as cleanup:
        guest, *others = cleanup.enter_context(booted_hosts(2, systemd=False))
        inventory = write_inventory(tmp_path_factory.mktemp("plain") / "inventory.py",
                                    [guest, *others])
        first = run_deploy(inventory, env).check()
        yield Plain(guest, others, stack, layout(stack, "linux"), inventory, env, first)


def _proxy_up(plain: Plain) -> bool:
    return plain.http_status(f"{plain.stack.proxy_url}/health/liveliness") == 200


def test_one_run_provisioned_every_host_of_the_fleet(plain: Plain) -> None:
    assert plain.first.output.count("stack valid") == 1 + len(plain.others)
    for other in plain.others:
        peer = Plain(other, [], plain.stack, plain.layout, plain.inventory, plain.env,
                     plain.first)
        until(functools.partial(_proxy_up, peer), 120, f"the proxy of {other.name} answering")


def test_pid1_is_not_systemd_and_the_deploy_said_so(plain: Plain) -> None:
    assert plain.sh("test -d /run/systemd/system && echo yes || echo no").strip() == "no"
    assert "systemd is not PID 1 here" in plain.first.output


def test_the_stack_runs_from_init_scripts(plain: Plain) -> None:
    watchdog = plain.stack.linux.units.watchdog.removesuffix(".service")
    for script in (watchdog, "prometheus", "prometheus-alertmanager"):
        plain.sh(f"/etc/init.d/{script} status")
    until(lambda: _proxy_up(plain), 120, "the proxy, started by the watchdog, answering")
    am = plain.stack.alertmanager.listen
    assert plain.http_status(f"http://{am.host}:{am.port}/-/ready") == 200
    # The proxy runs with the rendered --log_config: its log has its start-up lines but not a
    # line per probe request (the watchdog probes it every second).
    log = plain.sh(f"cat {plain.layout.log(PROXY_LOG_FILE)}")
    assert "Uvicorn running" in log or "Application startup complete" in log
    assert "GET /health/liveliness" not in log
    assert plain.guest.ssh(f"test -e /etc/systemd/system/{plain.stack.linux.units.litellm}"
                           ).returncode != 0  # no units on a host that cannot use them


def test_a_second_deploy_changes_nothing(plain: Plain) -> None:
    again = run_deploy(plain.inventory, plain.env).check()
    assert again.changed == 0, again.output[-5000:]


def test_the_watchdog_restarts_a_killed_proxy(plain: Plain) -> None:
    until(lambda: _proxy_up(plain), 120, "the proxy up before the kill")
    pid_file = plain.layout.state(PROXY_PID_FILE)
    before = plain.sh(f"cat {pid_file}").strip()
    plain.sh(f"kill -9 {before}")

    def restarted() -> bool:
        now = plain.guest.ssh(f"cat {pid_file}").stdout.strip()
        return bool(now) and now != before and _proxy_up(plain)

    until(restarted, 180, "a new proxy process started by the watchdog and answering")
    events = plain.sh(f"cat {plain.layout.log(plain.stack.watchdog.event_log)}")
    assert "RESTART" in events


def test_a_changed_proxy_config_restarts_the_proxy(plain: Plain, tmp_path: Path) -> None:
    """Without systemd a config change restarts the pair: the init script stops the proxy
    the watchdog started (its PID file is the watchdog's), and the new watchdog starts a
    proxy that reads the new config."""
    until(lambda: _proxy_up(plain), 120, "the proxy up before the change")
    pid_file = plain.layout.state(PROXY_PID_FILE)
    before = plain.sh(f"cat {pid_file}").strip()
    changed = {"stack": {"litellm": {"request_timeout": "61s"}}}
    inventory = write_inventory(tmp_path / "inventory.py", [plain.guest, *plain.others],
                                changed)
    run_deploy(inventory, plain.env).check()
    assert plain.guest.ssh(f"kill -0 {before}").returncode != 0, "the old proxy still runs"
    until(lambda: _proxy_up(plain), 120, "the proxy back with the new config")
    assert "61" in plain.sh(f"grep -i timeout {plain.layout.litellm_config}")
    assert run_deploy(inventory, plain.env).check().changed == 0


def test_a_changed_alertmanager_config_is_applied_without_systemd(plain: Plain,
                                                                  tmp_path: Path) -> None:
    """Debian's init script reloads Alertmanager with `start-stop-daemon --name`, which
    cannot match its 24-character name: the deploy restarts it instead, and does not stop."""
    changed = {"stack": {"alertmanager": {"route": {"repeat_interval": "5h"}}}}
    inventory = write_inventory(tmp_path / "inventory.py", [plain.guest, *plain.others],
                                changed)
    result = run_deploy(inventory, plain.env).check()
    assert "restart prometheus-alertmanager" in result.output, result.output
    assert "5h" in plain.sh("grep repeat_interval /etc/prometheus/alertmanager.yml")
    until(lambda: plain.http_status("http://127.0.0.1:9093/-/ready") == 200, 60,
          "Alertmanager ready on its new config")
    assert run_deploy(inventory, plain.env).check().changed == 0


def test_an_older_deploys_root_owned_log_is_handed_to_the_service_user(plain: Plain) -> None:
    """Earlier init scripts appended to the watchdog's log as root; this one opens it as the
    service user, who could not append to a root-owned file: the deploy hands it over."""
    log = plain.layout.log("watchdog.log")
    plain.sh(f"chown root:root {log} && chmod 644 {log}")
    assert run_deploy(plain.inventory, plain.env).check().changed >= 1
    user = plain.stack.linux.user
    assert plain.sh(f"stat -c '%U %a' {log}").split() == [user, "640"]
    script = f"/etc/init.d/{plain.stack.linux.units.watchdog.removesuffix('.service')}"
    until(lambda: plain.guest.ssh(f"{script} status").returncode == 0, 60,
          "the watchdog running after the deploy")
    assert run_deploy(plain.inventory, plain.env).check().changed == 0
