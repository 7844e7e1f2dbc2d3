"""The last gate of render: every artifact passes the strictest parser of its format.

Validation of stack.yaml decides what values are allowed; the quoting helpers of each renderer
decide how they are written. This module checks the result, so a value that slips past both
(a new field, a new template) is caught before anything is written or deployed, never on a
host. It is defence in depth, and its failures are render bugs: the report names the file.

Two levels:

* :func:`format_problems` runs in-process on every render (milliseconds): JSON without
  ``NaN``/``Infinity``, YAML (with keys given twice refused), XML, PowerShell through
  tree-sitter-powershell when it is installed, and no two artifacts on one host path (case
  does not make a Windows path different).
* :func:`tool_problems` runs the real tools that are installed on the controller, from the
  render command and the deploy before anything is written: ``promtool check config`` (it
  checks the rule files too), ``amtool check-config``, ``systemd-analyze verify`` (in a
  scratch root, so the controller's own units are not involved), ``sh -n`` for the init
  script and Debian's ``ARGS`` files, and ``actionlint`` for the workflow when it is on PATH.
  The tests run every one of them, over many generated stacks, whatever the controller has.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from monitoring.stack import reader as stack_yaml
from monitoring.stack.checks import Path as StackPath
from monitoring.stack.checks import Problem
from monitoring.stack.load import StackError
from monitoring.stack.reader import YamlError
from monitoring.stack.schema import Stack
from tasks.render.common import Artifact, Rendered

#: What a format failure asks the user to do: the stack was valid, the file is not.
BUG = ("a file its tool accepts: render let a value through that it should have refused or "
       "quoted; please report it with this message (nothing was written)")
#: Seconds one tool may take on a loaded controller.
TOOL_TIMEOUT_S = 120
SYSTEM_UNITS = Path("/lib/systemd/system")




class RenderError(StackError):
    """The rendered files fail the final check; ``str()`` is the one report."""

    def __init__(self, problems: list[Problem], source: str = "render") -> None:
        super().__init__(source, problems)


# --------------------------------------------------------------------------- in-process


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _json(data: bytes) -> None:
    json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def _yaml(data: bytes) -> None:
    try:
        stack_yaml.load(data.decode("utf-8"))
    except YamlError as exc:
        raise ValueError(exc.problem.found) from None


def _xml(data: bytes) -> None:
    ElementTree.fromstring(data)  # noqa: S314 (our own output, parsed to check it)


def _powershell(data: bytes) -> None:
    try:
        import tree_sitter  # type: ignore[import-not-found,unused-ignore]
        import tree_sitter_powershell
    except ImportError:  # a controller without the dev extras: the tests run it
        return
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    tree = parser.parse(data.decode("utf-8").removeprefix("\ufeff").encode("utf-8"))
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            raise ValueError(f"PowerShell that does not parse at line {node.start_point.row + 1}")
        stack.extend(node.children)


CHECKERS: dict[str, Callable[[bytes], None]] = {
    ".json": _json, ".yml": _yaml, ".yaml": _yaml, ".xml": _xml, ".ps1": _powershell,
}


def _dest_key(artifact: Artifact) -> str:
    """A host path as the host's file system compares it."""
    if re.match(r"^[A-Za-z]:\\", artifact.dest):
        return str(PureWindowsPath(artifact.dest)).casefold()
    return str(PurePosixPath(artifact.dest))


def _stack_strings(value: Any, path: StackPath = ()) -> Iterator[tuple[StackPath, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _stack_strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _stack_strings(item, (*path, i))
    elif isinstance(value, str):
        yield path, value


def _field_for(stack: Stack, dest: str) -> StackPath:
    """The stack field whose directory holds ``dest`` (the longest one), to name in a report."""
    key = dest.casefold()
    best: tuple[int, StackPath] = (0, ())
    for path, value in _stack_strings(stack.model_dump(mode="json")):
        if not re.match(r"^(/|[A-Za-z]:\\)", value):
            continue
        base = value.casefold().rstrip("/\\")
        if len(base) > best[0] and key.startswith(base) and key[len(base):len(base) + 1] in (
                "/", "\\"):
            best = (len(base), path)
    return best[1]


def format_problems(stack: Stack, rendered: Rendered) -> list[Problem]:
    """What the in-process parsers and the one-file-per-path rule find wrong; empty if none."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for rel, artifact in rendered.items():
        other = seen.setdefault(_dest_key(artifact), rel)
        if other != rel:
            problems.append(Problem(
                _field_for(stack, artifact.dest) or (rel,),
                f"{other} and {rel} both land on {artifact.dest}",
                "one file per host path: give this directory (or name) one of its own"))
        check = CHECKERS.get(PurePosixPath(rel).suffix)
        if check is None or artifact.secret:
            continue
        try:
            check(artifact.data)
        except (ValueError, UnicodeDecodeError, ElementTree.ParseError) as exc:
            problems.append(Problem((rel,), f"{rel} is not valid {PurePosixPath(rel).suffix[1:]}"
                                    f" ({exc})", BUG))
    return problems


# --------------------------------------------------------------------------- real tools


def _run(argv: list[str], cwd: Path) -> str | None:
    """None when the tool accepts, else its output (stdout and stderr)."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not finish in {TOOL_TIMEOUT_S}s"
    output = (done.stdout + done.stderr).strip()
    return None if done.returncode == 0 else output or f"exit status {done.returncode}"


def _exec_paths(unit: bytes) -> list[str]:
    """The programs a unit's Exec lines start (for stubs in the scratch root)."""
    paths = []
    for line in unit.decode("utf-8").splitlines():
        if re.match(r"^Exec[A-Za-z]*=", line):
            words = shlex.split(line.split("=", 1)[1])
            if words:
                paths.append(words[0].lstrip("-@+!:"))
    return paths


def _systemd_verify(units: dict[str, bytes], tmp: Path) -> str | None:
    """``systemd-analyze verify`` of ``units`` inside a scratch root holding the machine's own
    system units (the targets they name) and stub programs at the paths they start."""
    root = tmp / "systemd-root"
    if SYSTEM_UNITS.is_dir():
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, data in units.items():
        (unit_dir / name).write_bytes(data)
        for exe in _exec_paths(data):
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    try:
        done = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units], cwd=tmp,
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        return f"systemd-analyze did not finish in {TOOL_TIMEOUT_S}s"
    # Bad values are warnings that leave the exit status 0: any output at all is a finding.
    output = (done.stdout + done.stderr).strip()
    return output or (f"exit status {done.returncode}" if done.returncode else None)


def tool_problems(rendered: Rendered, tools: dict[str, str] | None = None) -> list[Problem]:
    """What the real tools installed here say about ``rendered``; empty when they accept it
    (or are not installed: :func:`available_tools` tells which ran)."""
    have = available_tools() if tools is None else tools
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="pf-render-check-") as name:
        tmp = Path(name)
        for rel, artifact in rendered.items():
            if artifact.secret:
                continue
            path = tmp / "tree" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(artifact.data)
        tree = tmp / "tree"

        def check(rel: str, argv: list[str]) -> None:
            found = _run(argv, tree)
            if found is not None:
                problems.append(Problem((rel,), f"{argv[0]} refuses it: {found[-1500:]}", BUG))

        for rel in rendered:
            if rendered[rel].secret:
                continue
            if rel.endswith("prometheus.yml") and "promtool" in have:
                check(rel, [have["promtool"], "check", "config", rel])
            elif rel.endswith("alertmanager.yml") and "amtool" in have:
                check(rel, [have["amtool"], "check-config", rel])
            elif rel.startswith(("sysvinit/", "default/")) and "sh" in have:
                check(rel, [have["sh"], "-n", rel])
            elif rel.startswith("github/") and "actionlint" in have:
                check(rel, [have["actionlint"], "-no-color", rel])
        units = {PurePosixPath(rel).name: a.data for rel, a in rendered.items()
                 if rel.endswith(".service")}
        if units and "systemd-analyze" in have:
            found = _systemd_verify(units, tmp)
            if found is not None:
                problems.append(Problem(("systemd",), f"systemd-analyze verify: {found[-1500:]}",
                                        BUG))
    return problems


def available_tools() -> dict[str, str]:
    """The checking tools on this controller, by name."""
    names = ("promtool", "amtool", "systemd-analyze", "sh", "actionlint")
    return {name: path for name in names if (path := shutil.which(name))}
