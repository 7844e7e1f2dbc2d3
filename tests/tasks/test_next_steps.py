"""The last lines of `make deploy`: only what is left to do, from facts."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from monitoring.stack.schema import Stack
from tasks import next_steps
from tests.support.litellm_proxy import free_port

CLI = "/opt/provider-fallback/venv/bin/provider-fallback"


def keys_of(stack: Stack) -> dict[str, str]:
    return {m.api_key_env: "set" for m in stack.litellm.models.values()}


def run(stack: Stack, env: dict[str, str], *, up: bool = True,
        agents: bool = False) -> list[str]:
    return next_steps.steps(stack, env, cli=CLI, host_name="@local",
                            reachable=lambda url: up, agents_command=lambda cli: agents)


def test_missing_keys_are_listed_with_their_providers_and_how_to_apply(stack: Stack) -> None:
    env = keys_of(stack)
    del env["GROQ_API_KEY"]
    lines = run(stack, env)
    assert lines[0] == "Set the API keys this deploy did not have: GROQ_API_KEY (groq)."
    assert "run `make deploy` again" in lines[1]


def test_nothing_about_keys_once_every_key_is_set(stack: Stack) -> None:
    lines = run(stack, keys_of(stack))
    assert not any("API keys" in line for line in lines)
    assert not any("LITELLM_MASTER_KEY" in line and "Set" in line for line in lines)


def test_agents_line_points_at_the_agents_command_when_the_cli_has_it(stack: Stack) -> None:
    assert f"Point your coding agents at the proxy: run `{CLI} agents`." in run(
        stack, keys_of(stack), agents=True)
    without = run(stack, keys_of(stack), agents=False)
    assert any(line.startswith(f"Point your coding agents at {stack.proxy_url}/v1")
               and "master-keys" in line for line in without)


def test_where_monitoring_is_or_that_it_does_not_answer(stack: Stack) -> None:
    up = run(stack, keys_of(stack), up=True)
    assert f"Prometheus: {stack.prometheus.listen.url}" in up
    assert f"Alertmanager: {stack.alertmanager.listen.url}" in up
    assert (f"Grafana dashboard: {stack.grafana.listen.url}/d/"
            f"{stack.grafana.dashboard.uid}") in up
    down = run(stack, keys_of(stack), up=False)
    assert any(line.startswith("Prometheus does not answer") for line in down)
    assert any("grafana.install: true" in line for line in down)


@pytest.fixture
def ready_server() -> Iterator[str]:
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/-/ready" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_answers_means_a_200_from_a_real_server(ready_server: str) -> None:
    assert next_steps.answers(f"{ready_server}/-/ready")
    assert not next_steps.answers(f"{ready_server}/other")
    assert not next_steps.answers(f"http://127.0.0.1:{free_port()}/-/ready")
