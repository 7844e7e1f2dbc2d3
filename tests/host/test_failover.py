"""Failover on the provisioned host: both providers behind the proxy fail; the watchdog
switches the agents' files and logs the runbook's line, Prometheus' ProviderDown goes from
pending to firing; when they recover the agents come back and the alert resolves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitoring.content.rules import PROVIDER_DOWN
from tests.host.conftest import HostEnv
from tests.support.polling import until

pytestmark = pytest.mark.host

FAILING = ("groq", "openrouter")  # every provider of the proxy target's chain


def _agent_file(env: HostEnv) -> str:
    home = env.run(f"getent passwd {env.stack.linux.user} | cut -d: -f6").stdout.strip()
    return f"{home}/.config/kilo/kilo.jsonc"  # the default stack enrolls Kilo Code


def _provider(env: HostEnv, path: str) -> str | None:
    """The target Kilo Code's ``model`` points at: ``pf-<target>/...``, or its gateway."""
    out = env.run(f"cat {path}")
    if out.rc != 0:
        return None
    model = str(json.loads(out.stdout).get("model", ""))
    return model.split("/", 1)[0].removeprefix("pf-") if model.startswith("pf-") else (
        "kilo-code" if model.startswith("kilo/") else None)


def _events(env: HostEnv) -> list[str]:
    path = env.layout.log(env.stack.watchdog.event_log)
    out = env.run(f"cat {path}")
    return out.stdout.splitlines() if out.rc == 0 else []


def _alerts(env: HostEnv) -> dict[str, str]:
    """{provider: state} of the ProviderDown alerts Prometheus holds now."""
    data: Any = env.json(env.url(env.stack.prometheus.listen, "/api/v1/alerts"))
    return {a["labels"].get("provider", ""): a["state"] for a in data["data"]["alerts"]
            if a["labels"]["alertname"] == PROVIDER_DOWN}


def test_failover_alert_and_restore_on_the_host(host_env: HostEnv) -> None:
    env = host_env
    agent = _agent_file(env)
    until(lambda: _provider(env, agent) == "litellm", 60, "agents on the proxy before the fault")
    assert not _alerts(env)
    before = len(_events(env))
    seen: dict[str, list[str]] = {p: [] for p in FAILING}
    try:
        for name in FAILING:
            env.upstreams[name].set_fault(500)

        def switched() -> bool:
            return _provider(env, agent) not in (None, "litellm")

        until(switched, 90, "the agent file switched away from the proxy")
        new = _events(env)[before:]
        assert any("FALLBACK:" in line for line in new), new

        def firing() -> bool:
            for provider, state in _alerts(env).items():
                if provider in seen and (not seen[provider] or seen[provider][-1] != state):
                    seen[provider].append(state)
            return all(states[-1:] == ["firing"] for states in seen.values())

        until(firing, 90, f"{PROVIDER_DOWN} firing for {FAILING}", interval=0.5)
        # Through Prometheus' own API: it was pending before it fired (the `for` clause).
        assert all(states == ["pending", "firing"] for states in seen.values()), seen
    finally:
        for name in FAILING:
            env.upstreams[name].set_fault("ok")
    until(lambda: _provider(env, agent) == "litellm", 120, "the agents restored to the proxy")
    assert any("RESTORED:" in line for line in _events(env)[before:])
    until(lambda: not _alerts(env), 120, f"{PROVIDER_DOWN} resolved")
