"""Secret values for a deploy: read from the controller's environment, never from a file
that is not the controller's own.

Only the variables the stack names (``*_env`` fields) are read, so nothing else of the
controller's environment can reach a host.

The proxy's master key is the exception to "unset means left out": LiteLLM refuses to start
without one (it exits asking for LITELLM_MASTER_KEY), so a deploy with none in the
environment uses a random key made for that host once and kept on the controller, user-only,
in ``$XDG_CONFIG_HOME/provider-fallback/master-keys/<host>.key`` (the same key on every later
deploy: a second deploy changes nothing). Export the variable to choose your own.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from monitoring.atomic import atomic_write
from monitoring.stack.schema import Stack


def master_key_file(host_name: str, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host_name) or "host"
    return base / "provider-fallback" / "master-keys" / f"{safe}.key"


def generated_master_key(host_name: str, environ: Mapping[str, str] | None = None) -> str:
    """This host's generated master key, made (0600, atomically) on first use."""
    path = master_key_file(host_name, environ)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = "sk-" + secrets.token_urlsafe(32)
    atomic_write(path, (key + "\n").encode(), new_mode=0o600)
    return key


def controller_secrets(stack: Stack, environ: Mapping[str, str] | None = None,
                       host_name: str | None = None) -> dict[str, str]:
    """The set, non-empty values of the stack's secret variables in ``environ`` (os.environ);
    with ``host_name``, the master key falls back to the one generated for that host."""
    env = os.environ if environ is None else environ
    found = {name: env[name] for name in stack.secret_env_names() if env.get(name)}
    master = stack.litellm.master_key_env
    if host_name is not None and master not in found:
        found[master] = generated_master_key(host_name, env)
    return found
