"""Reprovision after failure: a host broken in every way at once is repaired by one deploy,
and the whole suite holds again."""

from __future__ import annotations

import pytest

from tests.host.conftest import HostEnv, wait_ready
from tests.host.linux_suite import *  # noqa: F403 - the suite's tests run here
from tests.support.deploy_run import breakage

pytestmark = pytest.mark.host


def _break(env: HostEnv) -> None:
    for command in breakage(env.stack, env.layout):
        out = env.run(command)
        assert out.rc == 0, f"{command}: {out.stderr}"
    assert env.run(f"{env.layout.python} -c 'import litellm'").rc != 0


@pytest.fixture(scope="module")
def env(host_env: HostEnv) -> HostEnv:
    _break(host_env)
    repaired = host_env.deploy().check()
    print(f"reprovision deploy: {repaired.seconds:.1f} s, {repaired.changed} changes")
    assert repaired.changed > 0
    wait_ready(host_env)
    return host_env


def test_the_repair_is_itself_idempotent(env: HostEnv) -> None:
    assert env.deploy().check().changed == 0
