"""Shell completion scripts: bash really completes (run in bash), PowerShell parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from monitoring.proxy.choice import TASKS
from tasks import completion
from tests.support.powershell import assert_parses

SUBCOMMANDS = ("watch", "status", "check", "switch", "restore", "events", "budget", "select",
               "report", "history")


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("completion")
    assert completion.main(["--out", str(out)]) == 0
    return out


def bash_complete(scripts: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` (empty string: a new word)."""
    line = " ".join(words)
    array = " ".join(f"'{w}'" for w in words)
    program = (f"source {scripts / completion.FILES['bash']}\n"
               f"COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}\n"
               f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
               f"fn=$(complete -p provider-fallback | sed -E 's/.*-F ([^ ]+).*/\\1/')\n"
               f"$fn provider-fallback '{words[-1]}' '{words[-2]}'\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "--norc", "-c", program], capture_output=True, text=True,
                          check=True, timeout=30)
    return sorted(w.strip() for w in done.stdout.splitlines() if w.strip())


def test_bash_completes_subcommands_and_choices(scripts: Path) -> None:
    assert bash_complete(scripts, "provider-fallback", "st") == ["status"]
    assert set(SUBCOMMANDS) <= set(bash_complete(scripts, "provider-fallback", ""))
    assert bash_complete(scripts, "provider-fallback", "select", "--task", "") == sorted(TASKS)
    assert "--follow" in bash_complete(scripts, "provider-fallback", "events", "--")


def test_zsh_script_is_a_compdef_of_every_subcommand(scripts: Path) -> None:
    text = (scripts / completion.FILES["zsh"]).read_text()
    assert text.startswith("#compdef provider-fallback")
    for name in SUBCOMMANDS:
        assert f"    {name}:'" in text, name


def test_powershell_script_parses_and_knows_every_subcommand(scripts: Path) -> None:
    text = (scripts / completion.FILES["powershell"]).read_text()
    assert_parses(text, completion.FILES["powershell"])
    assert "Register-ArgumentCompleter -Native -CommandName 'provider-fallback'" in text
    for name in SUBCOMMANDS:
        assert f"        '{name}' = @(" in text, name
    assert "'select --task' = @('coding', 'implementation', 'research', 'analysis')" in text


def test_an_unknown_shell_is_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        completion.main(["fish", "--out", "-"])
    assert exit_.value.code == 2
