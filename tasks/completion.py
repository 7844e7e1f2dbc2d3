"""Shell completion for ``provider-fallback``: bash, zsh and PowerShell, from its parser.

Generated at build time (``make completion``, or ``python -m tasks.completion SHELL``), never
at run time: the host venv stays LiteLLM's closure plus the watchdog, with no completion
library in it. bash and zsh scripts come from ``shtab`` (it reads the argparse parser); shtab
has no PowerShell output, so that script is written here from the same parser: subcommands,
their options, and the fixed choices (``select --task``, ``budget reset``).

Install (one line each):

- bash: ``provider-fallback.bash`` into ``/etc/bash_completion.d/`` (or source it)
- zsh: ``_provider-fallback`` into a directory of ``$fpath``
- PowerShell: ``. provider-fallback.ps1`` in ``$PROFILE``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import shtab

from monitoring.cli import parser

PROG = "provider-fallback"
FILES = {"bash": f"{PROG}.bash", "zsh": f"_{PROG}", "powershell": f"{PROG}.ps1"}


def subcommands(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``top`` by name (argparse keeps them in a private action)."""
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _ps_list(items: Sequence[str]) -> str:
    return "@(" + ", ".join("'" + item.replace("'", "''") + "'" for item in items) + ")"


def powershell(top: argparse.ArgumentParser) -> str:
    """A native-command argument completer for PowerShell 5.1 and 7."""
    options: dict[str, list[str]] = {}
    choices: dict[str, list[str]] = {}
    for name, sub in subcommands(top).items():
        options[name] = sorted(o for a in sub._actions for o in a.option_strings)
        for action in sub._actions:
            if action.choices is None:
                continue
            values = [str(c) for c in action.choices]
            if action.option_strings:
                for option in action.option_strings:
                    choices[f"{name} {option}"] = values
            else:
                choices[name] = values
    top_words = [*subcommands(top), *(o for a in top._actions for o in a.option_strings)]
    table = "\n".join(f"        '{k}' = {_ps_list(v)}" for k, v in options.items())
    choice_table = "\n".join(f"        '{k}' = {_ps_list(v)}" for k, v in choices.items())
    return f"""# {PROG} completion for PowerShell, generated from its parser (tasks/completion.py).
# Load it from your profile:  . <path>\\{FILES['powershell']}
Register-ArgumentCompleter -Native -CommandName '{PROG}', '{PROG}.exe' -ScriptBlock {{
    param($wordToComplete, $commandAst, $cursorPosition)
    $options = @{{
{table}
    }}
    $choices = @{{
{choice_table}
    }}
    $words = @($commandAst.CommandElements | ForEach-Object {{ $_.ToString() }})
    if ($wordToComplete) {{ $words = @($words | Select-Object -SkipLast 1) }}
    $candidates = {_ps_list(top_words)}
    if ($words.Count -ge 2 -and $options.ContainsKey($words[1])) {{
        $sub = $words[1]
        $key = "$sub $($words[-1])"
        if ($choices.ContainsKey($key)) {{
            $candidates = $choices[$key]
        }} else {{
            $candidates = $options[$sub]
            if ($choices.ContainsKey($sub)) {{ $candidates = $choices[$sub] + $candidates }}
        }}
    }}
    $candidates | Where-Object {{ $_ -like "$wordToComplete*" }} | ForEach-Object {{
        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
    }}
}}
"""


def script(shell: str) -> str:
    top = parser()
    if shell == "powershell":
        return powershell(top)
    return str(shtab.complete(top, shell=shell))


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m tasks.completion", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("shells", nargs="*", metavar="SHELL",
                     help=f"one or more of {', '.join(FILES)} (default: all)")
    cli.add_argument("--out", default="build/completion",
                     help="directory to write the scripts to; '-' prints one to stdout")
    args = cli.parse_args(argv)
    shells = args.shells or list(FILES)
    unknown = [s for s in shells if s not in FILES]
    if unknown:
        cli.error(f"unknown shell {unknown[0]!r}: one of {', '.join(FILES)}")
    if args.out == "-":
        for shell in shells:
            sys.stdout.write(script(shell))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for shell in shells:
        path = out / FILES[shell]
        path.write_text(script(shell), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
