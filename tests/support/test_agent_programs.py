"""The agent harness: a clean environment per run, and a bounded run that leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.agent_install import AGENTS, agents_dir, runtime_env
from tests.support.agent_programs import HEADLESS_ENV, agent_env, run_agent
from tests.support.fake_upstream import FakeUpstream


def test_every_pinned_agent_has_its_headless_switches() -> None:
    assert sorted(HEADLESS_ENV) == sorted(AGENTS)
    assert len({a.folder for a in AGENTS.values()}) == len(AGENTS)


def test_the_agent_sees_only_the_test_environment(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-developers-shell")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://example.invalid")
    env = agent_env("claude", tmp_path, {"ANTHROPIC_MODEL": "m1", "TERM": "xterm"})
    assert "OPENAI_API_KEY" not in env
    assert "ANTHROPIC_BASE_URL" not in env
    assert env["HOME"] == str(tmp_path)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert (env["ANTHROPIC_MODEL"], env["TERM"]) == ("m1", "xterm")  # the test's env wins
    assert env["XDG_CACHE_HOME"] == runtime_env()["XDG_CACHE_HOME"]
    assert env["XDG_CACHE_HOME"].startswith(str(agents_dir()))


@pytest.mark.live
def test_a_run_that_hangs_is_killed_at_the_timeout_with_its_whole_group(tmp_path: Path) -> None:
    """Codex waits on a hanging provider; the harness ends it, and every child, on time."""
    key = "sk-test-" + os.urandom(16).hex()
    home, cwd = tmp_path / "home", tmp_path / "project"
    (home / ".codex").mkdir(parents=True)
    cwd.mkdir()
    with FakeUpstream(models=["m1"], api_key=key) as fake:
        (home / ".codex" / "config.toml").write_text(
            f'model = "m1"\nmodel_provider = "pf"\n[model_providers.pf]\nname = "pf"\n'
            f'base_url = "{fake.api_base}"\nenv_key = "PF_KEY"\nwire_api = "responses"\n')
        fake.set_fault("hang")
        run = run_agent("codex", home, cwd, {"PF_KEY": key}, watch={"fake": fake},
                        timeout=15)
        assert run.returncode is None, run.describe()
        assert 15 <= run.seconds < 40
        assert [r.request.path for r in run.landed][:1] == ["/v1/responses"]
        fake.clear_fault()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and _environ_has(p, f"HOME={home}")]
    assert leftovers == []


def _environ_has(proc: Path, entry: str) -> bool:
    try:
        return entry.encode() in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
