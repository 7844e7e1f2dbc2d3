"""The classifier: runbook 1.2 on the real shapes LiteLLM 1.108.7 sends, plus the edge cases.

The live half sends real chat completions through the real proxy to ``groq-70b`` while its
upstream AND both fallbacks (groq-8b on the same fake, openrouter-free on another) fail with
each fault of the runbook's table, and classifies what comes back. The first half checks the
parser on hand-made bodies the proxy cannot be made to send on cue.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from monitoring.watchdog.classify import (
    FOREIGN_LISTENER,
    NOT_API,
    Action,
    DiagnosisInputs,
    ErrorClass,
    classify_exception,
    classify_reply,
    classify_response,
    diagnose,
    diagnose_auth,
    diagnose_config,
    diagnose_network,
    diagnose_rate,
    diagnose_server,
    diagnose_timeout,
    event_cause,
    not_api_reply,
    redact,
)
from tests.monitoring.conftest import LiveStack
from tests.support.fake_upstream import FaultKind
from tests.support.litellm_proxy import free_port

KEY = "gsk_" + "Ab3" * 14


# --------------------------------------------------------------------------- the classes


def test_every_class_carries_its_runbook_phase_and_action() -> None:
    phases = {c: c.phase for c in ErrorClass}
    assert phases == {ErrorClass.NETWORK: "2A", ErrorClass.AUTH: "2B", ErrorClass.RATE: "2C",
                      ErrorClass.CONFIG: "2D", ErrorClass.SERVER: "2E",
                      ErrorClass.TIMEOUT: "2F", ErrorClass.UNKNOWN: "3"}
    assert ErrorClass.TIMEOUT.runbook_name == "Performance"
    # Decision tree: what the watchdog can fix itself is a quick fix, what passes is a retry,
    # what needs a human (or is unknown) is a fall back.
    assert ErrorClass.NETWORK.action is Action.QUICK_FIX
    assert {ErrorClass.RATE.action, ErrorClass.TIMEOUT.action} == {Action.RETRY}
    for cls in (ErrorClass.AUTH, ErrorClass.CONFIG, ErrorClass.SERVER, ErrorClass.UNKNOWN):
        assert cls.action is Action.FALLBACK
    assert all(c.fix for c in ErrorClass)


# --------------------------------------------------------------------------- canned replies


def _litellm(status: int, exc: str, text: str, err_type: str = "x") -> str:
    return (f'{{"error":{{"message":"litellm.{exc}: {exc}: OpenAIException - {text}",'
            f'"type":"{err_type}","param":null,"code":"{status}"}}}}')


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, '{"id": "x"}', None),
    (401, '{"error": {"message": "Invalid API Key"}}', ErrorClass.AUTH),
    (403, "forbidden", ErrorClass.AUTH),
    (404, '{"error": {"message": "no such model", "code": "model_not_found"}}',
     ErrorClass.CONFIG),
    (400, '{"error":{"message":"/chat/completions: Invalid model name passed in model=nope.",'
          '"type":"invalid_request_error","param":null,"code":"400"}}', ErrorClass.CONFIG),
    (429, '{"error": {"message": "slow down"}}', ErrorClass.RATE),
    (500, "Internal Server Error", ErrorClass.SERVER),
    (502, "<html>bad gateway</html>", ErrorClass.SERVER),
    (503, _litellm(503, "ServiceUnavailableError", "overloaded"), ErrorClass.SERVER),
    (504, "gateway timeout", ErrorClass.TIMEOUT),
    (408, _litellm(408, "Timeout", "Request timed out."), ErrorClass.TIMEOUT),
    (500, _litellm(500, "APIConnectionError", "boom"), ErrorClass.NETWORK),
    (418, "teapot", ErrorClass.UNKNOWN),
])
def test_status_and_litellm_exception_decide_the_class(status: int, body: str,
                                                       expected: ErrorClass | None) -> None:
    assert classify_response(status, body, {})[0] is expected


def test_the_litellm_exception_name_wins_over_the_status() -> None:
    # LiteLLM maps a provider's odd status to its own exception; the name is the truth.
    body = _litellm(400, "AuthenticationError", "bad key")
    c = classify_reply(400, body)
    assert (c.error_class, c.exception) == (ErrorClass.AUTH, "AuthenticationError")
    assert c.message.startswith("HTTP 400 AuthenticationError: bad key")


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "7"}, 7.0),
    ({"llm_provider-retry-after": "3"}, 3.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"LLM_PROVIDER-RETRY-AFTER-MS": "250"}, 0.25),
])
def test_retry_after_comes_from_any_of_its_headers(headers: dict[str, str],
                                                   seconds: float) -> None:
    cls, retry, message = classify_response(429, '{"error": {"message": "x"}}', headers)
    assert cls is ErrorClass.RATE
    assert retry == pytest.approx(seconds)
    assert f"retry after {seconds:g} s" in message


def test_retry_after_as_an_http_date_and_in_the_text() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    _, retry, _ = classify_response(429, "{}", {"Retry-After": when})
    assert retry is not None
    assert 25 <= retry <= 31
    _, retry, _ = classify_response(429, '{"error": {"message": "Please try again in 2.5s."}}')
    assert retry == 2.5


def test_a_cooldown_429_is_not_taken_for_a_rate_limit() -> None:
    body = ('{"error":{"message":"No deployments available for selected model, Try again in 5 '
            'seconds. All deployments for selected model are in cooldown. cooldown_list=['
            "'7cb52891731e20b9854f69d04cbf93061092074153e5760fd6233890c72dd2bb']\","
            '"type":"all_deployments_in_cooldown","param":null,"code":"429"}}')
    c = classify_reply(429, body, {"retry-after": "5"})
    assert c.cooldown
    assert c.error_class is ErrorClass.UNKNOWN
    assert c.retry_after_s == 5
    assert "hidden" in c.message
    assert "cooling down" in c.message
    assert "7cb528" not in c.message


def test_messages_are_one_short_line_without_keys() -> None:
    body = ('{"error":{"message":"litellm.AuthenticationError: AuthenticationError: '
            f'OpenAIException - Incorrect API key provided: {KEY}. Authorization: Bearer '
            f'{KEY}\\n\\nmore lines' + " and more" * 60 + '","code":"401"}}')
    c = classify_reply(401, body)
    assert KEY not in c.message
    assert KEY[:12] not in c.message
    assert "\n" not in c.message
    assert len(c.message) <= 240
    assert c.error_class is ErrorClass.AUTH


def test_redact_takes_keys_but_leaves_identifiers_and_paths() -> None:
    text = (f"key {KEY} sk-or-v1-{'9f' * 20} AIza{'x1' * 18} "
            "InternalServerErrorAllowedFails /var/log/provider-fallback/litellm.log "
            "http://127.0.0.1:4000/v1 llama-3.3-70b-versatile")
    out = redact(text, secrets=["hunter22"])
    assert out.count("[redacted]") == 3
    for kept in ("InternalServerErrorAllowedFails", "/var/log/provider-fallback/litellm.log",
                 "http://127.0.0.1:4000/v1", "llama-3.3-70b-versatile"):
        assert kept in out
    assert redact("password hunter22 here", secrets=["hunter22"]) == "password [redacted] here"


# --------------------------------------------------------------------------- exceptions


def test_httpx_exceptions_map_to_network_timeout_and_config() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    cases = [
        (httpx.ConnectError("[Errno 111] Connection refused", request=request),
         ErrorClass.NETWORK),
        (httpx.ConnectTimeout("timed out", request=request), ErrorClass.NETWORK),
        (httpx.ReadTimeout("timed out", request=request), ErrorClass.TIMEOUT),
        (httpx.PoolTimeout("timed out", request=request), ErrorClass.TIMEOUT),
        (TimeoutError(), ErrorClass.TIMEOUT),
        (httpx.RemoteProtocolError("Server disconnected", request=request), ErrorClass.NETWORK),
        (httpx.ReadError("reset by peer", request=request), ErrorClass.NETWORK),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
         ErrorClass.CONFIG),
        (ValueError("what"), ErrorClass.UNKNOWN),
    ]
    for exc, expected in cases:
        assert classify_exception(exc)[0] is expected, exc
    assert classify_exception(cases[0][0])[1] == "connection refused"


def test_a_real_refused_connection_is_network() -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"http://127.0.0.1:{free_port()}/health/liveliness", timeout=2)
    assert classify_exception(caught.value) == (ErrorClass.NETWORK, "connection refused")


# --------------------------------------------------------------------------- diagnosis


def test_network_diagnosis_checks_the_port_and_the_process() -> None:
    d = diagnose_network(f"http://127.0.0.1:{free_port()}", pid=2**22 + 12345)
    assert [c.ok for c in d.checks] == [False, False]
    assert d.action is Action.QUICK_FIX
    assert "nothing listens" in d.summary


def test_auth_diagnosis_reports_presence_never_the_value() -> None:
    d = diagnose_auth("GROQ_API_KEY", env={"GROQ_API_KEY": KEY}, accepted=False,
                      provider="groq")
    text = "\n".join(d.lines())
    assert KEY not in text
    assert "GROQ_API_KEY is set" in text
    assert "rejects" in d.summary
    for unset in ({}, {"GROQ_API_KEY": " "}, {"GROQ_API_KEY": "%GROQ_API_KEY%"}):
        assert diagnose_auth("GROQ_API_KEY", env=unset).checks[0].ok is False


def test_rate_config_timeout_and_server_diagnoses(tmp_path: Path) -> None:
    assert diagnose_rate(7).next_step == "wait 7 s, then retry"
    assert "fall back now" in diagnose_rate(600).next_step
    d = diagnose_config(["groq-70b", "gpt-4"], ["groq-70b", "gpt-5"])
    assert [c.ok for c in d.checks] == [False, False]
    assert "gpt-4" in d.checks[0].detail
    assert "gpt-5" in d.checks[1].detail
    assert diagnose_config(["a"], ["a"]).checks[0].ok is True
    assert diagnose_timeout(2.0, 0.8).checks[0].ok is False
    log = tmp_path / "litellm.log"
    log.write_text("INFO: started\n" * 50 + f"ERROR: upstream said key {KEY} is bad\n")
    d = diagnose_server("1.108.7", log, installed="1.108.6", lines=5)
    text = "\n".join(d.lines())
    assert "1.108.6 runs where 1.108.7 is pinned" in text
    assert "ERROR: upstream said key [redacted] is bad" in text
    assert KEY not in text
    assert diagnose_server("1.108.7", tmp_path / "absent.log").checks[1].ok is None


def test_diagnose_dispatches_on_the_class() -> None:
    for cls in ErrorClass:
        d = diagnose(cls, DiagnosisInputs(url=f"http://127.0.0.1:{free_port()}",
                                          key_env="GROQ_API_KEY", env={}, timeout_s=1))
        assert d.error_class is cls
        assert d.phase == cls.phase


# --------------------------------------------------------------------------- the real proxy

#: fault -> (class, HTTP status) a client sees when groq-70b and all its fallbacks fail.
FAULTS: dict[FaultKind, tuple[ErrorClass, int]] = {
    "401": (ErrorClass.AUTH, 401),
    "404": (ErrorClass.CONFIG, 404),
    "429": (ErrorClass.RATE, 429),
    "500": (ErrorClass.SERVER, 500),
    "hang": (ErrorClass.TIMEOUT, 408),
    "refused": (ErrorClass.NETWORK, 500),
}


@pytest.mark.live
@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_through_the_real_proxy_gets_its_class(live: LiveStack,
                                                          fault: FaultKind) -> None:
    groq, openrouter = live.upstream("groq"), live.upstream("openrouter")
    for up in (groq, openrouter):
        up.set_fault(fault, retry_after=3) if fault == "429" else up.set_fault(fault)
    started = time.monotonic()
    reply = live.chat("groq-70b")
    took = time.monotonic() - started
    c = classify_reply(reply.status_code, reply.text, reply.headers, live.secret_values())
    expected_class, expected_status = FAULTS[fault]
    print(f"\n{fault:>8}: HTTP {reply.status_code} -> {c.error_class} in {took:.2f} s; "
          f"{c.message}")
    assert (reply.status_code, c.error_class) == (expected_status, expected_class), reply.text
    assert c.exception is not None
    assert not c.cooldown
    assert "its fallbacks failed too" in c.message
    if fault == "429":
        assert c.retry_after_s == 3  # only as llm_provider-retry-after: LiteLLM drops Retry-After
        assert "retry-after" not in reply.headers
    if fault == "hang":
        # One request timeout per model of the chain, no retries: about 3 x 1 s.
        assert took < 3 * 1 + 3
    if fault != "refused":
        # What reached the upstreams: each model of the chain once (no retries configured).
        assert {r.model for r in groq.requests} == {"llama-3.3-70b-versatile",
                                                     "llama-3.1-8b-instant"}
        assert [r.model for r in openrouter.requests] == ["meta-llama/llama-3.3-70b-instruct:free"]
    for value in live.secret_values():
        assert value not in c.message


@pytest.mark.live
def test_a_fault_on_the_primary_alone_is_absorbed_by_the_fallback(live: LiveStack) -> None:
    live.upstream("groq").set_fault(401)
    reply = live.chat("groq-70b")
    assert reply.status_code == 200
    assert classify_response(reply.status_code, reply.text, reply.headers)[0] is None
    assert reply.headers["x-litellm-attempted-fallbacks"] == "1"
    assert len(live.upstream("openrouter").requests) == 1


@pytest.mark.live
def test_a_cooldown_hides_the_real_error_and_says_so(live: LiveStack) -> None:
    live.upstream("openai").set_fault(500)
    first = live.chat("gpt-4")
    assert classify_response(first.status_code, first.text, first.headers)[0] \
        is ErrorClass.SERVER
    second = live.chat("gpt-4")  # both deployments now cool down for COOLDOWN_S
    c = classify_reply(second.status_code, second.text, second.headers)
    print(f"\ncooldown: HTTP {second.status_code} -> {c.error_class}; {c.message}")
    assert (second.status_code, c.error_class, c.cooldown) == (429, ErrorClass.UNKNOWN, True)
    assert c.retry_after_s == 2
    # Still 429 after the upstream recovered: the proxy does not ask it until the cooldown ends.
    live.upstream("openai").clear_fault()
    live.upstream("openai").clear_requests()
    assert classify_reply(*_parts(live.chat("gpt-4"))).cooldown
    assert live.upstream("openai").requests == []


def _parts(reply: httpx.Response) -> tuple[int, str, httpx.Headers]:
    return reply.status_code, reply.text, reply.headers


@pytest.mark.live
def test_a_stopped_proxy_is_network(live: LiveStack) -> None:
    live.proxy.stop()
    try:
        with pytest.raises(httpx.ConnectError) as caught:
            live.chat("groq-70b")
        cls, message = classify_exception(caught.value)
        print(f"\n stopped: {type(caught.value).__name__} -> {cls}; {message}")
        assert (cls, message) == (ErrorClass.NETWORK, "connection refused")
        d = diagnose_network(live.proxy.url)
        assert d.checks[0].ok is False
        assert "nothing listens" in d.summary
    finally:
        live.proxy.start()
    assert live.chat("groq-70b").status_code == 200


# --------------------------------------------------------------------------- not the API

PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"


@pytest.mark.parametrize(("status", "headers", "body", "expected"), [
    (200, {"content-type": "text/html"}, PAGE, "HTTP 200, an HTML page titled 'Sign in'"),
    (404, {}, PAGE, "HTTP 404, an HTML page titled 'Sign in'"),
    (407, {"content-type": "text/html; charset=utf-8"}, "<p>auth</p>", "an HTML page"),
    (302, {"location": "https://portal.example/login?next=x"}, "", "a redirect to portal.example"),
])
def test_a_reply_that_cannot_be_the_api_is_named(status: int, headers: dict[str, str],
                                                  body: str, expected: str) -> None:
    message = not_api_reply(status, body, headers)
    assert message is not None
    assert message.startswith(NOT_API)
    assert expected in message


@pytest.mark.parametrize(("status", "headers", "body"), [
    (503, {"content-type": "text/html"}, PAGE),  # a CDN's outage page: the server class
    (401, {"content-type": "application/json"}, '{"error": {"message": "bad key"}}'),
    (200, {"content-type": "application/json"}, '{"data": []}'),
])
def test_api_replies_and_server_pages_are_not_taken_for_a_portal(
        status: int, headers: dict[str, str], body: str) -> None:
    assert not_api_reply(status, body, headers) is None


def test_event_causes_say_what_happened() -> None:
    assert event_cause(f"{NOT_API} (HTTP 200, an HTML page)") == (
        "answering with something other than the API (a captive portal or proxy?)")
    squatter = f"{FOREIGN_LISTENER}: pid 7 (nc -l 4000), user nobody (uid 65534)"
    assert event_cause(squatter) == squatter
    assert event_cause("connection refused") is None
    assert event_cause(None) is None
