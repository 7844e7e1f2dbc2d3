"""A second deploy changes nothing, and ``--dry`` proposes nothing."""

from __future__ import annotations

import pytest

from tests.host.conftest import HostEnv

pytestmark = pytest.mark.host


def test_a_second_deploy_changes_nothing(host_env: HostEnv) -> None:
    again = host_env.deploy().check()
    assert again.changed == 0, again.output[-6000:]


def test_dry_run_proposes_no_change(host_env: HostEnv) -> None:
    dry = host_env.deploy(dry=True).check()
    assert dry.proposed == 0, dry.output[-6000:]


def test_no_service_was_restarted_by_a_no_op_deploy(host_env: HostEnv) -> None:
    units = [host_env.stack.linux.units.litellm, host_env.stack.linux.units.watchdog,
             "prometheus.service", "prometheus-alertmanager.service"]

    def pids() -> list[str]:
        return [host_env.run(f"systemctl show -p MainPID --value {unit}").stdout.strip()
                for unit in units]

    before = pids()
    host_env.deploy().check()
    assert pids() == before
    assert "0" not in before


def test_dry_run_shows_a_drift_and_changes_nothing(host_env: HostEnv) -> None:
    config = host_env.layout.alertmanager_config
    host_env.run(f"chmod 600 {config}")
    dry = host_env.deploy(dry=True).check()
    assert dry.proposed == 1, dry.output[-6000:]
    assert host_env.host.file(config).mode == 0o600  # --dry touched nothing
    fixed = host_env.deploy().check()
    assert fixed.changed >= 1  # the chmod (and Alertmanager's reload: its config changed)
    assert host_env.host.file(config).mode == 0o640  # root:prometheus: it may hold a token
    assert host_env.deploy().check().changed == 0
