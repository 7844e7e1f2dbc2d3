"""The watchdog's health probes (runbook phase 1): cheap, typed, one attempt each.

What is probed, and why this way:

- ``liveness``: ``GET <proxy>/health/liveliness``. Open, no upstream call: is the process up?
- ``models``: ``GET <proxy>/v1/models`` with the master key. No upstream call either; it proves
  the proxy authenticates, routes, and serves exactly the aliases of stack.yaml (a difference
  is ``config``: the proxy runs some other config).
- ``provider``: ``GET <api_base>/models`` at each provider with its key: reachability and auth,
  unbilled (runbook 6.1), and whether the upstream models the aliases name are still offered.
- ``metrics``: LiteLLM's own ``/metrics`` as passive health from real traffic: the deployment
  state per model group and how the failure, fallback and cooldown counters moved since the
  previous read.
- ``completion``: a real ``max_tokens: 1`` completion through the proxy, only when enabled
  (paid on paid models), bypassing LiteLLM's response cache, which would otherwise answer it.

LiteLLM's ``/health`` is never called: it makes a paid completion per model and always answers
200. Probes never retry (the circuit's hysteresis decides what a failure means), share one
``httpx.AsyncClient``, and each has one overall deadline from the config, enforced around the
whole exchange (httpx's own timeouts apply per phase, so a trickling reply could outlive them).
No key is ever part of a result: messages are redacted and keys are only ever sent as headers.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics
from monitoring.host_config import Probes, ProviderSpec, ProxySpec, WatchdogConfig
from monitoring.watchdog.classify import (
    FOREIGN_LISTENER,
    NOT_API,
    DiagnosisInputs,
    ErrorClass,
    body_kind,
    classify_exception,
    classify_reply,
    env_present,
    not_api_reply,
    redact,
)
from monitoring.watchdog.listener import foreign_listener, is_loopback

__all__ = [
    "PROXY_ROUTE",
    "LitellmSnapshot",
    "ProbeKind",
    "ProbeResult",
    "Prober",
    "parse_litellm_metrics",
]

#: The health route of the proxy itself (a provider's route is its name). Render writes the
#: same value into each litellm target's ``route`` (tasks/render/watchdog.py).
PROXY_ROUTE = metrics.PROXY_ROUTE


#: A completion through the proxy waits on a real model; the probe timeout is sized for
#: local, cheap endpoints, so the completion gets at least this long.
MIN_COMPLETION_TIMEOUT_S = 15.0

#: The exception class LiteLLM labels its own cooldown refusals with (a 429 it raises itself,
#: without asking any upstream), and the status such a failure is counted under here: the
#: upstream status that caused the cooldown when LiteLLM's cooled-down counter names one.
LITELLM_COOLDOWN_EXCEPTION = "RouterRateLimitError"
COOLDOWN_STATUS = "cooldown"

#: LiteLLM deployment states (``litellm_deployment_state``).
HEALTHY, PARTIAL, OUTAGE = 0, 1, 2

#: The watchdog's User-Agent. LiteLLM 1.108.7 labels its deployment success and failure
#: counters with the caller's ``user_agent``, so the passive reader can leave the watchdog's
#: own canaries out of the evidence from real traffic (each canary is judged once, by its reply).
USER_AGENT = "provider-fallback-watchdog"


class ProbeKind(StrEnum):
    LIVENESS = "liveness"
    MODELS = "models"
    PROVIDER = "provider"
    METRICS = "metrics"
    COMPLETION = "completion"


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome. ``error_class`` is None exactly when ``ok``.

    ``route`` is what the circuit tracks: :data:`PROXY_ROUTE` or a provider name. ``detail``
    holds plain JSON-able facts (aliases served, counter deltas, headers of interest), never a
    key or a header that carries one.
    """

    route: str
    kind: ProbeKind
    ok: bool
    latency_s: float
    status: int | None
    error_class: ErrorClass | None
    message: str
    retry_after_s: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- /metrics


@dataclass(frozen=True)
class LitellmSnapshot:
    """The parts of LiteLLM's /metrics that say how its model groups are doing.

    Counters are keyed by model group (and exception status for failures). ``states`` is the
    current ``litellm_deployment_state`` per model group, the worst of its deployments.
    """

    states: dict[str, int]
    #: Keyed (model group, status, series) and (model group, series): increases are taken per
    #: series, so a series LiteLLM drops (its idle-series cleanup) is not mistaken for a
    #: counter reset whose whole value would count as new failures.
    failures: dict[tuple[str, str, str], float]
    successes: dict[tuple[str, str], float]
    successful_fallbacks: dict[tuple[str, str], float]
    failed_fallbacks: dict[tuple[str, str], float]
    cooled_down: dict[str, float]
    #: Requests the proxy is serving right now, the reading request excluded (None: not exported).
    in_flight: float | None = None


def _add(counter: dict[Any, float], key: Any, value: float) -> None:
    counter[key] = counter.get(key, 0.0) + value


def parse_litellm_metrics(text: str, aliases: Sequence[str],
                          upstream_models: Mapping[str, str] | None = None) -> LitellmSnapshot:
    """Read the health-relevant families of LiteLLM's exposition text.

    ``litellm_deployment_state`` is labelled by model name and deployment id, not model group,
    and LiteLLM 1.108.7 writes TWO series per deployment: one labelled with the upstream model
    name (set on every success and failure: the current state) and one labelled with the alias
    (set to 2 when the deployment is cooled down, and never reset). The alias-labelled series
    is therefore used only to learn which deployment belongs to which group, and as the state
    when no upstream-labelled series exists yet (or alias and upstream names are the same).
    """
    alias_set = set(aliases)
    by_upstream: dict[str, list[str]] = {}
    for alias, upstream in (upstream_models or {}).items():
        by_upstream.setdefault(upstream.removeprefix("openai/"), []).append(alias)
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    group_of_id: dict[str, str] = {}
    for s in samples:
        model_id = s.labels.get("model_id", "")
        group = s.labels.get("model_group") or (
            s.labels.get("litellm_model_name") if s.name == metrics.LITELLM_DEPLOYMENT_STATE
            else "")
        if model_id and group in alias_set:
            group_of_id.setdefault(model_id, group)

    current: dict[str, int] = {}
    stale: dict[str, int] = {}
    failures: dict[tuple[str, str, str], float] = {}
    successes: dict[tuple[str, str], float] = {}
    ok_fallbacks: dict[tuple[str, str], float] = {}
    bad_fallbacks: dict[tuple[str, str], float] = {}
    cooled: dict[str, float] = {}
    in_flight: float | None = None
    for s in samples:
        labels = s.labels
        if labels.get("user_agent", "").startswith(USER_AGENT):
            continue  # the watchdog's own canary: judged by its reply, not counted twice
        if s.name == metrics.LITELLM_IN_FLIGHT:
            in_flight = max(0.0, s.value - 1)  # less the request reading /metrics
        elif s.name == metrics.LITELLM_DEPLOYMENT_STATE:
            name = labels.get("litellm_model_name", "")
            group = group_of_id.get(labels.get("model_id", ""))
            if group is None:
                candidates = by_upstream.get(name.removeprefix("openai/"), [])
                group = candidates[0] if len(candidates) == 1 else (
                    name if name in alias_set else None)
            if group is None:
                continue
            upstream = (upstream_models or {}).get(group, "").removeprefix("openai/")
            target = stale if name == group and upstream != group else current
            target[group] = max(target.get(group, HEALTHY), int(s.value))
        elif s.name == metrics.LITELLM_FAILURES:
            group = labels.get("model_group") or labels.get("requested_model", "")
            status = (COOLDOWN_STATUS if labels.get("exception_class") == LITELLM_COOLDOWN_EXCEPTION
                      else labels.get("exception_status", ""))
            _add(failures, (group, status, _series_id(labels)), s.value)
        elif s.name == metrics.LITELLM_SUCCESSES:
            group = labels.get("model_group") or labels.get("requested_model", "")
            _add(successes, (group, _series_id(labels)), s.value)
        elif s.name in (metrics.LITELLM_SUCCESSFUL_FALLBACKS, metrics.LITELLM_FAILED_FALLBACKS):
            key = (labels.get("requested_model", ""), labels.get("fallback_model", ""))
            _add(ok_fallbacks if s.name == metrics.LITELLM_SUCCESSFUL_FALLBACKS
                 else bad_fallbacks, key, s.value)
        elif s.name == metrics.LITELLM_COOLED_DOWN:
            name = labels.get("litellm_model_name", "")
            group = group_of_id.get(labels.get("model_id", ""), name)
            _add(cooled, group, s.value)
    states = {**stale, **current}
    return LitellmSnapshot(states, failures, successes, ok_fallbacks, bad_fallbacks, cooled,
                           in_flight)


def _series_id(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _by_group(per_series: Mapping[Any, float]) -> dict[Any, float]:
    """Per-series increases summed without the series: (group, status) or group."""
    out: dict[Any, float] = {}
    for key, n in per_series.items():
        _add(out, key[0] if len(key) == 2 else key[:-1], n)
    return out


def _delta(now: Mapping[Any, float], before: Mapping[Any, float] | None) -> dict[Any, float]:
    """Counter increase per key; a counter lower than before was reset (proxy restarted)."""
    if before is None:
        return {}
    out: dict[Any, float] = {}
    for key, value in now.items():
        previous = before.get(key, 0.0)
        increase = value - previous if value >= previous else value
        if increase > 0:
            out[key] = increase
    return out


_STATUS_CLASSES: dict[str, ErrorClass] = {
    "401": ErrorClass.AUTH, "403": ErrorClass.AUTH, "404": ErrorClass.CONFIG,
    "400": ErrorClass.CONFIG, "408": ErrorClass.TIMEOUT, "429": ErrorClass.RATE,
}


def class_of_status(status: str) -> ErrorClass:
    """The error class of an upstream status as LiteLLM's metrics label it."""
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    return ErrorClass.SERVER if status.startswith("5") else ErrorClass.UNKNOWN


# --------------------------------------------------------------------------- the prober


class Prober:
    """Runs the probes of one watchdog config with one shared client.

    Keys are read from ``env`` (default: the process environment) at each probe, so a key set
    after start-up (runbook 2B: "set it") is picked up without a restart.
    """

    def __init__(self, proxy: ProxySpec, providers: Sequence[ProviderSpec], probes: Probes, *,
                 upstream_models: Mapping[str, str] | None = None,
                 client: httpx.AsyncClient | None = None,
                 env: Mapping[str, str] | None = None,
                 timeouts: Mapping[ProbeKind, float] | None = None) -> None:
        self.proxy = proxy
        self.providers = list(providers)
        self.probes = probes
        self.upstream_models = dict(upstream_models or {})
        self._env = env
        self._own_client = client is None
        # No retries (httpx's default transport makes none) and no redirects (the config
        # names final paths, e.g. /metrics/, so a redirect is a finding, not something to
        # follow); keep-alive: one round trip a probe. HTTP(S)_PROXY/NO_PROXY are honoured
        # as LiteLLM honours them, or behind a corporate proxy the direct probes would fail
        # where the proxy succeeds; loopback (the proxy itself) is always reached directly.
        self.client = client or httpx.AsyncClient(
            follow_redirects=False, trust_env=True,
            mounts=direct_mounts([proxy.url, *(p.api_base for p in providers)]),
            headers={"User-Agent": USER_AGENT})
        #: time.monotonic() of the proxy's last reply of any kind (an error status counts: it
        #: answered). The restart rule tells a slow proxy from a hung one by it.
        self.proxy_answered_at: float | None = None
        base = {kind: probes.timeout for kind in ProbeKind}
        base[ProbeKind.COMPLETION] = max(probes.timeout, MIN_COMPLETION_TIMEOUT_S)
        self.timeouts: dict[ProbeKind, float] = {**base, **(timeouts or {})}
        self._last_metrics: LitellmSnapshot | None = None

    @classmethod
    def from_config(cls, config: WatchdogConfig, *, client: httpx.AsyncClient | None = None,
                    env: Mapping[str, str] | None = None,
                    timeouts: Mapping[ProbeKind, float] | None = None) -> Prober:
        """A prober for everything the rendered watchdog config names."""
        return cls(config.proxy, config.providers, config.probes,
                   upstream_models={a: m.upstream_model for a, m in config.models.items()},
                   client=client, env=env, timeouts=timeouts)

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- plumbing

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def _secret(self, name: str) -> str | None:
        value = self.env.get(name, "")
        return value if env_present(name, self.env) else None

    def _secrets(self) -> list[str]:
        names = [self.proxy.master_key_env, *(p.api_key_env for p in self.providers)]
        return [v for v in (self.env.get(n, "") for n in names) if len(v) >= 4]

    async def _exchange(self, route: str, kind: ProbeKind, method: str, url: str,
                        headers: Mapping[str, str] | None,
                        judge: Callable[[httpx.Response, float], Awaitable[ProbeResult]],
                        json_body: Any = None) -> ProbeResult:
        """One request under one overall deadline; exceptions become classified results."""
        timeout = self.timeouts[kind]
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                response = await self.client.request(method, url, headers=headers,
                                                     json=json_body, timeout=timeout)
                latency = time.monotonic() - started
                if route == PROXY_ROUTE:
                    self.proxy_answered_at = time.monotonic()
                return await judge(response, latency)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            latency = time.monotonic() - started
            cls, message = classify_exception(exc, self._secrets())
            if cls is ErrorClass.TIMEOUT:
                message = f"no answer within {timeout:g} s"
            return ProbeResult(route, kind, False, latency, None, cls,
                               redact(message, self._secrets()), None, {"url": url})

    def _failed(self, route: str, kind: ProbeKind, response: httpx.Response, latency: float,
                detail: Mapping[str, Any] | None = None) -> ProbeResult:
        not_api = not_api_reply(response.status_code, response.text, response.headers,
                                self._secrets())
        if not_api is not None:
            return ProbeResult(route, kind, False, latency, response.status_code,
                               ErrorClass.NETWORK, not_api, None, {**(detail or {}),
                                                                   "not_api": True})
        c = classify_reply(response.status_code, response.text, response.headers,
                           self._secrets())
        return ProbeResult(route, kind, False, latency, response.status_code,
                           c.error_class or ErrorClass.UNKNOWN, c.message, c.retry_after_s,
                           {**(detail or {}), "exception": c.exception, "cooldown": c.cooldown})

    def _auth_headers(self, key: str | None) -> dict[str, str] | None:
        return {"Authorization": f"Bearer {key}"} if key else None

    def _missing_key(self, route: str, kind: ProbeKind, name: str) -> ProbeResult:
        """Runbook 2B's first check, without sending a request that cannot succeed."""
        return ProbeResult(route, kind, False, 0.0, None, ErrorClass.AUTH,
                           f"{name} is not set", None, {"key_env": name, "key_present": False})

    @property
    def proxy_url(self) -> httpx.URL:
        return httpx.URL(self.proxy.url)

    def foreign_proxy(self, kind: ProbeKind) -> ProbeResult | None:
        """A failed result when the proxy port is held by a process that is not our proxy.

        Checked before every request to the proxy port, so the master key never goes to a
        squatter (security review H1) and its answers are never read as the proxy's. A proxy
        URL that is not on loopback cannot be checked from here and is trusted.
        """
        parts = httpx.URL(self.proxy.url)
        if not is_loopback(parts.host):
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        holder = foreign_listener(parts.host, port, match=self.proxy.config_path)
        if holder is None:
            return None
        return ProbeResult(PROXY_ROUTE, kind, False, 0.0, None, ErrorClass.NETWORK,
                           redact(f"{FOREIGN_LISTENER}: {holder.describe()}"), None,
                           {"foreign_listener": holder.describe(), "pid": holder.pid,
                            "uid": holder.uid})

    # -- the probes

    async def liveness(self) -> ProbeResult:
        """Is the proxy process up and serving? (``/health/liveliness``, no upstream call)."""
        foreign = self.foreign_proxy(ProbeKind.LIVENESS)
        if foreign is not None:
            return foreign
        url = self.proxy.url + self.proxy.liveliness_path

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            if response.status_code == 200:
                return ProbeResult(PROXY_ROUTE, ProbeKind.LIVENESS, True, latency, 200, None,
                                   f"alive in {latency * 1000:.0f} ms")
            return self._failed(PROXY_ROUTE, ProbeKind.LIVENESS, response, latency)

        return await self._exchange(PROXY_ROUTE, ProbeKind.LIVENESS, "GET", url, None, judge)

    async def proxy_models(self) -> ProbeResult:
        """Does the proxy accept the master key and serve exactly the configured aliases?"""
        key = self._secret(self.proxy.master_key_env)
        if key is None:
            return self._missing_key(PROXY_ROUTE, ProbeKind.MODELS, self.proxy.master_key_env)
        foreign = self.foreign_proxy(ProbeKind.MODELS)
        if foreign is not None:
            return foreign
        url = self.proxy.url + self.proxy.models_path

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            if response.status_code != 200:
                return self._failed(PROXY_ROUTE, ProbeKind.MODELS, response, latency)
            served = _model_ids(response)
            if served is None:
                return ProbeResult(PROXY_ROUTE, ProbeKind.MODELS, False, latency, 200,
                                   ErrorClass.SERVER, "the model list is not OpenAI-shaped JSON")
            missing = sorted(set(self.proxy.models) - set(served))
            extra = sorted(set(served) - set(self.proxy.models))
            detail = {"served": sorted(served), "missing": missing, "unexpected": extra}
            if missing or extra:
                parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unexpected {', '.join(extra)}"] if extra else [])
                return ProbeResult(PROXY_ROUTE, ProbeKind.MODELS, False, latency, 200,
                                   ErrorClass.CONFIG,
                                   f"the proxy's models differ from stack.yaml: {'; '.join(parts)}",
                                   None, detail)
            return ProbeResult(PROXY_ROUTE, ProbeKind.MODELS, True, latency, 200, None,
                               f"{len(served)} models served", None, detail)

        return await self._exchange(PROXY_ROUTE, ProbeKind.MODELS, "GET", url,
                                    self._auth_headers(key), judge)

    def provider_spec(self, name: str) -> ProviderSpec:
        for spec in self.providers:
            if spec.name == name:
                return spec
        raise KeyError(f"no provider {name!r} (known: {', '.join(p.name for p in self.providers)})")

    async def provider(self, spec: ProviderSpec | str) -> ProbeResult:
        """Is the provider reachable, does it accept its key, does it still offer our models?

        ``GET <api_base>/models`` is free at every OpenAI-compatible provider.
        """
        spec = self.provider_spec(spec) if isinstance(spec, str) else spec
        key = self._secret(spec.api_key_env)
        if key is None:
            return self._missing_key(spec.name, ProbeKind.PROVIDER, spec.api_key_env)
        url = spec.api_base.rstrip("/") + "/models"

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            if response.status_code != 200:
                return self._failed(spec.name, ProbeKind.PROVIDER, response, latency,
                                    {"key_env": spec.api_key_env, "key_present": True})
            offered = _model_ids(response)
            detail: dict[str, Any] = {"key_env": spec.api_key_env, "key_present": True,
                                      "offered": None if offered is None else len(offered)}
            if offered is None:  # a 200 is health only with the body the API promises
                what = body_kind(response.text, response.headers)
                if what.startswith("application/json"):
                    what = "JSON without an OpenAI model list"
                return ProbeResult(spec.name, ProbeKind.PROVIDER, False, latency, 200,
                                   ErrorClass.NETWORK,
                                   redact(f"{NOT_API} (HTTP 200, {what})", self._secrets()),
                                   None, {**detail, "not_api": True})
            wanted = {alias: self.upstream_models[alias] for alias in spec.models
                      if alias in self.upstream_models}
            if wanted:
                have = {_norm(m) for m in offered}
                gone = sorted(a for a, m in wanted.items() if _norm(m) not in have)
                detail["missing"] = gone
                if gone:
                    names = ", ".join(f"{a} ({wanted[a]})" for a in gone)
                    return ProbeResult(spec.name, ProbeKind.PROVIDER, False, latency, 200,
                                       ErrorClass.CONFIG,
                                       f"{spec.name} no longer offers {names}", None, detail)
            return ProbeResult(spec.name, ProbeKind.PROVIDER, True, latency, 200, None,
                               f"{spec.name} answers and accepts its key", None, detail)

        return await self._exchange(spec.name, ProbeKind.PROVIDER, "GET", url,
                                    self._auth_headers(key), judge)

    async def all_providers(self) -> list[ProbeResult]:
        """Every provider at once (they are independent hosts), in config order."""
        return list(await asyncio.gather(*(self.provider(p) for p in self.providers)))

    async def litellm_metrics(self) -> ProbeResult:
        """Passive health from LiteLLM's /metrics: state per model group, counter deltas.

        Not ok when a model group is in complete outage now, or when a group had failures and
        no success since the previous read: a primary whose requests all end up served by a
        fallback still shows here, which is the point. The first read sets the baseline.
        LiteLLM updates these metrics in callbacks after it has replied, so they lag a reply by
        a little: a consumer reads them on a slow cadence, never to judge one request.
        """
        foreign = self.foreign_proxy(ProbeKind.METRICS)
        if foreign is not None:
            return foreign
        url = self.proxy.url + self.proxy.metrics_path
        key = self._secret(self.proxy.master_key_env)

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            if response.status_code != 200:
                return self._failed(PROXY_ROUTE, ProbeKind.METRICS, response, latency)
            try:
                snap = parse_litellm_metrics(response.text, self.proxy.models,
                                             self.upstream_models)
            except ValueError as exc:
                return ProbeResult(PROXY_ROUTE, ProbeKind.METRICS, False, latency, 200,
                                   ErrorClass.SERVER,
                                   redact(f"unparsable /metrics: {exc}")[:200])
            before, self._last_metrics = self._last_metrics, snap
            return _judge_metrics(snap, before, latency)

        return await self._exchange(PROXY_ROUTE, ProbeKind.METRICS, "GET", url,
                                    self._auth_headers(key), judge)

    async def completion(self, model: str | None = None, *,
                         force: bool = False) -> ProbeResult | None:
        """A real ``max_tokens: 1`` completion through the proxy; None (nothing sent) when the
        completion probe is disabled, unless ``force``.

        It asks LiteLLM not to read or write its response cache, or the probe would be
        answered from the cache and prove nothing.
        """
        if not (self.probes.completion_enabled or force):
            return None
        model = model or self.probes.completion_model
        key = self._secret(self.proxy.master_key_env)
        if key is None:
            return self._missing_key(PROXY_ROUTE, ProbeKind.COMPLETION, self.proxy.master_key_env)
        foreign = self.foreign_proxy(ProbeKind.COMPLETION)
        if foreign is not None:
            return foreign
        url = self.proxy.url + "/v1/chat/completions"
        body = {"model": model, "max_tokens": 1,
                "messages": [{"role": "user", "content": "Reply with one word: ok"}],
                "cache": {"no-cache": True, "no-store": True}}

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            detail: dict[str, Any] = {
                "model": model,
                "model_group": response.headers.get("x-litellm-model-group"),
                "attempted_fallbacks": _int(response.headers.get("x-litellm-attempted-fallbacks")),
            }
            if response.status_code != 200:
                return self._failed(PROXY_ROUTE, ProbeKind.COMPLETION, response, latency, detail)
            try:
                data = response.json()
                usage = data.get("usage") or {}
                detail["answered_by"] = data.get("model")
                detail["tokens"] = usage.get("total_tokens")
                has_choice = bool(data.get("choices"))
            except (ValueError, AttributeError):
                has_choice = False
            if not has_choice:
                return ProbeResult(PROXY_ROUTE, ProbeKind.COMPLETION, False, latency, 200,
                                   ErrorClass.SERVER, "the completion has no choices", None,
                                   detail)
            via = (f" via {detail['attempted_fallbacks']} fallback(s)"
                   if detail["attempted_fallbacks"] else "")
            return ProbeResult(PROXY_ROUTE, ProbeKind.COMPLETION, True, latency, 200, None,
                               f"{model} answered in {latency:.2f} s{via}", None, detail)

        return await self._exchange(PROXY_ROUTE, ProbeKind.COMPLETION, "POST", url,
                                    self._auth_headers(key), judge, json_body=body)

    async def canary(self, model: str) -> ProbeResult:
        """One ``max_tokens: 1`` completion of ``model`` through the proxy, judged by its reply:
        the evidence a route opened by failed completions needs before it may close.

        LiteLLM is asked for ONE attempt at that model group (``num_retries: 0``,
        ``disable_fallbacks: true``): an answer served by a retry or by another group of the
        chain would prove nothing about this one. It bypasses the response cache like
        :meth:`completion`. A 429 from LiteLLM's own cooldown (no upstream was asked) carries
        ``detail["cooldown"]``: the caller takes it as no verdict either way.
        """
        key = self._secret(self.proxy.master_key_env)
        if key is None:
            return self._missing_key(PROXY_ROUTE, ProbeKind.COMPLETION, self.proxy.master_key_env)
        url = self.proxy.url + "/v1/chat/completions"
        body = {"model": model, "max_tokens": 1, "num_retries": 0, "disable_fallbacks": True,
                "messages": [{"role": "user", "content": "Reply with one word: ok"}],
                "cache": {"no-cache": True, "no-store": True}}

        async def judge(response: httpx.Response, latency: float) -> ProbeResult:
            group = response.headers.get("x-litellm-model-group")
            detail: dict[str, Any] = {"model": model, "model_group": group, "canary": True}
            if response.status_code != 200:
                return self._failed(PROXY_ROUTE, ProbeKind.COMPLETION, response, latency, detail)
            try:
                data = response.json()
                has_choice = isinstance(data, dict) and bool(data.get("choices"))
            except ValueError:
                has_choice = False
            if not has_choice or (group is not None and group != model):
                why = ("the completion has no choices" if not has_choice
                       else f"answered by {group}, not {model}")
                return ProbeResult(PROXY_ROUTE, ProbeKind.COMPLETION, False, latency, 200,
                                   ErrorClass.SERVER, f"canary {model}: {why}", None, detail)
            return ProbeResult(PROXY_ROUTE, ProbeKind.COMPLETION, True, latency, 200, None,
                               f"canary {model} answered in {latency:.2f} s", None, detail)

        return await self._exchange(PROXY_ROUTE, ProbeKind.COMPLETION, "POST", url,
                                    self._auth_headers(key), judge, json_body=body)

    # -- diagnosis inputs

    def diagnosis_inputs(self, result: ProbeResult, *, provider_ok: bool | None = None,
                         served: Sequence[str] | None = None,
                         log_path: str | None = None,
                         installed_version: str | None = None,
                         pid: int | None = None) -> DiagnosisInputs:
        """What :func:`monitoring.watchdog.classify.diagnose` needs for ``result``, from this
        config.

        The caller adds what only it knows: whether the provider accepted its key (a
        ``provider`` probe), the aliases served (a ``models`` probe), the proxy's pid and log.
        """
        if result.route == PROXY_ROUTE:
            url, key_env, who = self.proxy.url, self.proxy.master_key_env, "the proxy"
        else:
            spec = self.provider_spec(result.route)
            url, key_env, who = spec.api_base, spec.api_key_env, spec.name
        return DiagnosisInputs(
            url=url, pid=pid, key_env=key_env, env=self.env, key_accepted=provider_ok,
            provider=who, retry_after_s=result.retry_after_s,
            configured_models=self.proxy.models,
            served_models=served if served is not None else result.detail.get("served"),
            config_path=self.proxy.config_path, expected_version=self.proxy.version,
            installed_version=installed_version, log_path=log_path,
            latency_s=result.latency_s, timeout_s=self.timeouts[result.kind],
            message=result.message)


# --------------------------------------------------------------------------- helpers


def direct_mounts(urls: Sequence[str]) -> dict[str, httpx.AsyncBaseTransport | None]:
    """httpx mounts that reach every loopback host directly, whatever the proxy variables say.

    Given no ``transport``, httpx applies HTTP(S)_PROXY/ALL_PROXY/NO_PROXY itself; a mount
    for a host wins over them. ``localhost``, 127.0.0.1 and ::1 always, plus any other
    loopback address the config names (127.0.0.2, ...).
    """
    hosts = {"localhost", "127.0.0.1", "[::1]"}
    for url in urls:
        host = httpx.URL(url).host
        if host and is_loopback(host):
            hosts.add(f"[{host}]" if ":" in host else host)
    return {f"all://{host}": httpx.AsyncHTTPTransport() for host in sorted(hosts)}


def _model_ids(response: httpx.Response) -> list[str] | None:
    """The ids of an OpenAI ``{"data": [{"id": ...}]}`` model list; None if it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]


def _norm(model: str) -> str:
    """Model ids compare without provider prefixes (Gemini lists ``models/gemini-2.5-pro``)."""
    return model.removeprefix("openai/").removeprefix("models/").lower()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _judge_metrics(snap: LitellmSnapshot, before: LitellmSnapshot | None,
                   latency: float) -> ProbeResult:
    failures = _by_group(_delta(snap.failures, before.failures if before else None))
    successes = _by_group(_delta(snap.successes, before.successes if before else None))
    ok_fb = _delta(snap.successful_fallbacks, before.successful_fallbacks if before else None)
    bad_fb = _delta(snap.failed_fallbacks, before.failed_fallbacks if before else None)
    cooled = _delta(snap.cooled_down, before.cooled_down if before else None)
    outage = sorted(g for g, s in snap.states.items() if s == OUTAGE)
    partial = sorted(g for g, s in snap.states.items() if s == PARTIAL)
    failed_total = sum(failures.values())
    detail: dict[str, Any] = {
        "baseline": before is None,
        "states": dict(sorted(snap.states.items())),
        "outage": outage,
        "partial": partial,
        "failures": {f"{g}/{st}": n for (g, st), n in sorted(failures.items())},
        "successes": dict(sorted(successes.items())),
        "successful_fallbacks": {f"{a}->{b}": n for (a, b), n in sorted(ok_fb.items())},
        "failed_fallbacks": {f"{a}->{b}": n for (a, b), n in sorted(bad_fb.items())},
        "cooled_down": dict(sorted(cooled.items())),
        "in_flight": snap.in_flight,
    }
    error_class: ErrorClass | None = None
    if failures:
        by_status: dict[str, float] = {}
        for (_, status), n in failures.items():
            by_status[status] = by_status.get(status, 0.0) + n
        error_class = class_of_status(max(by_status, key=lambda s: by_status[s]))
    by_group: dict[str, dict[str, Any]] = {}
    for (group, status), n in failures.items():
        entry = by_group.setdefault(group, {"failures": 0.0, "statuses": {}, "successes": 0.0})
        entry["failures"] += n
        entry["statuses"][status] = entry["statuses"].get(status, 0.0) + n
    for group, n in successes.items():
        by_group.setdefault(group, {"failures": 0.0, "statuses": {}, "successes": 0.0})
        by_group[group]["successes"] += n
    # LiteLLM 1.108.7 counts only a request's FIRST failed attempt (under the group asked
    # for; its retries and fallback attempts share the call id and are not counted again). A
    # fallback group that failed too shows only in the failed-fallback counter, bumped when
    # the whole request ends: up to the chain's retries later (10-20 s at default settings),
    # so possibly after the fault has cleared. It is kept apart ("fallback_failures", under
    # the status its request failed with) for the consumer to weigh. The successful-fallback
    # counter is no evidence for a group: 1.108.7 bumps it for every group of a chain that
    # ended well, failing ones too.
    for (asked, fallback), n in bad_fb.items():
        entry = by_group.setdefault(fallback, {"failures": 0.0, "statuses": {}, "successes": 0.0})
        statuses = by_group.get(asked, {}).get("statuses") or {"500": 0.0}
        status = max(statuses, key=lambda k: statuses[k])
        late = entry.setdefault("fallback_statuses", {})
        entry["fallback_failures"] = entry.get("fallback_failures", 0.0) + n
        late[status] = late.get(status, 0.0) + n
    # Per model group since the last read: what real traffic did (the watchdog maps groups
    # to providers for passive health).
    detail["by_group"] = by_group
    failed_groups = {g for (g, _), n in failures.items() if n > 0}
    failing = sorted(g for g in failed_groups if not successes.get(g))
    detail["failing"] = failing
    ok = not outage and not failing
    parts = [f"{len(snap.states)} groups seen"]
    if outage:
        parts.append(f"outage: {', '.join(outage)}")
    if partial:
        parts.append(f"partial: {', '.join(partial)}")
    if failing:
        parts.append(f"failing: {', '.join(failing)}")
    if failures:
        parts.append(f"+{failed_total:g} failures")
    if bad_fb:
        parts.append(f"+{sum(bad_fb.values()):g} failed fallbacks")
    if ok_fb:
        parts.append(f"+{sum(ok_fb.values()):g} fallbacks")
    if cooled:
        parts.append(f"+{sum(cooled.values()):g} cooldowns")
    if not ok and error_class is None:
        error_class = ErrorClass.UNKNOWN
    return ProbeResult(PROXY_ROUTE, ProbeKind.METRICS, ok, latency, 200,
                       None if ok else error_class, "; ".join(parts), None, detail)
