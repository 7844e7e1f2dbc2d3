"""Budget, kill switch and degraded mode against the REAL proxy (issue 6's "Show").

ONE extra proxy for this module (the session proxy runs without the hooks, see conftest),
started from the rendered config as is: callbacks, the degraded-cache model at the end of every
chain, ``environment_variables`` pointing at a watchdog config in tmp. Three fakes as in the
session stack (groq, openrouter, one "paid" fake behind google and openai) whose request logs
prove where each request went. The budget is tiny so a few requests cross every level; prices
are the default stack's, so every charge is checked against an amount computed by hand (the
fake counts one token per word: "hello" is 1 token in, its answer "ok" 1 token out).

Tests run in file order and share the proxy; each starts from an empty cost log, provider
config and cache (:func:`clean`). Time travel goes through the watchdog's injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitoring import metrics
from monitoring.events import EventLog
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.budget import Level, budget_status
from monitoring.proxy.cost_log import CostRecord, iter_records
from monitoring.proxy.degraded_cache import request_key, segment_files
from monitoring.proxy.io_worker import LINGER_S
from monitoring.proxy.kill_switch import KillState
from monitoring.proxy.policy import ALL_DOWN_MESSAGE, KILL_SWITCH_HEADER, STALE_HEADER
from monitoring.stack.layout import host_env_name, layout
from monitoring.stack.schema import Stack
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.loop import Watchdog
from monitoring.watchdog.probes import Prober
from tasks.render import litellm, watchdog
from tests.monitoring.conftest import UPSTREAM_OF, build_test_stack
from tests.support.fake_upstream import FakeUpstream
from tests.support.litellm_proxy import ProxyProcess, ensure_venv, free_port
from tests.support.polling import until as poll
from tests.support.runbook import runbook_total
from tests.support.watchdog_harness import RecordingBackend, event_lines, fast_config, until

pytestmark = pytest.mark.live

NO_CACHE = {"no-cache": True}
BUDGET = 0.001  # USD: one "hello" to gpt-4 is 9 % of it
GPT4_HELLO = 1 * 0.03 / 1000 + 1 * 0.06 / 1000  # 1 token in, 1 out at gpt-4's prices
GPT4_TWO_WORDS = 2 * 0.03 / 1000 + 1 * 0.06 / 1000
GEMINI_HELLO = 1 * 0.00125 / 1000 + 1 * 0.005 / 1000


@dataclass
class HookStack:
    stack: Stack
    config: WatchdogConfig
    proxy: ProxyProcess
    upstreams: dict[str, FakeUpstream]
    tmp: Path
    env: dict[str, str] = field(repr=False)
    master_key: str = field(repr=False)

    def chat(self, model: str, content: str | None = None, **body: Any) -> httpx.Response:
        """One request. No `cache` wish, so the answer is kept for degraded mode; the default
        prompt is one word never sent before, so LiteLLM's own response cache (on in the
        stack) never answers it: every request costs 1 token in and 1 out."""
        content = content or f"hello{next(_PROMPTS)}"
        return httpx.post(
            f"{self.proxy.url}/v1/chat/completions", timeout=30,
            headers={"Authorization": f"Bearer {self.master_key}"},
            json={"model": model, "max_tokens": 1,
                  "messages": [{"role": "user", "content": content}], **body})

    def paid_requests(self) -> int:
        return sum(1 for r in self.upstreams["paid"].requests if r.path.endswith("/completions"))

    def kill_state(self) -> KillState:
        path = Path(self.config.paths.provider_config)
        return KillState.of(json.loads(path.read_text())) if path.exists() else KillState()


_PROMPTS = itertools.count()


def _key(prefix: str) -> str:
    return prefix + os.urandom(20).hex()


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookStack]:
    tmp = tmp_path_factory.mktemp("hooks")
    keys = {"GROQ_API_KEY": _key("gsk_"), "OPENROUTER_API_KEY": _key("sk-or-v1-"),
            "GEMINI_API_KEY": _key("AIza"), "OPENAI_API_KEY": _key("sk-proj-")}
    master_key = _key("sk-master-")
    with contextlib.ExitStack() as cleanup:
        port = free_port()
        nowhere = {n: "http://127.0.0.1:1/v1" for n in set(UPSTREAM_OF.values())}
        probe = build_test_stack(port, nowhere)
        models = probe.litellm.models
        upstreams = {
            "groq": FakeUpstream(api_key=keys["GROQ_API_KEY"], models=[
                m.upstream_model for m in models.values() if m.provider == "groq"]),
            "openrouter": FakeUpstream(api_key=keys["OPENROUTER_API_KEY"], models=[
                m.upstream_model for m in models.values() if m.provider == "openrouter"]),
            "paid": FakeUpstream(models=[m.upstream_model for m in models.values()
                                         if UPSTREAM_OF[m.provider] == "paid"]),
        }
        for up in upstreams.values():
            cleanup.enter_context(up)
        base = build_test_stack(port, {n: up.api_base for n, up in upstreams.items()})
        stack = base.model_copy(update={"budget": base.budget.model_copy(update={
            "monthly_usd": BUDGET, "daily_warning_usd": BUDGET / 2})})
        rendered = watchdog.build(stack, layout(stack, "linux"))
        config = fast_config(rendered, tmp)
        logs, state = Path(config.paths.log_dir), Path(config.paths.state_dir)
        paths = config.paths.model_copy(update={
            "cost_log": str(logs / "provider_costs.log"),
            "alert_log": str(logs / "cost-alerts.log"),
            "provider_config": str(tmp / "home" / ".kilocode" / "provider-config.json")})
        assert config.degraded is not None
        degraded = config.degraded.model_copy(update={"cache_dir": str(state / "degraded-cache")})
        config = config.model_copy(update={"paths": paths, "degraded": degraded})
        config_file = tmp / "watchdog.json"
        config_file.write_text(config.model_dump_json(indent=2))
        proxy_config = litellm.config(stack)
        proxy_config["environment_variables"] = {litellm.CONFIG_ENV: str(config_file)}
        (tmp / "config.yaml").write_text(yaml.safe_dump(proxy_config, sort_keys=False))
        # The proxy and the watchdog get the provider keys under their host names
        # (PF_GROQ_API_KEY...), as the deploy gives them.
        env = {host_env_name(stack, name): key for name, key in keys.items()}
        env[stack.litellm.master_key_env] = master_key
        proxy = ProxyProcess(ensure_venv(stack.litellm.version), tmp / "config.yaml", port, env)
        cleanup.callback(proxy.stop)
        proxy.start()
        yield HookStack(stack=stack, config=config, proxy=proxy, upstreams=upstreams, tmp=tmp,
                        env=env, master_key=master_key)


@pytest.fixture
def clean(hooks: HookStack) -> Iterator[HookStack]:
    """No spend, no kill switch, no cached answers, healthy fakes with empty logs."""
    paths = hooks.config.paths
    # The proxy's I/O worker writes after the answer went out: a previous test's last request
    # may still be on its way to the files. Wait until they stay still for a moment, else
    # its line lands in this test's fresh cost log.
    written = (paths.cost_log, paths.alert_log, paths.provider_config)
    poll(_still(written, max(4 * LINGER_S, 0.25)), 30, "the proxy's pending writes", interval=0.05)
    for name in (paths.cost_log, paths.alert_log, paths.provider_config, paths.event_log,
                 paths.event_jsonl, paths.state_file):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    assert hooks.config.degraded is not None
    for segment in segment_files(hooks.config.degraded.cache_dir):
        segment.unlink()  # the proxy notices at its next store and starts a new segment
    for up in hooks.upstreams.values():
        up.clear_fault()
        up.clear_requests()
    if hooks.proxy.process is None:
        hooks.proxy.start()
    yield hooks
    for up in hooks.upstreams.values():
        up.clear_fault()




def _still(paths: tuple[str, ...], window: float) -> Any:
    """A poll check: True once none of ``paths`` changed (size, mtime) for ``window`` s."""
    seen: dict[str, Any] = {"since": time.monotonic(), "stamps": None}

    def stamps() -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for path in paths:
            try:
                st = os.stat(path)
                out.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return out

    def check() -> bool | None:
        now, current = time.monotonic(), stamps()
        if current != seen["stamps"]:
            seen["since"], seen["stamps"] = now, current
            return None
        return True if now - seen["since"] >= window else None
    return check


def records(h: HookStack, count: int, timeout: float = 30) -> list[CostRecord]:
    """The cost log once it has ``count`` lines: LiteLLM runs success callbacks just after
    the reply is sent, so a line lands a few milliseconds after the client has its answer."""
    found: list[CostRecord] = poll(
        lambda: (rows if len(rows := list(iter_records(h.config.paths.cost_log))) >= count
                 else None), timeout, f"{count} cost records", interval=0.02)
    return found


def kill_state_active(h: HookStack, timeout: float = 30) -> KillState:
    """The kill switch's state once active: the proxy's callback writes it just after the
    cost line of the crossing request, so poll with a deadline."""
    state: KillState = poll(lambda: (s if (s := h.kill_state()).active else None), timeout,
                            "the kill switch active", interval=0.02)
    return state


def alert_lines(h: HookStack, count: int, timeout: float = 30) -> list[str]:
    """The cost alert log once it has ``count`` lines: the proxy writes the kill switch's
    state and its alert line one after the other, off the request path, so a reader that
    sees the state may still be ahead of the line (issue 13, item 8: FileNotFoundError on a
    loaded machine). Poll with a deadline."""
    def lines() -> list[str] | None:
        found = Path(h.config.paths.alert_log).read_text().splitlines()
        return found if len(found) >= count else None

    found: list[str] = poll(lines, timeout, f"{count} line(s) in the cost alert log",
                            interval=0.02)
    return found


def status_after(h: HookStack, count: int) -> Level:
    return budget_status(records(h, count), h.config.budget, datetime.now(UTC)).level


# --------------------------------------------------------------------------- spend


def test_requests_are_charged_at_the_configured_prices(clean: HookStack) -> None:
    h = clean
    assert h.chat("gpt-4").status_code == 200
    assert h.chat("gemini-pro").status_code == 200
    assert h.chat("groq-70b").status_code == 200
    h.upstreams["groq"].set_fault("500")  # groq-70b falls back to openrouter-free
    reply = h.chat("groq-70b", f"hello again{next(_PROMPTS)}")
    assert reply.status_code == 200
    found = records(h, 4)
    assert [(r.model, r.served_by, r.provider, r.tokens_in, r.tokens_out, r.fallback)
            for r in found] == [
        ("gpt-4", "gpt-4", "openai", 1, 1, False),
        ("gemini-pro", "gemini-pro", "google", 1, 1, False),
        ("groq-70b", "groq-70b", "groq", 1, 1, False),
        ("groq-70b", "openrouter-free", "openrouter", 2, 1, True)]
    assert [r.cost_usd for r in found] == pytest.approx([GPT4_HELLO, GEMINI_HELLO, 0, 0])
    # The runbook's parser reads the same total from the JSON lines.
    assert runbook_total(h.config.paths.cost_log) == pytest.approx(GPT4_HELLO + GEMINI_HELLO)
    text = Path(h.config.paths.cost_log).read_text()
    assert all(json.loads(line)["charge"].startswith("cost $") for line in text.splitlines())
    assert not any(v in text for v in h.env.values()), "no key in the cost log"


# --------------------------------------------------------------------------- kill switch


def test_levels_then_the_kill_switch_stops_every_paid_request(clean: HookStack) -> None:
    h = clean
    for _ in range(8):
        assert h.chat("gpt-4").status_code == 200
    assert status_after(h, 8) is Level.OK  # 72 %
    assert h.chat("gpt-4").status_code == 200
    assert status_after(h, 9) is Level.WARNING  # 81 %
    assert h.chat("gpt-4", f"hello there{next(_PROMPTS)}").status_code == 200
    assert status_after(h, 10) is Level.CRITICAL  # 93 %
    assert not h.kill_state().active
    assert h.chat("gpt-4").status_code == 200
    assert status_after(h, 11) is Level.EXCEEDED  # 102 %: activated by the proxy itself
    state = kill_state_active(h)
    assert state.month == datetime.now(UTC).strftime("%Y-%m")
    raw = json.loads(Path(h.config.paths.provider_config).read_text())
    assert raw["allowed_providers"] == h.config.budget.free_allow_list
    assert raw["budget_limit"] == BUDGET
    assert raw["current_spend"] == pytest.approx(
        10 * GPT4_HELLO + GPT4_TWO_WORDS)
    alerts = alert_lines(h, 1)
    assert [line.split("] ", 1)[1][:33] for line in alerts] == [
        "KILL-SWITCH: ACTIVATED - Budget e"]
    paid_before = h.paid_requests()
    assert paid_before == 11
    for model in ("gpt-4", "gemini-pro", "gpt-4"):
        reply = h.chat(model, f"after the switch {model}")
        assert reply.status_code == 200, reply.text
        assert reply.headers[KILL_SWITCH_HEADER] == f"{model} -> groq-70b"
    assert h.chat("openrouter-free").status_code == 200  # free ones still answer
    # Other spellings of a paid model: the deployments' own names (LiteLLM routes them as
    # specific deployments) are served by a free model too.
    for name in ("openai/gpt-4", "openai/gemini-2.5-pro"):
        reply = h.chat(name, f"after the switch {name}")
        assert reply.status_code == 200, reply.text
        assert reply.headers[KILL_SWITCH_HEADER].startswith(f"{name} -> "), reply.headers
    # LiteLLM's provider pass-through routes would use the stack's keys past every check.
    # Refused twice over: LiteLLM finds no OPENAI_API_KEY (the key is PF_OPENAI_API_KEY on a
    # host) and says so with a 500; a route that found a key would meet the hook's 403.
    passthrough = httpx.post(f"{h.proxy.url}/openai/v1/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {h.master_key}"},
                             json={"model": "gpt-4", "messages": [
                                 {"role": "user", "content": "through"}]})
    assert passthrough.status_code in (403, 500), passthrough.text
    assert h.paid_requests() == paid_before, "no paid model received a request"


def _watchdog(h: HookStack, now: datetime) -> Watchdog:
    return Watchdog(h.config, prober=Prober.from_config(h.config, env=h.env),
                    backend=RecordingBackend(), events=EventLog.from_config(h.config),
                    exporter=Exporter(), clock=lambda: now)


def test_restarts_keep_it_and_the_month_rollover_releases_it(clean: HookStack) -> None:
    h = clean
    for _ in range(12):  # 108 % of the budget
        assert h.chat("gpt-4").status_code == 200
    records(h, 12)
    kill_state_active(h)
    paid = h.paid_requests()
    h.proxy.stop()
    h.proxy.start()
    assert h.chat("gpt-4", "after a restart").headers.get(KILL_SWITCH_HEADER)
    assert h.paid_requests() == paid

    async def ticks() -> tuple[float, float, KillState]:
        now = datetime.now(UTC)
        dog = _watchdog(h, now)  # a fresh watchdog: the restart
        await dog.tick()
        active_now = dog.exporter.registry.get_sample_value(metrics.KILL_SWITCH.name) or 0.0
        # One month later by the watchdog's clock: a new budget month.
        later = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=1)
        dog.clock = lambda: later
        await dog.tick()
        after = dog.exporter.registry.get_sample_value(metrics.KILL_SWITCH.name) or 0.0
        await dog.prober.aclose()
        return active_now, after, h.kill_state()

    active_now, after, state = asyncio.run(ticks())
    assert (active_now, after) == (1.0, 0.0)
    assert not state.active
    lines = [line.split("] ", 1)[1] for line in alert_lines(h, 2)]
    assert [line[:25] for line in lines if line.startswith("KILL-SWITCH")] == [
        "KILL-SWITCH: ACTIVATED - ", "KILL-SWITCH: DEACTIVATED "]
    reply = h.chat("gpt-4", "a new month")
    assert reply.status_code == 200
    assert KILL_SWITCH_HEADER not in reply.headers
    assert h.paid_requests() == paid + 1, "paid models are reachable again"


# --------------------------------------------------------------------------- degraded mode


def test_degraded_mode_serves_stale_answers_and_says_when_it_cannot(clean: HookStack) -> None:
    h = clean
    config = h.config

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        prober = Prober.from_config(config, env=h.env)
        dog = Watchdog(config, prober=prober, backend=RecordingBackend(),
                       events=EventLog.from_config(config), exporter=Exporter())
        stop = asyncio.Event()
        task = asyncio.create_task(dog.run(stop))
        try:
            # no-cache: past LiteLLM's own response cache (which would answer a repeat while
            # the providers are up or down alike, unmarked); the degraded cache ignores it.
            good = await asyncio.to_thread(h.chat, "groq-70b", "what is degraded mode",
                                           cache=NO_CACHE)
            assert good.status_code == 200
            assert STALE_HEADER not in good.headers
            for up in h.upstreams.values():
                up.set_fault("500")
            await until(lambda: dog.state.degraded, 30, "degraded mode")
            stale = await asyncio.to_thread(h.chat, "groq-70b", "what is degraded mode",
                                            cache=NO_CACHE)
            new = await asyncio.to_thread(h.chat, "groq-70b", "a prompt never seen",
                                          cache=NO_CACHE)
            for up in h.upstreams.values():
                up.clear_fault()
            await until(lambda: not dog.state.degraded, 60, "leaving degraded mode")
            await until(lambda: (dog.exporter.registry.get_sample_value(
                metrics.STALE_ANSWERS.name) or 0) >= 1, 30, "the stale answer counted")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await prober.aclose()
        return stale, new

    stale, new = asyncio.run(scenario())
    assert stale.status_code == 200, stale.text
    assert stale.headers[STALE_HEADER] == "true"
    assert stale.json()["choices"][0]["message"]["content"] == "ok"
    assert new.status_code == 503, new.text
    assert ALL_DOWN_MESSAGE in new.text
    lines = event_lines(config)
    assert sum("EMERGENCY: All providers failed, entering degraded mode" in ln
               for ln in lines) == 1
    assert sum("leaving degraded mode" in ln for ln in lines) == 1
    stale_records = [r for r in iter_records(config.paths.cost_log) if r.stale]
    assert len(stale_records) == 1
    assert stale_records[0].cost_usd == 0




def test_an_answer_asked_not_to_be_stored_is_not_kept_for_degraded_mode(
        clean: HookStack) -> None:
    """``cache: {"no-store": true}`` (the watchdog's completion probe sends it) keeps the
    answer out of the degraded cache; the next request's answer is kept."""
    h = clean
    private, kept = f"private{next(_PROMPTS)}", f"kept{next(_PROMPTS)}"
    assert h.chat("groq-70b", private, cache={"no-store": True}).status_code == 200
    assert h.chat("groq-70b", kept).status_code == 200
    assert h.config.degraded is not None
    directory = h.config.degraded.cache_dir

    def keys() -> list[str]:
        return [json.loads(line)["key"] for path in segment_files(directory)
                for line in path.read_bytes().splitlines()]

    def key(prompt: str) -> str:
        return request_key("groq-70b", [{"role": "user", "content": prompt}])

    # One worker, in order: once the second answer is kept, the first one was decided.
    poll(lambda: key(kept) in keys(), 30, "the second answer in the degraded cache",
         interval=0.02)
    assert key(private) not in keys()
    assert keys() == [key(kept)]


# --------------------------------------------------------------------------- call types

#: Routes that reach a provider but whose spend LiteLLM does not cost (issue 12, H2): each
#: (method, path, body or form) is the smallest request that passes LiteLLM's own checks.
REFUSED_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/files", {"data": {"purpose": "batch", "model": "gpt-4"}, "files": {
        "file": ("batch.jsonl", b'{"custom_id": "1", "method": "POST", "url": '
                 b'"/v1/chat/completions", "body": {"model": "gpt-4", "messages": []}}\n')}}),
    ("POST", "/v1/batches", {"json": {"model": "gpt-4", "input_file_id": "file-abc",
                                      "endpoint": "/v1/chat/completions",
                                      "completion_window": "24h"}}),
    ("POST", "/v1/realtime/client_secrets", {"json": {"model": "gpt-4"}}),
    ("POST", "/v1/containers", {"json": {"name": "c"}}),
    ("GET", "/v1/containers", {}),
    ("POST", "/v1/vector_stores", {"json": {"name": "v"}}),
    ("POST", "/v1/moderations", {"json": {"input": "hello", "model": "gpt-4"}}),
    ("POST", "/v1/moderations", {"json": {"input": "hello"}}),
]


def _activate_kill_switch(h: HookStack) -> None:
    path = Path(h.config.paths.provider_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kill_switch_active": True,
                                "month": datetime.now(UTC).strftime("%Y-%m")}))


def _upstream_requests(h: HookStack) -> list[str]:
    return [f"{r.method} {r.path}" for up in h.upstreams.values() for r in up.requests]


@pytest.mark.parametrize("switch", ["off", "on"])
def test_call_types_whose_spend_is_not_recorded_are_refused(clean: HookStack,
                                                             switch: str) -> None:
    h = clean
    if switch == "on":
        _activate_kill_switch(h)
    for method, path, kwargs in REFUSED_ROUTES:
        reply = httpx.request(method, f"{h.proxy.url}{path}", timeout=30,
                              headers={"Authorization": f"Bearer {h.master_key}"}, **kwargs)
        assert reply.status_code == 403, f"{method} {path}: {reply.status_code} {reply.text}"
        assert "open_call_types" in reply.text, reply.text
    assert _upstream_requests(h) == [], "a refused route reached a provider"
    assert list(iter_records(h.config.paths.cost_log)) == []


#: Every call type the proxy lets through, as a client sends it; each must be charged.
ALLOWED_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}],
                              "max_tokens": 1}),
    ("/v1/completions", {"prompt": "hello", "max_tokens": 1}),
    ("/v1/embeddings", {"input": "hello"}),
    ("/v1/responses", {"input": "hello", "max_output_tokens": 16}),
    ("/v1/messages", {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1}),
]


def test_spend_through_every_allowed_route_is_recorded(clean: HookStack) -> None:
    h = clean
    for path, body in ALLOWED_ROUTES:
        reply = httpx.post(f"{h.proxy.url}{path}", timeout=30,
                           headers={"Authorization": f"Bearer {h.master_key}"},
                           json={"model": "gpt-4", **body})
        assert reply.status_code == 200, f"{path}: {reply.text}"
    found = records(h, len(ALLOWED_ROUTES))
    assert [(r.model, r.served_by) for r in found] == [("gpt-4", "gpt-4")] * len(found)
    assert all(r.cost_usd > 0 for r in found), [r.cost_usd for r in found]


# --------------------------------------------------------------------------- surface


def test_no_api_schema_or_docs_and_cors_for_its_own_origin_only(clean: HookStack) -> None:
    """Issue 12, H1: the first ``/openapi.json`` after a start used to build a 2 MB schema on
    the event loop for ~5 s (the watchdog then restarted a busy proxy); a web page anywhere
    could trigger it, and read answers through CORS ``*``."""
    hooks = clean
    for path in ("/openapi.json", "/docs", "/redoc"):
        started = time.monotonic()
        reply = httpx.get(f"{hooks.proxy.url}{path}", timeout=30)
        assert reply.status_code == 404, f"{path}: {reply.status_code}"
        assert time.monotonic() - started < 3, f"{path} took {time.monotonic() - started} s"

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(f"{hooks.proxy.url}/v1/chat/completions", timeout=30, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})

    foreign = preflight("http://attacker.example")
    assert "access-control-allow-origin" not in foreign.headers, foreign.headers
    own = preflight(hooks.proxy.url)
    assert own.headers.get("access-control-allow-origin") == hooks.proxy.url


# --------------------------------------------------------------------------- clean stop


@pytest.mark.parametrize("way", ["sigterm", "stop-file"])
def test_a_clean_stop_right_after_a_burst_loses_no_line_and_counts_none_twice(
        clean: HookStack, way: str) -> None:
    """Issue 13, item 7: the cost-log lines are written by the proxy's I/O worker, after the
    answers went out; SIGTERM right after a burst must still leave every line, once.

    uvicorn re-raises SIGTERM after its graceful shutdown; started as LiteLLM's own script the
    proxy died by it (-15) and no atexit ran, so callbacks LiteLLM still held were lost (CI: 8
    lines for 60 answered). ``monitoring.proxy.serve`` turns that into a normal exit. The stop
    file is Windows' way (no SIGTERM there): it must end the same way."""
    h = clean
    count = 60

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            async def one(n: int) -> int:
                reply = await client.post(
                    f"{h.proxy.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {h.master_key}"},
                    json={"model": "groq-70b", "max_tokens": 1,
                          "messages": [{"role": "user", "content": f"burst {n} {next(_PROMPTS)}"}]})
                return reply.status_code
            return await asyncio.gather(*(one(n) for n in range(count)))

    statuses = asyncio.run(burst())
    h.proxy.stop(by_file=way == "stop-file")  # at once
    # On a loaded machine a request may time out (no line for it): count the answered ones.
    answered = statuses.count(200)
    assert answered >= count // 2, statuses
    assert h.proxy.returncode == 0, f"the proxy ended with {h.proxy.returncode}, not a clean exit"
    found = list(iter_records(h.config.paths.cost_log))
    assert len(found) == answered, f"{len(found)} lines for {answered} answered requests"
