"""Secrets through an SSH user that is not root, with sudo (issue 12, M2): the REAL pyinfra
SSH connector, real sudo, a real Debian guest, and another local user (``mallory``) who
pre-created the file pyinfra's upload would have used, ``/tmp/pyinfra-<sha1 of the name>``.

The bundle's ``put_bytes`` sends the bytes on the command's stdin, so the secret never
passes through /tmp: the planted file stays empty, and the deploy does not trip over it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.conftest import unavailable
from tests.support.deploy_run import PYINFRA, REPO, fake_key
from tests.support.testhost import TestHost, booted_hosts

pytestmark = pytest.mark.host

DEST = "/etc/pf-staging-test/secrets.env"
#: pyinfra's temp name for an upload through sudo (Host.get_temp_filename of the staged path).
OLD_NAME = "/tmp/pyinfra-" + hashlib.sha1(f"{DEST}.pf-new".encode()).hexdigest()  # noqa: S324
SETUP = f"""set -e
useradd -m -s /bin/sh deployer
useradd -m -s /bin/sh mallory
install -d -m 700 -o deployer -g deployer ~deployer/.ssh
install -m 600 -o deployer -g deployer /root/.ssh/authorized_keys ~deployer/.ssh/
echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer
chmod 440 /etc/sudoers.d/deployer
su -s /bin/sh mallory -c 'umask 0; : > {OLD_NAME}; chmod 666 {OLD_NAME}'
"""


@pytest.fixture(scope="module")
def guest() -> Iterator[TestHost]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with booted_hosts(1, systemd=False) as (host,):
        done = host.ssh(SETUP)
        assert done.returncode == 0, done.stderr
        yield host


def test_a_secret_through_sudo_never_passes_through_tmp(guest: TestHost,
                                                        tmp_path: Path) -> None:
    secret = fake_key("sk-staged-")
    data = {**guest.pyinfra_data(), "ssh_user": "deployer", "_sudo": True}
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {[(guest.address, data)]!r}\n", encoding="utf-8")
    env = {**os.environ, "PF_TEST_SECRET": secret, "PF_TEST_DEST": DEST}
    done = subprocess.run([str(PYINFRA), "-y", str(inventory),
                           "tests/host/deploys/put_secret.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert secret not in output
    planted = guest.ssh(f"stat -c '%U %s' {OLD_NAME}")
    assert planted.stdout.split() == ["mallory", "0"], "the secret went into mallory's file"
    assert done.returncode == 0, output[-3000:]
    placed = guest.ssh(f"stat -c '%U %G %a' {DEST} && cat {DEST}")
    assert placed.stdout.splitlines() == ["root root 600", secret]
