"""A real Windows host, deployed with ``pyinfra inventory/windows.py deploy.py``, checked over
WinRM with testinfra and explicit PowerShell that answers in ConvertTo-Json.

Runs when the controller's environment names the host and the account (the same variables
the connector reads), and is skipped with that reason otherwise:

    WINRM_HOST=win-dev.example.net WINRM_USER='WIN-DEV\\pavel' WINRM_PASSWORD=... \\
        .venv/bin/pytest tests/host/windows

Optional: ``WINRM_PORT`` (5986), ``WINRM_NO_VERIFY_SSL=1`` (a self-signed certificate not
trusted through ``REQUESTS_CA_BUNDLE``), ``PF_STACK_FILE`` (the stack the host was deployed
with; inventory/stack.yaml by default), ``PF_WINDOWS_INVENTORY`` (an inventory to deploy
again for the idempotence test), ``PF_WINDOWS_REBOOT=1`` (reboot the host and expect every
task back before anyone logs on).

The facts the deploy uses are run here unchanged (:mod:`tasks.windows.facts`), so this suite
also proves their PowerShell and their parsers against a real Windows.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import testinfra

from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from tasks.render import render
from tasks.render.common import Rendered
from tasks.windows import powershell as ps

REPO = Path(__file__).resolve().parents[3]
REQUIRED = ("WINRM_HOST", "WINRM_USER", "WINRM_PASSWORD")
SKIP_REASON = ("no Windows host configured: set WINRM_HOST, WINRM_USER and WINRM_PASSWORD "
               "(docs/windows.md: Verify a real host) to verify a real Windows host")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if all(os.environ.get(name) for name in REQUIRED):
        return
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def windows_host() -> Any:
    user = urllib.parse.quote(os.environ["WINRM_USER"], safe="")
    password = urllib.parse.quote(os.environ["WINRM_PASSWORD"], safe="")
    port = os.environ.get("WINRM_PORT", "5986")
    spec = f"winrm://{user}:{password}@{os.environ['WINRM_HOST']}:{port}"
    return testinfra.get_host(spec, no_verify_ssl=bool(os.environ.get("WINRM_NO_VERIFY_SSL")))


Run = Callable[[str], Any]


@pytest.fixture(scope="session")
def powershell(windows_host: Any) -> Run:
    """Run a script as the connector does (preamble, -EncodedCommand); returns testinfra's
    CommandResult."""

    def run(script: str) -> Any:
        encoded = ps.encode(ps.wrap(script))
        return windows_host.run(f"powershell.exe -NoProfile -NonInteractive -ExecutionPolicy "
                                f"Bypass -EncodedCommand {encoded}")

    return run


@pytest.fixture(scope="session")
def fact(powershell: Run) -> Callable[..., Any]:
    """Run one of the deploy's facts on the host and parse it with the deploy's parser."""

    def get(cls: type[Any], **kwargs: Any) -> Any:
        instance = cls()
        result = powershell(instance.command(**kwargs))
        assert result.rc == 0, result.stderr
        lines = result.stdout.splitlines()
        return instance.process(lines) if lines else instance.default()

    return get


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(os.environ.get("PF_STACK_FILE", str(REPO / "inventory" / "stack.yaml")))


@pytest.fixture(scope="session")
def lay(stack: Stack) -> Layout:
    return layout(stack, "windows")


@pytest.fixture(scope="session")
def rendered(stack: Stack) -> Rendered:
    return render(stack, "windows")
