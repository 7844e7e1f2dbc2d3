"""The watchdog config file (``watchdog/watchdog.json``), resolved from stack.yaml.

Everything in it is a final value (URLs, paths, commands, the agent-file keys of each target)
so the watchdog on the host never re-derives what render already knows.
"""

from __future__ import annotations

from monitoring import metrics
from monitoring.agents.wire import target_endpoints, windows_proxy_root
from monitoring.host_config import (
    AgentSpec,
    BudgetSpec,
    DegradedSpec,
    Hysteresis,
    Listen,
    ModelPrice,
    Paths,
    Probes,
    ProviderSpec,
    ProxySpec,
    Restart,
    TargetSpec,
    WatchdogConfig,
    WindowsEvents,
    WindowsSide,
)
from monitoring.proxy.cost_log import DEGRADED_MODEL
from monitoring.stack.layout import Layout, host_env_name, proxy_command, proxy_env
from monitoring.stack.schema import AgentTarget, DirectTarget, LitellmTarget, Stack
from monitoring.watchdog.probes import PROXY_ROUTE
from tasks.render import windows
from tasks.render.common import Artifact, Rendered, dump_json


def _provider_config(path: str, lay: Layout) -> str:
    """The kill switch's file as ONE absolute path on Linux: ``~`` is the service account's
    home, which the deploy makes the state directory. The proxy (its unit sets HOME there),
    the watchdog and a ``provider-fallback budget`` run by the developer or through sudo must
    all read and write the same file, whatever their own HOME is. On Windows everything runs
    as the one user whose profile ``~`` is."""
    if lay.os == "linux" and (path == "~" or path.startswith("~/")):
        return lay.join(lay.state_dir, path[2:]) if len(path) > 1 else lay.state_dir
    return path


def _providers(stack: Stack) -> list[ProviderSpec]:
    """One entry per provider; its models share api_base and key (checked by the schema)."""
    out: dict[str, ProviderSpec] = {}
    for alias, model in stack.litellm.models.items():
        seen = out.get(model.provider)
        models = [*seen.models, alias] if seen else [alias]
        out[model.provider] = ProviderSpec(name=model.provider, api_base=model.api_base,
                                           api_key_env=host_env_name(stack, model.api_key_env),
                                           models=models)
    return list(out.values())


def _windows_side(stack: Stack, lay: Layout) -> WindowsSide | None:
    """A WSL person's Windows-side agents (``linux.windows_profile``): the same targets,
    the proxy's at ``http://127.0.0.1:<port>``."""
    profile = stack.linux.windows_profile
    if lay.os != "linux" or profile is None:
        return None
    root = windows_proxy_root(stack)
    targets = []
    for target in stack.targets:
        spec = _target(stack, target)
        if isinstance(target, LitellmTarget):
            spec = spec.model_copy(update={
                "endpoints": target_endpoints(stack, target, proxy_root=root),
                "settings": {**spec.settings, "endpoint": root}})
        targets.append(spec)
    return WindowsSide(home=profile, targets=targets)


def _target(stack: Stack, target: LitellmTarget | DirectTarget | AgentTarget) -> TargetSpec:
    if isinstance(target, AgentTarget):
        return TargetSpec(name=target.name, label=target.label, kind="agent", route=None,
                          is_free=target.is_free,
                          settings={"provider": target.provider, "model": target.model},
                          model=target.model, agent=target.agent)
    model = stack.litellm.models[target.model]
    if isinstance(target, LitellmTarget):
        # Runbook 4.3: provider litellm, the proxy's endpoint, a model alias it serves.
        chain = [target.model, *stack.litellm.fallbacks.get(target.model, [])]
        via = list(dict.fromkeys(stack.litellm.models[alias].provider for alias in chain))
        return TargetSpec(name=target.name, label=target.label, kind="litellm",
                          route=PROXY_ROUTE, via=via, is_free=model.is_free,
                          settings={"provider": "litellm", "endpoint": stack.proxy_url,
                                    "model": target.model},
                          endpoints=target_endpoints(stack, target), model=target.model,
                          api_key_env=stack.litellm.master_key_env)
    return TargetSpec(name=target.name, label=target.label, kind="direct",
                      route=model.provider, is_free=model.is_free,
                      settings={"provider": model.provider, "endpoint": model.api_base,
                                "model": model.upstream_model},
                      endpoints=target_endpoints(stack, target), model=model.upstream_model,
                      api_key_env=model.api_key_env)


def build(stack: Stack, lay: Layout) -> WatchdogConfig:
    """The watchdog config for one host OS."""
    wd = stack.watchdog
    win = stack.windows
    budget = stack.budget
    return WatchdogConfig(
        os=lay.os,
        listen=Listen(host=wd.listen.host, port=wd.listen.port),
        proxy=ProxySpec(
            url=stack.proxy_url,
            master_key_env=stack.litellm.master_key_env,
            version=stack.litellm.version,
            metrics_path=metrics.LITELLM_METRICS_PATH,
            models=list(stack.litellm.models),
            config_path=lay.litellm_config,
            command=proxy_command(stack, lay),
            env=proxy_env(stack),
            systemd_unit=stack.linux.units.litellm if lay.os == "linux" else None,
            windows_task=(win.tasks.folder + win.tasks.litellm) if lay.os == "windows" else None,
            restart_command=[windows.POWERSHELL, "-NoProfile", "-NonInteractive",
                             "-ExecutionPolicy", "Bypass", "-File",
                             windows.manage_script_path(lay), "-Action", "restart"]
            if lay.os == "windows" else None,
            open_call_types=list(stack.litellm.open_call_types),
        ),
        providers=_providers(stack),
        models={alias: ModelPrice(provider=m.provider, upstream_model=m.upstream_model,
                                  input_usd_per_1k=m.input_usd_per_1k,
                                  output_usd_per_1k=m.output_usd_per_1k, is_free=m.is_free)
                for alias, m in stack.litellm.models.items()},
        targets=[_target(stack, t) for t in stack.targets],
        agents=[AgentSpec(name=a.name, adapter=a.adapter, order=list(a.order or []),
                          path=getattr(a.path, lay.os) if a.path else None)
                for a in stack.agents],
        probes=Probes(interval=wd.probe_interval, timeout=wd.probe_timeout,
                      provider_interval=wd.provider_probe_interval,
                      metrics_interval=wd.metrics_probe_interval,
                      completion_enabled=wd.completion_probe.enabled,
                      completion_interval=wd.completion_probe.interval,
                      completion_model=wd.completion_probe.model),
        hysteresis=Hysteresis(failure_threshold=wd.failure_threshold,
                              success_threshold=wd.success_threshold, min_dwell=wd.min_dwell,
                              half_open_after=wd.half_open_after,
                              max_switches_per_hour=wd.max_switches_per_hour),
        restart=Restart(backoff_initial=wd.restart.backoff_initial,
                        backoff_max=wd.restart.backoff_max,
                        max_per_hour=wd.restart.max_per_hour,
                        startup_timeout=wd.restart.startup_timeout,
                        hang_after=wd.restart.hang_after),
        min_healthy_providers=wd.min_healthy_providers,
        paths=Paths(log_dir=lay.log_dir, state_dir=lay.state_dir,
                    event_log=lay.log(wd.event_log), event_jsonl=lay.log(wd.event_jsonl),
                    state_file=lay.state(wd.state_file), cost_log=lay.log(budget.cost_log),
                    alert_log=lay.log(budget.alert_log),
                    provider_config=_provider_config(getattr(budget.provider_config, lay.os),
                                                     lay)),
        budget=BudgetSpec(monthly_usd=budget.monthly_usd,
                          warning_percent=budget.levels_percent.warning,
                          critical_percent=budget.levels_percent.critical,
                          exceeded_percent=budget.levels_percent.exceeded,
                          daily_warning_usd=budget.daily_warning,
                          free_allow_list=list(budget.free_allow_list),
                          task_preferences=dict(budget.task_preferences)),
        windows_events=WindowsEvents(source=win.event_log.source, log=win.event_log.log,
                                     fallback=win.event_log.ids.fallback,
                                     restored=win.event_log.ids.restored,
                                     error=win.event_log.ids.error,
                                     kill_switch=win.event_log.ids.kill_switch)
        if lay.os == "windows" else None,
        fallbacks={alias: list(chain) for alias, chain in stack.litellm.fallbacks.items()},
        # Whose agents: on Linux the service account, whose home the deploy makes the state
        # directory (so `provider-fallback agents` run by a person shows the files the
        # watchdog really switches); on Windows the one user the tasks run as.
        agent_home=lay.state_dir if lay.os == "linux" else None,
        windows_side=_windows_side(stack, lay),
        degraded=DegradedSpec(enabled=stack.litellm.cache.enabled, model=DEGRADED_MODEL,
                              ttl_s=stack.litellm.cache.ttl,
                              cache_dir=lay.state("degraded-cache"),
                              max_entries=stack.litellm.cache.max_entries,
                              max_bytes=int(stack.litellm.cache.max_megabytes * 1024 * 1024)),
    )


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """``watchdog/watchdog.json``: no secrets in it (names of variables only)."""
    data = dump_json(build(stack, lay).model_dump(mode="json"))
    return {"watchdog/watchdog.json": Artifact(data, lay.watchdog_config, mode=0o644)}
