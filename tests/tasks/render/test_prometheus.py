"""Render of Prometheus, its rules, Alertmanager and Debian's ARGS files.

Where each file goes, that it is deterministic, that a threshold change touches only its rule,
that no secret from the environment reaches any of them, and that the ARGS lines carry flags
the real Debian binaries accept.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.content import rules
from monitoring.stack.layout import TARGET_OSES, TargetOS, layout
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import prometheus, render
from tasks.render.common import Rendered
from tests.conftest import STACK_FILE, write_tree

YAML_FILES = (prometheus.PROMETHEUS_REL, prometheus.RULES_REL, prometheus.ALERTMANAGER_REL)
DEFAULT_FILES = (prometheus.DEFAULT_PROMETHEUS_REL, prometheus.DEFAULT_ALERTMANAGER_REL)

NOTIFY: dict[str, Any] = {"alertmanager": {"receivers": {
    "webhook": {"url": "https://hooks.example.com/provider-fallback"},
    "email": {"enabled": True, "to": "ops@example.com", "sender": "alerts@example.com",
              "smarthost": "smtp.example.com:587", "auth_username": "alerts@example.com",
              "auth_password_env": "SMTP_PASSWORD"},
}}}


def stack_with(overrides: dict[str, Any] | None = None) -> Stack:
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


def arts(stack: Stack, target: TargetOS) -> Rendered:
    return prometheus.artifacts(stack, layout(stack, target))


def args_of(data: bytes) -> list[str]:
    """The words of the ARGS= line, split the way the shell and systemd split them."""
    lines = [line for line in data.decode().splitlines() if line.startswith("ARGS=")]
    assert len(lines) == 1
    (value,) = shlex.split(lines[0].removeprefix("ARGS="))
    return value.split()


def flags_of(data: bytes) -> dict[str, str]:
    return dict(word.split("=", 1) for word in args_of(data))


# --------------------------------------------------------------------------- files


def test_linux_files_and_destinations(stack: Stack) -> None:
    lay = layout(stack, "linux")
    out = arts(stack, "linux")
    assert {rel: a.dest for rel, a in out.items()} == {
        prometheus.PROMETHEUS_REL: lay.prometheus_config,
        prometheus.RULES_REL: lay.prometheus_rules,
        prometheus.ALERTMANAGER_REL: lay.alertmanager_config,
        prometheus.DEFAULT_PROMETHEUS_REL: "/etc/default/prometheus",
        prometheus.DEFAULT_ALERTMANAGER_REL: "/etc/default/prometheus-alertmanager",
    }
    assert all(not a.secret for a in out.values())
    # alertmanager.yml may hold a webhook token: root:prometheus 0640 (issue 12, M3).
    assert {rel: a.mode for rel, a in out.items() if a.mode != 0o644} == {
        prometheus.ALERTMANAGER_REL: 0o640}


def test_windows_has_no_debian_defaults(stack: Stack) -> None:
    lay = layout(stack, "windows")
    out = arts(stack, "windows")
    assert {rel: a.dest for rel, a in out.items()} == {
        prometheus.PROMETHEUS_REL: lay.prometheus_config,
        prometheus.RULES_REL: lay.prometheus_rules,
        prometheus.ALERTMANAGER_REL: lay.alertmanager_config,
    }


@pytest.mark.parametrize("target", TARGET_OSES)
def test_every_file_starts_with_the_header(stack: Stack, target: TargetOS) -> None:
    for rel, artifact in arts(stack, target).items():
        assert artifact.data.decode().startswith(prometheus.HEADER), rel
        assert prometheus.HEADER.startswith(
            "# rendered from stack.yaml by provider-fallback; edit stack.yaml, not this file")


def test_prometheus_templates_reach_the_file_untouched(stack: Stack) -> None:
    data = yaml.safe_load(arts(stack, "linux")[prometheus.RULES_REL].data)
    loaded = {r["alert"]: r for r in data["groups"][0]["rules"]}
    assert loaded["ProviderDown"]["annotations"]["summary"] == (
        "Provider {{ $labels.provider }} is down")
    assert loaded["HighFallbackRate"]["annotations"]["description"] == (
        "{{ $value }} fallback events in the last hour")
    assert data == rules.build(stack)  # the file is exactly the built data


def test_the_full_render_carries_these_files(stack: Stack, tmp_path: Path) -> None:
    # Linux only: this is the render that is handed the secrets (for secrets.env), and these
    # files must come out of it unchanged.
    full = render(stack, "linux", secrets=FAKE_SECRETS)
    for rel, artifact in arts(stack, "linux").items():
        assert full[rel] == artifact
    write_tree(full, tmp_path)
    result = subprocess.run(["/usr/bin/promtool", "check", "config",
                             str(tmp_path / prometheus.PROMETHEUS_REL)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for rel in arts(stack, "linux"):
        text = full[rel].data.decode()
        assert not any(value in text for value in FAKE_SECRETS.values()), rel


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("target", TARGET_OSES)
def test_rendering_twice_gives_identical_bytes(target: TargetOS) -> None:
    first = arts(stack_with(NOTIFY), target)
    second = arts(stack_with(NOTIFY), target)
    assert {k: v.data for k, v in first.items()} == {k: v.data for k, v in second.items()}


def test_a_threshold_override_changes_that_rule_and_nothing_else(stack: Stack) -> None:
    before = arts(stack, "linux")
    after = arts(stack_with({"alerts": {"high_fallback_rate_per_hour": 9}}), "linux")
    changed = {rel for rel in before if before[rel] != after[rel]}
    assert changed == {prometheus.RULES_REL}
    old = {r["alert"]: r for r in yaml.safe_load(before[prometheus.RULES_REL].data)[
        "groups"][0]["rules"]}
    new = {r["alert"]: r for r in yaml.safe_load(after[prometheus.RULES_REL].data)[
        "groups"][0]["rules"]}
    assert [name for name in old if old[name] != new[name]] == [rules.HIGH_FALLBACK_RATE]
    assert old[rules.HIGH_FALLBACK_RATE]["expr"].endswith("> 5")
    assert new[rules.HIGH_FALLBACK_RATE]["expr"] == (
        old[rules.HIGH_FALLBACK_RATE]["expr"].removesuffix("> 5") + "> 9")


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"budget": {"monthly_usd": 50}}, set()),  # the rules read the used ratio, not dollars
    ({"litellm": {"listen": {"port": 4100}}}, {prometheus.PROMETHEUS_REL}),
    ({"alertmanager": {"listen": {"port": 9193}}},
     {prometheus.PROMETHEUS_REL, prometheus.DEFAULT_ALERTMANAGER_REL}),
    ({"budget": {"levels_percent": {"warning": 60}}}, {prometheus.RULES_REL}),
])
def test_an_override_changes_exactly_the_files_that_use_it(
        stack: Stack, overrides: dict[str, Any], expected: set[str]) -> None:
    before = arts(stack, "linux")
    after = arts(stack_with(overrides), "linux")
    assert {rel for rel in before if before[rel] != after[rel]} == expected


# --------------------------------------------------------------------------- secrets


# Key-shaped, built at run time so no secret-looking literal is tracked in the repository.
FAKE_SECRETS = {
    "LITELLM_MASTER_KEY": "sk-litellm-master-" + "9f8e7d6c" * 4,
    "GROQ_API_KEY": "gsk_" + "Zq81nT0xW5" * 4,
    "OPENROUTER_API_KEY": "sk-or-v1-" + "3c1f9a7e5d2b" * 4,
    "GEMINI_API_KEY": "AIzaSyD4-" + "fAk3KeY9xQ" * 3,
    "OPENAI_API_KEY": "sk-proj-" + "Fak3Op3nA1K3y" * 3,
    "SMTP_PASSWORD": "smtp-Pa55w0rd-" + "N0tInAnyFile" * 2,
}


@pytest.mark.parametrize("target", TARGET_OSES)
def test_no_rendered_file_contains_a_secret(target: TargetOS,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    notify = stack_with(NOTIFY)
    names = notify.secret_env_names()
    assert set(names) == set(FAKE_SECRETS), "every secret variable the stack names is set"
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    for rel, artifact in arts(notify, target).items():
        text = artifact.data.decode()
        for name, value in FAKE_SECRETS.items():
            assert value not in text, f"{rel} contains the value of {name}"
            assert value[:12] not in text, f"{rel} contains part of {name}"
    am = arts(notify, target)[prometheus.ALERTMANAGER_REL].data.decode()
    assert "auth_password_file:" in am
    assert "auth_password:" not in am


# --------------------------------------------------------------------------- Debian ARGS


def test_prometheus_args_come_from_the_stack() -> None:
    other = stack_with({"prometheus": {"listen": {"port": 9091}, "retention": "30d"}})
    lay = layout(other, "linux")
    flags = flags_of(arts(other, "linux")[prometheus.DEFAULT_PROMETHEUS_REL].data)
    assert flags == {
        "--config.file": lay.prometheus_config,
        "--web.listen-address": "127.0.0.1:9091",
        "--storage.tsdb.path": lay.prometheus_data,
        "--storage.tsdb.retention.time": "30d",
    }


def test_alertmanager_args_turn_clustering_off(stack: Stack) -> None:
    lay = layout(stack, "linux")
    data = arts(stack, "linux")[prometheus.DEFAULT_ALERTMANAGER_REL].data
    assert "--cluster.listen-address=" in args_of(data)
    assert flags_of(data) == {
        "--config.file": lay.alertmanager_config,
        "--storage.path": lay.alertmanager_data,
        "--cluster.listen-address": "",
        "--web.listen-address": "127.0.0.1:9093",
    }
    ipv6 = stack_with({"alertmanager": {"listen": {"host": "::1"}}})
    v6 = flags_of(arts(ipv6, "linux")[prometheus.DEFAULT_ALERTMANAGER_REL].data)
    assert v6["--web.listen-address"] == "[::1]:9093"


@pytest.mark.parametrize(("rel", "binary"), [
    (prometheus.DEFAULT_PROMETHEUS_REL, "/usr/bin/prometheus"),
    (prometheus.DEFAULT_ALERTMANAGER_REL, "/usr/bin/prometheus-alertmanager"),
])
def test_the_real_binaries_accept_every_flag(stack: Stack, rel: str, binary: str) -> None:
    args = args_of(arts(stack, "linux")[rel].data)
    ok = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=60,
                        check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The check can fail: kingpin refuses an unknown flag even next to --help.
    typo = subprocess.run([binary, *args, "--web.listen-adress=:1", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert typo.returncode != 0
    assert "unknown long flag" in typo.stderr


def test_an_args_word_that_cannot_be_carried_is_refused(stack: Stack) -> None:
    lay = dataclasses.replace(layout(stack, "linux"),
                              prometheus_config="/etc/prometheus/my config.yml")
    with pytest.raises(ValueError, match="ARGS"):
        prometheus.artifacts(stack, lay)
