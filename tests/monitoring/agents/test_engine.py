"""The engine keeps the user's files: takeover records and release, read-only and broken files
left untouched, symlinks followed, no re-read of an unchanged file, keys only where no other way
exists (and then 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from monitoring.agents import engine as engine_mod
from monitoring.agents.engine import AgentManager
from monitoring.host_config import AgentSpec, TargetSpec

PROXY = "http://127.0.0.1:4000"
KEYS = {"LITELLM_MASTER_KEY": "sk-master-0123456789abcdef", "GEMINI_API_KEY": "AIza-g-0123456789",
        "OPENROUTER_API_KEY": "sk-or-0123456789abcdef"}
TARGETS = [
    TargetSpec(name="litellm", label="LiteLLM", kind="litellm", route="litellm", is_free=True,
               settings={"provider": "litellm", "endpoint": PROXY, "model": "groq-70b"},
               endpoints={"openai-chat": f"{PROXY}/v1", "anthropic-messages": PROXY,
                          "openai-responses": f"{PROXY}/v1", "gemini-native": PROXY},
               model="groq-70b", api_key_env="LITELLM_MASTER_KEY"),
    TargetSpec(name="kilo-code", label="Kilo Code", kind="agent", route=None, is_free=True,
               settings={"provider": "z-ai", "model": "glm-5:free"}, agent="kilo-code"),
    TargetSpec(name="openrouter", label="OpenRouter", kind="direct", route="openrouter",
               is_free=True, settings={},
               endpoints={"openai-chat": "https://openrouter.ai/api/v1",
                          "anthropic-messages": "https://openrouter.ai/api",
                          "openai-responses": "https://openrouter.ai/api/v1"},
               model="meta-llama/llama-3.3-70b-instruct:free", api_key_env="OPENROUTER_API_KEY"),
    TargetSpec(name="google", label="Google Gemini", kind="direct", route="google",
               is_free=False, settings={},
               endpoints={"openai-chat": "https://generativelanguage.googleapis.com/v1beta/openai",
                          "gemini-native": "https://generativelanguage.googleapis.com"},
               model="gemini-2.5-pro", api_key_env="GEMINI_API_KEY"),
]
T = {t.name: t for t in TARGETS}
ALL = ["kilo-code", "gemini-cli", "claude-code", "codex", "opencode", "aider", "continue"]


def manager(tmp_path: Path, *, os_name: str = "linux") -> AgentManager:
    return AgentManager([AgentSpec(name=n) for n in ALL], TARGETS, home=tmp_path / "home",
                        records_dir=tmp_path / "state" / "agents", os_name=os_name, env=KEYS)


KILO_USER = ('{\r\n  // my settings\r\n  "theme": "dark", /* keep */\r\n'
             '  "model": "anthropic/claude-sonnet-4.5",\r\n}\r\n')


def kilo_file(tmp_path: Path) -> Path:
    path = tmp_path / "home" / ".config" / "kilo" / "kilo.jsonc"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_switch_restore_and_release_keep_the_users_bytes(tmp_path: Path) -> None:
    path = kilo_file(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + KILO_USER.encode())
    agents = manager(tmp_path)
    assert agents.apply("kilo-code", T["litellm"]).changed
    on_proxy = path.read_bytes()
    text = on_proxy.decode("utf-8-sig")
    assert on_proxy.startswith(b"\xef\xbb\xbf")
    assert "// my settings" in text
    assert "/* keep */" in text
    assert "\n" not in text.replace("\r\n", "")  # CRLF kept for the new lines too
    assert '"model": "pf-litellm/groq-70b"' in text
    assert '"apiKey": "{env:LITELLM_MASTER_KEY}"' in text
    assert agents.current("kilo-code") == "litellm"
    assert agents.apply("kilo-code", T["kilo-code"]).changed
    assert '"model": "kilo/z-ai/glm-5:free"' in path.read_text(encoding="utf-8-sig")
    assert agents.apply("kilo-code", T["openrouter"]).changed
    assert agents.apply("kilo-code", T["litellm"]).changed
    assert path.read_bytes() == on_proxy  # a switch and a restore: the same bytes
    done = agents.release("kilo-code")
    assert path.read_bytes() == b"\xef\xbb\xbf" + KILO_USER.encode()
    assert "original bytes" in done[0]
    result = agents.apply("kilo-code", T["litellm"])
    assert not result.ok
    assert result.error is not None
    assert "released" in result.error
    assert path.read_bytes() == b"\xef\xbb\xbf" + KILO_USER.encode()
    agents.manage("kilo-code")
    assert agents.apply("kilo-code", T["litellm"]).changed


def test_release_after_a_user_edit_puts_back_the_owned_values(tmp_path: Path) -> None:
    path = kilo_file(tmp_path)
    path.write_bytes(KILO_USER.encode())
    agents = manager(tmp_path)
    agents.apply("kilo-code", T["litellm"])
    path.write_text(path.read_text().replace('"dark"', '"light"'))  # the user edits meanwhile
    agents.release("kilo-code")
    text = path.read_text()
    assert '"theme": "light"' in text
    assert '"model": "anthropic/claude-sonnet-4.5"' in text
    assert "pf-litellm" not in text


def test_a_read_only_file_is_left_untouched_and_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through any mode; the mode bits are still checked below")
    path = kilo_file(tmp_path)
    path.write_bytes(KILO_USER.encode())
    path.chmod(0o444)
    inode = path.stat().st_ino
    result = manager(tmp_path).apply("kilo-code", T["litellm"])
    assert result.error is not None
    assert "read-only" in result.error
    assert str(path) in result.error
    assert path.stat().st_ino == inode  # not replaced through a rename
    assert path.read_bytes() == KILO_USER.encode()


def test_a_file_without_write_bits_is_read_only_even_for_root(tmp_path: Path) -> None:
    path = kilo_file(tmp_path)
    path.write_bytes(KILO_USER.encode())
    path.chmod(0o444)
    result = manager(tmp_path).apply("kilo-code", T["litellm"])
    assert result.error is not None
    assert "read-only" in result.error
    assert path.read_bytes() == KILO_USER.encode()
    path.chmod(0o644)  # fixed: retried and switched
    assert manager(tmp_path).apply("kilo-code", T["litellm"]).changed


def test_an_unparseable_file_is_left_untouched_naming_the_fix(tmp_path: Path) -> None:
    path = kilo_file(tmp_path)
    path.write_text("{ not json")
    result = manager(tmp_path).apply("kilo-code", T["litellm"])
    assert result.error is not None
    assert str(path) in result.error
    assert "line 1 column" in result.error
    assert "fix it by hand" in result.error
    assert path.read_text() == "{ not json"
    assert not path.with_name("kilo.jsonc.bak").exists()


def test_a_symlinked_file_is_edited_at_its_target(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "kilo.jsonc"
    real.parent.mkdir()
    real.write_bytes(KILO_USER.encode())
    link = kilo_file(tmp_path)
    link.symlink_to(real)
    assert manager(tmp_path).apply("kilo-code", T["litellm"]).changed
    assert link.is_symlink()
    assert "pf-litellm" in real.read_text()


def test_an_unchanged_file_is_not_read_again(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    agents = manager(tmp_path)
    agents.apply("kilo-code", T["litellm"])
    reads: list[Path] = []
    real_read = engine_mod._read

    def counting(path: Path) -> object:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(engine_mod, "_read", counting)
    opened: list[Path] = []
    real_read_text = Path.read_text

    def reading(self: Path, *args: object, **kwargs: object) -> str:
        opened.append(self)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", reading)
    for _ in range(5):
        assert agents.apply("kilo-code", T["litellm"]).ok
    assert reads == []
    assert opened == []  # not even to find which of Kilo's global files holds the model
    path = kilo_file(tmp_path)
    path.write_text(path.read_text().replace('"pf-litellm/groq-70b"', '"x/y"'))  # hand edit
    assert agents.apply("kilo-code", T["litellm"]).changed  # mended
    assert set(reads) == {path}  # only when its stamp moved


def test_no_key_value_lands_in_a_file_that_can_refer_to_one(tmp_path: Path) -> None:
    agents = manager(tmp_path)
    for name in ALL:
        for target in ("litellm", "openrouter", "google"):
            agents.apply(name, T[target])
    home = tmp_path / "home"
    secret_files = {home / ".gemini" / ".env",
                    home / ".config" / "provider-fallback" / "aider.env"}
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        if path in secret_files or path.with_suffix("") in secret_files or (
                path.name.endswith(".bak") and path.with_name(path.name[:-4]) in secret_files):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            continue
        for value in KEYS.values():
            assert value not in text, path
    assert KEYS["GEMINI_API_KEY"] in (home / ".gemini" / ".env").read_text()
    records = tmp_path / "state" / "agents"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in records.glob("*.json"))


def test_a_missing_key_leaves_the_agent_unswitched(tmp_path: Path) -> None:
    agents = AgentManager([AgentSpec(name="gemini-cli")], TARGETS, home=tmp_path,
                          records_dir=tmp_path / "rec", env={})
    result = agents.apply("gemini-cli", T["litellm"])
    assert result.error is not None
    assert "LITELLM_MASTER_KEY" in result.error
    assert not (tmp_path / ".gemini").exists()


def test_a_key_is_found_under_its_host_name_as_the_deployed_watchdog_holds_it(
        tmp_path: Path) -> None:
    # The deploy gives the watchdog provider keys as PF_<NAME> (monitoring.stack.layout): Gemini
    # CLI's .env and Aider's key file must still get the value on a failover to Google.
    env = {"LITELLM_MASTER_KEY": KEYS["LITELLM_MASTER_KEY"],
           "PF_GEMINI_API_KEY": KEYS["GEMINI_API_KEY"]}
    agents = AgentManager([AgentSpec(name="gemini-cli"), AgentSpec(name="aider")], TARGETS,
                          home=tmp_path, records_dir=tmp_path / "rec", env=env)
    for name in ("gemini-cli", "aider"):
        assert agents.apply(name, T["google"]).ok
    assert f"GEMINI_API_KEY={KEYS['GEMINI_API_KEY']}" in (tmp_path / ".gemini" / ".env"
                                                          ).read_text()
    keys = tmp_path / ".config" / "provider-fallback" / "aider.env"
    assert f"OPENAI_API_KEY={KEYS['GEMINI_API_KEY']}" in keys.read_text()


@pytest.mark.parametrize("text", ['{"provider": "openrouter"}\n',
                                  '{"model": {"a": 1}, "provider": []}'])
def test_a_file_of_the_wrong_shape_is_left_untouched(tmp_path: Path, text: str) -> None:
    path = kilo_file(tmp_path)
    path.write_text(text)
    result = manager(tmp_path).apply("kilo-code", T["litellm"])
    assert result.error is not None
    assert "shape" in result.error or "not an object" in result.error
    assert path.read_text() == text
