"""Each adapter: its files per OS, what it can reach, the exact keys it writes, its traps; and
the same adapters on Windows data cases (backslash paths shown, CRLF files kept)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from monitoring.agents import ADAPTERS, adapter_for
from monitoring.agents.base import GOOGLE_GEMINI_DEFAULT
from monitoring.agents.engine import AgentManager
from monitoring.host_config import AgentSpec
from tests.monitoring.agents.test_engine import KEYS, TARGETS, T

REACH = {  # agent -> targets of TARGETS it can speak to
    "kilo-code": ["litellm", "kilo-code", "openrouter", "google"],
    "gemini-cli": ["litellm", "google"],
    "claude-code": ["litellm", "openrouter"],
    "codex": ["litellm", "openrouter"],
    "opencode": ["litellm", "openrouter", "google"],
    "aider": ["litellm", "openrouter", "google"],
    "continue": ["litellm", "openrouter", "google"],
}
FILES = {
    "kilo-code": ["~/.config/kilo/kilo.jsonc"],
    "gemini-cli": ["~/.gemini/settings.json", "~/.gemini/.env"],
    "claude-code": ["~/.claude/settings.json"],
    "codex": ["~/.codex/config.toml"],
    "opencode": ["~/.config/opencode/opencode.json"],
    "aider": ["~/.aider.conf.yml", "~/.config/provider-fallback/aider.env"],
    "continue": ["~/.continue/config.yaml"],
}


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_each_adapter_reaches_only_what_it_speaks(name: str) -> None:
    adapter = ADAPTERS[name]
    assert [e.target for e in adapter.reachable(TARGETS)] == REACH[name]


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("os_name", ["linux", "windows"])
def test_each_adapter_names_its_home_relative_files(name: str, os_name: str) -> None:
    shown = [f.shown(os_name) for f in ADAPTERS[name].files]
    expected = FILES[name] if os_name == "linux" else [
        p.replace("/", "\\") for p in FILES[name]]
    assert shown == expected


def _switched(tmp_path: Path, name: str, target: str, os_name: str = "linux") -> AgentManager:
    agents = AgentManager([AgentSpec(name=name)], TARGETS, home=tmp_path,
                          records_dir=tmp_path / "rec", os_name=os_name, env=KEYS,
                          key_command=["/opt/pf/bin/provider-fallback"])
    result = agents.apply(name, T[target])
    assert result.ok, result.error
    assert agents.current(name) == target
    return agents


def test_gemini_drops_the_override_for_google_and_sets_it_for_any_other(
        tmp_path: Path) -> None:
    env = tmp_path / ".gemini" / ".env"
    _switched(tmp_path, "gemini-cli", "litellm")
    assert "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:4000\n" in env.read_text()
    assert T["google"].endpoints["gemini-native"] == GOOGLE_GEMINI_DEFAULT
    _switched(tmp_path, "gemini-cli", "google")
    assert "\nGOOGLE_GEMINI_BASE_URL" not in "\n" + env.read_text()
    assert f"GEMINI_API_KEY={KEYS['GEMINI_API_KEY']}" in env.read_text()
    settings = (tmp_path / ".gemini" / "settings.json").read_text()
    assert '"name": "gemini-2.5-pro"' in settings
    assert '"selectedType": "gemini-api-key"' in settings


def test_claude_code_falls_back_through_openrouters_anthropic_endpoint(tmp_path: Path) -> None:
    _switched(tmp_path, "claude-code", "openrouter")
    text = (tmp_path / ".claude" / "settings.json").read_text()
    assert '"ANTHROPIC_BASE_URL": "https://openrouter.ai/api"' in text
    assert '"ANTHROPIC_DEFAULT_HAIKU_MODEL": "meta-llama/llama-3.3-70b-instruct:free"' in text
    assert ('"apiKeyHelper": "/opt/pf/bin/provider-fallback agents key OPENROUTER_API_KEY"'
            in text)


def test_codex_gets_its_own_provider_ids_on_the_responses_wire(tmp_path: Path) -> None:
    _switched(tmp_path, "codex", "openrouter")
    config = tomllib.loads((tmp_path / ".codex" / "config.toml").read_text())
    assert config["model_provider"] == "pf-openrouter"
    assert config["model"] == "meta-llama/llama-3.3-70b-instruct:free"
    assert config["model_providers"]["pf-litellm"] == {
        "name": "LiteLLM (provider-fallback)", "base_url": "http://127.0.0.1:4000/v1",
        "wire_api": "responses", "env_key": "LITELLM_MASTER_KEY"}


def test_aider_and_continue(tmp_path: Path) -> None:
    _switched(tmp_path, "aider", "litellm")
    conf = yaml.safe_load((tmp_path / ".aider.conf.yml").read_text())
    assert conf == {"model": "openai/groq-70b", "openai-api-base": "http://127.0.0.1:4000/v1",
                    "env-file": str(tmp_path / ".config" / "provider-fallback" / "aider.env")}
    _switched(tmp_path, "continue", "openrouter")
    data = yaml.safe_load((tmp_path / ".continue" / "config.yaml").read_text())
    assert data["models"] == [{"name": "provider-fallback", "provider": "openai",
                               "model": "meta-llama/llama-3.3-70b-instruct:free",
                               "apiBase": "https://openrouter.ai/api/v1",
                               "apiKey": "${{ secrets.OPENROUTER_API_KEY }}",
                               "roles": ["chat", "edit", "apply"]}]


@pytest.mark.parametrize("name", ["kilo-code", "gemini-cli", "codex", "aider", "continue"])
def test_windows_files_keep_crlf(tmp_path: Path, name: str) -> None:
    agents = _switched(tmp_path, name, "litellm", os_name="windows")
    for path in agents.paths(name).values():
        raw = path.read_bytes()
        assert b"\n" not in raw.replace(b"\r\n", b""), (path, raw)
    other = REACH[name][-1]
    assert agents.apply(name, T[other]).ok
    before = {p: p.read_bytes() for p in agents.paths(name).values()}
    agents.apply(name, T["litellm"])
    agents.apply(name, T[other])
    assert {p: p.read_bytes() for p in agents.paths(name).values()} == before


def test_kilo_edits_the_highest_precedence_global_file_that_holds_the_model(
        tmp_path: Path) -> None:
    folder = tmp_path / ".config" / "kilo"
    folder.mkdir(parents=True)
    (folder / "kilo.json").write_text('{"model": "a/b"}')
    (folder / "opencode.json").write_text('{"theme": "dark"}')
    kilo = ADAPTERS["kilo-code"]
    assert kilo.resolve(kilo.files[0], tmp_path, "linux") == folder / "kilo.json"
    traps = kilo.traps(tmp_path, {}, tmp_path)
    assert any("opencode.json is read after kilo.json" in t.what for t in traps)


def test_traps_name_the_environment_and_the_fix(tmp_path: Path) -> None:
    traps = ADAPTERS["gemini-cli"].traps(tmp_path, {"GEMINI_MODEL": "x"}, tmp_path)
    assert traps[0].what.startswith("GEMINI_MODEL is set")
    assert "unset GEMINI_MODEL" in traps[0].fix
    assert ADAPTERS["claude-code"].traps(tmp_path, {"ANTHROPIC_API_KEY": "k"}, tmp_path)


def test_the_generic_adapter_writes_the_runbook_shape(tmp_path: Path) -> None:
    adapter = adapter_for("mine", "generic-json", "~/.kilocode/kilocode.json")
    assert adapter.files[0].shown("linux") == "~/.kilocode/kilocode.json"
    agents = AgentManager([AgentSpec(name="mine", adapter="generic-json",
                                     path="~/.kilocode/kilocode.json")], TARGETS,
                          home=tmp_path, records_dir=tmp_path / "rec", env=KEYS)
    agents.apply("mine", T["litellm"])
    agents.apply("mine", T["kilo-code"])
    text = (tmp_path / ".kilocode" / "kilocode.json").read_text()
    assert '"provider": "z-ai"' in text
    assert "endpoint" not in text


def test_installed_means_a_program_on_path_or_the_ide_extension(tmp_path: Path) -> None:
    kilo = ADAPTERS["kilo-code"]
    assert not kilo.installed({"PATH": str(tmp_path)}, home=tmp_path)
    (tmp_path / ".vscode" / "extensions" / "kilocode.kilo-code-7.0.25").mkdir(parents=True)
    assert kilo.installed({"PATH": str(tmp_path)}, home=tmp_path)
    program = tmp_path / "bin" / "gemini"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert ADAPTERS["gemini-cli"].installed({"PATH": str(program.parent)}, home=tmp_path)
