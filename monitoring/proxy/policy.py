"""What the proxy's hooks decide, without LiteLLM: spend, kill switch, degraded answers.

:mod:`monitoring.proxy.litellm_hooks` adapts LiteLLM's callback API to this class, which is plain
Python so it is tested without a proxy. One instance lives in the proxy process; it reads the
watchdog's rendered config (``PROVIDER_FALLBACK_CONFIG``, which render puts in the LiteLLM
config's ``environment_variables``), so the proxy and the watchdog share one set of paths,
prices, budget and allow-list.

- :meth:`submit` (success callback): one cost-log line per request, the month's running total,
  and the kill switch decided right after the request that crossed the budget; a good answer
  is kept for degraded mode. The callback runs on LiteLLM's event loop, so it only builds the
  record and queues it: the file work is done by one worker thread
  (:mod:`monitoring.proxy.io_worker`) in batches. The month's spend is a running sum (what the cost
  log on disk holds, read incrementally by :class:`~monitoring.proxy.cost_log.MonthTotal`, plus what
  is queued), never a list of records. A request that crosses the budget turns the switch on in
  memory at once, before the worker has written anything, so the next request is already
  substituted. The worker writes the switch's file only for a decision (on, or a new month), not for
  every change of the spend: the watchdog refreshes ``current_spend`` there each tick.
- :meth:`allowed_call_type` (pre-call hook): only the call types whose spend this bundle
  records and whose model the kill switch can substitute reach a provider.
- :meth:`substitute` (pre-call hook): while the kill switch is on, a paid model name is served
  by a free one of the allow-list (its own fallback chain's first free model, else the first
  free model of the allow-list), and :meth:`allowed_deployments` keeps the router from ever
  reaching a paid deployment, fallbacks included.
- :meth:`degraded_answer` (the ``degraded-cache`` model): the stale answer or None.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.atomic import FileStamp, stamp
from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.choice import cost_order, cost_table
from monitoring.proxy.cost_log import (
    DEGRADED_MODEL,
    CostRecord,
    MonthTotal,
    append_records,
    month_of,
)
from monitoring.proxy.degraded_cache import CachedAnswer, DegradedCache, request_key
from monitoring.proxy.io_worker import ProxyIO
from monitoring.proxy.kill_switch import KillSwitch, decide

log = logging.getLogger(__name__)

CONFIG_ENV: Final = "PROVIDER_FALLBACK_CONFIG"
DEFAULT_CONFIG: Final = "/etc/provider-fallback/watchdog.json"
#: Response headers of a stale answer (runbook 7.1's degraded mode).
STALE_HEADER: Final = "x-provider-fallback-stale"
STALE_AGE_HEADER: Final = "x-provider-fallback-stale-age"
KILL_SWITCH_HEADER: Final = "x-provider-fallback-kill-switch"
ALL_DOWN_MESSAGE: Final = ("All providers are down (every model of the fallback chain failed) "
                           "and no cached answer to this request is available: degraded mode, "
                           "try again later")

#: LiteLLM call types (the pre-call hook's ``call_type``) that may reach a provider: those whose
#: spend the success callback records at the stack's prices and whose model the kill switch
#: substitutes (chat, text completions, embeddings, the Responses API, Anthropic messages;
#: LiteLLM names some with and some without the ``a`` of its async functions). Everything else
#: (files, batches, realtime secrets, containers, vector stores, moderations, images, audio,
#: fine-tuning...) is refused with 403 unless stack.yaml's ``litellm.open_call_types`` opens it:
#: those routes bill the provider behind the cost log's back (issue 12, H2).
RECORDED_CALL_TYPES: Final = frozenset({
    "completion", "acompletion", "text_completion", "atext_completion", "embeddings",
    "aembedding", "responses", "aresponses", "anthropic_messages"})
#: Past this many queued jobs (a stalled disk), answers are no longer queued for the degraded
#: cache (each may hold a long conversation); cost-log records always are (~300 B each).
MAX_BACKLOG_WITH_ANSWERS: Final = 1000
#: Never opened, whatever stack.yaml says: refused by its own hook rule (see litellm_hooks).
PASS_THROUGH: Final = "pass_through_endpoint"  # noqa: S105 (a call type, not a password)

Clock = Callable[[], datetime]


def call_type_refusal(call_type: str) -> str:
    """The 403's message for a call type that is not allowed."""
    return (f"provider-fallback: {call_type} requests are disabled on this proxy: their spend "
            "would not be recorded and the budget kill switch would not apply to them. Use "
            "/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses or "
            "/v1/messages, or open the call type on purpose in stack.yaml "
            f"(litellm.open_call_types: [{call_type}]) and deploy again")


def utc_now() -> datetime:
    return datetime.now(UTC)


class KillSwitchBlockedError(Exception):
    """A paid model was asked for while the kill switch is on and no free model can serve."""


@dataclass(frozen=True)
class Answer:
    """A good answer to keep for degraded mode (stored by the worker)."""

    model: str
    messages: Any
    extra: dict[str, Any]
    response: dict[str, Any]
    served_by: str


@dataclass(frozen=True)
class _Job:
    record: CostRecord | None  # None: only read the month's total (at start-up)
    answer: Answer | None = None


@dataclass(frozen=True)
class Served:
    """What the success callback learnt about one request."""

    model: str  # what the client asked for
    routed: str  # the model group the router started from (a kill-switch substitute)
    served_by: str  # the model group that answered (another one after a fallback)
    provider: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


def _model_name(deployment: Any, default: str) -> str:
    """The model group a router deployment belongs to (its ``model_name``)."""
    name = deployment.get("model_name") if isinstance(deployment, dict) else None
    return name if isinstance(name, str) else default


class ProxyPolicy:
    """The decisions of the proxy's hooks for one host."""

    def __init__(self, config: WatchdogConfig, *, clock: Clock = utc_now,
                 home: str | None = None) -> None:
        self.config = config
        self.clock = clock
        self.table = cost_table(config)
        self.paid = {name for name, m in config.models.items() if not m.is_free}
        self.free = set(config.models) - self.paid
        events = EventLog.from_config(config, clock=clock)
        self.kill = KillSwitch(config, home=home, events=events)
        degraded = config.degraded
        self.cache = (DegradedCache(degraded.cache_dir, degraded.ttl_s,
                                    max_entries=degraded.max_entries,
                                    max_bytes=degraded.max_bytes)
                      if degraded is not None and degraded.enabled else None)
        self.degraded_model = degraded.model if degraded is not None else DEGRADED_MODEL
        self.open_call_types = frozenset(config.proxy.open_call_types)
        self.spend = MonthTotal(config.paths.cost_log)
        #: Guards the three fields below, shared by the event loop and the worker.
        self._lock = threading.Lock()
        #: Cost of the records queued and not yet counted from the disk.
        self._pending = 0.0
        #: This month's total on disk as the worker last read it, and the file's stamp then:
        #: (month, USD, stamp); None at first. A file changed since (rotated, removed) makes
        #: it unknown until the worker reads it again.
        self._on_disk: tuple[str, float, FileStamp] | None = None
        #: The month in which a queued request crossed the budget (switch on in memory).
        self._tripped: str | None = None
        self.io: ProxyIO[_Job] = ProxyIO(self._process)
        # The worker's first job: read this month's total from the disk, off the event loop.
        self.io.put(_Job(None))

    @classmethod
    def from_env(cls) -> ProxyPolicy | None:
        """The policy from ``$PROVIDER_FALLBACK_CONFIG``; None (hooks inert) without one."""
        path = os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)
        if not Path(path).is_file():
            log.warning("provider-fallback: no watchdog config at %s: spend is not recorded "
                        "and the kill switch is not enforced by this proxy", path)
            return None
        return cls(WatchdogConfig.load(path))

    # -- call types

    def allowed_call_type(self, call_type: str) -> bool:
        return call_type in RECORDED_CALL_TYPES or (
            call_type != PASS_THROUGH and call_type in self.open_call_types)

    # -- spend

    def submit(self, served: Served, *, stale: bool = False,
               answer: Answer | None = None) -> CostRecord:
        """Queue the request's cost-log line (and its answer for degraded mode); decide in
        memory whether it crossed the budget. Cheap: runs on LiteLLM's event loop."""
        now = self.clock()
        provider = ("degraded-cache" if stale else
                    self.config.models[served.served_by].provider
                    if served.served_by in self.config.models else served.provider)
        record = CostRecord(ts=now, model=served.model, served_by=served.served_by,
                            provider=provider, tokens_in=served.tokens_in,
                            tokens_out=served.tokens_out,
                            cost_usd=0.0 if stale else max(served.cost_usd, 0.0),
                            fallback=served.served_by != served.routed, stale=stale)
        month = month_of(now)
        with self._lock:
            self._pending += record.cost_usd
            known = self._on_disk
            if (record.cost_usd > 0 and known is not None and known[0] == month
                    and stamp(self.config.paths.cost_log) == known[2]):
                spend = known[1] + self._pending
                if spend >= self.config.budget.exceeded_usd:
                    new, _ = decide(self.kill.state(), month, spend, True, now)
                    if new.active:
                        self._tripped = month
        if answer is not None and self.io.backlog > MAX_BACKLOG_WITH_ANSWERS:
            answer = None  # the disk is slower than the requests: keep memory bounded
        self.io.put(_Job(record, answer))
        return record

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is on disk (tests, shutdown)."""
        return self.io.flush(timeout)

    def _process(self, jobs: list[_Job]) -> None:
        """The worker's batch: the lines in one append, one budget decision, the answers."""
        records = [job.record for job in jobs if job.record is not None]
        now = self.clock()
        month = month_of(now)
        batch_cost = sum(r.cost_usd for r in records)
        in_month = [r for r in records if r.month == month]
        try:
            size = append_records(self.config.paths.cost_log, records)
        except OSError as exc:
            log.error("provider-fallback: cannot append %d lines to the cost log %s: %s",
                      len(records), self.config.paths.cost_log, exc)
            size = -1  # never matches a file size: the total is read from the disk
        total = self.spend.refresh(month, (size, sum(r.cost_usd for r in in_month),
                                           len(in_month)))
        with self._lock:
            self._pending = max(0.0, self._pending - batch_cost)
            self._on_disk = (month, total, stamp(self.config.paths.cost_log))
        exceeded = total >= self.config.budget.exceeded_usd
        state = self.kill.state()
        # Only a decision is written here: the switch turning on, or a new month. The spend
        # alone changing (every batch) is left to the watchdog's tick, which rewrites
        # current_spend anyway: a durable rewrite of the file per batch (two fsyncs, the
        # lock, a JSON parse) was the worker's largest cost per request.
        if decide(state, month, total, exceeded, now)[0].active != state.active or (
                state.month is None or state.month < month):
            self.kill.update(total, exceeded, now)
        with self._lock:
            if self._pending < 1e-12:  # the file now holds every decision made in memory
                self._tripped = None
        self._remember(job.answer for job in jobs)

    def _remember(self, answers: Iterable[Answer | None]) -> None:
        if self.cache is None:
            return
        now = self.clock()
        self.cache.load(now)  # the first batch reads the segments: not a lookup on the loop
        latest: dict[str, Answer] = {}  # one write per request in a batch: the last answer
        for answer in answers:
            if answer is not None and answer.served_by != self.degraded_model:
                latest[request_key(answer.model, answer.messages, answer.extra)] = answer
        for key, answer in latest.items():
            self.cache.store(key, answer.response, model=answer.model,
                             served_by=answer.served_by, now=now)

    # -- kill switch

    def kill_switch_active(self) -> bool:
        """On in the file, or on in memory since a queued request crossed the budget (unless
        ``budget reset`` released it by hand this month)."""
        month = month_of(self.clock())
        state = self.kill.state()
        if state.active_in(month):
            return True
        return self._tripped == month and not (state.month == month and state.released_by_hand)

    def substitute(self, model: str) -> str | None:
        """The free model serving ``model`` while the kill switch is on; None when no change.

        Raises :class:`KillSwitchBlockedError` when ``model`` is paid and nothing free can
        serve it.
        """
        # An allow-list, not a deny-list: while the switch is on, anything that is not a free
        # alias (a deployment name such as "openai/gpt-4", a deployment id, a wildcard) is
        # served by a free model, so no spelling of a paid model reaches its upstream.
        if (model in self.free or model == self.degraded_model
                or not self.kill_switch_active()):
            return None
        allow = self.config.budget.free_allow_list
        chain = self.config.fallbacks.get(model, [])
        free_models = [n for n in allow if n in self.free]
        candidates = [n for n in chain if n in free_models] + cost_order(free_models, self.table)
        if not candidates:
            raise KillSwitchBlockedError(
                f"budget kill switch active: {model} is a paid model and no free model of "
                "budget.free_allow_list is served by this proxy")
        return candidates[0]

    def allowed_deployments(self, deployments: list[Any], requested: str) -> list[Any]:
        """``deployments`` without the paid ones while the kill switch is on (fallbacks
        included), each judged by its own ``model_name``, never by the name requested. The
        switch's file is read once per routing decision, and only when a paid one is there."""
        paid = [d for d in deployments if _model_name(d, requested) in self.paid]
        if not paid or not self.kill_switch_active():
            return deployments
        return [d for d in deployments if _model_name(d, requested) not in self.paid]

    # -- degraded mode

    def degraded_answer(self, model: str, messages: Any,
                        extra: dict[str, Any]) -> CachedAnswer | None:
        if self.cache is None:
            return None
        return self.cache.lookup(request_key(model, messages, extra), self.clock())
