"""The LiteLLM proxy: its config file, its environment and its command line.

The config is built as data from stack.yaml. Keys are never in it: each model's key and the
master key are ``os.environ/NAME`` references that LiteLLM resolves at start-up.
"""

from __future__ import annotations

from typing import Any

from monitoring.layout import Layout
from monitoring.stack import Stack
from tasks.render.common import Rendered

#: Environment every proxy start needs. Without the local cost map LiteLLM fetches a JSON file
#: from the internet at start-up (and hangs on a host without it).
PROXY_ENV: dict[str, str] = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def proxy_command(stack: Stack, lay: Layout) -> list[str]:
    """The proxy's command line. ``python -m litellm`` (the runbook's) does not start the proxy:
    the package has no ``__main__``; ``litellm.proxy.proxy_cli`` is what the console script runs.
    """
    listen = stack.litellm.listen
    return [lay.python, "-m", "litellm.proxy.proxy_cli", "--config", lay.litellm_config,
            "--host", listen.host, "--port", str(listen.port)]


def watchdog_command(lay: Layout) -> list[str]:
    """The watchdog's command line (the ``provider-fallback`` console script)."""
    return [lay.watchdog_bin, "watch", "--config", lay.watchdog_config]


def config(stack: Stack) -> dict[str, Any]:
    """LiteLLM's proxy config as data (filled in below)."""
    return {}


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    return {}
