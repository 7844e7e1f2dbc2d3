"""One real throwaway Debian host with systemd, provisioned over SSH by the real deploy.

The session boots it (tests/support/testhost.py), starts the fake providers on this
machine's end of its veth, and runs ``pyinfra INVENTORY deploy.py`` once; the modules here
then check it, deploy again, break it, and make it fail over. Everything is torn down at the
end, also when a test fails.

The stack is the default one with two kinds of change, given as host data exactly as a user
would: the providers' ``api_base`` point at the fakes, and the waits are cut down so that a
failover and an alert happen in seconds (probe intervals, dwell, scrape interval, ``for``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import testinfra

from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from tasks.linux.files import deployed
from tasks.render import render
from tasks.render.common import Rendered
from tests.support.deploy_run import DeployResult, fake_key, run_deploy, write_inventory
from tests.support.fake_upstream import FakeUpstream
from tests.support.polling import until
from tests.support.testhost import TestHost, booted_hosts

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = REPO / "inventory" / "stack.yaml"
#: Cut-down waits: a provider is probed every 2 s, opens after 2 failures, restores after
#: 2 successes and 5 s of dwell; Prometheus scrapes and evaluates every 2 s; ProviderDown
#: fires after 10 s.
FAST: dict[str, Any] = {
    "watchdog": {"provider_probe_interval": "2s", "min_dwell": "5s", "success_threshold": 2,
                 "half_open_after": "2s"},
    "prometheus": {"scrape_interval": "2s", "evaluation_interval": "2s"},
    "alerts": {"provider_down_for": "10s"},
}
#: The providers of the default stack, each at a fake of its own (paid ones share one).
FAKE_OF = {"groq": "groq", "openrouter": "openrouter", "google": "paid", "openai": "paid"}


def unavailable() -> str | None:
    """Why the host tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "the host tests need root (network namespaces, overlay mounts, systemd-nspawn)"
    if not Path("/proc/filesystems").read_text().count("overlay"):
        return "the kernel has no overlayfs for the test host's copy-on-write root"
    return None


#: GET from inside a guest with its own python3 (a bare host has no curl): prints the status
#: on the first line, then the body. With a variable name, the bearer token is read there from
#: the 0600 secrets file, so a key never crosses a command line.
_GUEST_GET = (
    "import sys, urllib.request, urllib.error\n"
    "url, env_name, secrets, timeout = sys.argv[1:5]\n"
    "headers = {}\n"
    "if env_name:\n"
    "    for line in open(secrets):\n"
    "        name, _, value = line.strip().partition('=')\n"
    "        if name == env_name:\n"
    "            headers['Authorization'] = 'Bearer ' + value.strip('\"')\n"
    "req = urllib.request.Request(url, headers=headers)\n"
    "try:\n"
    "    with urllib.request.urlopen(req, timeout=float(timeout)) as r:\n"
    "        status, body = r.status, r.read()\n"
    "except urllib.error.HTTPError as e:\n"
    "    status, body = e.code, e.read()\n"
    "except OSError as e:\n"
    "    status, body = 0, str(e).encode()\n"
    "print(status)\n"
    "sys.stdout.write(body.decode('utf-8', 'replace'))\n")


def guest_get(url: str, key_env: str = "", secrets: str = "", timeout: float = 5) -> str:
    """The shell command that GETs ``url`` inside a guest (see :func:`parse_guest_get`)."""
    return " ".join(shlex.quote(a) for a in (
        "python3", "-c", _GUEST_GET, url, key_env, secrets, str(timeout)))


def parse_guest_get(stdout: str) -> tuple[int, str]:
    """(status, body) printed by :func:`guest_get`; status 0 when nothing answered."""
    status, _, body = stdout.partition("\n")
    return int(status or 0), body


@dataclass
class HostEnv:
    """The provisioned test host and everything its checks derive their expectations from."""

    guest: TestHost
    host: Any  # testinfra.host.Host
    stack: Stack
    layout: Layout
    rendered: Rendered
    env: dict[str, str]
    inventory: Path
    upstreams: dict[str, FakeUpstream]
    first_deploy: DeployResult
    deploys: list[DeployResult]

    @property
    def files(self) -> Rendered:
        """What render says this host must hold (systemd host: units, no init script)."""
        return deployed(self.rendered, systemd_host=True)

    def deploy(self, *, dry: bool = False) -> DeployResult:
        result = run_deploy(self.inventory, self.env, dry=dry)
        self.deploys.append(result)
        return result

    def run(self, command: str) -> Any:
        return self.host.run(command)

    def http(self, url: str, *, auth: bool = False, timeout: float = 5) -> tuple[int, str]:
        """GET ``url`` from inside the guest; with ``auth`` the master key is read there from
        the 0600 secrets file (it never crosses a command line)."""
        key_env = self.stack.litellm.master_key_env if auth else ""
        out = self.host.run(guest_get(url, key_env, self.layout.secrets_env or "", timeout))
        return parse_guest_get(out.stdout)

    def json(self, url: str, *, auth: bool = False) -> Any:
        status, body = self.http(url, auth=auth)
        assert status == 200, f"GET {url}: {status} {body[:300]}"
        return json.loads(body)

    def url(self, listen: Any, path: str) -> str:
        return f"{listen.url.rstrip('/')}{path}"


def wait_ready(env: HostEnv, timeout: float = 180) -> None:
    """After a deploy: the proxy answers and every Prometheus target is up."""
    stack = env.stack
    until(lambda: env.http(env.url(stack.litellm.listen, "/health/liveliness"))[0] == 200,
          timeout, "LiteLLM's /health/liveliness answering 200")
    prom = stack.prometheus.listen

    def all_up() -> bool:
        targets = env.json(env.url(prom, "/api/v1/targets"))["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    until(all_up, timeout, "every Prometheus target up")


def pinned_testinfra_host(guest: TestHost) -> Any:
    """A testinfra host over paramiko with the guest's host key PINNED.

    testinfra 10.2's paramiko backend ignores UserKnownHostsFile and accepts any host key
    (WarningPolicy); it gets a client made here instead: the known_hosts file of the test
    host and RejectPolicy, so a wrong key fails the connection.
    """
    host = testinfra.get_host(guest.testinfra_url(), ssh_config=str(guest.ssh_config))
    client = paramiko.SSHClient()
    client.load_host_keys(str(guest.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(guest.address, username="root", key_filename=str(guest.rootfs.ssh_key),
                   allow_agent=False, look_for_keys=False, timeout=10)
    host.backend.__dict__["client"] = client  # the backend's cached_property
    return host


@pytest.fixture(scope="session")
def host_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostEnv]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    base = load_stack(STACK_FILE)
    keys = {"GROQ_API_KEY": fake_key("gsk_"), "OPENROUTER_API_KEY": fake_key("sk-or-v1-"),
            "GEMINI_API_KEY": fake_key("AIza"), "OPENAI_API_KEY": fake_key("sk-proj-"),
            base.litellm.master_key_env: fake_key("sk-master-")}
    with contextlib.ExitStack() as cleanup:
        (guest,) = cleanup.enter_context(booted_hosts(1))
        models = {m.upstream_model: m.provider for m in base.litellm.models.values()}
        upstreams: dict[str, FakeUpstream] = {}
        for fake in dict.fromkeys(FAKE_OF.values()):
            served = [model for model, provider in models.items() if FAKE_OF[provider] == fake]
            key = keys.get(f"{fake.upper()}_API_KEY")  # the paid fake requires no key
            upstreams[fake] = cleanup.enter_context(
                FakeUpstream(host=guest.gateway, models=served, api_key=key))
        overrides = {**FAST, "litellm": {"models": {
            alias: {"api_base": upstreams[FAKE_OF[m.provider]].api_base}
            for alias, m in base.litellm.models.items()}}}
        stack = load_stack(STACK_FILE, overrides)
        workdir = tmp_path_factory.mktemp("host")
        inventory = write_inventory(workdir / "inventory.py", [guest], {"stack": overrides})
        first = run_deploy(inventory, keys)
        # The guest's console and pyinfra's output, kept for a failing run.
        (workdir / "first-deploy.log").write_text(first.output)
        first.check()
        host = pinned_testinfra_host(guest)
        env = HostEnv(guest=guest, host=host, stack=stack, layout=layout(stack, "linux"),
                      rendered=render(stack, "linux", keys), env=keys, inventory=inventory,
                      upstreams=upstreams, first_deploy=first, deploys=[first])
        wait_ready(env)
        yield env
