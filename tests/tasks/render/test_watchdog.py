"""The rendered watchdog config: loadable by the watchdog, resolved, secret-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.host_config import OWNED_KEYS, WatchdogConfig
from monitoring.stack.layout import TARGET_OSES, TargetOS, layout
from monitoring.stack.schema import AgentTarget, Stack
from tasks.render import render

REL = "watchdog/watchdog.json"


@pytest.mark.parametrize("target", TARGET_OSES)
def test_the_watchdog_loads_what_render_writes(stack: Stack, target: TargetOS,
                                               tmp_path: Path) -> None:
    artifact = render(stack, target)[REL]
    path = tmp_path / "watchdog.json"
    path.write_bytes(artifact.data)
    config = WatchdogConfig.load(path)
    lay = layout(stack, target)
    assert artifact.dest == lay.watchdog_config
    assert config.os == target
    assert config.proxy.url == stack.proxy_url
    assert config.listen.port == stack.watchdog.listen.port
    assert config.paths.event_log == lay.log(stack.watchdog.event_log)
    assert config.paths.state_file == lay.state(stack.watchdog.state_file)
    assert (config.windows_events is not None) == (target == "windows")
    assert (config.proxy.systemd_unit is not None) == (target == "linux")


def test_targets_keep_priority_order_and_write_only_owned_keys(stack: Stack,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(render(stack, "linux")[REL].data)
    config = WatchdogConfig.load(path)
    assert [t.name for t in config.targets] == [t.name for t in stack.targets]
    for spec in config.targets:
        assert set(spec.settings) <= set(OWNED_KEYS)
    primary = config.targets[0]
    # Runbook 4.3: provider litellm, the proxy's endpoint, the model alias.
    assert primary.settings == {"provider": "litellm", "endpoint": stack.proxy_url,
                                "model": stack.targets[0].model}
    kilo = next(t for t in stack.targets if isinstance(t, AgentTarget))
    spec = next(t for t in config.targets if t.name == kilo.name)
    # Runbook 3.1: {"provider": "z-ai", "model": "glm-5:free"}
    assert spec.settings == {"provider": kilo.provider, "model": kilo.model}
    assert spec.route is None


def test_each_provider_is_probed_once_with_its_key_name(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(render(stack, "linux")[REL].data)
    config = WatchdogConfig.load(path)
    providers = {m.provider for m in stack.litellm.models.values()}
    assert sorted(p.name for p in config.providers) == sorted(providers)
    assert sorted(a for p in config.providers for a in p.models) == sorted(stack.litellm.models)
    assert config.proxy.master_key_env == stack.litellm.master_key_env
