"""The typed shape of ``inventory/stack.yaml``, the one source of the whole bundle.

Every port, path, provider, model, threshold, budget and version the bundle uses is a field
here; render, the deploy tasks, the rule and dashboard builders and the watchdog config all read
it from this model, so nothing is repeated by hand. Structure (types, unknown keys, ranges) is
checked by pydantic; references between sections (a fallback naming a model, two services on
one port) are checked afterwards by :mod:`monitoring.stack_checks`; loading, host overrides and
the one error report live in :mod:`monitoring.stack_load`.

Models are frozen and forbid unknown keys: a typo in stack.yaml is an error, never a silently
ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, IPvAnyNetwork
from pydantic_core import PydanticCustomError

# --------------------------------------------------------------------------- scalar types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


_DURATION_HELP = "a duration such as 30s, 5m, 1h or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a Prometheus-style duration such as ``1h30m``.

    One duration type for the whole file, so a user writes ``30s`` for an alert and for a probe
    alike; render turns seconds back into Prometheus syntax where Prometheus reads it.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("duration", _DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or _DURATION_PART.sub("", text) != "":
            raise PydanticCustomError(
                "duration", "a duration such as 30s, 5m, 1h30m or a number of seconds"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise PydanticCustomError("duration", _DURATION_HELP)
    if seconds <= 0:
        raise PydanticCustomError("duration", "a positive duration (greater than 0)")
    return seconds


def prom_duration(seconds: float) -> str:
    """Prometheus duration syntax for a number of seconds (``90`` -> ``1m30s``)."""
    millis = round(seconds * 1000)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Shapes of real provider keys; anything long, mixed and without spaces is treated alike.
_SECRET_SHAPES = re.compile(
    r"^(gsk_|sk-|sk_|xai-|AIza|ghp_|github_pat_|hf_|pk-|rk-|eyJ)|^[A-Za-z0-9_\-./+=]{24,}$"
)


def looks_like_secret(value: str) -> bool:
    """True for a value shaped like an API key or token (used to refuse and to redact)."""
    return bool(_SECRET_SHAPES.search(value)) and not ENV_NAME.match(value)


def _env_name(value: str) -> str:
    if ENV_NAME.match(value):
        return value
    if looks_like_secret(value):
        raise PydanticCustomError(
            "pasted_secret",
            "the NAME of an environment variable, not its value: this looks like a pasted key."
            " Put the key in the environment (or the secrets file) and write its variable name"
            " here, e.g. GROQ_API_KEY",
        )
    raise PydanticCustomError(
        "env_name", "an environment variable NAME: capitals, digits and _ (e.g. GROQ_API_KEY)"
    )


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError("ip", "an IP address such as 127.0.0.1") from None


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise PydanticCustomError("url", "an http:// or https:// URL")
    return value.rstrip("/")


#: LiteLLM releases known to be compromised (the March 2026 supply-chain incident and the
#: 1.107 line); a stack naming one is refused before anything is rendered.
COMPROMISED_LITELLM = re.compile(r"^(1\.82\.7|1\.82\.8|1\.107\.\d+)$")


def _pinned_version(value: str) -> str:
    if not re.match(r"^\d+\.\d+\.\d+$", value):
        raise PydanticCustomError(
            "version", "an exact version X.Y.Z (the proxy is installed pinned, with hashes)"
        )
    if COMPROMISED_LITELLM.match(value):
        raise PydanticCustomError(
            "compromised",
            "a LiteLLM release that is not known to be compromised (1.82.7, 1.82.8 and every"
            " 1.107.x are refused); pin 1.108.7",
        )
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
EnvName = Annotated[str, AfterValidator(_env_name)]
IP = Annotated[str, AfterValidator(_ip)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Port = Annotated[int, Field(ge=1, le=65535)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
Price = Annotated[float, Field(ge=0)]
Money = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveCount = Annotated[int, Field(ge=1)]
Percent = Annotated[float, Field(gt=0, le=1000)]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
LitellmVersion = Annotated[str, AfterValidator(_pinned_version)]


class Strict(BaseModel):
    """Base of every section: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(Strict):
    """An address and port a service binds, and how a local client reaches it."""

    host: IP
    port: Port

    @property
    def bind(self) -> str:
        """``host:port`` for a listen flag (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def connect(self) -> str:
        """``host:port`` a client on the same host connects to.

        A service bound to every address (``0.0.0.0`` or ``::``) is reached on loopback:
        connecting to the unspecified address works on Linux but fails on Windows, and
        loopback is always among the addresses such a service listens on.
        """
        ip = ipaddress.ip_address(self.host)
        if ip.is_unspecified:
            ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://`` + :attr:`connect`."""
        return f"http://{self.connect}"


class OsPaths(Strict):
    """One path per target OS (Linux covers WSL)."""

    linux: str = Field(min_length=1)
    windows: str = Field(min_length=1)


# --------------------------------------------------------------------------- litellm


class Model(Strict):
    """One model alias served by the proxy (runbook section 9.2)."""

    provider: Slug
    upstream_model: str = Field(min_length=1)
    api_base: HttpUrl
    api_key_env: EnvName
    input_usd_per_1k: Price
    output_usd_per_1k: Price
    is_free: bool


class ErrorPolicy(Strict):
    """Retries and tolerated failures for one error class, inside the proxy."""

    retries: Count
    allowed_fails: Count


class ErrorPolicies(Strict):
    """Per-class policy; LiteLLM counts connection errors as server errors."""

    auth: ErrorPolicy
    rate: ErrorPolicy
    config: ErrorPolicy
    server: ErrorPolicy
    timeout: ErrorPolicy


class Cache(Strict):
    enabled: bool
    ttl: Duration


class LiteLLM(Strict):
    version: LitellmVersion
    listen: Listen
    master_key_env: EnvName
    request_timeout: Duration
    num_retries: Count
    cooldown: Duration
    errors: ErrorPolicies
    cache: Cache
    models: dict[Slug, Model] = Field(min_length=1)
    fallbacks: dict[Slug, list[Slug]]


# --------------------------------------------------------------------------- failover targets


class LitellmTarget(Strict):
    """P1: the agents talk to the local proxy and ask for one of its model aliases."""

    kind: Literal["litellm"]
    name: Slug
    label: str = Field(min_length=1)
    model: Slug


class DirectTarget(Strict):
    """The agents talk straight to a provider, with the endpoint and model of a defined model."""

    kind: Literal["direct"]
    name: Slug
    label: str = Field(min_length=1)
    model: Slug


class AgentTarget(Strict):
    """A provider built into the agent itself (Kilo Code's own), needing no proxy or key."""

    kind: Literal["agent"]
    name: Slug
    label: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    is_free: bool


Target = Annotated[LitellmTarget | DirectTarget | AgentTarget, Field(discriminator="kind")]


class AgentFile(Strict):
    """An agent config file the watchdog switches; ``~`` is the service user's home."""

    name: Slug
    path: OsPaths


# --------------------------------------------------------------------------- watchdog


class CompletionProbe(Strict):
    """A tiny real completion on a slow cadence: paid on paid models, so off by default."""

    enabled: bool
    interval: Duration
    model: Slug


class RestartPolicy(Strict):
    backoff_initial: Duration
    backoff_max: Duration
    max_per_hour: PositiveCount
    startup_timeout: Duration
    #: A proxy that answers nothing is restarted only after this long with no CPU progress:
    #: a busy one (a 5 s blocking request on a loaded machine) is left alone.
    hang_after: Duration = 20.0


class Watchdog(Strict):
    listen: Listen
    probe_interval: Duration
    probe_timeout: Duration
    provider_probe_interval: Duration
    metrics_probe_interval: Duration
    completion_probe: CompletionProbe
    failure_threshold: PositiveCount
    success_threshold: PositiveCount
    min_dwell: Duration
    half_open_after: Duration
    max_switches_per_hour: PositiveCount
    restart: RestartPolicy
    min_healthy_providers: PositiveCount
    event_log: FileName
    event_jsonl: FileName
    state_file: FileName


# --------------------------------------------------------------------------- budget


class BudgetLevels(Strict):
    warning: Percent
    critical: Percent
    exceeded: Percent


Task = Literal["coding", "implementation", "research", "analysis"]
#: Runbook 9.2's preferences: Kilo Code for coding, Groq's 70B for research.
TASK_PREFERENCES: dict[Task, str] = {"coding": "kilo-code", "implementation": "kilo-code",
                                     "research": "groq-70b", "analysis": "groq-70b"}


class Budget(Strict):
    monthly_usd: Money
    levels_percent: BudgetLevels
    daily_warning_usd: Money | None = None
    free_allow_list: list[Slug] = Field(min_length=1)
    cost_log: FileName
    alert_log: FileName
    provider_config: OsPaths
    #: Runbook 9.2: the free provider (model alias or target) each kind of task prefers.
    task_preferences: dict[Task, Slug] = Field(default_factory=lambda: dict(TASK_PREFERENCES))

    @property
    def daily_warning(self) -> float:
        """The daily threshold: explicit, or the runbook's monthly budget / 30."""
        return self.daily_warning_usd or round(self.monthly_usd / 30, 2)


# --------------------------------------------------------------------------- hosts


class LinuxUnits(Strict):
    litellm: Annotated[str, Field(pattern=r"^[A-Za-z0-9@._-]+\.service$")]
    watchdog: Annotated[str, Field(pattern=r"^[A-Za-z0-9@._-]+\.service$")]


# Plain characters only: these paths go into unit lines and Debian ARGS= lines unquoted.
AbsPosix = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/@+-]*$")]


class Linux(Strict):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")]
    group: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")]
    install_dir: AbsPosix
    config_dir: AbsPosix
    state_dir: AbsPosix
    log_dir: AbsPosix
    units: LinuxUnits
    #: Networks the firewall rule (ufw or nftables) admits to the proxy port, when LiteLLM
    #: listens beyond loopback. Default: the private ranges (the runbook's LocalSubnet).
    firewall_allow_from: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in
                                 ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")], min_length=1)


class Firewall(Strict):
    name: str = Field(min_length=1)
    profiles: list[Literal["Domain", "Private", "Public"]] = Field(min_length=1)
    remote_addresses: list[str] = Field(min_length=1)


TaskName = Annotated[str, Field(min_length=1, max_length=200,
                                pattern=r"^[^\\/\x00-\x1f\x7f%]+$")]


def _task_restart_interval(seconds: float) -> float:
    if not 60 <= seconds <= 31 * 86400:
        raise PydanticCustomError("restart_interval", "between 1m and 31d (Task Scheduler's range)")
    return seconds


class ScheduledTasks(Strict):
    """Task Scheduler folder and task names (no slashes, % or control characters)."""

    folder: Annotated[str, Field(pattern=r"^\\([^\\/\x00-\x1f%]+\\)*$")]
    litellm: TaskName
    watchdog: TaskName
    prometheus: TaskName
    alertmanager: TaskName
    restart_interval: Annotated[Duration, AfterValidator(_task_restart_interval)]
    restart_count: Annotated[int, Field(ge=1, le=255)]


class EventIds(Strict):
    fallback: Annotated[int, Field(ge=0, le=65535)]
    restored: Annotated[int, Field(ge=0, le=65535)]
    error: Annotated[int, Field(ge=0, le=65535)]
    kill_switch: Annotated[int, Field(ge=0, le=65535)]


class EventLog(Strict):
    source: str = Field(min_length=1)
    log: str = Field(min_length=1)
    ids: EventIds


class Release(Strict):
    """A release archive fetched for Windows hosts, verified by its SHA256 before use."""

    url: HttpUrl
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Windows(Strict):
    install_root: Annotated[str, Field(pattern=r"^[A-Za-z]:\\")]
    python: str = Field(min_length=1)
    firewall: Firewall
    tasks: ScheduledTasks
    event_log: EventLog
    prometheus_release: Release | None = None
    alertmanager_release: Release | None = None
    #: A python.org installer run (quietly, for all users, into python's directory) when no
    #: interpreter is at ``python``; None: an existing interpreter is required.
    python_installer: Release | None = None


# --------------------------------------------------------------------------- monitoring


class Prometheus(Strict):
    listen: Listen
    scrape_interval: Duration
    evaluation_interval: Duration
    retention: Duration


class RestartLoopAlert(Strict):
    restarts: PositiveCount
    window: Duration


class Alerts(Strict):
    """Alert thresholds (runbook 8.3); the budget alerts use the budget levels."""

    provider_down_for: Duration
    high_fallback_rate_per_hour: PositiveCount
    all_providers_down_for: Duration
    watchdog_down_for: Duration
    restart_loop: RestartLoopAlert


class Webhook(Strict):
    url: HttpUrl | None = None


# host:port (Alertmanager refuses a smarthost without a port), or empty when email is off.
SmartHost = Annotated[str, Field(pattern=r"^$|^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}$")]


class Email(Strict):
    enabled: bool
    to: str = ""
    sender: str = ""
    smarthost: SmartHost = ""
    auth_username: str = ""
    auth_password_env: EnvName | None = None


class Receivers(Strict):
    webhook: Webhook
    email: Email


class Route(Strict):
    group_by: list[str] = Field(min_length=1)
    group_wait: Duration
    group_interval: Duration
    repeat_interval: Duration
    critical_repeat_interval: Duration


class Alertmanager(Strict):
    listen: Listen
    receivers: Receivers
    route: Route


class GrafanaDashboard(Strict):
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    title: str = Field(min_length=1)


class GrafanaDatasource(Strict):
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    name: str = Field(min_length=1)


class Grafana(Strict):
    install: bool
    listen: Listen
    dashboard: GrafanaDashboard
    datasource: GrafanaDatasource
    provisioning_dir: OsPaths
    dashboards_dir: OsPaths


# --------------------------------------------------------------------------- root


class Stack(Strict):
    """The whole of stack.yaml."""

    litellm: LiteLLM
    targets: list[Target] = Field(min_length=2)
    agents: list[AgentFile] = Field(min_length=1)
    watchdog: Watchdog
    budget: Budget
    linux: Linux
    windows: Windows
    prometheus: Prometheus
    alerts: Alerts
    alertmanager: Alertmanager
    grafana: Grafana

    def secret_env_names(self) -> list[str]:
        """Every environment variable that holds a secret, in a stable order."""
        names = [self.litellm.master_key_env]
        names += [m.api_key_env for m in self.litellm.models.values()]
        if self.alertmanager.receivers.email.auth_password_env:
            names.append(self.alertmanager.receivers.email.auth_password_env)
        return list(dict.fromkeys(names))

    @property
    def proxy_url(self) -> str:
        """The base URL agents and probes use for the local proxy."""
        return self.litellm.listen.url
