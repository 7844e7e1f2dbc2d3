"""What the watchdog sees, and when it restarts the proxy: live, against the real proxy.

- Scenario C (issue 11): every endpoint answers 200 with an HTML page, as behind a captive
  portal: the agents fail over, and the diagnosis names the HTML answer; ``check`` fails.
- Scenario F (issues 11 and 12): a process of another user holds the proxy port: it gets no
  key (it records what it received), the agents fail over, the events name it, nothing is
  started, restarted or killed.
- Restarts need strong evidence (issue 13): a proxy busy on a blocking request is left alone;
  a stopped (SIGSTOP) one is restarted within ``hang_after`` and a few seconds; a proxy
  streaming answers on saturated CPUs causes neither a restart nor a switch.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitoring import metrics
from monitoring.events import read_events
from monitoring.host_config import Listen, Restart
from monitoring.stack.layout import PROXY_ENV
from monitoring.watchdog.circuit import Circuit, circuit_of
from monitoring.watchdog.classify import FOREIGN_LISTENER, NOT_API
from monitoring.watchdog.probes import PROXY_ROUTE
from monitoring.watchdog.recovery import ProcessBackend
from tests.monitoring.conftest import LiveStack
from tests.support.fake_upstream import PORTAL_TITLE
from tests.support.litellm_proxy import REPO, ensure_venv, free_port, proxy_argv
from tests.support.watchdog_harness import (
    RecordingBackend,
    aio,
    event_lines,
    fast_config,
    provider_in_file,
    running,
    sample,
    seed_agent_file,
    until,
)

pytestmark = pytest.mark.live

LINE = r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] "
NOBODY = 65534


# --------------------------------------------------------------------------- scenario C


@aio
async def test_html_on_every_endpoint_fails_over_with_a_diagnosis_naming_it(
        live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import EXIT_UNHEALTHY, main

    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    primary = config.targets[0]
    async with running(config, live.env) as dog:
        await until(lambda: dog.state.active_target == primary.name
                    and circuit_of(dog.state.route("groq")) is Circuit.HEALTHY, 30,
                    "a healthy start")
        for upstream in live.upstreams.values():
            upstream.set_fault("html")  # every path, chat included: nothing is the API
        await until(lambda: provider_in_file(config) not in (None, "litellm"), 30,
                    "the fallback")
        route = dog.state.route(primary.via[0])
        assert route.last_error_class == "network"
        assert route.diagnosis is not None
        assert NOT_API in route.diagnosis
        assert PORTAL_TITLE in route.diagnosis

        # `check` says the same, and fails: no provider "answers and accepts its key".
        for name, value in live.env.items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "watchdog.json"
        path.write_text(config.model_copy(update={"listen": Listen(
            host="127.0.0.1", port=free_port())}).model_dump_json())
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["check", "--config", str(path), "--json"])
        assert code == EXIT_UNHEALTHY
        report = json.loads(capsys.readouterr().out)
        providers = [r for r in report["results"] if r["route"] != PROXY_ROUTE]
        assert providers
        assert all(not r["ok"] and r["message"].startswith(NOT_API) for r in providers)
        assert not any("accepts its key" in r["message"] for r in report["results"])

        for upstream in live.upstreams.values():
            upstream.clear_fault()
        await until(lambda: provider_in_file(config) == "litellm", 60, "the restore")
    text = "\n".join(event_lines(config))
    assert re.search(LINE + re.escape(
        "FALLBACK: LiteLLM answering with something other than the API (a captive portal or "
        f"proxy?) at {primary.via[0]}, switched to "), text, re.MULTILINE), text


# --------------------------------------------------------------------------- scenario F

#: A listener of another user on the proxy port: it answers every request with a 404 page
#: (as the one seen in the field did) and prints what it received, header names and the
#: Authorization value, one JSON line per request.
SQUATTER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def _any(self):
        print(json.dumps({"path": self.path, "headers": dict(self.headers)}), flush=True)
        body = b"<!DOCTYPE HTML><html><title>404 Not Found</title></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = _any
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def squat(port: int) -> subprocess.Popen[str]:
    """The squatter as uid/gid 65534 (nobody), listening once this returns."""
    process = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-I", "-c", SQUATTER, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the squatter exited: {process.communicate()[0]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the squatter did not listen within 30 s")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a listener as another uid")
@aio
async def test_a_foreign_listener_gets_no_key_and_the_agents_fail_over(
        live: LiveStack, tmp_path: Path) -> None:
    config = fast_config(live.config, tmp_path)
    seed_agent_file(config)
    marker = tmp_path / "started"
    # Supervising backend whose "proxy" only leaves a marker: if the watchdog adopted,
    # started or restarted anything, the marker says so.
    state = Path(config.paths.state_dir)
    backend = ProcessBackend([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], {},
                             state / "litellm.pid", Path(config.paths.log_dir) / "litellm.log",
                             "no-such-config", cwd=state)
    live.proxy.stop()  # the port is free, as during a restart: someone else takes it
    squatter = squat(live.proxy.port)
    try:
        async with running(config, live.env, backend) as dog:
            await until(lambda: provider_in_file(config) not in (None, "litellm"), 30,
                        "the fallback")
            route = dog.state.route(PROXY_ROUTE)
            assert route.diagnosis is not None
            assert f"pid {squatter.pid}" in route.diagnosis
            assert "user nobody" in route.diagnosis
            await until(lambda: route.consecutive_failures >= 6, 20, "more ticks")
            assert squatter.poll() is None, "nothing is killed"
        assert sample(dog, metrics.PROXY_RESTARTS.name) == 0
    finally:
        squatter.terminate()
        received, _ = squatter.communicate(timeout=30)
        live.proxy.start()
    requests = [json.loads(line) for line in received.splitlines() if line.startswith("{")]
    assert not [r for r in requests if "Authorization" in r["headers"]
                or "authorization" in r["headers"]], "the master key went to the squatter"
    assert requests == [], "nothing at all is sent to a listener that is not the proxy"
    assert not marker.exists(), "no proxy was started, adopted or restarted"
    events = read_events(config.paths.event_jsonl)
    fallback = [e for e in events if e.kind == "FALLBACK"]
    assert len(fallback) == 1
    assert fallback[0].message.startswith(f"LiteLLM {FOREIGN_LISTENER}: pid {squatter.pid}")
    assert "user nobody (uid 65534)" in fallback[0].message
    errors = [e for e in events if e.kind == "ERROR"]
    assert any(f"pid {squatter.pid}" in e.message and "not started" in e.message
               for e in errors), errors
    for secret in live.secret_values():
        assert secret not in Path(config.paths.event_log).read_text()


# --------------------------------------------------------------------------- restarts

#: A proxy hook that blocks LiteLLM's event loop, burning CPU, for the seconds a prompt asks
#: ("BLOCK 12"), as the first /openapi.json of a start does for about 5 s.
BLOCK_HOOK = '''
import time
from litellm.integrations.custom_logger import CustomLogger


class Block(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        text = str((data.get("messages") or [{}])[-1].get("content", ""))
        if text.startswith("BLOCK "):
            end = time.monotonic() + float(text.split()[1])
            while time.monotonic() < end:
                pass
        return data


handler = Block()
'''


def blocking_proxy_config(live: LiveStack, directory: Path) -> Path:
    """The session proxy's config plus the blocking hook, in ``directory``."""
    config = yaml.safe_load(live.proxy.config.read_text(encoding="utf-8"))
    config["litellm_settings"]["callbacks"] = [*config["litellm_settings"]["callbacks"],
                                               "blockhook.handler"]
    (directory / "blockhook.py").write_text(BLOCK_HOOK, encoding="utf-8")
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _block(url: str, key: str, seconds: float) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=seconds + 60,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "groq-8b", "max_tokens": 1,
                            "messages": [{"role": "user", "content": f"BLOCK {seconds:g}"}],
                            "cache": {"no-cache": True, "no-store": True}})


HANG_AFTER = 8.0


@aio
async def test_a_busy_proxy_is_left_alone_and_a_stopped_one_is_restarted(
        live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in live.env.items():
        monkeypatch.setenv(name, value)  # the supervised proxy inherits the keys
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    config_path = blocking_proxy_config(live, workdir)
    port = free_port()
    venv = ensure_venv(live.stack.litellm.version)
    command = proxy_argv(venv, config_path, port)
    proxy = live.config.proxy.model_copy(update={
        "url": f"http://127.0.0.1:{port}", "command": command, "config_path": str(config_path)})
    config = fast_config(live.config, tmp_path, proxy=proxy, interval=0.5, restart=Restart(
        backoff_initial=1, backoff_max=10, max_per_hour=5, startup_timeout=90,
        hang_after=HANG_AFTER))
    seed_agent_file(config)
    state = Path(config.paths.state_dir)
    backend = ProcessBackend(command, PROXY_ENV, state / "litellm.pid",
                             Path(config.paths.log_dir) / "litellm.log", str(config_path),
                             cwd=state)
    try:
        async with running(config, live.env, backend) as dog:
            await until(lambda: dog.state.route(PROXY_ROUTE).last_success is not None
                        and provider_in_file(config) == "litellm", 150,
                        "the supervised proxy to answer")
            first = backend.running_pid()
            assert first is not None

            # 1. A request that blocks the event loop, burning CPU, for longer than
            # hang_after: the proxy answers nothing meanwhile, yet it is busy, not hung.
            blocked = 2 * HANG_AFTER
            started = time.monotonic()
            reply = await asyncio.to_thread(_block, proxy.url, live.master_key, blocked)
            assert time.monotonic() - started >= blocked
            assert reply.status_code == 200, reply.text[:300]
            await until(lambda: dog.state.route(PROXY_ROUTE).consecutive_failures == 0, 30,
                        "the proxy answering again")
            assert sample(dog, metrics.PROXY_RESTARTS.name) == 0
            assert backend.running_pid() == first

            # 2. Stopped: no answer and no CPU progress. Restarted within hang_after + a few s.
            os.kill(first, signal.SIGSTOP)
            stopped = time.monotonic()
            await until(lambda: sample(dog, metrics.PROXY_RESTARTS.name) >= 1,
                        HANG_AFTER + 10, "the restart of the stopped proxy")
            took = time.monotonic() - stopped
            assert took >= HANG_AFTER
            await until(lambda: (backend.running_pid() or first) != first
                        and circuit_of(dog.state.route(PROXY_ROUTE)) is Circuit.HEALTHY, 150,
                        "the restarted proxy to answer")
    finally:
        backend.stop()
    restarts = [e for e in read_events(config.paths.event_jsonl) if e.kind == "RESTART"]
    assert len(restarts) == 1, restarts
    assert re.match(r"LiteLLM hung: no answer for \d+ s and 0\.\d\d s of CPU", restarts[0].message)


def _stream(url: str, key: str, stop: Any, done: list[int]) -> None:
    """Streamed completions through the proxy, one after another, until ``stop`` is set."""
    while not stop.is_set():
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "groq-70b", "stream": True, "max_tokens": 5,
                                "messages": [{"role": "user", "content": "hello"}],
                                "cache": {"no-cache": True, "no-store": True}}) as reply:
            chunks = [line for line in reply.iter_lines() if line.startswith("data:")]
            done.append(reply.status_code if chunks and chunks[-1] == "data: [DONE]" else 0)


STRESS_S = 40


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng is not installed "
                    "(make tools)")
@aio
async def test_saturated_cpus_while_the_proxy_streams_cause_no_restart_and_no_switch(
        live: LiveStack, tmp_path: Path) -> None:
    import threading

    # The stack's own timing: a 0.8 s liveness timeout and its failure threshold.
    config = fast_config(live.config, tmp_path, hysteresis=live.config.hysteresis,
                         interval=1.0)
    seed_agent_file(config)
    backend = RecordingBackend()
    stop = threading.Event()
    done: list[int] = []
    async with running(config, live.env, backend) as dog:
        await until(lambda: dog.state.active_target == "litellm"
                    and circuit_of(dog.state.route(PROXY_ROUTE)) is Circuit.HEALTHY, 30,
                    "a healthy start")
        streams = threading.Thread(target=_stream, args=(live.proxy.url, live.master_key,
                                                        stop, done))
        streams.start()
        load = subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count() or 2), "--timeout",
                                 f"{STRESS_S}s", "--quiet"])
        try:
            await asyncio.to_thread(load.wait, STRESS_S + 30)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
            stop.set()
            await asyncio.to_thread(streams.join, 90)
        log = Path(config.paths.event_log)
        events = log.read_text() if log.exists() else ""
        routes = {name: (r.state, r.last_error_class, r.last_message)
                  for name, r in dog.state.routes.items()}
        assert backend.restarts == 0, events
        assert dog.state.switches == [], (events, routes)
    assert len(done) >= 5, "answers were streamed during the load"
    assert set(done) == {200}, done
    text = Path(config.paths.event_log).read_text() if Path(
        config.paths.event_log).exists() else ""
    assert "RESTART" not in text
    assert "FALLBACK" not in text
