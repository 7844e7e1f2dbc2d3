"""pyinfra entry point: ``pyinfra inventory/<hosts>.py deploy.py``.

Every host first gets its stack: inventory/stack.yaml (or host data ``stack_file``) merged with
the host's ``stack`` data and validated as one (a bad value stops the run before any change,
with the report naming each field). The provisioning tasks for Linux/WSL and Windows build on
this (see the README's status section).
"""

from __future__ import annotations

from pyinfra import host, logger  # type: ignore[attr-defined]

from monitoring.stack_load import StackError, load_stack
from tasks.render import render

stack_file = host.data.get("stack_file", "inventory/stack.yaml")
try:
    stack = load_stack(stack_file, host.data.get("stack"))
except StackError as exc:
    raise SystemExit(exc.report()) from None

target = host.data.get("target_os", "linux")
rendered = render(stack, target)
logger.info(f"{host.name}: stack valid, {len(rendered)} files rendered for {target}")
