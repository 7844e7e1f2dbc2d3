"""Every Windows operation against its data files (cases/<module>.<operation>/*.yaml)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import exceptions

from tests.tasks.windows.opcases import (
    CASES_DIR,
    case_files,
    load_case,
    normalize_expected,
    run_operation,
)

#: Every operation of tasks/windows; each must have cases, among them a no-op.
OPERATIONS = (
    "files.directory", "files.file", "files.put", "files.private_directory",
    "firewall.rule",
    "scheduled_tasks.task", "scheduled_tasks.restarted",
    "eventlog.source",
    "python.interpreter", "python.venv", "python.pip_install",
    "environment.user_variable",
)


def _operation(folder: str) -> Any:
    module, name = folder.rsplit(".", 1)
    return getattr(importlib.import_module(f"tasks.windows.{module}"), name)


@pytest.mark.parametrize("path", case_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_case(path: Path) -> None:
    case = load_case(path)
    op = _operation(path.parent.name)
    if "src" in case.get("args", {}):  # a local file beside the case
        case["args"]["src"] = str(path.parent / case["args"]["src"])
    if "error" in case:
        expected = case["error"]
        error_type = getattr(exceptions, expected["type"])
        with pytest.raises(error_type, match=expected["match"]):
            run_operation(op, case.get("args", {}), case.get("facts", {}), case.get("environ"))
        return
    result = run_operation(op, case.get("args", {}), case.get("facts", {}), case.get("environ"))
    assert result.commands == normalize_expected(case.get("commands", []))
    if case.get("noop"):
        assert result.commands == []
        assert result.host.noops, "a no-op case must say why nothing is done (host.noop)"
    else:
        assert result.commands, f"{path.name}: a case without commands must say noop: true"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_has_cases_including_a_noop(operation: str) -> None:
    files = sorted((CASES_DIR / operation).glob("*.yaml"))
    assert files, f"no cases for {operation}"
    assert any(load_case(f).get("noop") for f in files), f"{operation} has no no-op case"


def test_every_case_folder_names_an_operation() -> None:
    folders = {p.name for p in CASES_DIR.iterdir() if p.is_dir()}
    assert folders == set(OPERATIONS)


def test_cases_carry_no_real_looking_secret() -> None:
    for path in case_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"gsk_[A-Za-z0-9]{20,}", text), path
