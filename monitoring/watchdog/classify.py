"""Error classes of the runbook (step 1.2), what a reply or an exception means, and what to do.

The runbook sorts every failure into six classes, each with its own diagnosis (phases 2A-2F) and
fix (4.1); the decision tree then says quick fix and retry, or fall back. This module holds that
knowledge as code: :func:`classify_response` reads an HTTP reply (LiteLLM's wrapped errors
included), :func:`classify_exception` an httpx exception, and :func:`diagnose` runs the checks of
the class's phase and says what to do next.

LiteLLM 1.108.7 as measured through the real proxy (see shared/notes/litellm.md and
``tests/monitoring/watchdog/test_classify.py``): ``error.code`` is the HTTP status as a string, the
message starts ``litellm.<ExceptionName>:``; connection refused upstream arrives as a 500 whose
message holds ``Connection error.``; an upstream hang as a 408 ``litellm.Timeout``; a 429's
Retry-After only as ``llm_provider-retry-after``; a wrong master key as ``400 No connected db.`` (it
is looked up as a virtual key in a database the proxy does not have). While a model group cools
down, every request gets ``429 all_deployments_in_cooldown`` whatever the real error was: that
is reported as ``unknown`` with the cooldown as the retry time, never mistaken for a rate limit.

Messages are one short line and never hold a key: everything shown passes through
:func:`redact`, which reuses :func:`monitoring.stack.schema.looks_like_secret`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from time import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from monitoring.stack.scalars import looks_like_secret

__all__ = [
    "Action",
    "Check",
    "Classification",
    "Diagnosis",
    "DiagnosisInputs",
    "ErrorClass",
    "classify_exception",
    "classify_reply",
    "classify_response",
    "classify_status",
    "diagnose",
    "diagnose_auth",
    "diagnose_config",
    "diagnose_foreign_listener",
    "diagnose_network",
    "diagnose_not_api",
    "diagnose_rate",
    "diagnose_server",
    "diagnose_timeout",
    "diagnose_unknown",
    "env_present",
    "event_cause",
    "installed_version",
    "log_tail",
    "not_api_reply",
    "parse_retry_after",
    "port_listening",
    "process_alive",
    "redact",
]

#: The longest message this module returns; a probe result is a line in a log, not a report.
MAX_MESSAGE = 240


class Action(StrEnum):
    """The runbook's decision tree: a quick fix then retry, a plain retry, or fall back."""

    QUICK_FIX = "quick_fix"
    RETRY = "retry"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class _ClassInfo:
    phase: str
    name: str
    action: Action
    fix: str


class ErrorClass(StrEnum):
    """The runbook's six error classes (step 1.2) plus ``unknown``."""

    NETWORK = "network"
    AUTH = "auth"
    RATE = "rate"
    CONFIG = "config"
    SERVER = "server"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"

    @property
    def phase(self) -> str:
        """The runbook phase that diagnoses it (``2A``..``2F``; ``3`` for unknown: fall back)."""
        return _INFO[self].phase

    @property
    def runbook_name(self) -> str:
        """The runbook's name for it (``Performance`` for timeouts)."""
        return _INFO[self].name

    @property
    def action(self) -> Action:
        """What the decision tree does with it."""
        return _INFO[self].action

    @property
    def fix(self) -> str:
        """The runbook's fix (4.1), for the event log and the operator."""
        return _INFO[self].fix


# Actions follow the decision tree, seen from a watchdog that cannot type a key or edit a model
# name: what it can fix itself (restart the proxy) is a quick fix then retry; what passes by
# itself (a rate limit, a slow moment) is a retry; what needs a human is a fall back.
_INFO: dict[ErrorClass, _ClassInfo] = {
    ErrorClass.NETWORK: _ClassInfo(
        "2A", "Network", Action.QUICK_FIX,
        "restart LiteLLM with the rendered config; check the port and the firewall rule"),
    ErrorClass.AUTH: _ClassInfo(
        "2B", "Auth", Action.FALLBACK,
        "set the key's variable and restart the proxy; verify or regenerate it at the provider"),
    ErrorClass.RATE: _ClassInfo(
        "2C", "Rate", Action.RETRY,
        "wait for the reset (Retry-After), or fall back now if the wait is long"),
    ErrorClass.CONFIG: _ClassInfo(
        "2D", "Config", Action.FALLBACK,
        "fix the model names in stack.yaml, render and deploy (the proxy restarts)"),
    ErrorClass.SERVER: _ClassInfo(
        "2E", "Server", Action.FALLBACK,
        "read the proxy log; update LiteLLM to the pinned version and its dependencies"),
    ErrorClass.TIMEOUT: _ClassInfo(
        "2F", "Performance", Action.RETRY,
        "check latency to the provider; raise litellm.request_timeout if it is just slow"),
    ErrorClass.UNKNOWN: _ClassInfo(
        "3", "Unknown", Action.FALLBACK, "fall back, then read the proxy log"),
}


#: A reply that is not the API's (an HTML page, a redirect to a login page): the network path
#: ends at something else, typically a captive portal or an intercepting proxy.
NOT_API = "answers, but not with the API: a captive portal or proxy?"
#: The proxy port is held by a process that is not the watchdog's proxy (no key is sent).
FOREIGN_LISTENER = "port held by another process"
#: LiteLLM's own cooldown 429 stands in for the upstream's real error, which it hides.
HIDDEN_BY_COOLDOWN = "unknown, hidden by LiteLLM's cooldown"

#: What an event line says for a failure whose message starts with one of these (the
#: class's generic wording, "connection refused" or "model not found", would be untrue).
_EVENT_CAUSES: dict[str, str | None] = {
    NOT_API: "answering with something other than the API (a captive portal or proxy?)",
    FOREIGN_LISTENER: None,  # None: the message itself, which names the process
    HIDDEN_BY_COOLDOWN: "failing with an error hidden by LiteLLM's cooldown",
}


def event_cause(message: str | None) -> str | None:
    """The event wording for a failure ``message`` that has a cause of its own, else None."""
    for prefix, wording in _EVENT_CAUSES.items():
        if message and message.startswith(prefix):
            return wording or message
    return None


# --------------------------------------------------------------------------- redaction

_TOKEN = re.compile(r"[A-Za-z0-9_\-+=]{8,}")
_KEY_PREFIX = re.compile(r"^(gsk_|sk-|sk_|xai-|AIza|ghp_|github_pat_|hf_|pk-|rk-|eyJ)")
_BEARER = re.compile(r"(?i)\b(bearer|api[_-]?key|authorization|x-api-key)(\s*[=:]?\s*)(\S+)")


def _is_secret_token(token: str) -> bool:
    """looks_like_secret, minus its false positives on long identifiers and model hashes.

    The shared rule also calls any run of 24+ key-alphabet characters a secret; a random key
    always mixes letters and digits, an identifier like ``InternalServerErrorAllowedFails``
    does not, so the length rule applies only to mixed runs here.
    """
    if not looks_like_secret(token):
        return False
    if _KEY_PREFIX.match(token):
        return True
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values and anything key-shaped replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    return _TOKEN.sub(lambda m: "[redacted]" if _is_secret_token(m.group()) else m.group(), text)


def _short(text: str, secrets: Iterable[str] = ()) -> str:
    """One redacted line of at most MAX_MESSAGE characters."""
    line = " ".join(redact(text, secrets).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Classification:
    """What one reply means: its class (None when it succeeded) and the facts behind it.

    ``exception`` is LiteLLM's exception name when the proxy wrapped the error (e.g.
    ``AuthenticationError``); ``cooldown`` is True when LiteLLM answered from a cooldown, which
    hides the real error (probe the provider directly to learn it).
    """

    error_class: ErrorClass | None
    retry_after_s: float | None
    message: str
    status: int | None = None
    exception: str | None = None
    cooldown: bool = False


_LITELLM_EXC = re.compile(r"^litellm\.(?:\w+\.)*(\w+):\s*")
_PROVIDER_PREFIX = re.compile(r"^(?:\w+(?:Error|Exception)\s*[-:]\s*)*")
_TRY_AGAIN = re.compile(r"(?i)try again in (\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)?\b")
_EXCEPTION_CLASSES: dict[str, ErrorClass] = {
    "AuthenticationError": ErrorClass.AUTH,
    "PermissionDeniedError": ErrorClass.AUTH,
    "RateLimitError": ErrorClass.RATE,
    "NotFoundError": ErrorClass.CONFIG,
    "BadRequestError": ErrorClass.CONFIG,
    "UnprocessableEntityError": ErrorClass.CONFIG,
    "ContextWindowExceededError": ErrorClass.CONFIG,
    "UnsupportedParamsError": ErrorClass.CONFIG,
    "InternalServerError": ErrorClass.SERVER,
    "ServiceUnavailableError": ErrorClass.SERVER,
    "BadGatewayError": ErrorClass.SERVER,
    "APIError": ErrorClass.SERVER,
    "APIResponseValidationError": ErrorClass.SERVER,
    "Timeout": ErrorClass.TIMEOUT,
    "APITimeoutError": ErrorClass.TIMEOUT,
    "APIConnectionError": ErrorClass.NETWORK,
}


def classify_status(status: int) -> ErrorClass | None:
    """The class an HTTP status alone implies (runbook 1.2); None for a success."""
    if status < 400:
        return None
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 429:
        return ErrorClass.RATE
    if status in (408, 504):
        return ErrorClass.TIMEOUT
    if status in (400, 404, 405, 422):
        return ErrorClass.CONFIG
    if status >= 500:
        return ErrorClass.SERVER
    return ErrorClass.UNKNOWN


def _lower(headers: Mapping[str, str] | httpx.Headers | None) -> dict[str, str]:
    if headers is None:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value: a number of seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds)


def _retry_after(headers: dict[str, str], message: str) -> float | None:
    """The wait a reply asks for: the standard headers, LiteLLM's copies, then the text."""
    for name in ("retry-after-ms", "llm_provider-retry-after-ms"):
        seconds = parse_retry_after(headers.get(name))
        if seconds is not None:
            return seconds / 1000
    for name in ("retry-after", "llm_provider-retry-after"):
        seconds = parse_retry_after(headers.get(name))
        if seconds is not None:
            return seconds
    match = _TRY_AGAIN.search(message)
    if match:
        number = float(match.group(1))
        return number / 1000 if (match.group(2) or "").lower() == "ms" else number
    return None


def _error_fields(body_text: str) -> tuple[str, str, str]:
    """(message, type, code) of an OpenAI-style error body; the raw text when it is not one."""
    try:
        data: Any = json.loads(body_text) if body_text else None
    except ValueError:
        return body_text.strip(), "", ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or ""
        if not isinstance(message, str):
            message = json.dumps(message)
        return message, str(error.get("type") or ""), str(error.get("code") or "")
    if isinstance(error, str):
        return error, "", ""
    return body_text.strip(), "", ""


def _core_message(message: str) -> str:
    """The provider's own words from a LiteLLM message, without prefixes or the fallback tale."""
    first = message.split("\n", 1)[0]
    first = _LITELLM_EXC.sub("", first, count=1)
    return _PROVIDER_PREFIX.sub("", first, count=1).strip() or first.strip()


def classify_reply(status: int, body_text: str,
                   headers: Mapping[str, str] | httpx.Headers | None = None,
                   secrets: Iterable[str] = ()) -> Classification:
    """Everything :func:`classify_response` knows about one reply, as a :class:`Classification`.

    ``secrets`` are values to redact besides anything key-shaped (the caller knows its keys).
    """
    heads = _lower(headers)
    if status < 400:
        return Classification(None, None, f"HTTP {status}", status)
    message, err_type, _code = _error_fields(body_text)
    exc_match = _LITELLM_EXC.match(message)
    exception = exc_match.group(1) if exc_match else None
    retry_after = _retry_after(heads, message)
    core = _core_message(message) if message else f"HTTP {status}"
    fell_back = "Fallback to" in message and "also failed" in message
    tail = "; its fallbacks failed too" if fell_back else ""

    def result(cls: ErrorClass, text: str, cooldown: bool = False) -> Classification:
        return Classification(cls, retry_after, _short(text, secrets), status, exception,
                              cooldown)

    # Order matters: the specific LiteLLM shapes first, the bare status last.
    if err_type == "all_deployments_in_cooldown" or (
            "No deployments available" in message and "cooldown" in message):
        wait = f"{retry_after:g} s" if retry_after is not None else "the cooldown"
        return result(ErrorClass.UNKNOWN,
                      f"{HIDDEN_BY_COOLDOWN}: every deployment for this model is cooling "
                      f"down (retry in {wait}); probe the provider directly for the error",
                      cooldown=True)
    if "Connection error" in message or exception == "APIConnectionError":
        return result(ErrorClass.NETWORK, f"upstream connection failed (HTTP {status}, "
                                          f"{exception or 'error'}: {core}){tail}")
    if err_type == "no_db_connection" or "No connected db" in message:
        # LiteLLM looks up any Bearer token that is not its master key in its key database.
        return result(ErrorClass.AUTH, f"the proxy rejected the master key (HTTP {status}: "
                                       f"not the master key, and no key database){tail}")
    cls = _EXCEPTION_CLASSES.get(exception or "")
    if cls is None:
        if err_type in ("auth_error", "authentication_error"):
            cls = ErrorClass.AUTH
        elif "Invalid model name" in message or "model_not_found" in body_text:
            cls = ErrorClass.CONFIG
        else:
            cls = classify_status(status) or ErrorClass.UNKNOWN
    label = f"{exception}: " if exception else ""
    text = f"HTTP {status} {label}{core}{tail}"
    if cls is ErrorClass.RATE and retry_after is not None:
        text += f" (retry after {retry_after:g} s)"
    return result(cls, text)


_HTML_START = re.compile(r"^\s*(<!doctype\s+html|<html|<head|<body|<\?xml|<!--)", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def body_kind(body_text: str, headers: Mapping[str, str] | httpx.Headers | None) -> str:
    """What a reply body is, in a few words: ``an HTML page titled 'Log in'``, ``text/plain``."""
    ctype = _lower(headers).get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml") or _HTML_START.match(body_text[:512]):
        title = _TITLE.search(body_text[:65536])
        name = " ".join(title.group(1).split())[:60] if title else ""
        return f"an HTML page titled {name!r}" if name else "an HTML page"
    return ctype or "a body without a content type"


def not_api_reply(status: int, body_text: str,
                  headers: Mapping[str, str] | httpx.Headers | None = None,
                  secrets: Iterable[str] = ()) -> str | None:
    """The :data:`NOT_API` message when a reply cannot be the API's, else None.

    An OpenAI-compatible API answers JSON, errors included, and never redirects its API
    paths; an HTML page or a redirect (to a login page) on one comes from whatever sits in the
    path: a captive portal, a login proxy, another web server. A 5xx HTML page is left to the
    server class: CDNs in front of real providers send those during outages.
    """
    heads = _lower(headers)
    if 300 <= status < 400:
        where = urlsplit(heads.get("location", "")).hostname
        return _short(f"{NOT_API} (HTTP {status}, a redirect"
                      f"{f' to {where}' if where else ''})", secrets)
    if status >= 500:
        return None
    kind = body_kind(body_text, headers)
    if not kind.startswith("an HTML page"):
        return None
    return _short(f"{NOT_API} (HTTP {status}, {kind})", secrets)


def classify_response(status: int, body_text: str,
                      headers: Mapping[str, str] | httpx.Headers | None = None
                      ) -> tuple[ErrorClass | None, float | None, str]:
    """(class, retry-after seconds, short message) of one HTTP reply; class None on success."""
    c = classify_reply(status, body_text, headers)
    return c.error_class, c.retry_after_s, c.message


# --------------------------------------------------------------------------- exceptions


def _caused_by(exc: BaseException, kind: type[BaseException], depth: int = 8) -> bool:
    """Whether ``kind`` is in the cause chain (async httpx words a refusal as "All connection
    attempts failed" and keeps the ConnectionRefusedError three causes down)."""
    seen: BaseException | None = exc
    for _ in range(depth):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_exception(exc: BaseException, secrets: Iterable[str] = ()) -> tuple[ErrorClass, str]:
    """(class, short message) of an exception raised instead of a reply.

    A refused or reset connection is ``network`` (2A: is it running? listening?). A connect
    that times out is also ``network``: nothing answered the SYN, which is a dead host or a
    firewall (2A), not a slow server; a read, write, pool or overall deadline is ``timeout``
    (2F: it accepted the request and did not answer in time).
    """
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, httpx.ConnectTimeout):
        return ErrorClass.NETWORK, _short(f"connect timed out: {detail}", secrets)
    if isinstance(exc, (httpx.TimeoutException, TimeoutError, asyncio.TimeoutError)):
        return ErrorClass.TIMEOUT, _short(f"no answer in time ({name})", secrets)
    if isinstance(exc, httpx.ConnectError):
        refused = "refused" in detail.lower() or _caused_by(exc, ConnectionRefusedError)
        what = "connection refused" if refused else f"cannot connect: {detail}"
        return ErrorClass.NETWORK, _short(what, secrets)
    if isinstance(exc, httpx.RemoteProtocolError):
        return ErrorClass.NETWORK, _short(f"connection dropped: {detail}", secrets)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.NetworkError)):
        return ErrorClass.NETWORK, _short(f"connection failed: {detail}", secrets)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects,
                        httpx.ProxyError)):
        return ErrorClass.CONFIG, _short(f"bad endpoint: {detail}", secrets)
    if isinstance(exc, httpx.DecodingError):
        return ErrorClass.SERVER, _short(f"undecodable reply: {detail}", secrets)
    if isinstance(exc, httpx.HTTPStatusError):
        cls, _, message = classify_response(exc.response.status_code, exc.response.text,
                                            exc.response.headers)
        return cls or ErrorClass.UNKNOWN, _short(message, secrets)
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.NETWORK, "connection refused"
    if isinstance(exc, (ConnectionError, socket.gaierror, ssl.SSLError, OSError)):
        return ErrorClass.NETWORK, _short(f"{name}: {detail}", secrets)
    return ErrorClass.UNKNOWN, _short(f"{name}: {detail}", secrets)


# --------------------------------------------------------------------------- diagnosis


@dataclass(frozen=True)
class Check:
    """One check of a diagnosis; ``ok`` is None when it could not be made."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Diagnosis:
    """The result of a runbook phase 2 diagnosis: the checks and what to do next."""

    error_class: ErrorClass
    checks: tuple[Check, ...]
    summary: str
    next_step: str

    @property
    def phase(self) -> str:
        return self.error_class.phase

    @property
    def action(self) -> Action:
        return self.error_class.action

    def lines(self) -> list[str]:
        """Human-readable lines (the CLI prints them; the event log keeps the summary)."""
        mark = {True: "ok  ", False: "FAIL", None: "?   "}
        out = [f"Phase {self.phase} ({self.error_class.runbook_name}): {self.summary}"]
        out += [f"  [{mark[c.ok]}] {c.name}: {c.detail}" for c in self.checks]
        out.append(f"  next: {self.next_step} ({self.action})")
        return out


def _diagnosis(cls: ErrorClass, checks: Sequence[Check], summary: str,
               next_step: str | None = None) -> Diagnosis:
    safe = tuple(Check(c.name, c.ok, redact(c.detail)) for c in checks)
    return Diagnosis(cls, safe, _short(summary), _short(next_step or cls.fix))


def port_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port (runbook 2A's netstat)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: Seconds a process's creation time may seem to follow its PID file's mtime: psutil derives
#: it from the boot time in whole seconds (Linux) and clocks have their own granularity.
PID_CLOCK_SLACK_S = 2.0


def process_alive(pid: int, started_by: float | None = None) -> bool:
    """True when a process with this id runs, asked without signalling it (``os.kill`` on
    Windows would terminate it); a zombie does not count, another user's process does.

    ``started_by``: a time the process must have been created by (the mtime of the PID file
    that names it). A process created later is another program that got the same id after
    the first one exited (Windows reuses ids quickly): not alive. psutil answers the same way
    on Windows and Linux, so one code path is tested here and runs there.
    """
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; whose and since when cannot be told
    return started_by is None or created <= started_by + PID_CLOCK_SLACK_S


def env_present(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether a variable is set to something other than blank or its own name (runbook 2B).

    Only presence is ever reported: the value is read, compared, and dropped.
    """
    value = (os.environ if env is None else env).get(name, "")
    return bool(value.strip()) and value.strip() not in (name, f"%{name}%", f"${name}")


def log_tail(path: str | os.PathLike[str], lines: int = 20, max_bytes: int = 64_000) -> list[str]:
    """The last ``lines`` lines of a log, redacted and cut to 300 characters each."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read().decode("utf-8", errors="replace")
    tail = [line for line in data.splitlines() if line.strip()][-lines:]
    return [redact(line)[:300] for line in tail]


def installed_version(python: str | None = None, timeout: float = 10.0) -> str | None:
    """The LiteLLM version installed for ``python`` (this interpreter when None); None if absent.

    The watchdog shares the proxy's venv on a host, so the in-process answer is the proxy's;
    reading package metadata does not import LiteLLM (which takes seconds).
    """
    if python is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("litellm")
        except PackageNotFoundError:
            return None
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port


def diagnose_network(url: str, *, pid: int | None = None, timeout: float = 0.5) -> Diagnosis:
    """2A: is the port listening, and is the process alive?"""
    host, port = _host_port(url)
    listening = port_listening(host, port, timeout)
    checks = [Check("port listening", listening,
                    f"{host}:{port} {'accepts' if listening else 'refuses'} connections")]
    if pid is not None:
        alive = process_alive(pid)
        checks.append(Check("process alive", alive, f"pid {pid} {'runs' if alive else 'is gone'}"))
    else:
        checks.append(Check("process alive", None, "no process id known"))
    if listening:
        summary = f"{host}:{port} is listening: the failure is past the connection"
        step = "retry; if it keeps failing, read the proxy log (2E)"
    elif pid is not None and checks[1].ok:
        summary = f"the process runs but {host}:{port} is not listening"
        step = "restart it; check the port is not taken and the firewall rule"
    else:
        summary = f"nothing listens on {host}:{port}"
        step = ErrorClass.NETWORK.fix
    return _diagnosis(ErrorClass.NETWORK, checks, summary, step)


def diagnose_not_api(url: str, message: str, *, who: str = "the provider") -> Diagnosis:
    """A reply that is not the API's (a captive portal, a login proxy): not a dead host."""
    host, port = _host_port(url)
    checks = [Check("port listening", True, f"{host}:{port} accepts connections"),
              Check("answers with the API", False, message.removeprefix(NOT_API).strip(" ()"))]
    return _diagnosis(ErrorClass.NETWORK, checks, f"{who} {message}",
                      f"open {url} in a browser (a portal wants a log-in), or set "
                      "HTTPS_PROXY/NO_PROXY for the proxy and the watchdog")


def diagnose_foreign_listener(url: str, message: str) -> Diagnosis:
    """The proxy port held by a process that is not ours: no key went to it, nothing killed."""
    host, port = _host_port(url)
    holder = message.removeprefix(FOREIGN_LISTENER).lstrip(": ")
    checks = [Check("port listening", True, f"{host}:{port} accepts connections"),
              Check("listener is the proxy", False, holder),
              Check("master key withheld", True, "no keyed request was sent to it")]
    return _diagnosis(ErrorClass.NETWORK, checks,
                      f"another process holds {host}:{port}: {holder}; no key was sent to it",
                      "find out why it holds the port, stop it or move it, then restart the "
                      "proxy (the watchdog kills nothing it does not own)")


def diagnose_auth(key_env: str, *, env: Mapping[str, str] | None = None,
                  accepted: bool | None = None, provider: str = "the provider") -> Diagnosis:
    """2B: is the key's variable set (presence only, never the value), and is it accepted?

    ``accepted`` comes from a direct ``GET <api_base>/models`` with the key (None: not tried).
    """
    present = env_present(key_env, env)
    checks = [Check("key variable set", present, f"{key_env} is {'set' if present else 'NOT set'}")]
    if accepted is None:
        checks.append(Check(f"accepted by {provider}", None, "not checked"))
    else:
        checks.append(Check(f"accepted by {provider}", accepted,
                            f"{provider} {'accepts' if accepted else 'rejects'} the key"))
    if not present:
        summary = f"{key_env} is not set"
        step = f"set {key_env} where the service reads it, then restart the proxy"
    elif accepted is False:
        summary = f"{provider} rejects the key in {key_env}"
        step = "verify or regenerate the key at the provider's console, then restart the proxy"
    elif accepted:
        summary = f"{provider} accepts the key: the proxy may hold an old one"
        step = "restart the proxy so it reads the current key"
    else:
        summary = f"{key_env} is set; whether {provider} accepts it is unknown"
        step = ErrorClass.AUTH.fix
    return _diagnosis(ErrorClass.AUTH, checks, summary, step)


def diagnose_rate(retry_after_s: float | None, *, fallback_after_s: float = 60.0) -> Diagnosis:
    """2C: how long the provider asks to wait; past ``fallback_after_s``, fall back now."""
    known = retry_after_s is not None
    detail = f"{retry_after_s:g} s" if retry_after_s is not None else "not given"
    checks = [Check("retry-after", known or None, detail)]
    if retry_after_s is not None and retry_after_s <= fallback_after_s:
        return _diagnosis(ErrorClass.RATE, checks, f"rate limited for {retry_after_s:g} s",
                          f"wait {retry_after_s:g} s, then retry")
    if retry_after_s is not None:
        return _diagnosis(ErrorClass.RATE, checks,
                          f"rate limited for {retry_after_s:g} s (longer than "
                          f"{fallback_after_s:g} s)", "fall back now (phase 3)")
    return _diagnosis(ErrorClass.RATE, checks, "rate limited, no reset time given",
                      f"wait {fallback_after_s:g} s (the runbook's 60), then retry")


def diagnose_config(configured: Sequence[str], served: Sequence[str] | None, *,
                    config_path: str | None = None) -> Diagnosis:
    """2D: the configured model aliases against what the proxy's ``/v1/models`` serves."""
    if served is None:
        checks = [Check("models served", None, "the proxy's /v1/models could not be read")]
        return _diagnosis(ErrorClass.CONFIG, checks, "the served models are unknown",
                          ErrorClass.CONFIG.fix)
    missing = sorted(set(configured) - set(served))
    extra = sorted(set(served) - set(configured))
    checks = [Check("configured models served", not missing,
                    f"missing: {', '.join(missing)}" if missing else
                    f"all {len(configured)} served")]
    checks.append(Check("no unexpected models", not extra,
                        f"not in stack.yaml: {', '.join(extra)}" if extra else "none"))
    where = f" ({config_path})" if config_path else ""
    if missing or extra:
        summary = "the running proxy's models differ from stack.yaml"
        step = f"the proxy runs another config{where}: render, deploy, restart the proxy"
    else:
        summary = "the proxy serves every configured alias: the upstream model name is wrong"
        step = "check upstream_model in stack.yaml against the provider's /models"
    return _diagnosis(ErrorClass.CONFIG, checks, summary, step)


def diagnose_server(expected_version: str, log_path: str | os.PathLike[str] | None, *,
                    installed: str | None = None, lines: int = 20) -> Diagnosis:
    """2E: the proxy's version (pinned vs installed) and the last lines of its log."""
    checks = [Check("LiteLLM version", None if installed is None else installed == expected_version,
                    f"installed {installed or 'unknown'}, pinned {expected_version}")]
    tail: list[str] = []
    if log_path is None:
        checks.append(Check("proxy log", None, "no log file known"))
    else:
        try:
            tail = log_tail(log_path, lines)
        except OSError as exc:
            checks.append(Check("proxy log", None, f"cannot read {log_path}: {exc.strerror}"))
        else:
            errors = [t for t in tail if re.search(r"ERROR|Traceback|Exception", t)]
            checks.append(Check("proxy log", not errors,
                                f"{len(errors)} error lines in the last {len(tail)}"))
            checks.extend(Check("log", None, t) for t in tail)
    if installed is not None and installed != expected_version:
        summary = f"LiteLLM {installed} runs where {expected_version} is pinned"
        step = "deploy again to install the pinned version"
    else:
        summary = "the proxy answers with server errors"
        step = ErrorClass.SERVER.fix
    return _diagnosis(ErrorClass.SERVER, checks, summary, step)


def diagnose_timeout(latency_s: float | None, timeout_s: float) -> Diagnosis:
    """2F: the measured latency against the probe timeout."""
    if latency_s is None:
        checks = [Check("latency", None, "not measured")]
        return _diagnosis(ErrorClass.TIMEOUT, checks, "no answer within the timeout",
                          ErrorClass.TIMEOUT.fix)
    over = latency_s >= timeout_s
    checks = [Check("latency", not over, f"{latency_s:.2f} s against a {timeout_s:g} s timeout")]
    summary = (f"no answer within {timeout_s:g} s" if over else
               f"answered in {latency_s:.2f} s, within {timeout_s:g} s")
    return _diagnosis(ErrorClass.TIMEOUT, checks, summary, ErrorClass.TIMEOUT.fix)


def diagnose_unknown(message: str) -> Diagnosis:
    """No class fits: the decision tree falls back, and the log is where to look."""
    return _diagnosis(ErrorClass.UNKNOWN, [Check("error", None, message)],
                      "unclassified failure", ErrorClass.UNKNOWN.fix)


@dataclass(frozen=True)
class DiagnosisInputs:
    """What the watchdog knows when it diagnoses; each class's builder uses its own part."""

    url: str = ""
    pid: int | None = None
    key_env: str = ""
    env: Mapping[str, str] | None = None
    key_accepted: bool | None = None
    provider: str = "the provider"
    retry_after_s: float | None = None
    fallback_after_s: float = 60.0
    configured_models: Sequence[str] = ()
    served_models: Sequence[str] | None = None
    config_path: str | None = None
    expected_version: str = ""
    installed_version: str | None = None
    log_path: str | None = None
    latency_s: float | None = None
    timeout_s: float = 0.0
    message: str = ""


def diagnose(error_class: ErrorClass, inputs: DiagnosisInputs) -> Diagnosis:
    """Run the runbook phase (2A-2F) for ``error_class`` with what the watchdog knows."""
    i = inputs
    if i.message.startswith(NOT_API):
        return diagnose_not_api(i.url, i.message, who=i.provider)
    if i.message.startswith(FOREIGN_LISTENER):
        return diagnose_foreign_listener(i.url, i.message)
    if error_class is ErrorClass.NETWORK:
        return diagnose_network(i.url, pid=i.pid)
    if error_class is ErrorClass.AUTH:
        return diagnose_auth(i.key_env, env=i.env, accepted=i.key_accepted, provider=i.provider)
    if error_class is ErrorClass.RATE:
        return diagnose_rate(i.retry_after_s, fallback_after_s=i.fallback_after_s)
    if error_class is ErrorClass.CONFIG:
        return diagnose_config(i.configured_models, i.served_models, config_path=i.config_path)
    if error_class is ErrorClass.SERVER:
        return diagnose_server(i.expected_version, i.log_path, installed=i.installed_version)
    if error_class is ErrorClass.TIMEOUT:
        return diagnose_timeout(i.latency_s, i.timeout_s)
    return diagnose_unknown(i.message)


def _assert_complete() -> None:
    missing = set(ErrorClass) - set(_INFO)
    if missing:  # pragma: no cover - a new class without its runbook entry
        raise RuntimeError(f"error classes without runbook info: {missing}")


_assert_complete()
