"""Render as a whole: pure, deterministic, secrets in one 0600 file, overrides targeted."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from monitoring.stack.layout import TARGET_OSES, TargetOS
from monitoring.stack.load import parse_stack
from monitoring.stack.schema import Stack
from tasks.render import SECRETS_REL, render
from tasks.render.__main__ import main
from tests.conftest import STACK_FILE

REAL_LOOKING = {
    "LITELLM_MASTER_KEY": "sk-" + "Mk9x" * 12,
    "GROQ_API_KEY": "gsk_" + "Q7rT" * 13,
    "OPENROUTER_API_KEY": "sk-or-v1-" + "a3f9" * 16,
    "GEMINI_API_KEY": "AIzaSy" + "Gm4K" * 8 + "x",
    "OPENAI_API_KEY": "sk-proj-" + "Op3nA1" * 8,
}


@pytest.mark.parametrize("target", TARGET_OSES)
def test_rendering_twice_gives_identical_bytes(stack: Stack, target: TargetOS) -> None:
    first = render(stack, target, REAL_LOOKING)
    again = render(parse_stack(STACK_FILE.read_text()), target, dict(REAL_LOOKING))
    assert {k: (a.data, a.dest, a.mode) for k, a in first.items()} == {
        k: (a.data, a.dest, a.mode) for k, a in again.items()}


@pytest.mark.parametrize("target", TARGET_OSES)
def test_keys_reach_only_the_0600_secrets_file(stack: Stack, target: TargetOS) -> None:
    rendered = render(stack, target, REAL_LOOKING)
    for rel, artifact in rendered.items():
        leaked = [name for name, value in REAL_LOOKING.items() if value.encode() in artifact.data]
        if rel == SECRETS_REL:
            assert artifact.mode == 0o600
            assert artifact.secret
            assert sorted(leaked) == sorted(REAL_LOOKING)
        else:
            assert not leaked, f"{rel} contains {leaked}"
            assert not artifact.secret
    assert (SECRETS_REL in rendered) == (target == "linux")


def test_secrets_file_quotes_values_and_refuses_line_breaks(stack: Stack) -> None:
    data = render(stack, "linux", {"GROQ_API_KEY": 'a"b$c\\d'})[SECRETS_REL].data.decode()
    assert 'GROQ_API_KEY="a\\"b\\$c\\\\d"' in data
    with pytest.raises(ValueError, match="GROQ_API_KEY contains a line break") as caught:
        render(stack, "linux", {"GROQ_API_KEY": "gsk_abc\nEVIL=1"})
    assert "gsk_abc" not in str(caught.value)


def test_only_variables_named_by_the_stack_are_written(stack: Stack) -> None:
    data = render(stack, "linux", {"HOME": "/root", "GROQ_API_KEY": "k"})[SECRETS_REL].data
    assert b"HOME" not in data
    assert b'GROQ_API_KEY="k"' in data


def _changed(overrides: dict[str, object], target: TargetOS = "linux") -> set[str]:
    base = render(parse_stack(STACK_FILE.read_text()), target)
    new = render(parse_stack(STACK_FILE.read_text(), overrides=overrides), target)
    assert base.keys() == new.keys()
    return {rel for rel in base if base[rel].data != new[rel].data}


def test_a_budget_override_changes_only_the_watchdog_config() -> None:
    assert _changed({"budget": {"monthly_usd": 50}}) == {"watchdog/watchdog.json"}


def test_a_proxy_port_override_reaches_every_file_that_names_the_port() -> None:
    changed = _changed({"litellm": {"listen": {"port": 4100}}})
    # LiteLLM's config names no port: the proxy's command line (unit, watchdog) does, and
    # the deploy workflow's liveness check (runbook 6.2).
    assert changed == {"watchdog/watchdog.json", "systemd/litellm-proxy.service",
                       "prometheus/prometheus.yml", "github/deploy-with-fallback.yml"}


def test_a_service_user_override_changes_only_the_units() -> None:
    assert _changed({"linux": {"user": "pavel"}}) == {
        "systemd/litellm-proxy.service", "systemd/provider-fallback-watchdog.service",
        "sysvinit/provider-fallback-watchdog"}


def test_cli_writes_the_tree_with_host_modes_and_a_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REAL_LOOKING.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "build"
    assert main(["--stack", str(STACK_FILE), "--out", str(out)]) == 0
    manifest = json.loads((out / "linux" / "MANIFEST.json").read_text())
    secrets = out / "linux" / SECRETS_REL
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert manifest[SECRETS_REL]["mode"] == "0600"
    assert manifest[SECRETS_REL]["secret"]
    for target in TARGET_OSES:
        for rel, entry in json.loads((out / target / "MANIFEST.json").read_text()).items():
            assert stat.S_IMODE((out / target / rel).stat().st_mode) == int(entry["mode"], 8)
    # A re-render replaces the tree: a stale file does not survive.
    (out / "linux" / "stale.txt").write_text("old")
    assert main(["--stack", str(STACK_FILE), "--out", str(out), "--no-secrets"]) == 0
    assert not (out / "linux" / "stale.txt").exists()
    assert REAL_LOOKING["GROQ_API_KEY"].encode() not in secrets.read_bytes()


def test_cli_accepts_host_data(tmp_path: Path) -> None:
    host_data = tmp_path / "host.yaml"
    host_data.write_text("stack:\n  linux: {user: pavel}\n")
    out = tmp_path / "build"
    assert main(["--stack", str(STACK_FILE), "--out", str(out), "--os", "linux",
                 "--host-data", str(host_data)]) == 0
    unit = (out / "linux" / "systemd" / "litellm-proxy.service").read_text()
    assert "User=pavel\n" in unit
    assert not (out / "windows").exists()


def test_render_reads_nothing_from_the_environment(stack: Stack,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = render(stack, "linux")
    monkeypatch.setenv("GROQ_API_KEY", REAL_LOOKING["GROQ_API_KEY"])
    monkeypatch.setattr(os, "environ", dict(os.environ))
    assert render(stack, "linux") == before
