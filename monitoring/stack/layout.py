"""Where every file of the bundle lives on a host, per target OS: the one place for paths.

Render puts artifacts at these destinations, the watchdog config points at them, the units and
scheduled tasks start programs from them, and the host tests look for them here. Linux paths
follow Debian's packages (``/etc/prometheus``, ``/etc/default``); Windows paths sit under
``windows.install_root``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Final, Literal

from monitoring.stack.scalars import prom_duration

if typing.TYPE_CHECKING:  # the watchdog's agents use this module without the schema (scalars.py)
    from monitoring.stack.schema import Stack

TargetOS = Literal["linux", "windows"]
TARGET_OSES: tuple[TargetOS, ...] = ("linux", "windows")


@dataclass(frozen=True)
class Layout:
    """Absolute host paths for one target OS."""

    os: TargetOS
    venv: str
    python: str
    litellm_bin: str
    watchdog_bin: str
    config_dir: str
    state_dir: str
    log_dir: str
    litellm_config: str
    #: The proxy's logging (uvicorn dictConfig): request lines off, see proxy_command.
    litellm_log_config: str
    watchdog_config: str
    secrets_env: str | None
    prometheus_bin: str
    alertmanager_bin: str
    prometheus_config: str
    #: Debian's packages read their flags (ARGS=) from these files; None on Windows.
    prometheus_defaults: str | None
    alertmanager_defaults: str | None
    prometheus_rules: str
    prometheus_data: str
    alertmanager_config: str
    alertmanager_data: str
    grafana_datasource: str
    grafana_dashboard_provider: str
    grafana_dashboard: str
    grafana_dashboards_dir: str
    scripts_dir: str | None
    units_dir: str | None
    #: Windows: the file whose creation asks the proxy to stop cleanly (no SIGTERM there; see
    #: monitoring.proxy.serve). None on Linux, where SIGTERM does it.
    proxy_stop_file: str | None = None

    def join(self, *parts: str) -> str:
        """Join path parts with this OS's separator."""
        cls = PurePosixPath if self.os == "linux" else PureWindowsPath
        return str(cls(*parts))

    def state(self, name: str) -> str:
        return self.join(self.state_dir, name)

    def log(self, name: str) -> str:
        return self.join(self.log_dir, name)


def layout(stack: Stack, target: TargetOS) -> Layout:
    """The paths of ``stack`` on a ``target`` host."""
    grafana = stack.grafana
    if target == "linux":
        lx = stack.linux
        p = PurePosixPath
        venv = p(lx.install_dir, "venv")
        prov = p(grafana.provisioning_dir.linux)
        dash_dir = p(grafana.dashboards_dir.linux)
        return Layout(
            os="linux",
            venv=str(venv),
            python=str(venv / "bin" / "python"),
            litellm_bin=str(venv / "bin" / "litellm"),
            watchdog_bin=str(venv / "bin" / "provider-fallback"),
            config_dir=lx.config_dir,
            state_dir=lx.state_dir,
            log_dir=lx.log_dir,
            litellm_config=str(p(lx.config_dir, "litellm.yaml")),
            litellm_log_config=str(p(lx.config_dir, "litellm-logging.json")),
            watchdog_config=str(p(lx.config_dir, "watchdog.json")),
            secrets_env=str(p(lx.config_dir, "secrets.env")),
            prometheus_bin="/usr/bin/prometheus",
            alertmanager_bin="/usr/bin/prometheus-alertmanager",
            prometheus_config="/etc/prometheus/prometheus.yml",
            prometheus_defaults="/etc/default/prometheus",
            alertmanager_defaults="/etc/default/prometheus-alertmanager",
            prometheus_rules="/etc/prometheus/rules/provider-fallback.rules.yml",
            prometheus_data="/var/lib/prometheus/metrics2",
            alertmanager_config="/etc/prometheus/alertmanager.yml",
            alertmanager_data="/var/lib/prometheus/alertmanager",
            grafana_datasource=str(prov / "datasources" / "provider-fallback.yaml"),
            grafana_dashboard_provider=str(prov / "dashboards" / "provider-fallback.yaml"),
            grafana_dashboard=str(dash_dir / f"{grafana.dashboard.uid}.json"),
            grafana_dashboards_dir=str(dash_dir),
            scripts_dir=None,
            units_dir="/etc/systemd/system",
        )
    w = PureWindowsPath
    root = w(stack.windows.install_root)
    wvenv = root / "venv"
    wprov = w(grafana.provisioning_dir.windows)
    wdash = w(grafana.dashboards_dir.windows)
    return Layout(
        os="windows",
        venv=str(wvenv),
        python=str(wvenv / "Scripts" / "python.exe"),
        litellm_bin=str(wvenv / "Scripts" / "litellm.exe"),
        watchdog_bin=str(wvenv / "Scripts" / "provider-fallback.exe"),
        config_dir=str(root / "config"),
        state_dir=str(root / "state"),
        log_dir=str(root / "logs"),
        litellm_config=str(root / "config" / "litellm.yaml"),
        litellm_log_config=str(root / "config" / "litellm-logging.json"),
        watchdog_config=str(root / "config" / "watchdog.json"),
        secrets_env=None,  # Windows keeps secrets in the user's environment variables
        prometheus_bin=str(root / "prometheus" / "prometheus.exe"),
        alertmanager_bin=str(root / "alertmanager" / "alertmanager.exe"),
        prometheus_config=str(root / "prometheus" / "prometheus.yml"),
        prometheus_defaults=None,
        alertmanager_defaults=None,
        prometheus_rules=str(root / "prometheus" / "rules" / "provider-fallback.rules.yml"),
        prometheus_data=str(root / "prometheus" / "data"),
        alertmanager_config=str(root / "alertmanager" / "alertmanager.yml"),
        alertmanager_data=str(root / "alertmanager" / "data"),
        grafana_datasource=str(wprov / "datasources" / "provider-fallback.yaml"),
        grafana_dashboard_provider=str(wprov / "dashboards" / "provider-fallback.yaml"),
        grafana_dashboard=str(wdash / f"{grafana.dashboard.uid}.json"),
        grafana_dashboards_dir=str(wdash),
        scripts_dir=str(root / "scripts"),
        units_dir=None,
        proxy_stop_file=str(root / "state" / "litellm.stop"),
    )


#: Environment every proxy start needs, whatever the stack:
#: - the local cost map: without it LiteLLM fetches a JSON file from the internet at start-up
#:   (and hangs on a host without it);
#: - no OpenAPI schema, Swagger UI or ReDoc: nobody using this bundle needs them, and the first
#:   unauthenticated ``GET /openapi.json`` after a start builds a 2 MB schema on the event loop
#:   for ~5 s, long enough for the watchdog to take a busy proxy for a hung one (issue 12, H1).
PROXY_ENV: dict[str, str] = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_OPENAPI": "True",
                             "NO_DOCS": "True", "NO_REDOC": "True"}
#: LiteLLM's CORS allow-list (comma-separated origins); unset it answers ``*`` to every web page.
CORS_ORIGINS_ENV = "LITELLM_CORS_ORIGINS"
#: Prefix of the provider-key variables in the proxy's and the watchdog's environment on a host.
HOST_KEY_PREFIX = "PF_"


def proxy_env(stack: Stack) -> dict[str, str]:
    """The proxy's environment beside the secrets: :data:`PROXY_ENV`, and CORS limited to the
    proxy's own origin (a web page elsewhere cannot read its answers or send it the key)."""
    return {**PROXY_ENV, CORS_ORIGINS_ENV: stack.litellm.listen.url}


def host_env_names(stack: Stack) -> dict[str, str]:
    """Each secret variable of the stack (as the user names it on the controller) -> its name
    in the environment of the proxy and the watchdog on the host.

    Provider keys get :data:`HOST_KEY_PREFIX` (``GROQ_API_KEY`` -> ``PF_GROQ_API_KEY``):
    LiteLLM and the provider SDKs read ``OPENAI_API_KEY`` & co. on their own for any route
    that names no deployment (``/v1/vector_stores``, ``/v1/containers``, ...), so under their
    default names the keys would be spent past the kill switch and the cost log. The master
    key and the SMTP password keep their names: no SDK spends them.
    """
    providers = {m.api_key_env for m in stack.litellm.models.values()}
    return {name: HOST_KEY_PREFIX + name if name in providers else name
            for name in stack.secret_env_names()}


def host_env_name(stack: Stack, name: str) -> str:
    """``name`` (a secret variable of the stack) as the host's services see it."""
    return host_env_names(stack).get(name, name)


#: What the proxy's interpreter runs (``python -m``): LiteLLM's proxy, stopped cleanly by SIGTERM.
PROXY_MODULE: Final = "monitoring.proxy.serve"
#: What releases before it ran: a Windows stop still recognises such a proxy when upgrading.
LEGACY_PROXY_MODULE: Final = "litellm.proxy.proxy_cli"
#: monitoring.proxy.serve's option naming its stop file (Windows).
STOP_FILE_OPTION: Final = "--stop-file"


def proxy_command(stack: Stack, lay: Layout) -> list[str]:
    """The proxy's command line. ``python -m litellm`` (the runbook's) does not start the proxy:
    the package has no ``__main__``. :data:`PROXY_MODULE` runs what its console script runs
    (``litellm.proxy.proxy_cli``), after making SIGTERM a normal exit: started directly, the
    proxy dies by the signal uvicorn re-raises after its shutdown, and no ``atexit`` handler
    runs (the last answers' cost-log lines were lost; see :mod:`monitoring.proxy.serve`).

    ``--log_config``: uvicorn's request log would write three lines a second from the
    watchdog's probes alone (~260,000 a day into the journal or litellm.log); the rendered
    config keeps LiteLLM's and uvicorn's own messages and drops the per-request lines.
    """
    listen = stack.litellm.listen
    stop = [STOP_FILE_OPTION, lay.proxy_stop_file] if lay.proxy_stop_file else []
    return [lay.python, "-m", PROXY_MODULE, *stop, "--config", lay.litellm_config,
            "--host", listen.host, "--port", str(listen.port),
            "--log_config", lay.litellm_log_config]


def watchdog_command(lay: Layout) -> list[str]:
    """The watchdog's command line (the ``provider-fallback`` console script)."""
    return [lay.watchdog_bin, "watch", "--config", lay.watchdog_config]


def prometheus_command(stack: Stack, lay: Layout) -> list[str]:
    """Prometheus' command line: config, listen address, data directory and retention."""
    prom = stack.prometheus
    return [
        lay.prometheus_bin,
        f"--config.file={lay.prometheus_config}",
        f"--web.listen-address={prom.listen.bind}",
        f"--storage.tsdb.path={lay.prometheus_data}",
        f"--storage.tsdb.retention.time={prom_duration(prom.retention)}",
    ]


def alertmanager_command(stack: Stack, lay: Layout) -> list[str]:
    """Alertmanager's command line, clustering off (``--cluster.listen-address=``).

    A single node needs no gossip, and with clustering on Alertmanager refuses to start on a
    host without an RFC1918 address ("No private IP address found"), restart-looping forever.
    """
    return [
        lay.alertmanager_bin,
        f"--config.file={lay.alertmanager_config}",
        f"--storage.path={lay.alertmanager_data}",
        "--cluster.listen-address=",
        f"--web.listen-address={stack.alertmanager.listen.bind}",
    ]
