"""The first deploy of a bare host: the whole suite must hold right after it."""

from __future__ import annotations

import pytest

from tests.host.conftest import HostEnv
from tests.host.linux_suite import *  # noqa: F403 - the suite's tests run here

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def env(host_env: HostEnv) -> HostEnv:
    return host_env


def test_the_first_deploy_changed_the_host(env: HostEnv) -> None:
    assert env.first_deploy.changed > 10
