"""A watchdog config for the CLI's tests whose every file lives under a temporary directory."""

from __future__ import annotations

from pathlib import Path

from monitoring.host_config import WatchdogConfig
from monitoring.stack.layout import layout
from monitoring.stack.schema import Stack
from tasks.render import watchdog


def temp_host_config(stack: Stack, root: Path) -> tuple[Path, WatchdogConfig]:
    """The stack's rendered Linux watchdog config with its paths under ``root``, written to
    ``root/watchdog.json``: (that path, the config)."""
    base = watchdog.build(stack, layout(stack, "linux"))
    log = root / "log"
    paths = base.paths.model_copy(update={
        "state_dir": str(root / "state"), "log_dir": str(log),
        "event_log": str(log / "events.log"), "event_jsonl": str(log / "events.jsonl"),
        "state_file": str(root / "state" / "state.json"),
        "cost_log": str(log / "costs.log"), "alert_log": str(log / "alerts.log"),
        "provider_config": str(root / "home" / "provider-config.json")})
    # Agent files too: a `switch` in a test must never touch the real home's agent configs.
    config = base.model_copy(update={"paths": paths, "agent_home": str(root / "home")})
    path = root / "watchdog.json"
    path.write_text(config.model_dump_json())
    return path, config
