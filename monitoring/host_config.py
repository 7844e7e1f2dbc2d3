"""The watchdog's own config file: all it needs on the host, nothing it does not.

Render builds it from stack.yaml (:mod:`tasks.render.watchdog`) and the watchdog loads it with
the same model, so both sides agree on one shape. It holds names of secret variables, never
their values, and resolved values only (endpoints, paths, commands), so the host needs neither
stack.yaml nor the controller's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProxySpec(_Model):
    """The local LiteLLM proxy and how to reach, probe and (re)start it."""

    url: str
    master_key_env: str
    version: str
    liveliness_path: str = "/health/liveliness"
    models_path: str = "/v1/models"
    metrics_path: str
    models: list[str]
    config_path: str
    command: list[str]
    env: dict[str, str]
    systemd_unit: str | None
    windows_task: str | None
    #: Restarts the proxy where a script owns it (Windows: manage-litellm.ps1 -Action restart).
    restart_command: list[str] | None = None
    #: LiteLLM call types opened on purpose beside the recorded ones (monitoring.proxy.policy).
    open_call_types: list[str] = []


class ProviderSpec(_Model):
    """One upstream provider, probed directly with ``GET <api_base>/models`` (unbilled)."""

    name: str
    api_base: str
    api_key_env: str
    models: list[str]


class ModelPrice(_Model):
    provider: str
    upstream_model: str
    input_usd_per_1k: float
    output_usd_per_1k: float
    is_free: bool


class TargetSpec(_Model):
    """A failover target and the exact keys written into agent files when it is active.

    ``route`` is the health route that gates it: ``litellm`` for the proxy, a provider name for
    a direct target, None for a provider built into the agent (always available). ``via`` are
    the provider routes behind the proxy (its model and LiteLLM's fallbacks for it): the proxy
    target is usable while at least one of them is.
    """

    name: str
    label: str
    kind: Literal["litellm", "direct", "agent"]
    route: str | None
    via: list[str] = []
    is_free: bool
    settings: dict[str, str]
    #: What the agent adapters (monitoring/agents) need: the base URL per wire format the
    #: target serves, the model name agents send, the variable holding its key, and for a
    #: ``kind: agent`` target the adapter it is built into.
    endpoints: dict[str, str] = {}
    model: str = ""
    api_key_env: str | None = None
    agent: str | None = None


class AgentSpec(_Model):
    """An enrolled agent: its adapter, its own fallback order (target names), and for the
    generic JSON adapter the file."""

    name: str
    adapter: str | None = None
    order: list[str] = []
    path: str | None = None


class Probes(_Model):
    interval: float
    timeout: float
    provider_interval: float
    metrics_interval: float
    completion_enabled: bool
    completion_interval: float
    completion_model: str


class Hysteresis(_Model):
    failure_threshold: int
    success_threshold: int
    min_dwell: float
    half_open_after: float
    max_switches_per_hour: int


class Restart(_Model):
    backoff_initial: float
    backoff_max: float
    max_per_hour: int
    startup_timeout: float
    #: Silence (no reply at all) after which a proxy whose CPU time stands still is hung.
    hang_after: float = 20.0


class Paths(_Model):
    log_dir: str
    state_dir: str
    event_log: str
    event_jsonl: str
    state_file: str
    cost_log: str
    alert_log: str
    provider_config: str


class BudgetSpec(_Model):
    monthly_usd: float
    warning_percent: float
    critical_percent: float
    exceeded_percent: float
    daily_warning_usd: float
    free_allow_list: list[str]
    #: Runbook 9.2: the provider each task type prefers among the free ones.
    task_preferences: dict[str, str] = {}

    @property
    def exceeded_usd(self) -> float:
        """The spend at which the status is EXCEEDED and the kill switch activates."""
        return self.monthly_usd * self.exceeded_percent / 100


class DegradedSpec(_Model):
    """The proxy's degraded-mode cache (runbook 7.1): last good answers, served stale."""

    enabled: bool
    model: str
    ttl_s: float
    cache_dir: str
    #: Bounds of the cache (monitoring/proxy/degraded_cache.py has the eviction rule).
    max_entries: int = 1000
    max_bytes: int = 32 * 1024 * 1024


class WindowsEvents(_Model):
    source: str
    log: str
    fallback: int
    restored: int
    error: int
    kill_switch: int


class WindowsSide(_Model):
    """A WSL person's Windows-side agents: their profile as WSL sees it, and the targets as
    Windows reaches them (the proxy at ``127.0.0.1``: WSL forwards IPv4 loopback only)."""

    home: str
    targets: list[TargetSpec]


class Listen(_Model):
    host: str
    port: int = Field(ge=1, le=65535)


#: Keys of an agent file that the switch owns; every other key belongs to the user.
OWNED_KEYS: tuple[str, ...] = ("provider", "endpoint", "model")


class WatchdogConfig(_Model):
    """Everything the watchdog reads at start-up."""

    os: Literal["linux", "windows"]
    listen: Listen
    proxy: ProxySpec
    providers: list[ProviderSpec]
    models: dict[str, ModelPrice]
    targets: list[TargetSpec]
    agents: list[AgentSpec]
    probes: Probes
    hysteresis: Hysteresis
    restart: Restart
    min_healthy_providers: int
    paths: Paths
    budget: BudgetSpec
    windows_events: WindowsEvents | None
    #: LiteLLM's fallback chains (model alias -> aliases), for the kill switch's substitutes.
    fallbacks: dict[str, list[str]] = {}
    degraded: DegradedSpec | None = None
    #: Whose agent files are switched: None is the watchdog's own home.
    agent_home: str | None = None
    #: WSL: the person's Windows-side agents too (monitoring/agents/follower.py).
    windows_side: WindowsSide | None = None

    @classmethod
    def load(cls, path: str | Path) -> WatchdogConfig:
        """Read the rendered file; a bad one raises pydantic's ValidationError naming fields."""
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
