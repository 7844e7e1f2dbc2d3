"""The typed shape of ``inventory/stack.yaml``, the one source of the whole bundle.

Every port, path, provider, model, threshold, budget and version the bundle uses is a field
here; render, the deploy tasks, the rule and dashboard builders and the watchdog config all read
it from this model, so nothing is repeated by hand. Structure (types, unknown keys, ranges) is
checked by pydantic; references between sections (a fallback naming a model, two services on
one port) are checked afterwards by :mod:`monitoring.stack.checks`; loading, host overrides and
the one error report live in :mod:`monitoring.stack.load`.

Models are frozen and forbid unknown keys: a typo in stack.yaml is an error, never a silently
ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, IPvAnyNetwork
from pydantic_core import PydanticCustomError

# Re-exported: the scalars live apart so that host code can use them without this module.
from monitoring.stack.scalars import ENV_NAME as ENV_NAME
from monitoring.stack.scalars import looks_like_secret as looks_like_secret
from monitoring.stack.scalars import parse_duration as parse_duration
from monitoring.stack.scalars import prom_duration as prom_duration

# --------------------------------------------------------------------------- scalar types

#: Variables the system, the shells, the dynamic loader, Python or GitHub Actions read for
#: themselves: a stack naming one would overwrite it in the services' environment (or, in
#: the workflow, is refused by GitHub).
SYSTEM_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TERM", "LANG", "LANGUAGE",
    "TZ", "TMPDIR", "TMP", "TEMP", "IFS", "ENV", "BASH_ENV", "CDPATH", "MAIL", "HOSTNAME",
    "DISPLAY", "EDITOR", "PAGER", "SUDO_USER", "NOTIFY_SOCKET", "INVOCATION_ID",
    "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE", "APPDATA", "LOCALAPPDATA",
    "PROGRAMDATA", "PROGRAMFILES", "USERNAME", "USERDOMAIN", "PSMODULEPATH", "CI",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "PROVIDER_FALLBACK_CONFIG", "LITELLM_LOCAL_MODEL_COST_MAP",
})
SYSTEM_ENV_PREFIXES = ("LD_", "LC_", "PYTHON", "SYSTEMD_", "GITHUB_", "RUNNER_", "XDG_",
                       "DYLD_", "UV_", "PIP_")
# Candidate tokens of a report: split where a key usually ends (spaces, quotes, "=", ":", "/",
# brackets), so "api_key=gsk_..." and "'sk-...'" are caught and paths fall into short pieces.
_REPORT_TOKEN = re.compile(r"[^\s\"'`,;:=/\\()\[\]{}<>|]+")
_KEY_PREFIX = re.compile(r"^(gsk_|sk-|sk_|xai-|AIza|ghp_|gho_|github_pat_|hf_|pk-|rk-|eyJ)")


def _secret_token(token: str) -> bool:
    """A known key prefix, or a long run mixing letters and digits (random key material);
    not a model name or a unit name, whose parts between - _ . are short words."""
    if any(_KEY_PREFIX.match(seg) and len(seg) >= 12 for seg in token.split(".")):
        return True
    for part in re.split(r"[-_.]", token):
        digits, upper, lower = (any(c.isdigit() for c in part), any(c.isupper() for c in part),
                                any(c.islower() for c in part))
        if (len(part) >= 16 and digits and (upper or lower)) or (
                len(part) >= 32 and upper and lower):
            return True
    return False


def redact_secrets(text: str) -> str:
    """``text`` with every token shaped like a key replaced by ``[redacted]``.

    The one redaction of validation reports: applied to the whole report (values, YAML paths,
    since a key can be a pasted secret, and the messages of cross-section checks), so no
    check has to remember it.
    """
    return _REPORT_TOKEN.sub(
        lambda m: "[redacted]" if _secret_token(m.group()) else m.group(), text)


def _env_name(value: str) -> str:
    """The NAME of an environment variable (capitals, digits, _), never its value; not one the
    system uses (PATH, HOME, LD_*, PYTHON*, GITHUB_*, ...)."""
    if ENV_NAME.match(value):
        if value in SYSTEM_ENV_NAMES or value.startswith(SYSTEM_ENV_PREFIXES):
            raise PydanticCustomError(
                "system_env_name",
                "a variable name of the bundle's own (e.g. GROQ_API_KEY): {name} is used by the "
                "system itself (names starting {prefixes} too)",
                {"name": value, "prefixes": ", ".join(SYSTEM_ENV_PREFIXES)})
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


#: An IPv6 zone (``fe80::1%eth0``): an interface name or index, nothing a shell, a URL or a
#: workflow expression would read.
_SCOPE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def _ip(value: str) -> str:
    """An IPv4 or IPv6 address (an IPv6 zone only of letters, digits, _ . -)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip", "an IP address such as 127.0.0.1") from None
    scope = getattr(ip, "scope_id", None)
    if scope is not None and not _SCOPE_ID.match(scope):
        raise PydanticCustomError(
            "ip", "an IPv6 zone of letters, digits, '_', '.' and '-' only (an interface name)")
    return str(ip)


# The characters RFC 3986 allows in a URL, minus the quote and the parentheses, which no
# provider endpoint needs and which would only matter to a shell or a template.
_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:@\[\]%]+(/[A-Za-z0-9\-._~:/?#@!&*+,;=%]*)?\Z")


def _http_url(value: str) -> str:
    """An http:// or https:// URL of RFC 3986 characters, without quotes or spaces."""
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if not _URL.match(value) or not parts.hostname or not port_ok:
        raise PydanticCustomError("url", "an http:// or https:// URL")
    return value.rstrip("/")


#: LiteLLM releases known to be compromised (the March 2026 supply-chain incident and the
#: 1.107 line); a stack naming one is refused before anything is rendered. Compared by
#: packaging's rules (as pip and uv compare them), so no other spelling slips past.
COMPROMISED_LITELLM = (SpecifierSet("==1.82.7"), SpecifierSet("==1.82.8"),
                       SpecifierSet("==1.107.*"))


def is_compromised_litellm(version: str) -> bool:
    """Whether ``version`` is, by PEP 440, one of :data:`COMPROMISED_LITELLM`."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return any(spec.contains(parsed, prereleases=True) for spec in COMPROMISED_LITELLM)


def _pinned_version(value: str) -> str:
    """An exact X.Y.Z release in canonical spelling, not a compromised one."""
    if not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+\Z", value):
        raise PydanticCustomError(
            "version", "an exact version X.Y.Z (the proxy is installed pinned, with hashes)"
        )
    if is_compromised_litellm(value):
        raise PydanticCustomError(
            "compromised",
            "a LiteLLM release that is not known to be compromised (1.82.7, 1.82.8 and every"
            " 1.107.x are refused); pin 1.108.7",
        )
    canonical = str(Version(value))
    if canonical != value:
        raise PydanticCustomError(
            "version", "the canonical spelling {canonical}: pip and uv read {value!r} as it",
            {"canonical": canonical, "value": value})
    return value


# Line breaks, other C0/C1 controls, and the bidirectional overrides that make text read
# differently from what it is ("Trojan source").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _one_line(value: str) -> str:
    """One line: no line breaks, tabs, control or bidirectional-override characters."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "text", "one line of text: no line breaks, tabs, control or bidirectional characters")
    return value


def _no_dot_segments(parts: list[str]) -> None:
    if any(part in (".", "..") for part in parts):
        raise PydanticCustomError("path", "a path without '.' or '..' parts (write it out in full)")


def _posix_path(home: bool) -> AfterValidator:
    def check(value: str) -> str:
        """An absolute path (or one under ``~/`` where the type says Home), one line, without
        ``.`` or ``..`` parts."""
        _one_line(value)
        if not (value.startswith("/") or (home and value.startswith("~/"))):
            raise PydanticCustomError(
                "path", "an absolute path starting with /" + (" or ~/" if home else ""))
        _no_dot_segments(value.split("/")[1:])
        return value
    return AfterValidator(check)


# Characters Windows refuses in a path, and %: Task Scheduler expands %NAME% in a task's
# command and arguments, so a path holding one is not what it looks like.
_WINDOWS_BAD = re.compile(r'[<>"|?*%]')


def _windows_path(home: bool) -> AfterValidator:
    def check(value: str) -> str:
        """An absolute Windows path (or one under ``~\\`` where the type says Home), one line,
        without ``%`` (Task Scheduler expands it), ``<>"|?*``, a second ``:`` or ``.``/``..``
        parts."""
        _one_line(value)
        rest = value[3:] if re.match(r"^[A-Za-z]:\\", value) else (
            value[2:] if home and value.startswith("~\\") else None)
        if rest is None:
            raise PydanticCustomError(
                "path", "an absolute Windows path such as C:\\ProgramData\\X"
                + (" or one under ~\\" if home else ""))
        if _WINDOWS_BAD.search(rest) or ":" in rest:
            raise PydanticCustomError(
                "path", "a Windows path without % (Task Scheduler would expand it), "
                "< > \" | ? * or a second ':'")
        _no_dot_segments(rest.replace("/", "\\").split("\\"))
        return value
    return AfterValidator(check)


def _task_name(value: str) -> str:
    """Windows drops trailing dots and spaces from names, and '.'/'..' are not names at all."""
    if value.strip(". ") == "" or value.endswith((".", " ")):
        raise PydanticCustomError(
            "task_name", "a name that is not '.' or '..' and does not end with '.' or a space")
    return value


def _task_folder(value: str) -> str:
    for part in value.strip("\\").split("\\"):
        if part:
            _task_name(part)
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
#: Free text (labels, titles, names shown to people): one line, bounded. Render keeps it
#: inert in every format (tests/tasks/render/test_hostile_text.py proves it).
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]
OptionalText = Annotated[str, Field(max_length=200), AfterValidator(_one_line)]
#: A path on a host: absolute, or under the service user's home (~) where the type says so.
PosixPath = Annotated[str, Field(max_length=1024), _posix_path(home=False)]
HomePosixPath = Annotated[str, Field(max_length=1024), _posix_path(home=True)]
WindowsPath = Annotated[str, Field(max_length=260), _windows_path(home=False)]
HomeWindowsPath = Annotated[str, Field(max_length=260), _windows_path(home=True)]
#: A Prometheus/Alertmanager label name (Alertmanager 0.25 refuses any other), or "..." (all).
LabelName = Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*|\.\.\.)$")]


class Strict(BaseModel):
    """Base of every section: unknown keys are errors and values are immutable. The docstring
    under each field is its description (docs/stack-reference.md is generated from them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)


class Listen(Strict):
    """An address and port a service binds, and how a local client reaches it."""

    host: IP
    """The IP address to bind: `127.0.0.1` keeps the service on this host."""
    port: Port
    """The TCP port; no two services of the stack may share one."""

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
    def loopback_only(self) -> bool:
        """Whether nothing off this host can connect (no firewall rule is needed)."""
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def url(self) -> str:
        """``http://`` + :attr:`connect`."""
        return f"http://{self.connect}"


class OsPaths(Strict):
    """One path per target OS (Linux covers WSL): absolute, or under the user's home (~)."""

    linux: HomePosixPath
    """On Linux and WSL hosts."""
    windows: HomeWindowsPath
    """On Windows hosts."""


class HostDirs(Strict):
    """One absolute directory per target OS."""

    linux: PosixPath
    """On Linux and WSL hosts."""
    windows: WindowsPath
    """On Windows hosts."""


# --------------------------------------------------------------------------- litellm


class Model(Strict):
    """One model alias served by the proxy (runbook section 9.2)."""

    provider: Slug
    """The provider's name (routes, metrics and the kill switch use it); one endpoint and key per
    provider."""
    upstream_model: Text
    """The model's name at the provider."""
    api_base: HttpUrl
    """The provider's OpenAI-compatible base URL; the watchdog probes `<api_base>/models`
    (unbilled)."""
    api_key_env: EnvName
    """The NAME of the variable holding the provider's key (on the host it carries a `PF_` prefix).
    """
    input_usd_per_1k: Price
    """US dollars per 1,000 input tokens (LiteLLM's custom pricing: the cost log's charge)."""
    output_usd_per_1k: Price
    """US dollars per 1,000 output tokens."""
    is_free: bool
    """Free to use: free models cost nothing, and only they may be in the kill switch's allow-list.
    """


class ErrorPolicy(Strict):
    """Retries and tolerated failures for one error class, inside the proxy."""

    retries: Count
    """Retries inside the proxy for this class of error."""
    allowed_fails: Count
    """Failures tolerated before LiteLLM cools the deployment down for `litellm.cooldown`."""


class ErrorPolicies(Strict):
    """Per-class policy; LiteLLM counts connection errors as server errors."""

    auth: ErrorPolicy
    """401/403: retrying a bad key only costs time."""
    rate: ErrorPolicy
    """429: Retry-After is honoured."""
    config: ErrorPolicy
    """404 / unknown model."""
    server: ErrorPolicy
    """5xx and connection errors."""
    timeout: ErrorPolicy
    """Requests that took longer than `litellm.request_timeout`."""


class Cache(Strict):
    enabled: bool
    """LiteLLM's response cache, also what degraded mode serves from when every provider fails
    (runbook 7.1)."""
    ttl: Duration
    """How long a stored answer may be served."""
    max_entries: PositiveCount = 1000
    """Bound of the degraded-mode cache in answers (the ones stored longest ago are evicted first).
    """
    max_megabytes: Annotated[float, Field(gt=0, le=65536)] = 32
    """Bound of the degraded-mode cache in megabytes."""


class LiteLLM(Strict):
    version: LitellmVersion
    """The LiteLLM release installed, pinned with hashes; 1.82.7, 1.82.8 and every 1.107.x are known
    to be compromised and refused."""
    listen: Listen
    """Where the proxy listens. Keep it on loopback unless agents elsewhere must reach it (then a
    firewall rule is made)."""
    master_key_env: EnvName
    """The NAME of the variable holding the proxy's master key (clients send it as a Bearer token).
    """
    request_timeout: Duration
    """How long the proxy waits for an upstream before giving up on one attempt."""
    num_retries: Count
    """Retries inside the proxy before it tries the next model of a fallback chain."""
    cooldown: Duration
    """How long a deployment that failed `allowed_fails` times is skipped."""
    errors: ErrorPolicies
    """Per error class (runbook 1.2): retries, and failures tolerated before a cooldown."""
    cache: Cache
    """The response cache and degraded mode."""
    models: dict[Slug, Model] = Field(min_length=1)
    """The model aliases agents ask for (runbook 9.2), by alias."""
    fallbacks: dict[Slug, list[Slug]]
    """In-proxy fallbacks: when a model fails after its retries, LiteLLM tries these in order (at
    most 5, no self-fallback)."""
    open_call_types: list[Annotated[str, Field(pattern=r"^[a-z][a-z_]*$", max_length=64)]] = []
    """LiteLLM call types opened on purpose beside the ones whose spend is recorded (the proxy
    refuses every other one with 403); their spend is NOT in the cost log nor held by the kill
    switch."""


# --------------------------------------------------------------------------- failover targets


class LitellmTarget(Strict):
    """P1: the agents talk to the local proxy and ask for one of its model aliases."""

    kind: Literal["litellm"]
    """`litellm`: the agents use the proxy (endpoint from `litellm.listen`)."""
    name: Slug
    """The target's name (`switch`, `order`, events, metrics)."""
    label: Text
    """The name shown to people (event lines, status)."""
    model: Slug
    """The proxy's model alias the agents ask for."""


Wire = Literal["openai-chat", "anthropic-messages", "openai-responses", "gemini-native"]


class DirectTarget(Strict):
    """The agents talk straight to a provider, with the endpoint and model of a defined model."""

    kind: Literal["direct"]
    """`direct`: the agents talk straight to the provider of `model`."""
    name: Slug
    """The target's name (`switch`, `order`, events, metrics)."""
    label: Text
    """The name shown to people (event lines, status)."""
    model: Slug
    """A model alias of `litellm.models`: its endpoint, key and upstream model."""
    endpoints: dict[Wire, HttpUrl] = Field(default_factory=dict)
    """Base URL per wire format agents speak, over the ones known for the provider (e.g. a Gemini-
    native or Anthropic-format endpoint)."""


class AgentTarget(Strict):
    """A provider built into the agent itself (Kilo Code's own), needing no proxy or key."""

    kind: Literal["agent"]
    """`agent`: a provider built into the agent itself."""
    name: Slug
    """The target's name (`switch`, `order`, events, metrics)."""
    label: Text
    """The name shown to people (event lines, status)."""
    provider: Text
    """The agent's own provider name."""
    model: Text
    """The model the agent asks its provider for."""
    is_free: bool
    """Free to use (the kill switch allows only free targets)."""
    agent: Slug = "kilo-code"
    """The agent adapter it is built into; only that agent can use it."""


Target = Annotated[LitellmTarget | DirectTarget | AgentTarget, Field(discriminator="kind")]


class AgentEnrollment(Strict):
    """An agent whose files follow the switch (monitoring/agents). ``- kilo-code`` is enough:
    its own fallback order defaults to the targets order, filtered by what it can speak.
    ``adapter: generic-json`` with ``path`` switches a JSON file of your own tool."""

    name: Slug
    """The agent: `kilo-code`, `gemini-cli`, `claude-code`, `codex`, `opencode`, `aider`,
    `continue`, or a name of your own with `adapter: generic-json`."""
    adapter: Slug | None = None
    """The adapter to use when it is not the one named `name`."""
    order: list[Slug] | None = None
    """This agent's fallback order (target names); default: the targets it can speak, in `targets`
    order."""
    path: OsPaths | None = None
    """The file to switch, for `generic-json`."""


def _enrollment(value: object) -> object:
    return {"name": value} if isinstance(value, str) else value


Enrollment = Annotated[AgentEnrollment, BeforeValidator(_enrollment)]


# --------------------------------------------------------------------------- watchdog


class CompletionProbe(Strict):
    """A tiny real completion on a slow cadence: paid on paid models, so off by default."""

    enabled: bool
    """Send the probe at all."""
    interval: Duration
    """How often."""
    model: Slug
    """The model alias probed."""


class RestartPolicy(Strict):
    backoff_initial: Duration
    """The first wait before restarting the proxy again; it doubles up to `backoff_max`."""
    backoff_max: Duration
    """The longest wait between restarts."""
    max_per_hour: PositiveCount
    """Restarts allowed in an hour; past that the crash-loop state."""
    startup_timeout: Duration
    """How long a (re)started proxy may take to answer before it counts as failed again (LiteLLM
    needs ~15 s)."""
    hang_after: Duration = 20.0
    """A proxy that still runs but answers nothing is restarted only after this long with no CPU
    progress (hung, not busy)."""


class Watchdog(Strict):
    listen: Listen
    """Its Prometheus exporter. NOT 9090: that is Prometheus' own port."""
    probe_interval: Duration
    """How often the proxy's liveness and `/v1/models` are probed (local and cheap): the watchdog's
    tick."""
    probe_timeout: Duration
    """How long one probe may take; under `probe_interval`."""
    provider_probe_interval: Duration
    """How often each provider's `<api_base>/models` is probed while healthy (unbilled, but it
    counts against rate limits); a provider under suspicion is probed every tick."""
    metrics_probe_interval: Duration
    """How often LiteLLM's `/metrics` is read as passive health from real traffic."""
    completion_probe: CompletionProbe
    """A real tiny completion on a slow cadence."""
    failure_threshold: PositiveCount
    """Failures in a row that open a route."""
    success_threshold: PositiveCount
    """Successes in a row that close it again."""
    min_dwell: Duration
    """The least time a fallback stays active, so an intermittent fault cannot make it flap."""
    half_open_after: Duration
    """Time after a route's last failure before successes count (and a canary is sent)."""
    max_switches_per_hour: PositiveCount
    """Switches allowed in an hour; past it the agents stay on a working fallback."""
    restart: RestartPolicy
    """Auto-recovery of the proxy (runbook 5.2): backoff, cap, crash loop."""
    min_healthy_providers: PositiveCount
    """`provider-fallback check` fails when fewer providers are healthy (runbook 6.3)."""
    event_log: FileName
    """The runbook's event lines, in the log directory."""
    event_jsonl: FileName
    """The same events as JSON Lines, in the log directory."""
    state_file: FileName
    """The watchdog's saved state, in the state directory."""


# --------------------------------------------------------------------------- budget


class BudgetLevels(Strict):
    warning: Percent
    """Percent of the monthly budget at which the status is WARNING."""
    critical: Percent
    """Percent at which it is CRITICAL (free targets first)."""
    exceeded: Percent
    """Percent at which it is EXCEEDED and the kill switch activates."""


Task = Literal["coding", "implementation", "research", "analysis"]
#: Runbook 9.2's preferences: Kilo Code for coding, Groq's 70B for research.
TASK_PREFERENCES: dict[Task, str] = {"coding": "kilo-code", "implementation": "kilo-code",
                                     "research": "groq-70b", "analysis": "groq-70b"}


class Budget(Strict):
    monthly_usd: Money
    """The monthly budget in US dollars (calendar month, UTC)."""
    levels_percent: BudgetLevels
    """The status levels."""
    daily_warning_usd: Money | None = None
    """Daily spend that warns; null: the monthly budget / 30."""
    free_allow_list: list[Slug] = Field(min_length=1)
    """What the kill switch still allows once the budget is exceeded: free models or targets only.
    """
    cost_log: FileName
    """One JSON line per request, in the log directory."""
    alert_log: FileName
    """BUDGET and KILL-SWITCH lines, in the log directory."""
    provider_config: OsPaths
    """The kill switch's state file (the runbook's schema; your other keys kept)."""
    task_preferences: dict[Task, Slug] = Field(default_factory=lambda: dict(TASK_PREFERENCES))
    """Runbook 9.2: the free provider (model alias or target) each kind of task prefers."""

    @property
    def daily_warning(self) -> float:
        """The daily threshold: explicit, or the runbook's monthly budget / 30."""
        return self.daily_warning_usd or round(self.monthly_usd / 30, 2)


# --------------------------------------------------------------------------- hosts


class LinuxUnits(Strict):
    litellm: Annotated[str, Field(pattern=r"^[A-Za-z0-9@._-]+\.service$")]
    """The proxy's systemd unit."""
    watchdog: Annotated[str, Field(pattern=r"^[A-Za-z0-9@._-]+\.service$")]
    """The watchdog's systemd unit."""
    agents: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+@\.service$")] = \
        "provider-fallback-agents@.service"
    """The template unit of a person's agents follower (monitoring/agents/follower.py), enabled
    as `<name>@<login>.service` when `agents_user` names someone."""


# Plain characters only: these paths go into unit lines and Debian ARGS= lines unquoted.
AbsPosix = Annotated[PosixPath, Field(pattern=r"^/[A-Za-z0-9._/@+-]*$")]


class Linux(Strict):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")]
    """The account LiteLLM and the watchdog run as (made when missing)."""
    group: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")]
    """Its group."""
    install_dir: AbsPosix
    """Where the venv lives (`<install_dir>/venv`)."""
    config_dir: AbsPosix
    """Rendered configs and the secrets file."""
    state_dir: AbsPosix
    """The watchdog's state (the service account's home)."""
    log_dir: AbsPosix
    """Event, cost and alert logs."""
    units: LinuxUnits
    """systemd unit names (distinct from Debian's prometheus units)."""
    firewall_allow_from: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in
                                 ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")], min_length=1)
    """Networks the firewall rule (ufw or nftables) admits to the proxy port, when LiteLLM listens
    beyond loopback."""
    agents_user: Literal["auto"] | Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")] | None \
        = "auto"
    """Whose agent files follow the switch: `auto` (the person who ran the deploy through sudo on
    this machine, else the service account), a login name, or null (the service account: a
    server, CI). A person's files are switched by their own follower unit (`units.agents`),
    running as them. See tasks/linux/agents.py."""
    windows_profile: Annotated[str, Field(pattern=r"^/[^\x00-\x1f]*[^/\x00-\x1f]$")] | None \
        = None
    """WSL: the person's Windows profile as WSL sees it (`/mnt/c/Users/<name>`): their Windows-side
    agents (VS Code, Windows terminals) follow the switch too, through the proxy at
    `http://127.0.0.1:<port>` (WSL forwards IPv4 loopback binds only). Named, never guessed;
    null (default): none. See tasks/linux/agents.py."""


class Firewall(Strict):
    name: Text
    """The inbound rule's name (runbook 10.2); made only when `litellm.listen` is not loopback."""
    profiles: list[Literal["Domain", "Private", "Public"]] = Field(min_length=1)
    """The network profiles it applies to."""
    remote_addresses: list[Text] = Field(min_length=1)
    """Who may connect (`LocalSubnet`, addresses or ranges)."""


TaskName = Annotated[str, Field(min_length=1, max_length=200,
                                pattern=r"^[^\\/\x00-\x1f\x7f%]+$"), AfterValidator(_one_line),
                     AfterValidator(_task_name)]


def _task_restart_interval(seconds: float) -> float:
    """Between 1m and 31d (Task Scheduler's range)."""
    if not 60 <= seconds <= 31 * 86400:
        raise PydanticCustomError("restart_interval", "between 1m and 31d (Task Scheduler's range)")
    return seconds


class ScheduledTasks(Strict):
    """Task Scheduler folder and task names (no slashes, % or control characters)."""

    folder: Annotated[str, Field(pattern=r"^\\([^\\/\x00-\x1f%]+\\)*$"), AfterValidator(_one_line),
                      AfterValidator(_task_folder)]
    """The Task Scheduler folder of the tasks (runbook 10.3)."""
    litellm: TaskName
    """The proxy's task."""
    watchdog: TaskName
    """The watchdog's task."""
    prometheus: TaskName
    """Prometheus' task."""
    alertmanager: TaskName
    """Alertmanager's task."""
    restart_interval: Annotated[Duration, AfterValidator(_task_restart_interval)]
    """A program that exits or crashes is started again within this."""
    restart_count: Annotated[int, Field(ge=1, le=255)]
    """A failed start is retried up to this many times."""
    start_at_boot: bool = True
    """Start the tasks at boot too (S4U needs no logon), not only at the user's logon."""


class EventIds(Strict):
    fallback: Annotated[int, Field(ge=0, le=65535)]
    """FALLBACK events."""
    restored: Annotated[int, Field(ge=0, le=65535)]
    """RESTORED events."""
    error: Annotated[int, Field(ge=0, le=65535)]
    """ERROR events."""
    kill_switch: Annotated[int, Field(ge=0, le=65535)]
    """KILL-SWITCH events."""


class EventLog(Strict):
    source: Text
    """The Event Log source the watchdog writes as (runbook 10.4)."""
    log: Text
    """The log it writes to."""
    ids: EventIds
    """Event IDs per kind."""


class Release(Strict):
    """A release archive fetched for Windows hosts, verified by its SHA256 before use."""

    url: HttpUrl
    """Where to download it."""
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """Its SHA256 (from the release's `sha256sums.txt`)."""


class Windows(Strict):
    install_root: WindowsPath
    """Everything the deploy installs, made private to SYSTEM, Administrators and the account."""
    python: WindowsPath
    """The interpreter that creates the venv: an existing one, or where `python_installer` puts it.
    """
    firewall: Firewall
    """The inbound rule for the proxy port."""
    tasks: ScheduledTasks
    """The scheduled tasks."""
    event_log: EventLog
    """Event Log source and IDs."""
    prometheus_release: Release | None = None
    """The Prometheus release zip for Windows; required before the first Windows deploy."""
    alertmanager_release: Release | None = None
    """The Alertmanager release zip for Windows; required before the first Windows deploy."""
    python_installer: Release | None = None
    """A python.org installer run (quietly, for all users) when no interpreter is at `python`; null:
    an existing interpreter is required."""


# --------------------------------------------------------------------------- monitoring


class Prometheus(Strict):
    listen: Listen
    """Where Prometheus listens."""
    scrape_interval: Duration
    """How often it scrapes the watchdog, LiteLLM, itself and Alertmanager."""
    evaluation_interval: Duration
    """How often it evaluates the alert rules."""
    retention: Duration
    """How long it keeps data."""


class RestartLoopAlert(Strict):
    restarts: PositiveCount
    """ProxyRestartLoop fires when the proxy restarts more than this many times within `window`."""
    window: Duration
    """The window those restarts are counted in."""


class Alerts(Strict):
    """Alert thresholds (runbook 8.3); the budget alerts use the budget levels."""

    provider_down_for: Duration
    """ProviderDown: a provider unhealthy this long."""
    high_fallback_rate_per_hour: PositiveCount
    """HighFallbackRate: more fallback events than this in 1h."""
    all_providers_down_for: Duration
    """AllProvidersDown: every provider unhealthy this long."""
    watchdog_down_for: Duration
    """WatchdogDown: nothing else can fire without it."""
    restart_loop: RestartLoopAlert
    """ProxyRestartLoop."""


class Webhook(Strict):
    url: HttpUrl | None = None
    """A webhook that receives every alert (Slack, ntfy, a script...); null for none."""


# host:port (Alertmanager refuses a smarthost without a port), or empty when email is off.
SmartHost = Annotated[str, Field(pattern=r"^$|^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")]


def _no_template(value: str) -> str:
    """Without ``{{`` or ``}}``: Alertmanager runs ``to`` and ``from`` as templates."""
    if "{{" in value or "}}" in value:
        raise PydanticCustomError(
            "template", "an address without {{ or }}: Alertmanager reads to and from as "
            "Go templates, so they would run as template code")
    return value


#: Alertmanager executes ``to`` and ``from`` as templates.
EmailText = Annotated[OptionalText, AfterValidator(_no_template)]


class Email(Strict):
    enabled: bool
    """Email for critical alerts."""
    to: EmailText = ""
    """Recipient."""
    sender: EmailText = ""
    """From address."""
    smarthost: SmartHost = ""
    """SMTP server as `host:port`."""
    auth_username: OptionalText = ""
    """SMTP user."""
    auth_password_env: EnvName | None = None
    """The NAME of the variable holding the SMTP password."""


class Receivers(Strict):
    webhook: Webhook
    """Every alert."""
    email: Email
    """Critical alerts."""


class Route(Strict):
    group_by: list[LabelName] = Field(min_length=1)
    """Labels alerts are grouped by (`...`: all)."""
    group_wait: Duration
    """Wait before the first notification of a group."""
    group_interval: Duration
    """Wait before notifying about new alerts in a group."""
    repeat_interval: Duration
    """Resend a firing alert after this."""
    critical_repeat_interval: Duration
    """The same for critical alerts."""


class Alertmanager(Strict):
    listen: Listen
    """Where Alertmanager listens (keep it on loopback)."""
    receivers: Receivers
    """Where alerts go."""
    route: Route
    """Grouping and repetition."""


class GrafanaDashboard(Strict):
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    """The dashboard's uid."""
    title: Text
    """Its title."""


class GrafanaDatasource(Strict):
    uid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    """The Prometheus data source's uid."""
    name: Text
    """Its name."""


class Grafana(Strict):
    install: bool
    """Install Grafana itself (from Grafana's own apt repository) or only put the dashboard and
    provisioning files where an existing Grafana reads them."""
    listen: Listen
    """Where Grafana listens."""
    dashboard: GrafanaDashboard
    """The dashboard."""
    datasource: GrafanaDatasource
    """The data source it reads."""
    provisioning_dir: HostDirs
    """Grafana's provisioning directory."""
    dashboards_dir: HostDirs
    """Where the dashboard JSON is put."""


# --------------------------------------------------------------------------- root


class Stack(Strict):
    """The whole of stack.yaml."""

    litellm: LiteLLM
    """The LiteLLM proxy in front of the providers (runbook phases 1-4): pinned version, listen
    address, master-key variable, models with prices, fallback chains, per-error-class retries and
    cooldowns, timeout, cache."""
    targets: list[Target] = Field(min_length=2)
    """What the agents are switched to, in priority order (runbook 7.2); the first is the primary
    (P1: the local proxy)."""
    agents: list[Enrollment] = Field(min_length=1)
    """The coding agents whose own config files follow the switch; one line enrolls one."""
    watchdog: Watchdog
    """Probes, classifies, fails over, restores and restarts the proxy (phases 1-5)."""
    budget: Budget
    """Budget and kill switch (phase 9)."""
    linux: Linux
    """Linux and WSL hosts."""
    windows: Windows
    """Windows hosts, over WinRM (phase 10)."""
    prometheus: Prometheus
    """Prometheus (phase 8)."""
    alerts: Alerts
    """Alert thresholds (8.3); the budget alerts fire at `budget.levels_percent`."""
    alertmanager: Alertmanager
    """Alertmanager: listen address, receivers, route."""
    grafana: Grafana
    """The Grafana dashboard and its provisioning."""

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
