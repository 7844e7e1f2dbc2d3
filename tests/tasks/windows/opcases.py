"""Operation cases in pyinfra's own style: one data file per case, arguments and facts in,
the exact commands out (or a no-op, or an error).

A case file (YAML, ``cases/<module>.<operation>/<case>.yaml``)::

    description: what the case shows
    args: {path: 'C:\\x'}              # keyword arguments of the operation
    environ: {GROQ_API_KEY: ...}       # the controller's environment while it runs (optional)
    facts:                             # per fact class, per "arg=value, ..." key:
      Directory:                       # the JSON document PowerShell prints (null: no output)
        path=C:\\x: {exists: false, type: null}
    commands:                          # what the operation yields, in order:
      - |                              #   a script (its exact text),
        # op directory.create
        ...
      - {script: ..., stdin: masked}   #   a script with a masked standard input,
      - {upload: 'C:\\x\\file.txt'}    #   a file upload to that destination
    noop: true                         # the operation called host.noop (no commands)
    error: {type: OperationError, match: 'regex'}   # or it raises

Facts go through the fact class's own ``process`` (the parser the deploy uses), so a case
states what the host prints, not what the parser makes of it. Every script a case yields must
parse with tree-sitter-powershell, wrapped as the connector sends it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyinfra.api.command import FileUploadCommand, PyinfraCommand, StringCommand
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.context import ctx_host

from tasks.windows import powershell as ps
from tests.support.powershell import report

CASES_DIR = Path(__file__).resolve().parent / "cases"
HOST_NAME = "win-test"


def fact_key(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))


@dataclass
class FakeHost:
    """The ``host`` an operation sees: facts from the case, no-ops recorded."""

    facts: dict[str, dict[str, Any]]
    name: str = HOST_NAME
    data: dict[str, Any] = field(default_factory=dict)
    noops: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def get_fact(self, cls: type[Any], *args: Any, **kwargs: Any) -> Any:
        assert not args, "operations pass fact arguments by keyword"
        key = fact_key(kwargs)
        self.asked.append(f"{cls.__name__}({key})")
        by_key = self.facts.get(cls.__name__, {})
        if key not in by_key:
            raise AssertionError(f"the case gives no {cls.__name__} fact for {key!r} "
                                 f"(it has {sorted(by_key)})")
        value = by_key[key]
        fact = cls()
        if value is None:
            return fact.default()
        return fact.process([json.dumps(value)])

    def noop(self, description: str) -> None:
        self.noops.append(description)


def describe(command: str | PyinfraCommand) -> str | dict[str, str]:
    """A yielded command in the form case files write it."""
    if isinstance(command, str):
        return command.strip()
    if isinstance(command, FileUploadCommand):
        return {"upload": command.dest}
    if isinstance(command, StringCommand):
        stdin = command.connector_arguments.get("_stdin")
        script = command.get_raw_value()
        if stdin is None:
            return script
        return {"script": script, "stdin": "masked" if isinstance(stdin, HiddenValue)
                else "CLEAR"}
    raise AssertionError(f"unexpected command {command!r}")


def script_of(command: str | dict[str, str]) -> str | None:
    if isinstance(command, str):
        return command
    return command.get("script")


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Result:
    commands: list[str | dict[str, str]]
    host: FakeHost


def run_operation(op: Callable[..., Any], args: dict[str, Any], facts: dict[str, Any],
                  env: dict[str, str] | None = None) -> Result:
    """Run an operation's generator against facts, as pyinfra does when it diffs."""
    fake = FakeHost(facts=facts if facts is not None else {})
    with ctx_host.use(fake), environ(env or {}):
        commands = [describe(c) for c in op._inner(**args)]  # type: ignore[attr-defined]
    for command in commands:
        script = script_of(command)
        if script is not None:
            text = report(ps.wrap(script), "command")
            assert not text, text
    return Result(commands, fake)


def case_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*/*.yaml"))


def load_case(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: a case is a mapping"
    unknown = set(data) - {"description", "args", "environ", "facts", "commands", "noop",
                           "error"}
    assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
    return data


def normalize_expected(commands: list[Any]) -> list[str | dict[str, str]]:
    out: list[str | dict[str, str]] = []
    for command in commands:
        if isinstance(command, str):
            out.append(command.strip())
        else:
            out.append({k: (v.strip() if isinstance(v, str) else v) for k, v in command.items()})
    return out
