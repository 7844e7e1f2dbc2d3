"""The watchdog loop: the runbook's phases 1-5, done by a program instead of a person.

Each tick (``probes.interval``):

1. **Detect** (phase 1): proxy liveness and ``/v1/models`` through it every tick; each provider
   directly on its slower cadence; LiteLLM's ``/metrics`` as passive health (reported in
   status and events, never used to fail the proxy: one model group failing is not the proxy
   failing).
2. **Classify and diagnose** (1.2, 2A-2F): every failed probe carries its error class; the
   diagnosis of the runbook phase is attached when a route opens.
3. **Decide** with hysteresis (:mod:`monitoring.watchdog.circuit`): the agents use the first target,
   in priority order (7.2), whose routes are usable; a manual pin overrides; switches are capped
   per hour, keeping the last allowed switch for a fallback so the cap never strands the agents
   on a dead target.
4. **Act**: switch every agent file (3.1, 4.3), log FALLBACK/RESTORED in the runbook's format,
   enter or leave degraded mode (7.1, EMERGENCY), restart a dead or hung proxy (5.2) through
   the host's backend with backoff, a cap and a crash-loop state.
5. **Export** the metrics and **persist** the state, so a restarted watchdog resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitoring import metrics
from monitoring.agents.engine import AgentManager, AgentResult, key_command
from monitoring.agents.follower import (
    DECISION_FILE,
    WINDOWS_SUFFIX,
    Whose,
    applied_result,
    decision_bytes,
    follower_of,
    publish,
)
from monitoring.atomic import atomic_write
from monitoring.events import EventKind, EventLog, append_line
from monitoring.host_config import ProviderSpec, TargetSpec, WatchdogConfig
from monitoring.proxy.budget import BudgetStatus, Level, budget_status
from monitoring.proxy.choice import cost_table, order_targets
from monitoring.proxy.cost_log import CostLedger, format_ts
from monitoring.proxy.degraded_cache import DegradedCache
from monitoring.proxy.kill_switch import KillSwitch
from monitoring.watchdog.circuit import Circuit, Outcome, circuit_of, observe
from monitoring.watchdog.classify import (
    FOREIGN_LISTENER,
    HIDDEN_BY_COOLDOWN,
    ErrorClass,
    diagnose,
    event_cause,
    port_listening,
)
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.probes import (
    COOLDOWN_STATUS,
    PROXY_ROUTE,
    ProbeKind,
    Prober,
    ProbeResult,
    class_of_status,
)
from monitoring.watchdog.recovery import (
    Backend,
    HangEvidence,
    ProcessBackend,
    RestartGate,
    proxy_pid,
)
from monitoring.watchdog.repeat_log import RepeatLog
from monitoring.watchdog.state import WatchdogState, load_state, save_state, utc_now

log = logging.getLogger(__name__)

#: How the runbook names each error class in an event line (3.1: "LiteLLM connection refused").
CAUSE: dict[str, str] = {
    ErrorClass.NETWORK: "connection refused",
    ErrorClass.AUTH: "authentication failed",
    ErrorClass.RATE: "rate limited",
    ErrorClass.CONFIG: "model not found",
    ErrorClass.SERVER: "server error",
    ErrorClass.TIMEOUT: "timed out",
    ErrorClass.UNKNOWN: "failed",
}
#: The control file ``provider-fallback switch/restore`` writes and the loop picks up.
PIN_FILE = "pin.json"
WATCHDOG_PID_FILE = "watchdog.pid"
LEAVING_DEGRADED = "Providers recovered, leaving degraded mode"
#: ``RouteState.failed_path`` of a route whose completions failed: only a completion closes it.
COMPLETION_PATH = "completion"
#: Probe kinds that are evidence from the completion path (real traffic, canaries).
COMPLETION_KINDS = frozenset({ProbeKind.METRICS, ProbeKind.COMPLETION})
#: Requests in flight at the proxy with none finishing for this long is a stall: every provider
#: is probed directly at once instead of at its slow cadence (item 9: a hung upstream shows no
#: failure until LiteLLM's request_timeout; a healthy long answer only costs one unbilled round).
STALL_AFTER_S = 3.0
_EPOCH = datetime.min.replace(tzinfo=UTC)
#: EMERGENCY ("All providers failed") needs no provider to have served a request through the
#: proxy for this long (or three /metrics reads, if longer): a provider failing about half its
#: requests has not failed, and a proxy slowed down by a storm of failing requests may serve
#: none for a few seconds. Degraded mode itself is the proxy's (its cache answers at once);
#: this only delays the announcement.
SERVED_WINDOW_S = 10.0

Clock = Callable[[], datetime]


def agent_manager(config: WatchdogConfig, home: str | None = None,
                  env: Any = None) -> AgentManager:
    """The enrolled agents of ``config``: their files in ``home`` (else the config's
    ``agent_home``, else the watchdog's own), the takeover records in the state directory."""
    return AgentManager(config.agents, config.targets, home=home or config.agent_home,
                        records_dir=Path(config.paths.state_dir) / "agents",
                        os_name=config.os, env=env, key_command=key_command())


class Watchdog:
    """One host's watchdog: owns the state, the circuits and every action."""

    def __init__(self, config: WatchdogConfig, *, prober: Prober, backend: Backend,
                 events: EventLog, exporter: Exporter, clock: Clock = utc_now,
                 home: str | None = None) -> None:
        self.config = config
        self.prober = prober
        self.backend = backend
        self.events = events
        self.exporter = exporter
        self.clock = clock
        self.home = home
        self.gate = RestartGate(config.restart)
        self.hang = HangEvidence(config.restart.hang_after)
        self._slow_since: float | None = None
        self.state_path = Path(config.paths.state_file)
        self.pin_path = self.state_path.with_name(PIN_FILE)
        loaded = load_state(self.state_path, clock=clock)
        self.state: WatchdogState = loaded.state
        if loaded.warning and "corrupt" in loaded.warning:
            self.events.error(loaded.warning)
        self.targets = {t.name: t for t in config.targets}
        self.routes = [PROXY_ROUTE, *(p.name for p in config.providers)]
        # In-process timers run on the monotonic clock: a wall-clock jump cannot stall them.
        self.mono: Callable[[], float] = time.monotonic
        self._booted = self.mono()
        self._next_provider_probe: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._next_completion = 0.0
        self._next_metrics_probe = 0.0
        self._ticks = 0
        # A step failing every tick is logged once, then at a bounded rate (self.mono is
        # read at each call: tests replace it).
        self._repeats = RepeatLog(log, clock=lambda: self.mono())
        self._proxy_answered = False
        self._restart_task: asyncio.Task[str] | None = None
        self._agent_errors: dict[str, str] = {}
        #: A decision file for a person's follower may be left from before (checked once).
        self._decision_left = True
        #: The published decision: (its key, its id); rebuilt only when the key changes.
        self._decision: tuple[object, str] | None = None
        self.agents = agent_manager(config, home, env=prober.env)
        # "restart your Codex session to follow" stays in status until the next switch.
        seen = self.state.extra.get("agents")
        self._restart_hints: dict[str, str] = {
            str(a.get("agent")): str(a.get("restart") or "")
            for a in (seen if isinstance(seen, list) else []) if isinstance(a, dict)}
        self.passive: ProbeResult | None = None
        # Per provider route: when requests through the proxy were last served by it (real
        # traffic or a canary), failing windows included: about half failing is not "every
        # provider failing", so no EMERGENCY while one served within SERVED_WINDOW_S.
        self._last_served: dict[str, float] = {}
        self._next_chain_check: dict[str, float] = {}
        self._stall_since: float | None = None
        self._stall_probed = False
        self._canary_tasks: dict[str, tuple[asyncio.Task[ProbeResult], bool]] = {}
        # Budget and kill switch (runbook 9.1-9.3): the cost log the proxy writes, read
        # incrementally; the kill switch shared with the proxy through the provider config.
        self.ledger = CostLedger(config.paths.cost_log)
        self.kill = KillSwitch(config, home=home, events=events)
        self.table = cost_table(config)
        self.budget: BudgetStatus | None = None
        self.kill_active = False
        degraded = config.degraded
        self.cache = (DegradedCache(degraded.cache_dir, degraded.ttl_s)
                      if degraded is not None and degraded.enabled else None)
        self._next_prune = 0.0
        exporter.prime(self.routes, list(self.targets), [c.value for c in ErrorClass])
        for provider in dict.fromkeys(m.provider for m in config.models.values()):
            exporter[metrics.SPEND].labels(provider=provider).set(0)
        exporter[metrics.BUDGET_LIMIT].set(config.budget.monthly_usd)
        exporter[metrics.STALE_ANSWERS].inc(0)

    # ------------------------------------------------------------------ probing

    async def _probe(self) -> list[ProbeResult]:
        """Every probe due now, concurrently; one result per route that was probed."""
        probes = self.config.probes
        now = self.mono()
        jobs = [self._probe_proxy()]
        # Providers are probed on the slow cadence while all are healthy. Once one is under
        # suspicion (from traffic or a probe) every provider is probed each tick: the others
        # are the fallback path, whose state decides where the agents go, and a recovery is
        # then seen in seconds. A rate-limited provider waits for its Retry-After.
        incident = any(circuit_of(self.state.route(spec.name)) is not Circuit.HEALTHY
                       for spec in self.config.providers)
        due = [spec for spec in self.config.providers
               if now >= self._not_before.get(spec.name, now)
               and (incident or now >= self._next_provider_probe.get(spec.name, now))]
        jobs += [self.prober.provider(spec) for spec in due]
        results = list(await asyncio.gather(*jobs))
        for result in results[1:]:
            self._next_provider_probe[result.route] = now + probes.provider_interval
            self._not_before[result.route] = now + (result.retry_after_s or 0)
        if now >= self._next_metrics_probe:
            self._next_metrics_probe = now + probes.metrics_interval
            if results[0].ok:  # the proxy answered this tick: its /metrics will too
                self.passive = await self.prober.litellm_metrics()
                results += self._passive(self.passive)
                if self._stalled(self.passive, now):
                    probed = {r.route for r in results[1:]}
                    results += await asyncio.gather(*(
                        self.prober.provider(spec) for spec in self.config.providers
                        if spec.name not in probed))
        if results[0].ok:
            results += await self._canaries(results)
        if probes.completion_enabled and results[0].ok and now >= self._next_completion:
            self._next_completion = now + probes.completion_interval
            done = await self.prober.completion()
            model = self.config.models.get(probes.completion_model)
            if done is not None and model is not None:
                # A real request tells about its model's provider, not about the proxy
                # (whose own health the liveness and models probes judge).
                results.append(dataclasses.replace(done, route=model.provider))
        # One verdict per route and tick: a failure wins over a success of the same tick, and
        # among successes the completion path's wins (it is what a completion failure needs).
        verdicts: dict[str, ProbeResult] = {}
        for result in results:
            kept = verdicts.get(result.route)
            if kept is None or (kept.ok and not result.ok) or (
                    kept.ok and result.ok and result.kind in COMPLETION_KINDS):
                verdicts[result.route] = result
        return list(verdicts.values())

    def _stalled(self, snapshot: ProbeResult, now: float) -> bool:
        """True once per stall: requests in flight at the proxy and none finished (no counter
        of LiteLLM's moved) for :data:`STALL_AFTER_S`. LiteLLM 1.108.7 exports no per-request
        time to first byte for a request still waiting (its time-to-first-token histogram is
        observed when a stream ends well), so the proxy-wide in-flight gauge is the evidence."""
        detail = snapshot.detail
        moving = any(detail.get(k) for k in ("failures", "successes", "failed_fallbacks"))
        if not detail.get("in_flight") or moving:
            self._stall_since, self._stall_probed = None, False
            return False
        if self._stall_since is None:
            self._stall_since = now
        if self._stall_probed or now - self._stall_since < STALL_AFTER_S:
            return False
        self._stall_probed = True
        return True

    def _canary_models(self, provider: ProviderSpec) -> list[str]:
        """The models a canary may ask for to prove ``provider``'s completions, those the
        targets name first: its free ones;
        else its cheapest, and only for a provider that gates a target (a paid max-one-token
        call during an incident, never in the steady state, never under the kill switch)."""
        used = {t.settings.get("model") for t in self.targets.values()}
        models = sorted(((a, self.config.models[a]) for a in provider.models
                         if a in self.config.models), key=lambda am: am[0] not in used)
        free = [a for a, m in models if m.is_free]
        if free:
            return free
        gates = any(t.route == provider.name or provider.name in t.via
                    for t in self.targets.values())
        if self.kill_active or not gates or not models:
            return []
        return [min(models, key=lambda am: am[1].input_usd_per_1k + am[1].output_usd_per_1k)[0]]

    async def _canaries(self, results: list[ProbeResult]) -> list[ProbeResult]:
        """Completions through the proxy that decide routes by the path that failed.

        - Half-open canary: a route opened by failed completions is tried again once
          ``half_open_after`` has passed since its last failure, then every tick while it is
          half-open; only these successes close it (a provider whose ``/models`` answers while
          its completions fail stays open, whether or not agents still send traffic).
        - Chain check: while real traffic shows a provider of a target's LiteLLM chain failing
          completions, the other providers of that chain are tried (every tick while suspect,
          else once per ``provider_probe_interval``): LiteLLM's retries and fallbacks take
          10-20 s at default settings to reach the last provider of a chain, and 1.108.7 counts
          only each request's FIRST failed attempt in its metrics, so waiting for real traffic to
          show the whole chain failing would cost that long. The same check runs each tick
          while the proxy answers again after it failed (its route not yet closed): a proxy
          that hung in a storm of failing requests must not bring the agents back to a chain
          whose completions nobody has tried since.

        No canary while every route is healthy: the steady state sends none. Each is one
        attempt (no retries, no fallbacks) on a free model where the provider has one.
        """
        now = self.mono()
        policy = self.config.hysteresis
        failing_now = {r.route for r in results if not r.ok and r.kind in COMPLETION_KINDS}
        seen_now = {r.route for r in results if r.kind in COMPLETION_KINDS}
        clock_now = self.clock()
        failing = set(failing_now)
        for spec in self.config.providers:
            route = self.state.route(spec.name)
            if route.failed_path == COMPLETION_PATH and circuit_of(route) is not Circuit.HEALTHY:
                failing.add(spec.name)
        jobs: dict[str, str] = {}
        half_open: set[str] = set()
        recovering = not circuit_of(self.state.route(PROXY_ROUTE)).usable
        for spec in self.config.providers:
            route = self.state.route(spec.name)
            circuit = circuit_of(route)
            models = self._canary_models(spec)
            if not models or spec.name in seen_now or spec.name in self._canary_tasks:
                continue
            if route.failed_path == COMPLETION_PATH and circuit in (Circuit.FAILED,
                                                                   Circuit.HALF_OPEN):
                quiet = route.last_failure is None or (clock_now - route.last_failure
                                                       >= timedelta(seconds=policy.half_open_after))
                # Enough successes, waiting out min_dwell: no canary until it has passed.
                dwelling = (route.consecutive_successes >= policy.success_threshold
                            and route.opened_at is not None and clock_now - route.opened_at
                            < timedelta(seconds=policy.min_dwell))
                if (circuit is Circuit.HALF_OPEN or quiet) and not dwelling:
                    jobs[spec.name] = self._next_canary_model(spec.name, models)
                    half_open.add(spec.name)
                continue
            chained = any(spec.name in t.via and (
                recovering or (failing - {spec.name}) & set(t.via)) for t in self.targets.values())
            suspect = circuit is Circuit.SUSPECT and route.failed_path == COMPLETION_PATH
            if circuit.usable and chained and (
                    suspect or recovering or now >= self._next_chain_check.get(spec.name, 0.0)):
                self._next_chain_check[spec.name] = now + self.config.probes.provider_interval
                jobs[spec.name] = self._next_canary_model(spec.name, models)
        # A canary may wait on a slow chain for up to its timeout: it runs in the background,
        # is awaited for one probe timeout, and is otherwise harvested at a later tick, so the
        # loop (and the proxy's own probes) never waits on an upstream.
        for name, model in jobs.items():
            task = asyncio.create_task(self.prober.canary(model))
            self._canary_tasks[name] = (task, name in half_open)
        pending = [task for task, _ in self._canary_tasks.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.probes.timeout)
        out: list[ProbeResult] = []
        for name, (task, opened) in list(self._canary_tasks.items()):
            if not task.done():
                continue
            del self._canary_tasks[name]
            result = dataclasses.replace(task.result(), route=name)
            # LiteLLM's own cooldown refusing a canary: no upstream was asked. For a route that
            # is open that is no verdict (its deployment is not back yet); for a chain check it
            # is a failure all the same: LiteLLM will not serve the chain through it now.
            if not (opened and result.detail.get("cooldown")):
                out.append(result)
        for result in out:
            if not result.ok:  # a failed check is confirmed at the next tick
                self._next_chain_check.pop(result.route, None)
        return out

    def _next_canary_model(self, route: str, models: list[str]) -> str:
        """The model a canary asks for: the one the agents use where the provider serves it,
        so a restore is proven on the very group the agents come back to (not on a sibling
        while theirs is still cooling down in LiteLLM)."""
        return models[0]

    def _passive(self, snapshot: ProbeResult) -> list[ProbeResult]:
        """Per-provider health from real traffic: LiteLLM's counters since the last read.

        A provider whose requests failed at its upstream since the last read counts one
        failure, classed by the dominant upstream status, even when others succeeded in the
        same window (the counters cannot say which came last, and LiteLLM's retries keep a
        failing request in flight for seconds, so the first failed attempt is the early
        warning); one that only served requests counts a success; no traffic says nothing.
        Requests LiteLLM refused itself because the deployment cools down reached no upstream:
        no verdict (its circuit already has the failures that cooled it). A failed fallback
        counts only for a provider no canary can check: it is reported when the whole request
        ends, possibly after the fault cleared, while a chain check is fresh evidence.
        A failure puts the watchdog in incident mode, where the direct probes and the chain
        checks settle it within a tick or two, while they keep a slow, rate-limit-friendly
        cadence the rest of the time.
        """
        by_group: dict[str, dict[str, Any]] = snapshot.detail.get("by_group") or {}
        out: list[ProbeResult] = []
        for provider in self.config.providers:
            groups = [by_group[g] for g in provider.models if g in by_group]
            served = sum(g["successes"] for g in groups)
            statuses: dict[str, float] = {}
            late = not self._canary_models(provider)
            for group in groups:
                merged = [group["statuses"], group.get("fallback_statuses", {}) if late else {}]
                for counts in merged:
                    for status, n in counts.items():
                        statuses[status] = statuses.get(status, 0.0) + n
            # LiteLLM refusing the group itself (its cooldown) reached no upstream: for an open
            # route that is no verdict; for a usable one it is a failure all the same (LiteLLM
            # will not serve the agents' group now), classed by the upstream's status if seen.
            refused = statuses.pop(COOLDOWN_STATUS, 0.0)
            counted = refused if circuit_of(self.state.route(provider.name)).usable else 0.0
            failed = sum(statuses.values()) + counted
            if served and not failed:
                out.append(ProbeResult(provider.name, ProbeKind.METRICS, True,
                                       snapshot.latency_s, 200, None,
                                       f"{served:g} requests served"))
            elif failed:
                worst = max(statuses, key=lambda k: statuses[k]) if statuses else COOLDOWN_STATUS
                share = f" of {failed + served:g}" if served else ""
                what = (HIDDEN_BY_COOLDOWN
                        if worst == COOLDOWN_STATUS else f"upstream status {worst}")
                cooled = (f"; {refused:g} refused by LiteLLM's cooldown"
                          if refused and worst != COOLDOWN_STATUS else "")
                out.append(ProbeResult(
                    provider.name, ProbeKind.METRICS, False, snapshot.latency_s, None,
                    class_of_status(worst), f"{failed:g}{share} requests failed through the "
                    f"proxy ({what}{cooled})", None,
                    {"failed": failed, "served": served}))
        return out

    async def _probe_proxy(self) -> ProbeResult:
        alive = await self.prober.liveness()
        return alive if not alive.ok else await self.prober.proxy_models()

    def _diagnosis(self, result: ProbeResult) -> str | None:
        if result.ok or result.error_class is None:
            return None
        pid = (self.backend.running_pid() if isinstance(self.backend, ProcessBackend)
               else None)
        # A provider's own /models refusing the key is the runbook's 2B verification.
        accepted = (result.error_class is not ErrorClass.AUTH
                    if result.kind is ProbeKind.PROVIDER else None)
        inputs = self.prober.diagnosis_inputs(
            result, provider_ok=accepted, pid=pid,
            log_path=str(Path(self.config.paths.log_dir) / "litellm.log"))
        return diagnose(result.error_class, inputs).summary

    def _starting(self) -> bool:
        """Whether the proxy may still be starting: it has not answered since the watchdog
        started, and ``startup_timeout`` has not passed (a boot starts both at once)."""
        return not self._proxy_answered and (
            self.mono() - self._booted < self.config.restart.startup_timeout)

    def _observe(self, result: ProbeResult, now: datetime) -> None:
        if result.route == PROXY_ROUTE:
            if result.ok:
                self._proxy_answered = True
            elif self._starting() and not result.detail.get("foreign_listener"):
                return  # not a failure yet: no fallback, no alert for a proxy still starting
            if result.error_class is not ErrorClass.TIMEOUT:
                self._slow_since = None
            else:
                # Slow is not failed (issue 13, item 6): the agents leave a refusing proxy at
                # once, a silent one making no progress after half of hang_after, a silent
                # one busy on CPU (a blocking request, a loaded machine) after hang_after.
                self._slow_since = self._slow_since or self.mono()
                half = self.config.restart.hang_after / 2
                grace = 2 * half if self.hang.progressing(half) else half
                if self.mono() - self._slow_since < grace:
                    return
        route = self.state.route(result.route)
        if (result.ok and result.kind is ProbeKind.PROVIDER
                and route.failed_path == COMPLETION_PATH):
            return  # /models answering says nothing about completions that failed
        outcome = Outcome(ok=result.ok, latency_s=result.latency_s, message=result.message,
                          error_class=result.error_class.value if result.error_class else None)
        change = observe(route, outcome, now, self.config.hysteresis)
        if result.route != PROXY_ROUTE and result.kind in COMPLETION_KINDS:
            if result.ok or result.detail.get("served"):
                self._last_served[result.route] = self.mono()
            spec = next((p for p in self.config.providers if p.name == result.route), None)
            if not result.ok and spec is not None and self._canary_models(spec):
                route.failed_path = COMPLETION_PATH  # only a completion may close it now
        if change is not None and change.opened:
            route.diagnosis = self._diagnosis(result)
        if result.kind is not ProbeKind.METRICS:  # a /metrics read is not a provider's latency
            self.exporter[metrics.LATENCY].labels(provider=result.route).observe(
                result.latency_s)
        if result.ok:
            self.exporter[metrics.LAST_SUCCESS].labels(provider=result.route).set(
                now.timestamp())

    # ------------------------------------------------------------------ deciding

    def usable(self, target: TargetSpec) -> bool:
        """Whether the agents may use ``target`` now, by the circuits of its routes."""
        if self.kill_active and not target.is_free:
            return False  # runbook 9.3: only free providers while the kill switch is on
        if target.route is None:
            return True
        if not circuit_of(self.state.route(target.route)).usable:
            return False
        return not target.via or any(
            circuit_of(self.state.route(r)).usable for r in target.via)

    def _cause(self, target: TargetSpec) -> tuple[str, str]:
        """Why ``target`` is unusable: (error class, event wording)."""
        for name in [target.route or "", *target.via]:
            route = self.state.routes.get(name)
            if route is not None and not circuit_of(route).usable:
                cls = route.last_error_class or ErrorClass.UNKNOWN
                where = "" if name == PROXY_ROUTE else f" at {name}"
                cause = event_cause(route.last_message) or CAUSE.get(cls, "failed")
                return cls, f"{cause}{where}"
        return ErrorClass.UNKNOWN, "failed"

    def desired(self, now: datetime) -> TargetSpec:
        """The target the agents should use now (a pin first, else by priority and health)."""
        pin = self.state.active_pin(now)
        if pin is not None and pin.target in self.targets:
            return self.targets[pin.target]
        tight = self.budget is not None and self.budget.level.rank >= Level.CRITICAL.rank
        ordered = order_targets(self.config.targets, self.table, tight=tight,
                                free_only=self.kill_active)
        for target in ordered:
            if self.usable(target):
                return target
        return ordered[-1] if ordered else self.config.targets[-1]

    def _proven_since(self, target: TargetSpec) -> datetime | None:
        """Since when every route ``target`` needs has been closed (healthy, not merely
        suspect), by evidence of the path that failed; None while one is not."""
        times: list[datetime] = []
        if target.route is not None:
            route = self.state.route(target.route)
            if circuit_of(route) is not Circuit.HEALTHY:
                return None
            times.append(route.last_change or _EPOCH)
        if target.via:
            healthy = [self.state.route(v).last_change or _EPOCH for v in target.via
                       if circuit_of(self.state.route(v)) is Circuit.HEALTHY]
            if not healthy:
                return None
            times.append(min(healthy))
        return max(times, default=_EPOCH)

    def _may_switch(self, to: TargetSpec, now: datetime,
                    pinned: bool) -> tuple[bool, datetime | None]:
        """The hourly cap: (allowed, until when it holds the agents when not).

        It guards against flapping, never against health: a move away from an unusable target
        is always allowed (the cap never strands the agents on a dead target), and a return
        to the primary once it has been proven healthy for ``min_dwell`` is always allowed (the
        cap never holds them away from a healthy primary for the rest of the hour; the
        routes closed only on evidence from the path that failed). Below the cap every move
        is allowed; the last switch of the hour is kept for a fallback.
        """
        if pinned:
            return True, None
        current = self.targets.get(self.state.active_target or "")
        if current is None or not self.usable(current):
            return True, None
        policy = self.config.hysteresis
        recent = sorted(t for t in self.state.switches if t >= now - timedelta(hours=1))
        limit = max(policy.max_switches_per_hour - 1, 1)
        if len(recent) < limit:
            return True, None
        free_at = recent[len(recent) - limit] + timedelta(hours=1)  # a switch ages out
        if to.name == self.config.targets[0].name:
            since = self._proven_since(to)
            if since is not None:
                proven_at = max(since, _EPOCH) + timedelta(seconds=policy.min_dwell)
                if now >= proven_at:
                    return True, None
                return False, min(proven_at, free_at)
        return False, free_at

    def _hold(self, want: TargetSpec, now: datetime, until: datetime | None) -> None:
        """The cap holds the agents from ``want``: one ERROR event per hold, and the hold in
        the state for ``provider-fallback status`` (who, until when, with the recorded count)."""
        done = self.state.switches_since(now - timedelta(hours=1))
        cap = self.config.hysteresis.max_switches_per_hour
        hold: dict[str, Any] = {"target": want.name, "active": self.state.active_target,
                                "switches_last_hour": done, "cap": cap,
                                "until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None}
        if not self.state.extra.get("cap_hold"):
            when = f" until {until.strftime('%Y-%m-%dT%H:%M:%SZ')} at the latest" if until else ""
            self.events.error(
                f"switch cap reached ({done} switches in the last hour, cap {cap} per hour): "
                f"staying on {self.state.active_target} instead of {want.name}{when}")
        self.state.extra["cap_hold"] = hold

    # ------------------------------------------------------------------ acting

    def agent_target(self, name: str, to: TargetSpec) -> TargetSpec | None:
        """Where agent ``name`` goes while the agents as a whole go to ``to``: the proxy when
        that is ``to``; a pinned ``to`` it can speak to; else the first usable target of its
        own order (never the proxy the decision left); else the last it can speak to."""
        order = self.agents.order(name)
        if to.kind == "litellm" or (self.state.pin is not None and to in order):
            return to if to in order else None
        for target in order:
            if target.kind != "litellm" and self.usable(target):
                return target
        rest = [t for t in order if t.kind != "litellm"]
        return rest[-1] if rest else None

    def _write_agents(self, to: TargetSpec) -> list[AgentResult]:
        """Bring every enrolled agent's files to its own target for ``to`` (a no-op for files
        already right). Run every tick, not only on a switch: a file that was busy, broken or
        hand-edited is mended as soon as it can be, and its error is logged once."""
        results: list[AgentResult] = []
        whose = follower_of(self.config.paths.state_dir) if self.config.os == "linux" else None
        decided = {name: self.agent_target(name, to) for name in self.agents.specs}
        followed = self._publish(to, decided, whose) if whose is not None else None
        if whose is None and self._decision_left:  # nobody's follower reads it any more
            with contextlib.suppress(FileNotFoundError):
                (Path(self.config.paths.state_dir) / DECISION_FILE).unlink()
            self._decision_left = False
            self._decision = None
        for name, target in decided.items():
            if followed is not None:
                result = followed[name]
            elif target is None:
                label = self.agents.adapter(name).label
                result = AgentResult(name, label, None,
                                     error=f"{label} can speak to no usable target")
            else:
                result = self.agents.apply(name, target)
            if followed is not None:
                pass  # the follower keeps its own "restart to follow" until the next switch
            elif result.changed:
                self._restart_hints[name] = result.restart
            elif result.ok:
                result.restart = self._restart_hints.get(name, "")
            results.append(result)
        if followed is not None:  # a WSL person's Windows-side agents (kilo-code@windows)
            results += [r for key, r in followed.items() if key not in decided]
        for result in results:
            name = result.agent
            if result.ok:
                self._agent_errors.pop(name, None)
            elif self._agent_errors.get(name) != result.error:
                self._agent_errors[name] = result.error or "unknown"
                if not (result.error or "").startswith("released"):
                    self.events.error(f"agent file of {name} left untouched: {result.error}",
                                      target=to.name)
        self.state.extra["agents"] = [r.to_json() for r in results]
        return results

    def _publish(self, to: TargetSpec, decided: dict[str, TargetSpec | None],
                 whose: Whose) -> dict[str, AgentResult]:
        """A person's agents (:mod:`monitoring.agents.follower`): publish the decision for
        their follower instead of editing files here, and tell what it applied. An agent
        whose decision the follower has not applied yet is ``pending`` (not an error)."""
        why = {name: f"{self.agents.adapter(name).label} can speak to no usable target"
               for name, target in decided.items() if target is None}
        # The decision changes only on a switch: built and written then (or when the file
        # went missing), not every tick.
        wanted = (to.name, tuple((name, t.name if t else None) for name, t in decided.items()))
        path = Path(self.config.paths.state_dir) / DECISION_FILE
        if self._decision is None or self._decision[0] != wanted or not path.exists():
            data, decision_id = decision_bytes(
                os_name=self.config.os, active=to.name, agents=self.config.agents,
                targets=self.config.targets, targets_of=decided, why=why,
                windows=self.config.windows_side)
            try:
                publish(path, data)
            except OSError as exc:
                log.error("cannot publish the agents' decision: %s", exc)
            self._decision = (wanted, decision_id)
        decision_id = self._decision[1]
        self._decision_left = True
        report = whose.report()
        phrase = whose.phrase(report)
        out: dict[str, AgentResult] = {}
        sides = ["", WINDOWS_SUFFIX] if self.config.windows_side is not None else [""]
        for side in sides:
            for name, target in decided.items():
                adapter = self.agents.adapter(name)
                key, label = name + side, adapter.label + (" (Windows)" if side else "")
                done = applied_result(key, label, target.name if target else None,
                                      report, decision_id, phrase)
                if done is None:
                    done = AgentResult(key, label, target.name if target else None,
                                       error=why.get(name), whose=phrase,
                                       pending=target is not None)
                    if target is not None and not adapter.live_reload:
                        done.restart = adapter.restart_hint
                out[key] = done
        return out

    @staticmethod
    def agents_summary(results: list[AgentResult]) -> str:
        """``; agents: kilo-code on Kilo Code; not switched: ...`` for the event line."""
        labels = []
        for r in results:
            if r.ok:
                hint = f" ({r.restart})" if r.restart else ""
                labels.append(f"{r.agent} on {r.target}{hint}")
        failed = [f"{r.agent} ({r.error})" for r in results if not r.ok]
        text = f"; agents: {', '.join(labels)}" if labels else ""
        whose = next((r.whose for r in results if r.whose), None)
        return (text + (f"; not switched: {', '.join(failed)}" if failed else "")
                + (f"; files {whose}" if whose else ""))

    def _switch(self, to: TargetSpec, now: datetime, *, pinned: bool) -> None:
        current = self.targets.get(self.state.active_target or "")
        # Leaving a target a pin chose is the end of a manual episode, not a recovery.
        unpinned = bool(self.state.extra.pop("pinned", False)) and not pinned
        manual = pinned or unpinned  # neither reported as a fault nor counted by the cap
        if pinned:
            self.state.extra["pinned"] = True
        summary = self.agents_summary(self._write_agents(to))
        if current is not None:
            rank = [t.name for t in self.config.targets]
            upward = rank.index(to.name) < rank.index(current.name)
            if manual:  # a person asked: no fault to report, no fallback to count
                what = "manual switch" if pinned else "pin removed, switched back"
                self.events.record(EventKind.RESTORED if upward else EventKind.FALLBACK,
                                   f"{what} to {to.label}{summary}", from_=current.name,
                                   to=to.name, reason="manual")
            elif upward:
                self.events.restored(current.name, to.name, to_label=to.label,
                                     primary=to.name == rank[0], suffix=summary)
            else:
                cls, cause = self._cause(current)
                self.events.fallback(current.name, to.name, cause, error_class=cls,
                                     from_label=current.label, to_label=to.label,
                                     suffix=summary)
                self.exporter[metrics.FALLBACK_EVENTS].labels(
                    from_provider=current.name, to_provider=to.name, reason=cls).inc()
        self.state.set_active(to.name, now, counted=not manual)

    def _adopt_agent_files(self) -> None:
        """At start, take the active target from the agent files when the state has none."""
        if self.state.active_target is not None or not self.config.agents:
            return
        whose = follower_of(self.config.paths.state_dir) if self.config.os == "linux" else None
        if whose is not None:  # the person's files are the follower's: its last decision
            with contextlib.suppress(OSError, ValueError):
                last = json.loads((Path(self.config.paths.state_dir) / DECISION_FILE
                                   ).read_bytes())
                if isinstance(last, dict) and last.get("active") in self.targets:
                    self.state.active_target = last["active"]
            return
        found = self.agents.current(self.config.agents[0].name)
        if found is not None:
            self.state.active_target = found

    def _degraded(self, *, entering: bool) -> None:
        """EMERGENCY once when every provider-backed target is down; a line when it ends.

        Called twice a tick so the log reads in order: leaving is checked before the switch
        (then RESTORED), entering after it (FALLBACK, then EMERGENCY).
        """
        backed = [t for t in self.config.targets if t.route is not None]
        down = bool(backed) and not any(self.usable(t) for t in backed)
        # "All providers failed" only when the evidence says so: not while some provider's
        # latest failing window through the proxy still had requests served.
        providers = {r for t in backed for r in (t.route, *t.via) if r and r != PROXY_ROUTE}
        window = max(SERVED_WINDOW_S, 3 * self.config.probes.metrics_interval)
        every = not any(self.mono() - self._last_served.get(r, -window) < window
                        for r in providers)
        if entering and down and every and not self.state.degraded:
            cls, _ = self._cause(backed[0])
            self.events.emergency(self.state.active_target, error_class=cls)
            self.state.degraded = True
        elif not entering and not down and self.state.degraded:
            self.events.record(EventKind.RESTORED, LEAVING_DEGRADED, to=self.state.active_target)
            self.state.degraded = False
        self.exporter[metrics.DEGRADED_MODE].set(int(self.state.degraded))

    def _recover(self, now: datetime) -> None:
        """Restart a dead or hung proxy, within the gate; the crash-loop state past the cap.

        The restart runs in the background (on Windows the manage script may take minutes):
        the loop keeps probing and switching meanwhile, and starts no second restart.
        """
        self._reap_restart()
        url = self.prober.proxy_url
        interval = self.config.probes.interval + self.config.probes.timeout
        self.hang.observe(self.prober.proxy_answered_at,
                          lambda: proxy_pid(self.backend, url.host, url.port or 80), interval)
        route = self.state.route(PROXY_ROUTE)
        if circuit_of(route).usable:
            restarted = self.state.extra.pop("restarting", None)
            if isinstance(restarted, int) and restarted > 0:
                self.events.recovery(restarts=restarted)
            self._crash_loop(False)
            return
        if self._restart_task is not None or self._starting():
            return
        # Only a proxy failing right now: one that answers again is left to prove itself
        # (half-open), never restarted in the middle of its recovery.
        if route.consecutive_failures < self.config.hysteresis.failure_threshold:
            return
        # Strong evidence only (issue 13, item 6); and never against a port's squatter.
        gone = isinstance(self.backend, ProcessBackend) and self.backend.running_pid() is None
        evidence = None if (route.last_message or "").startswith(FOREIGN_LISTENER) else (
            self.hang.strong(self.prober.proxy_answered_at, gone=gone,
                             refused=not port_listening(url.host, url.port or 80)))
        if evidence is None:
            return
        # Restarts since the route last opened: reset only once the proxy is healthy again.
        streak = sum(1 for r in self.state.restarts
                     if route.opened_at is not None and r.at >= route.opened_at)
        last = self.state.restarts[-1].at if self.state.restarts else None
        answered = last is not None and route.last_success is not None and (
            route.last_success > last)
        verdict = self.gate.verdict(self.state, now, streak, answered=answered)
        self._crash_loop(verdict.crash_loop, verdict.reason, route.last_error_class)
        if not verdict.allowed:
            return
        cause = evidence
        self.events.restart(cause, attempt=streak + 1, limit=self.config.restart.max_per_hour,
                            error_class=route.last_error_class)
        self.state.record_restart(now, reason=cause)
        self.state.extra["restarting"] = streak + 1
        self.exporter[metrics.PROXY_RESTARTS].inc()
        self._restart_task = asyncio.create_task(asyncio.to_thread(self.backend.restart))

    def _reap_restart(self) -> None:
        """Report a finished background restart (a failure becomes an ERROR event)."""
        task = self._restart_task
        if task is None or not task.done():
            return
        self._restart_task = None
        exc = task.exception()
        if exc is not None:
            self.events.error(f"LiteLLM restart failed: {exc}", target=PROXY_ROUTE)
        else:
            log.info("%s", task.result())

    def _crash_loop(self, active: bool, reason: str = "",
                    error_class: str | None = None) -> None:
        """Enter (once, with an ERROR event) or leave the crash-loop state."""
        self.exporter[metrics.PROXY_CRASH_LOOP].set(int(active))
        if active and not self.state.extra.get("crash_loop"):
            self.state.extra["crash_loop"] = True
            self.events.error(f"LiteLLM auto-recovery failed, manual intervention required "
                              f"({reason})", target=PROXY_ROUTE, error_class=error_class)
        elif not active:
            self.state.extra.pop("crash_loop", None)

    def _budget(self, now: datetime) -> None:
        """Runbook 9.1-9.3 each tick: the month's status from the cost log, the kill switch
        (activation missed by the proxy, survival across restarts, the month rollover),
        level changes in the cost alert log, the budget metrics."""
        first = not self.ledger.records and self.budget is None
        new = self.ledger.refresh()
        status = budget_status(self.ledger.records, self.config.budget, now)
        # Only this month's records are needed: a watchdog running for months stays small.
        self.ledger.records = [r for r in self.ledger.records if r.month == status.month]
        self.kill.update(status.spent, status.level is Level.EXCEEDED, now)
        self.kill_active = self.kill.state().active_in(status.month)
        self._budget_alerts(status)
        self.budget = status
        stale = sum(r.stale for r in new)
        if stale and not first:  # a counter of answers served while this watchdog runs
            self.exporter[metrics.STALE_ANSWERS].inc(stale)
        for provider, spent in status.by_provider.items():
            self.exporter[metrics.SPEND].labels(provider=provider).set(spent)
        for provider in {m.provider for m in self.config.models.values()} - set(
                status.by_provider):
            self.exporter[metrics.SPEND].labels(provider=provider).set(0)
        self.exporter[metrics.BUDGET_USED_RATIO].set(status.used_ratio)
        self.exporter[metrics.BUDGET_PROJECTED].set(status.projected)
        self.exporter[metrics.BUDGET_LIMIT].set(status.limit)
        self.exporter[metrics.KILL_SWITCH].set(int(self.kill_active))
        if self.cache is not None and self.mono() >= self._next_prune:
            self._next_prune = self.mono() + 600
            self.cache.prune(now)

    def _budget_alerts(self, status: BudgetStatus) -> None:
        """A ``BUDGET:`` line in the cost alert log when the level rises, and once a day when
        the day's spend passes the daily threshold (runbook 9.1)."""
        seen = self.state.extra.get("budget_level")
        key = f"{status.month} {status.level}"
        lines: list[str] = []
        money = f"${status.spent:.2f} of ${status.limit:.2f} this month"
        if seen != key:
            old = str(seen).split(" ")[-1] if isinstance(seen, str) else "OK"
            same_month = isinstance(seen, str) and seen.startswith(status.month)
            rising = Level(old).rank < status.level.rank if old in Level.__members__ else True
            if status.level is not Level.OK and (rising or not same_month):
                lines.append(f"{status.level} - {status.percent_used:.0f}% of the monthly "
                             f"budget used ({money})")
            self.state.extra["budget_level"] = key
        today = status.now.strftime("%Y-%m-%d")
        if status.daily_warning and self.state.extra.get("budget_daily") != today:
            self.state.extra["budget_daily"] = today
            lines.append(f"DAILY - ${status.spent_today:.2f} spent today, over the daily "
                         f"threshold of ${status.daily_threshold:.2f}")
        for text in lines:
            line = f"[{format_ts(status.now)}] BUDGET: {text}\n"
            try:
                append_line(self.config.paths.alert_log, line)
            except OSError as exc:
                log.error("cannot append to %s: %s", self.config.paths.alert_log, exc)

    def _export(self) -> None:
        for name in self.routes:
            circuit = circuit_of(self.state.route(name))
            self.exporter[metrics.HEALTH].labels(provider=name).set(int(circuit.usable))
            self.exporter[metrics.CIRCUIT_STATE].labels(provider=name).set(int(circuit))
        for name in self.targets:
            active = int(name == self.state.active_target)
            self.exporter[metrics.ACTIVE_TARGET].labels(target=name).set(active)

    def _read_pin(self, now: datetime) -> None:
        """Apply ``provider-fallback switch/restore``: pin.json holds the wish; we hold the pin."""
        try:
            raw = self.pin_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        with contextlib.suppress(OSError):
            self.pin_path.unlink()
        try:
            wish = json.loads(raw)
        except ValueError:
            wish = None
        ttl = wish.get("ttl_s") if isinstance(wish, dict) else None
        if not isinstance(wish, dict) or not isinstance(ttl, int | float | None):
            self.events.error(f"{self.pin_path} is not a pin request "
                              '({"target": NAME or null, "ttl_s": seconds or null}): ignored')
            return
        target = wish.get("target")
        reason = wish.get("reason")
        if target is None:
            self.state.pin = None
        elif target in self.targets:
            self.state.set_pin(target, now, timedelta(seconds=ttl) if ttl else None,
                               reason=reason if isinstance(reason, str) else None)
        else:
            self.events.error(f"pin to unknown target {str(target)!r} ignored")

    # ------------------------------------------------------------------ the loop

    async def tick(self) -> None:
        """One round: probe, update circuits, decide and switch, recover, export, persist."""
        now = self.clock()
        self.state.clamp_future(now)
        self._read_pin(now)
        for result in await self._probe():
            self._observe(result, now)
        now = self.clock()
        self._ticks += 1
        try:
            self._budget(now)
        except OSError as exc:  # the budget must never stop failover
            self._repeats.failed("budget", f"budget check failed: {exc}")
        else:
            self._repeats.ok("budget")
        self._degraded(entering=False)
        pin = self.state.active_pin(now)
        want = self.desired(now)
        # Right after a start the circuits have seen too little to move the agents (a dead
        # primary is only "suspect" after one probe): decide once they could have opened.
        settled = self._ticks >= self.config.hysteresis.failure_threshold
        if want.name != self.state.active_target and (settled or pin is not None):
            allowed, until = self._may_switch(want, now, pinned=pin is not None)
            if allowed:
                self._switch(want, now, pinned=pin is not None)
                self.state.extra.pop("cap_hold", None)
            else:
                self._hold(want, now, until)
        else:
            self.state.extra.pop("cap_hold", None)
        active = self.targets.get(self.state.active_target or "")
        if active is not None:
            self._write_agents(active)
        self._degraded(entering=True)
        self._recover(now)
        self._export()
        self.state.prune(now)
        try:
            save_state(self.state, self.state_path)
        except OSError as exc:
            self._repeats.failed("save", f"cannot save the state to {self.state_path}: {exc}")
        else:
            self._repeats.ok("save")

    async def start(self) -> None:
        """Before the first tick: adopt the agents' current target, start a supervised proxy."""
        self._adopt_agent_files()
        if not isinstance(self.backend, ProcessBackend):
            return
        alive = await self.prober.liveness()
        if alive.ok:
            log.info("a proxy already answers at %s: not starting another", self.config.proxy.url)
            return
        if alive.detail.get("foreign_listener"):  # neither adopted nor fought: reported
            self.events.error(f"LiteLLM not started: {alive.message}", target=PROXY_ROUTE)
            return
        try:
            done = await asyncio.to_thread(self.backend.start)
        except OSError as exc:
            self.events.error(f"cannot start LiteLLM: {exc}", target=PROXY_ROUTE)
            return
        log.info("%s", done)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``probes.interval`` until ``stop`` is set."""
        pid_file = self.state_path.with_name(WATCHDOG_PID_FILE)
        atomic_write(pid_file, f"{os.getpid()}\n".encode(), new_mode=0o644)
        await self.start()
        try:
            while not stop.is_set():
                started = asyncio.get_running_loop().time()
                try:
                    await self.tick()
                except Exception as exc:  # one bad tick must not end the watchdog
                    self._repeats.failed("tick", f"watchdog tick failed: {exc!r}",
                                         exc_info=True)
                else:
                    self._repeats.ok("tick")
                spent = asyncio.get_running_loop().time() - started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(),
                                           max(0.0, self.config.probes.interval - spent))
        finally:
            canaries = [task for task, _ in self._canary_tasks.values()]
            for task in canaries:
                task.cancel()
            await asyncio.gather(*canaries, return_exceptions=True)
            if self._restart_task is not None:
                await asyncio.wait([self._restart_task], timeout=30)
            with contextlib.suppress(OSError):
                pid_file.unlink()

