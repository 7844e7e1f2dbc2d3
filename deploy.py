"""pyinfra entry point: ``pyinfra inventory/<hosts>.py deploy.py``.

Every host first gets its stack: inventory/stack.yaml (or host data ``stack_file``) merged with
the host's ``stack`` data and validated as one (a bad value stops the run before any change,
with the report naming each field). Render turns it into the host's files, with the secret
values read from the controller's environment (only the variables the stack names). Then the
packaged deploy of the host's OS (``target_os`` host data, ``linux`` by default) puts them in
place: :func:`tasks.linux.linux_stack` (Linux and WSL) or :func:`tasks.windows.deploy.windows_stack`
(Windows over WinRM).
"""

from __future__ import annotations

import os
import sys

from pyinfra import host, logger  # type: ignore[attr-defined]

from monitoring.stack.checks import Problem
from monitoring.stack.layout import TARGET_OSES
from monitoring.stack.load import StackError, line_index, load_stack
from tasks.render import render
from tasks.render.__main__ import EXIT_INVALID
from tasks.render.validate import RenderError, tool_problems
from tasks.secrets import controller_secrets, master_key_file

stack_file = host.data.get("stack_file", "inventory/stack.yaml")
_absent = object()
# Absent `stack` host data means no overrides; any value given (even None or {}) is checked
# by load_stack: an empty one is refused rather than silently ignored.
_overrides = host.data.get("stack", _absent)
try:
    if not isinstance(stack_file, str | os.PathLike):
        raise StackError(f"{host.name}: host data stack_file", [Problem(
            ("stack_file",), repr(type(stack_file).__name__), "the path of a stack file")])
    stack_file = os.fspath(stack_file)
    stack = load_stack(stack_file, None if _overrides is _absent else _overrides)
    target = host.data.get("target_os", "linux")
    if target not in TARGET_OSES:
        raise StackError(f"{host.name}: host data target_os", [Problem(
            ("target_os",), repr(target), f"one of {', '.join(TARGET_OSES)}")])
except StackError as exc:
    print(exc.report(), file=sys.stderr)
    raise SystemExit(EXIT_INVALID) from None

# Linux: without LITELLM_MASTER_KEY in the environment a key generated for the host is used
# (tasks/secrets.py). Windows keeps the keys in the user's environment, set from this one.
generate = target == "linux" and not os.environ.get(stack.litellm.master_key_env)
secrets = controller_secrets(stack, host_name=host.name if generate else None)
if generate:
    logger.warning(f"{host.name}: {stack.litellm.master_key_env} is not set: the proxy uses the "
                   f"master key generated for this host, kept in {master_key_file(host.name)}")
try:
    # Every file passes its format's parser (render) and the real tools installed on this
    # controller (promtool, amtool, systemd-analyze, ...) before anything reaches the host.
    rendered = render(stack, target, secrets)
    _problems = tool_problems(rendered)
    if _problems:
        raise RenderError(_problems, stack_file)
except StackError as exc:
    print(StackError(stack_file, exc.problems, line_index(stack_file)).report(), file=sys.stderr)
    raise SystemExit(EXIT_INVALID) from None
logger.info(f"{host.name}: stack valid, {len(rendered)} files rendered for {target}")

if target == "windows":
    from tasks.windows.deploy import windows_stack

    windows_stack(stack=stack, rendered=rendered)
else:
    from tasks.linux import linux_stack

    linux_stack(stack=stack, rendered=rendered)
