"""alertmanager.yml, checked by the real amtool 0.25 and, for inhibition, a real Alertmanager.

``amtool check-config`` unmarshals strictly (an unknown key fails it, shown below), so its
passing the email receiver proves Alertmanager 0.25 knows ``auth_password_file``: the SMTP
password never has to be written into the file. ``amtool config routes test`` proves where
each alert of the rule file is routed; a short-lived Alertmanager on loopback proves the
inhibit rules mute what they should and nothing else.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.content import alertmanager, rules
from monitoring.stack.layout import alertmanager_command, layout
from monitoring.stack.load import StackError, parse_stack
from monitoring.stack.schema import Stack
from tasks.render import prometheus
from tests.conftest import STACK_FILE

AMTOOL = "/usr/bin/amtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

WEBHOOK = "https://hooks.example.com/provider-fallback"
NOTIFY: dict[str, Any] = {"alertmanager": {"receivers": {
    "webhook": {"url": WEBHOOK},
    "email": {"enabled": True, "to": "ops@example.com", "sender": "alerts@example.com",
              "smarthost": "smtp.example.com:587", "auth_username": "alerts@example.com",
              "auth_password_env": "SMTP_PASSWORD"},
}}}


def stack_with(overrides: dict[str, Any]) -> Stack:
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


@pytest.fixture(scope="module")
def notify_stack() -> Stack:
    return stack_with(NOTIFY)


def write_config(stack: Stack, tmp_path: Path) -> Path:
    """The rendered alertmanager.yml (header and all), as it goes to the host."""
    rendered = prometheus.artifacts(stack, layout(stack, "linux"))
    path = tmp_path / "alertmanager.yml"
    path.write_bytes(rendered[prometheus.ALERTMANAGER_REL].data)
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


# --------------------------------------------------------------------------- amtool


@pytest.mark.parametrize("which", ["default", "email+webhook"])
def test_amtool_check_config_passes(which: str, stack: Stack, notify_stack: Stack,
                                    tmp_path: Path) -> None:
    path = write_config(stack if which == "default" else notify_stack, tmp_path)
    result = amtool("check-config", str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS" in out
    assert "3 inhibit rules" in out
    assert "2 receivers" in out


def test_amtool_refuses_unknown_keys(notify_stack: Stack, tmp_path: Path) -> None:
    # Why the test above proves auth_password_file is supported: amtool is strict.
    data = alertmanager.build(notify_stack)
    data["receivers"][1]["email_configs"][0]["auth_password_fil"] = "/x"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(data))
    result = amtool("check-config", str(path))
    assert result.returncode != 0
    assert "auth_password_fil" in result.stdout + result.stderr


def test_amtool_refuses_a_smarthost_without_port(notify_stack: Stack, tmp_path: Path) -> None:
    # What build() refuses up front, with a message that names the stack.yaml field.
    data = alertmanager.build(notify_stack)
    data["receivers"][1]["email_configs"][0]["smarthost"] = "smtp.example.com"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(data))
    assert amtool("check-config", str(path)).returncode != 0
    with pytest.raises(StackError, match=r"alertmanager\.receivers\.email\.smarthost"):
        stack_with({"alertmanager": {"receivers": {
            "email": {**NOTIFY["alertmanager"]["receivers"]["email"],
                      "smarthost": "smtp.example.com"}}}})


def test_a_password_without_username_is_refused() -> None:
    with pytest.raises(StackError, match=r"email\.auth_username"):
        stack_with({"alertmanager": {"receivers": {
            "email": {**NOTIFY["alertmanager"]["receivers"]["email"], "auth_username": ""}}}})


@pytest.mark.parametrize("which", ["default", "email+webhook"])
def test_every_alert_routes_by_severity(which: str, stack: Stack, notify_stack: Stack,
                                        tmp_path: Path) -> None:
    chosen = stack if which == "default" else notify_stack
    path = write_config(chosen, tmp_path)
    for rule in rules.build(chosen)["groups"][0]["rules"]:
        severity = rule["labels"]["severity"]
        expected = (alertmanager.CRITICAL_RECEIVER if severity == rules.CRITICAL
                    else alertmanager.DEFAULT_RECEIVER)
        result = amtool("config", "routes", "test", f"--config.file={path}",
                        f"--verify.receivers={expected}", f"alertname={rule['alert']}",
                        f"severity={severity}", "provider=groq")
        assert result.returncode == 0, (rule["alert"], result.stdout + result.stderr)
    # ... and the check can fail: a warning alert does not reach the critical receiver.
    wrong = amtool("config", "routes", "test", f"--config.file={path}",
                   f"--verify.receivers={alertmanager.CRITICAL_RECEIVER}", "severity=warning")
    assert wrong.returncode != 0


# --------------------------------------------------------------------------- content


def test_route_follows_the_stack(stack: Stack) -> None:
    other = stack_with({"alertmanager": {"route": {
        "group_by": ["alertname"], "group_wait": "10s", "group_interval": "2m",
        "repeat_interval": "12h", "critical_repeat_interval": "30m"}}})
    for chosen, expect in ((stack, ("30s", "5m", "4h", "1h", ["alertname", "provider"])),
                           (other, ("10s", "2m", "12h", "30m", ["alertname"]))):
        route = alertmanager.build(chosen)["route"]
        assert (route["group_wait"], route["group_interval"], route["repeat_interval"],
                route["routes"][0]["repeat_interval"], route["group_by"]) == expect
        assert route["receiver"] == alertmanager.DEFAULT_RECEIVER
        assert route["routes"][0]["matchers"] == ['severity="critical"']


def test_without_notifiers_both_receivers_are_empty_and_the_file_says_so(
        stack: Stack, tmp_path: Path) -> None:
    data = alertmanager.build(stack)
    assert data["receivers"] == [{"name": alertmanager.DEFAULT_RECEIVER},
                                 {"name": alertmanager.CRITICAL_RECEIVER}]
    assert not alertmanager.has_notifier(stack)
    text = write_config(stack, tmp_path).read_text()
    assert "sent nowhere" in text
    assert "nothing is dropped silently" in text


def test_webhook_everywhere_email_for_critical_password_by_file(notify_stack: Stack,
                                                                tmp_path: Path) -> None:
    lay = layout(notify_stack, "linux")
    default, critical = alertmanager.build(notify_stack, lay)["receivers"]
    assert default == {"name": alertmanager.DEFAULT_RECEIVER,
                       "webhook_configs": [{"url": WEBHOOK, "send_resolved": True}]}
    assert critical["webhook_configs"] == default["webhook_configs"]
    assert critical["email_configs"] == [{
        "to": "ops@example.com", "from": "alerts@example.com",
        "smarthost": "smtp.example.com:587", "auth_username": "alerts@example.com",
        "auth_password_file": f"{notify_stack.linux.config_dir}/alertmanager-smtp-password",
        "send_resolved": True}]
    assert alertmanager.smtp_password_file(lay).startswith(lay.config_dir + "/")
    text = write_config(notify_stack, tmp_path).read_text()
    assert "auth_password:" not in text
    assert "sent nowhere" not in text
    windows = layout(notify_stack, "windows")
    email = alertmanager.build(notify_stack, windows)["receivers"][1]["email_configs"][0]
    assert email["auth_password_file"] == windows.config_dir + "\\alertmanager-smtp-password"


def test_inhibit_rules(stack: Stack) -> None:
    assert alertmanager.build(stack)["inhibit_rules"] == [
        {"source_matchers": ['alertname="BudgetExceeded"'],
         "target_matchers": ['alertname=~"BudgetCritical|BudgetWarning"']},
        {"source_matchers": ['alertname="BudgetCritical"'],
         "target_matchers": ['alertname="BudgetWarning"']},
        {"source_matchers": ['alertname="AllProvidersDown"'],
         "target_matchers": ['alertname="ProviderDown"']},
    ]


# --------------------------------------------------------------------------- live


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (an http:// URL on loopback, built here)
        url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return json.loads(text) if text.strip().startswith(("[", "{")) else text


@pytest.fixture
def running_alertmanager(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager 0.25 on a free loopback port with the rendered config and flags."""
    config = write_config(stack, tmp_path)
    port = _free_port()
    lay = layout(stack, "linux")
    flags = alertmanager_command(stack, lay)[1:]
    flags = [f"--config.file={config}" if f.startswith("--config.file=") else
             f"--storage.path={tmp_path / 'data'}" if f.startswith("--storage.path=") else
             f"--web.listen-address=127.0.0.1:{port}" if f.startswith("--web.listen") else f
             for f in flags]
    assert "--cluster.listen-address=" in flags
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen([ALERTMANAGER, *flags], stdout=log_file, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _http(f"{url}/-/ready")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("Alertmanager did not become ready:\n"
                                         + log.read_text(errors="replace")) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.live
def test_inhibition_in_a_real_alertmanager(running_alertmanager: str) -> None:
    url = running_alertmanager
    posted = [
        {"alertname": rules.BUDGET_WARNING, "severity": "warning"},
        {"alertname": rules.BUDGET_CRITICAL, "severity": "critical"},
        {"alertname": rules.BUDGET_EXCEEDED, "severity": "critical"},
        {"alertname": rules.KILL_SWITCH_ACTIVE, "severity": "warning"},
        {"alertname": rules.PROVIDER_DOWN, "severity": "critical", "provider": "groq"},
        {"alertname": rules.PROVIDER_DOWN, "severity": "critical", "provider": "openrouter"},
        {"alertname": rules.ALL_PROVIDERS_DOWN, "severity": "critical"},
        {"alertname": rules.WATCHDOG_DOWN, "severity": "critical"},
    ]
    _http(f"{url}/api/v2/alerts", [{"labels": labels} for labels in posted])
    muted: dict[str, bool] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alerts = _http(f"{url}/api/v2/alerts")
        muted = {}
        for alert in alerts:
            key = alert["labels"]["alertname"] + ":" + alert["labels"].get("provider", "")
            muted[key] = bool(alert["status"]["inhibitedBy"])
        if len(muted) == len(posted):
            break
        time.sleep(0.1)
    assert muted == {
        "BudgetWarning:": True, "BudgetCritical:": True, "BudgetExceeded:": False,
        "KillSwitchActive:": False, "ProviderDown:groq": True, "ProviderDown:openrouter": True,
        "AllProvidersDown:": False, "WatchdogDown:": False,
    }
