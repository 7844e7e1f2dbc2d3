"""The real, pinned LiteLLM proxy for tests: a cached venv and a process on a free port.

The venv (~750 MB, ~100 s to install) is built once per machine under the cache directory
(``$PF_CACHE`` or ``~/.cache/provider-fallback``) and reused; a lock keeps two sessions from
building it at once. The proxy starts in ~15 s, so tests share one per session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from monitoring.stack.layout import CORS_ORIGINS_ENV, PROXY_ENV, PROXY_MODULE, STOP_FILE_OPTION
from tests.support.cached_build import built_once

#: Beside litellm[proxy] the proxy needs these (see shared/notes/litellm.md): without
#: prometheus-client `callbacks: ["prometheus"]` aborts start-up; without prisma a request
#: with no key gets a plain-text 500 instead of a 401.
COMPANIONS = ("prometheus-client==0.26.0", "prisma==0.15.0")
#: The rendered config names the proxy's hooks by import path (monitoring.proxy.litellm_hooks). On a
#: host the project's wheel is installed in the proxy's venv; here the repository is put on
#: the proxy's PYTHONPATH, so the cached venv stays the pinned LiteLLM alone and always runs
#: the working tree's hooks.
REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    return Path(os.environ.get("PF_CACHE", Path.home() / ".cache" / "provider-fallback"))


def ensure_venv(version: str) -> Path:
    """The venv with ``litellm[proxy]==version``; built on first use, then reused."""
    def build(venv: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                              "--disable-pip-version-check", f"litellm[proxy]=={version}",
                              *COMPANIONS], capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            raise RuntimeError(f"pip could not install litellm[proxy]=={version}:\n"
                               f"{pip.stderr[-3000:]}")

    return built_once(cache_dir() / f"litellm-{version}", build, version)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proxy_argv(venv: Path, config: Path, port: int, *serve_options: str) -> list[str]:
    """The pinned proxy's command line on loopback ``port``, started as a host starts it
    (:data:`PROXY_MODULE`); ``monitoring`` must be importable: PYTHONPATH=:data:`REPO`."""
    return [str(venv / "bin" / "python"), "-m", PROXY_MODULE, *serve_options, "--config",
            str(config), "--host", "127.0.0.1", "--port", str(port)]


@dataclass(frozen=True)
class RunningProxy:
    url: str
    master_key: str
    log: Path


def wait_until_live(url: str, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Poll /health/liveliness until it answers 200, the process dies, or the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with code {process.returncode} during start-up")
        try:
            if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the proxy did not answer /health/liveliness within {deadline_s} s")


class ProxyProcess:
    """The pinned proxy on a FIXED port, so it can be stopped and started again in place."""

    def __init__(self, venv: Path, config: Path, port: int,
                 env: dict[str, str]) -> None:
        self.venv, self.config, self.port, self.env = venv, config, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.log = config.parent / "litellm.log"
        #: The Windows way to stop it cleanly (monitoring.proxy.serve), also offered here.
        self.stop_file = config.parent / "litellm.stop"
        self.process: subprocess.Popen[bytes] | None = None
        #: How the last stop ended: 0 is a clean exit (atexit ran), -15 death by SIGTERM.
        self.returncode: int | None = None

    def start(self, deadline_s: float = 300) -> None:
        # 300 s: LiteLLM's imports alone took over 120 s with the 2 cores saturated
        # (issue 13, item 8); an idle machine starts it in well under 30 s.
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                proxy_argv(self.venv, self.config, self.port, STOP_FILE_OPTION,
                           str(self.stop_file)),
                cwd=self.config.parent,
                env={**os.environ, **PROXY_ENV, CORS_ORIGINS_ENV: self.url,
                     "PYTHONPATH": str(REPO), **self.env},
                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_live(self.url, self.process, deadline_s)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}\n--- proxy log tail ---\n{tail}") from None

    def stop(self, *, by_file: bool = False) -> None:
        """SIGTERM (Linux's clean stop), or the stop file (what Windows' manage script does);
        killed if it is still running after 20 s either way."""
        if self.process is None:
            return
        if by_file:
            self.stop_file.write_text("stop")
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.returncode = self.process.returncode
        self.process = None


@contextmanager
def running_proxy(venv: Path, config: Path, env: Mapping[str, str], master_key: str,
                  deadline_s: float = 120) -> Iterator[RunningProxy]:
    """Start the proxy with ``config`` on a free loopback port; always stopped afterwards."""
    proxy = ProxyProcess(venv, config, free_port(), dict(env))
    proxy.start(deadline_s)
    try:
        yield RunningProxy(url=proxy.url, master_key=master_key, log=proxy.log)
    finally:
        proxy.stop()
