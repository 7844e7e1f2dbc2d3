"""stack.yaml ``agents:``: one line enrolls an agent; impossible pairings and the runbook's
invented files are refused with the usual one report; render carries what adapters need."""

from __future__ import annotations

import pytest

from monitoring.agents.base import GOOGLE_GEMINI_DEFAULT
from monitoring.stack.layout import layout
from monitoring.stack.load import StackError, parse_stack
from tasks.render import watchdog
from tests.conftest import STACK_FILE

TEXT = STACK_FILE.read_text(encoding="utf-8")


def _with(lines: str) -> str:
    return TEXT.replace("  - kilo-code\n  - gemini-cli\n", lines)


def test_the_default_stack_enrolls_kilo_code_and_gemini_cli_with_googles_fallback() -> None:
    stack = parse_stack(TEXT)
    assert [a.name for a in stack.agents] == ["kilo-code", "gemini-cli"]
    config = watchdog.build(stack, layout(stack, "linux"))
    google = next(t for t in config.targets if t.name == "google")
    assert google.endpoints["gemini-native"] == GOOGLE_GEMINI_DEFAULT
    assert google.api_key_env == "GEMINI_API_KEY"
    proxy = config.targets[0]
    assert proxy.endpoints == {"openai-chat": f"{stack.proxy_url}/v1",
                               "anthropic-messages": stack.proxy_url,
                               "openai-responses": f"{stack.proxy_url}/v1",
                               "gemini-native": stack.proxy_url}
    assert proxy.api_key_env == stack.litellm.master_key_env
    openrouter = next(t for t in config.targets if t.name == "openrouter")
    assert openrouter.endpoints["anthropic-messages"] == "https://openrouter.ai/api"


def test_enrolling_another_agent_is_one_line() -> None:
    stack = parse_stack(_with("  - kilo-code\n  - gemini-cli\n  - claude-code\n"))
    assert stack.agents[-1].name == "claude-code"


@pytest.mark.parametrize(("lines", "expected"), [
    ("  - {name: gemini-cli, order: [litellm, groq]}\n",
     "Gemini CLI can speak to: it speaks gemini-native, which Direct Groq does not serve "
     "(one of: litellm, google)"),
    ("  - {name: claude-code, order: [groq]}\n",
     "Claude Code can speak to: it speaks anthropic-messages, which Direct Groq does not"),
    ('  - {name: kilo-code, path: {linux: "~/.kilocode/kilocode.json", '
     'windows: "~\\\\.kilocode\\\\kilocode.json"}}\n',
     "enroll the real adapter instead, one line: `- kilo-code`"),
    ('  - {name: gemini-cli, path: {linux: "~/.gemini/provider.json", '
     'windows: "~\\\\.gemini\\\\provider.json"}}\n',
     "`- gemini-cli`"),
    ("  - windsurf\n", "an agent adapter: one of kilo-code, gemini-cli"),
    ("  - {name: codex, order: [nowhere]}\n", "a target name (litellm, kilo-code"),
])
def test_an_impossible_enrollment_is_refused_naming_the_fix(lines: str, expected: str) -> None:
    with pytest.raises(StackError) as error:
        parse_stack(_with(lines))
    assert expected in str(error.value)
    assert "agents.0" in str(error.value)
