"""The checks that prove a provisioned Linux host is right (testinfra, over real SSH).

Every expected value comes from stack.yaml (with the host's overrides), render and the
layout, never repeated here. Imported by the test modules that need a right host: after the
first deploy (test_deploy) and after a reprovision (test_reprovision). Each module provides
an ``env`` fixture: the HostEnv in the state that module wants checked.
"""

from __future__ import annotations

import hashlib
import json
import re

import yaml

from monitoring import metrics
from monitoring.stack.schema import Stack
from tasks.linux.facts import PythonMarkers
from tasks.linux.files import owner
from tasks.wheelhouse import PROJECT, load_pins
from tests.host.conftest import HostEnv

#: The metrics the runbook names (section 8), which the watchdog must export.
RUNBOOK_METRICS = (metrics.FALLBACK_EVENTS, metrics.HEALTH, metrics.LATENCY)


def _services(stack: Stack) -> list[str]:
    return [stack.linux.units.litellm, stack.linux.units.watchdog, "prometheus.service",
            "prometheus-alertmanager.service"]


def test_the_venv_holds_the_pinned_litellm_and_the_whole_lock(env: HostEnv) -> None:
    python = env.layout.python
    out = env.run(f"{python} -I -c 'import importlib.metadata as m, json; print(json.dumps("
                  "{d.metadata[\"Name\"].lower(): d.version for d in m.distributions()}))'")
    assert out.rc == 0, out.stderr
    have = {name.replace("_", "-").replace(".", "-"): v
            for name, v in json.loads(out.stdout).items()}
    assert have["litellm"] == env.stack.litellm.version
    # The host's markers as the deploy reads them (its own fact, run over SSH).
    fact = PythonMarkers()
    out = env.run(fact.command(python="/usr/bin/python3").get_raw_value())
    markers = fact.process(out.stdout.splitlines())
    assert markers is not None
    wrong = {p.name: (p.version, have.get(p.name)) for p in load_pins(env.stack, markers)
             if have.get(p.name) != p.version}
    assert not wrong, f"lock pins missing or at another version (want, have): {wrong}"
    assert PROJECT in have


def test_every_rendered_file_is_in_place_with_owner_mode_and_bytes(env: HostEnv) -> None:
    wrong = []
    for rel, artifact in env.files.items():
        f = env.host.file(artifact.dest)
        user, group = owner(env.stack, artifact)
        if not f.is_file:
            wrong.append(f"{rel}: {artifact.dest} missing")
            continue
        got = (f.sha256sum, f.mode, f.user, f.group)
        want = (hashlib.sha256(artifact.data).hexdigest(), artifact.mode, user, group)
        if got != want:
            wrong.append(f"{rel}: {artifact.dest} is {got}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_the_secrets_file_is_root_only(env: HostEnv) -> None:
    secrets = env.host.file(env.layout.secrets_env)
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o600)


def test_services_are_enabled_and_running(env: HostEnv) -> None:
    for unit in _services(env.stack):
        service = env.host.service(unit)
        assert service.is_enabled, f"{unit} is not enabled"
        assert service.is_running, f"{unit} is not running"


def test_the_services_listen_on_their_configured_addresses_only(env: HostEnv) -> None:
    stack = env.stack
    wanted = {stack.litellm.listen, stack.watchdog.listen, stack.prometheus.listen,
              stack.alertmanager.listen}
    listening = env.host.socket.get_listening_sockets()
    for listen in wanted:
        bound = [s for s in listening if s.startswith("tcp://") and
                 s.rsplit(":", 1)[1] == str(listen.port)]
        assert bound == [f"tcp://{listen.host}:{listen.port}"], (
            f"port {listen.port}: {bound}, want only {listen.host}")


def test_litellm_is_alive_and_serves_exactly_the_stack_models(env: HostEnv) -> None:
    listen = env.stack.litellm.listen
    status, body = env.http(env.url(listen, "/health/liveliness"))
    assert status == 200, body
    models = env.json(env.url(listen, "/v1/models"), auth=True)
    assert {m["id"] for m in models["data"]} == set(env.stack.litellm.models)
    status, _ = env.http(env.url(listen, "/v1/models"))
    assert status == 401  # the master key is required


def test_the_watchdog_exports_the_runbook_metrics(env: HostEnv) -> None:
    status, body = env.http(env.url(env.stack.watchdog.listen, "/metrics"))
    assert status == 200
    for spec in RUNBOOK_METRICS:
        assert re.search(rf"^# TYPE {spec.name} ", body, re.M), f"{spec.name} not exported"
    providers = {m.provider for m in env.stack.litellm.models.values()}
    for provider in providers:
        assert f'{metrics.HEALTH.name}{{provider="{provider}"}}' in body


def test_every_prometheus_target_is_up_and_the_rules_are_loaded(env: HostEnv) -> None:
    prom = env.stack.prometheus.listen
    targets = env.json(env.url(prom, "/api/v1/targets"))["data"]["activeTargets"]
    jobs = {t["labels"]["job"]: t["health"] for t in targets}
    assert set(jobs) >= {metrics.JOB_WATCHDOG, metrics.JOB_LITELLM, metrics.JOB_PROMETHEUS,
                         metrics.JOB_ALERTMANAGER}
    assert set(jobs.values()) == {"up"}, jobs
    groups = env.json(env.url(prom, "/api/v1/rules"))["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    rendered = next(a for rel, a in env.files.items() if rel.startswith("prometheus/rules/"))
    wanted = {r["alert"] for g in yaml.safe_load(rendered.data)["groups"] for r in g["rules"]
              if "alert" in r}
    assert wanted
    assert loaded == wanted


def test_alertmanager_is_ready_and_wired_to_prometheus(env: HostEnv) -> None:
    am = env.stack.alertmanager.listen
    status, body = env.http(env.url(am, "/-/ready"))
    assert status == 200, body
    prom = env.stack.prometheus.listen
    active = env.json(env.url(prom, "/api/v1/alertmanagers"))["data"]["activeAlertmanagers"]
    assert [a["url"] for a in active] == [f"http://{am.host}:{am.port}/api/v2/alerts"]


def test_no_secret_is_in_a_world_readable_file(env: HostEnv) -> None:
    """Every world-readable file of the guest's root file system (-xdev: /proc, /sys, /dev
    and the tmpfs mounts are other file systems)."""
    values = sorted(env.env.values())
    patterns = " ".join(f"-e {v}" for v in values)
    out = env.run("find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o "
                  "-type f -perm -o=r -print0 | xargs -0 grep -l -F " + patterns +
                  " 2>/dev/null || true")
    assert out.stdout.strip() == "", f"world-readable files holding a key: {out.stdout}"
    # ...and the one file that holds them does hold them (the check above can find them).
    secrets = env.run(f"grep -c -F -e {values[0]} {env.layout.secrets_env}")
    assert secrets.stdout.strip() == "1"


def test_no_secret_is_in_pyinfra_output(env: HostEnv) -> None:
    for result in env.deploys:
        for value in env.env.values():
            assert value not in result.output
