"""Windows artifacts: PowerShell that parses and quotes every value, Task Scheduler XML that says
what the stack says. Expected values are read from the stack and the layout, never re-typed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import PureWindowsPath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.stack.layout import (
    LEGACY_PROXY_MODULE,
    PROXY_MODULE,
    STOP_FILE_OPTION,
    Layout,
    host_env_names,
    layout,
    proxy_command,
    proxy_env,
    watchdog_command,
)
from monitoring.stack.load import StackError, parse_stack
from monitoring.stack.schema import Stack, prom_duration
from tasks.render import render, windows
from tasks.render.common import Rendered
from tests.conftest import STACK_FILE
from tests.support.powershell import (
    assert_parses,
    attribute_strings,
    commands,
    expandable_strings,
    script_assignments,
    verbatim_strings,
)

#: The Task Scheduler schema's namespace (a constant of Windows, not of the stack).
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
NS = {"t": TASK_NS}
SCRIPTS = ("manage-litellm.ps1", "firewall.ps1", "eventlog.ps1", "register-tasks.ps1")
TASK_KEYS = ("litellm", "watchdog", "prometheus", "alertmanager")
BOM = "\ufeff".encode()


# --------------------------------------------------------------------------- helpers


def split_cmdline(line: str) -> list[str]:
    """Split a Windows command line as CommandLineToArgvW (and Go, and the MS C runtime) do.

    Written independently of the renderer's quoting, so a round trip through both proves it.
    """
    args: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg: list[str] = []
        quoted = False
        while i < n:
            char = line[i]
            if char == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and line[j] == '"':
                    arg.append("\\" * (count // 2))
                    if count % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * count)
                i = j
            elif char == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            elif char in " \t" and not quoted:
                break
            else:
                arg.append(char)
                i += 1
        args.append("".join(arg))


def iso_seconds(text: str) -> int:
    """Seconds of an ISO-8601 duration as Task Scheduler writes them (PnDTnHnMnS)."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    assert match, f"not an ISO-8601 duration: {text!r}"
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def script(rendered: Rendered, name: str) -> bytes:
    return rendered[f"windows/scripts/{name}"].data


def task_names(stack: Stack) -> dict[str, str]:
    tasks = stack.windows.tasks
    return {key: getattr(tasks, key) for key in TASK_KEYS}


def parse_xml(data: bytes) -> ET.Element:
    """Our own rendered bytes, not untrusted input."""
    return ET.fromstring(data)  # noqa: S314


def task_xml(rendered: Rendered, stack: Stack, key: str) -> ET.Element:
    name = task_names(stack)[key]
    uri = stack.windows.tasks.folder + name
    roots = [parse_xml(a.data) for rel, a in rendered.items() if rel.startswith("windows/tasks/")]
    matches = [r for r in roots
               if r.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == uri]
    assert len(matches) == 1, f"one task XML for {name!r}"
    return matches[0]


def exec_argv(root: ET.Element) -> list[str]:
    command = root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS)
    arguments = root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS)
    assert command
    assert arguments is not None
    return split_cmdline(command) + split_cmdline(arguments)


def with_tasks(stack: Stack, **update: Any) -> Stack:
    """The stack with windows.tasks fields replaced (no validation: tests the renderer's own)."""
    tasks = stack.windows.tasks.model_copy(update=update)
    return stack.model_copy(update={"windows": stack.windows.model_copy(update={"tasks": tasks})})


@pytest.fixture(scope="module")
def win(stack: Stack, windows_layout: Layout) -> Rendered:
    return windows.artifacts(stack, windows_layout)


# --------------------------------------------------------------------------- the set of files


def test_every_artifact_is_rendered_where_the_layout_says(
        win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    lay = windows_layout
    assert lay.scripts_dir is not None
    expected = {f"windows/scripts/{name}": lay.join(lay.scripts_dir, name) for name in SCRIPTS}
    expected |= {f"windows/tasks/{name}.xml": lay.join(lay.config_dir, "tasks", f"{name}.xml")
                 for name in task_names(stack).values()}
    assert {rel: a.dest for rel, a in win.items()} == expected
    assert not any(a.secret for a in win.values())


def test_render_for_windows_includes_these_artifacts(
        win: Rendered, rendered_windows: Rendered) -> None:
    for rel, artifact in win.items():
        assert rendered_windows[rel] == artifact


def test_render_refuses_a_layout_without_scripts_dir(stack: Stack) -> None:
    with pytest.raises(ValueError, match="scripts directory"):
        windows.artifacts(stack, layout(stack, "linux"))


def test_rendering_twice_gives_identical_bytes(stack: Stack, windows_layout: Layout) -> None:
    first = windows.artifacts(stack, windows_layout)
    fresh = parse_stack(STACK_FILE.read_text(encoding="utf-8"))
    second = windows.artifacts(fresh, layout(fresh, "windows"))
    assert {rel: a.data for rel, a in first.items()} == {rel: a.data for rel, a in second.items()}


def test_no_secret_value_reaches_a_windows_artifact(stack: Stack) -> None:
    secrets = {name: f"sk-test-{name.lower()}-0123456789abcdef"
               for name in stack.secret_env_names()}
    rendered = render(stack, "windows", secrets)
    for rel, artifact in rendered.items():
        for value in secrets.values():
            assert value.encode() not in artifact.data, f"{rel} holds a secret value"


# --------------------------------------------------------------------------- PowerShell


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses_and_is_strict(win: Rendered, name: str) -> None:
    data = script(win, name)
    assert data.startswith(BOM), "Windows PowerShell 5.1 reads a script without BOM as ANSI"
    assert_parses(data, name)
    assert ("Set-StrictMode", ("-Version",)) in [(c.name, c.parameters) for c in commands(data)]
    assert re.search(rb"^Set-StrictMode -Version Latest$", data, re.M)
    assert script_assignments(data)["ErrorActionPreference"] == ["Stop"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_uses_nothing_newer_than_windows_powershell_5_1(win: Rendered, name: str) -> None:
    text = script(win, name).decode("utf-8")
    for construct in ("??", "?.", "&&", "||", "-Parallel", "clean {", "-AsByteStream"):
        assert construct not in text, f"{name} uses {construct!r} (PowerShell 7 only)"


def test_manage_script_takes_a_validated_action(win: Rendered) -> None:
    data = script(win, "manage-litellm.ps1")
    assert attribute_strings(data, "ValidateSet") == [["start", "stop", "status", "restart", "run"]]
    assert re.search(rb"^param\($", data, re.M), "a real param() block"


def test_manage_script_runs_the_exact_proxy_command(
        win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    values = script_assignments(script(win, "manage-litellm.ps1"))
    command = proxy_command(stack, windows_layout)
    assert values["Python"] == [command[0]]
    assert [split_cmdline(v) for v in values["ProxyArguments"]] == [command[1:]]
    assert values["ProxyEnvironment"] == [x for kv in proxy_env(stack).items() for x in kv]
    assert values["SecretNames"] == list(host_env_names(stack).values())
    assert "PF_GROQ_API_KEY" in values["SecretNames"]
    assert values["DefaultKeyNames"] == [n for n, h in host_env_names(stack).items() if n != h]
    assert "GROQ_API_KEY" in values["DefaultKeyNames"]
    assert windows_layout.litellm_config in values["ProxyMarkers"]
    # A proxy of this release or of the one before (an upgrade's restart must stop it).
    assert values["ProxyModules"] == [PROXY_MODULE, LEGACY_PROXY_MODULE]
    assert command[1:4] == ["-m", PROXY_MODULE, STOP_FILE_OPTION]


def test_manage_script_asks_for_a_clean_stop_before_any_force(
        win: Rendered, windows_layout: Layout) -> None:
    """Windows has no SIGTERM: the stop file the proxy watches (monitoring.proxy.serve) comes
    first, and Stop-Process only for what is still running after the grace period."""
    data = script(win, "manage-litellm.ps1")
    values = script_assignments(data)
    assert values["StopFile"] == [windows_layout.proxy_stop_file]
    assert windows_layout.proxy_stop_file in proxy_command_of(values)
    stop_proxy = data[data.index(b"function Stop-Proxy"):]
    assert stop_proxy.index(b"Request-CleanStop") < stop_proxy.index(b"Stop-Process")


def proxy_command_of(values: dict[str, list[str]]) -> list[str]:
    return split_cmdline(values["ProxyArguments"][0])


def test_manage_script_paths_come_from_the_layout(
        win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    lay = windows_layout
    values = script_assignments(script(win, "manage-litellm.ps1"))
    assert values["StateDir"] == [lay.state_dir]
    assert values["LogDir"] == [lay.log_dir]
    assert PureWindowsPath(values["PidFile"][0]).parent == PureWindowsPath(lay.state_dir)
    for log in values["StdoutLog"] + values["StderrLog"]:
        assert PureWindowsPath(log).parent == PureWindowsPath(lay.log_dir)
    assert values["TaskName"] == [stack.windows.tasks.litellm]
    assert values["TaskFolder"] == [stack.windows.tasks.folder.rstrip("\\")]


def test_manage_script_probes_liveliness_never_health(win: Rendered, stack: Stack) -> None:
    data = script(win, "manage-litellm.ps1")
    listen = stack.litellm.listen
    urls = [s.value for s in verbatim_strings(data) if "://" in s.value]
    origin = f"http://{listen.host}:{listen.port}"  # the proxy's CORS origin, not probed
    assert sorted(urls) == [origin, f"{origin}/health/liveliness"]
    assert b"/health'" not in data
    assert b'/health"' not in data


def test_manage_script_stops_only_its_own_proxy(win: Rendered) -> None:
    data = script(win, "manage-litellm.ps1")
    found = commands(data)
    assert not [c for c in found if c.name.lower() in ("taskkill", "taskkill.exe", "pkill")]
    for cmd in found:
        if cmd.name.lower() in ("stop-process", "get-process"):
            assert "-Name" not in cmd.parameters, cmd.text
    stops = [c for c in found if c.name == "Stop-Process"]
    assert stops
    assert all("-Id" in c.parameters for c in stops)
    for word in (b"Win32_Process", b"$ProxyMarkers", b"$PidFile"):
        assert word in data


def test_manage_script_waits_with_a_deadline_not_a_fixed_sleep(win: Rendered) -> None:
    data = script(win, "manage-litellm.ps1")
    sleeps = [c for c in commands(data) if c.name == "Start-Sleep"]
    assert sleeps
    assert all(c.parameters == ("-Milliseconds",) for c in sleeps)
    assert b"Stopwatch]::StartNew()" in data
    assert b"$TimeoutSeconds" in data


def test_manage_script_starts_hidden_and_records_the_pid(win: Rendered) -> None:
    data = script(win, "manage-litellm.ps1")
    assert b"$info.CreateNoWindow = $true" in data
    assert b"ProcessWindowStyle]::Hidden" in data
    assert b"WriteAllText($PidFile, [string]$process.Id)" in data


def test_manage_script_documents_every_exit_code(win: Rendered) -> None:
    text = script(win, "manage-litellm.ps1").decode("utf-8")
    notes = text.split(".NOTES", 1)[1].split("#>", 1)[0]
    documented = {int(n) for n in re.findall(r"^\s+(\d+)\s{2,}", notes, re.M)}
    assert documented >= {0, 1, 2, 3, 4, 5}
    used = {int(n) for n in re.findall(r"\b(?:exit|return) (\d+)\b", text)}
    assert used, "the script sets exit codes"
    assert used <= documented, f"undocumented exit codes: {used - documented}"


def test_firewall_script_matches_the_stack(win: Rendered, stack: Stack) -> None:
    data = script(win, "firewall.ps1")
    fw = stack.windows.firewall
    values = script_assignments(data)
    assert values["RuleName"] == [fw.name]
    assert values["LocalPort"] == [str(stack.litellm.listen.port)]
    assert values["Profiles"] == sorted(set(fw.profiles))
    assert values["RemoteAddresses"] == fw.remote_addresses
    wanted = {"-Direction", "-Action", "-Protocol", "-LocalPort", "-Profile", "-RemoteAddress"}
    by_name = {c.name: set(c.parameters) for c in commands(data)}
    assert wanted <= by_name["New-NetFirewallRule"]
    assert wanted <= by_name["Set-NetFirewallRule"]
    for word in (b"-Direction Inbound", b"-Action Allow", b"-Protocol TCP",
                 b"'created'", b"'updated'", b"'unchanged'"):
        assert word in data


def test_eventlog_script_registers_the_stack_source(win: Rendered, stack: Stack) -> None:
    data = script(win, "eventlog.ps1")
    values = script_assignments(data)
    assert values["Source"] == [stack.windows.event_log.source]
    assert values["LogName"] == [stack.windows.event_log.log]
    assert b"SourceExists($Source)" in data
    assert b"CreateEventSource($Source, $LogName)" in data


def test_register_script_registers_every_task_xml(win: Rendered, stack: Stack) -> None:
    data = script(win, "register-tasks.ps1")
    values = script_assignments(data)
    assert values["TaskPath"] == [stack.windows.tasks.folder]
    xml_dests = {a.dest for rel, a in win.items() if rel.startswith("windows/tasks/")}
    triples = values["Tasks"]
    names = triples[0::3]
    assert names == list(task_names(stack).values())
    assert set(triples[1::3]) == xml_dests
    lay = layout(stack, "windows")
    assert triples[2::3] == [lay.python, watchdog_command(lay)[0], lay.prometheus_bin,
                             lay.alertmanager_bin]
    register = [c for c in commands(data) if c.name == "Register-ScheduledTask"]
    assert len(register) == 1
    assert {"-Xml", "-TaskName", "-TaskPath", "-Force"} <= set(register[0].parameters)
    assert b"Get-Content -LiteralPath $task.Xml -Raw -Encoding UTF8" in data


# --------------------------------------------------------------------------- task XML


@pytest.mark.parametrize("key", TASK_KEYS)
def test_task_xml_has_the_settings_of_the_stack(win: Rendered, stack: Stack, key: str) -> None:
    root = task_xml(win, stack, key)
    tasks = stack.windows.tasks
    assert root.tag == f"{{{TASK_NS}}}Task"
    assert tuple(int(p) for p in root.attrib["version"].split(".")) >= (1, 2)

    def text(path: str) -> str | None:
        return root.findtext(path, namespaces=NS)

    assert text("t:RegistrationInfo/t:URI") == tasks.folder + task_names(stack)[key]
    assert text("t:Triggers/t:LogonTrigger/t:Enabled") == "true"
    assert text("t:Principals/t:Principal/t:RunLevel") == "LeastPrivilege"
    assert root.find("t:Principals/t:Principal/t:UserId", NS) is None  # added at registration
    assert text("t:Settings/t:StartWhenAvailable") == "true"
    assert text("t:Settings/t:IdleSettings/t:StopOnIdleEnd") == "false"
    assert text("t:Settings/t:DisallowStartIfOnBatteries") == "false"
    assert text("t:Settings/t:StopIfGoingOnBatteries") == "false"
    assert text("t:Settings/t:MultipleInstancesPolicy") == "IgnoreNew"
    assert text("t:Settings/t:ExecutionTimeLimit") == "PT0S"
    interval = text("t:Settings/t:RestartOnFailure/t:Interval")
    assert interval is not None
    assert iso_seconds(interval) == round(tasks.restart_interval)
    assert text("t:Settings/t:RestartOnFailure/t:Count") == str(tasks.restart_count)
    assert text("t:Actions/t:Exec/t:WorkingDirectory")


def test_litellm_task_runs_the_manage_script(
        win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    argv = exec_argv(task_xml(win, stack, "litellm"))
    manage = win["windows/scripts/manage-litellm.ps1"].dest
    assert PureWindowsPath(argv[0]).name.lower() == "powershell.exe"
    assert "-NoProfile" in argv
    assert argv[argv.index("-ExecutionPolicy") + 1] == "Bypass"
    assert argv[argv.index("-File") + 1] == manage
    assert argv[argv.index("-File") + 2:] == ["-Action", "run"]


def test_watchdog_task_runs_the_watchdog_command(
        win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    assert exec_argv(task_xml(win, stack, "watchdog")) == watchdog_command(windows_layout)


def test_prometheus_task_flags(win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    lay, prom = windows_layout, stack.prometheus
    argv = exec_argv(task_xml(win, stack, "prometheus"))
    assert argv[0] == lay.prometheus_bin
    assert sorted(argv[1:]) == sorted([
        f"--config.file={lay.prometheus_config}",
        f"--web.listen-address={prom.listen.host}:{prom.listen.port}",
        f"--storage.tsdb.path={lay.prometheus_data}",
        f"--storage.tsdb.retention.time={prom_duration(prom.retention)}",
    ])


def test_alertmanager_task_flags(win: Rendered, stack: Stack, windows_layout: Layout) -> None:
    lay, am = windows_layout, stack.alertmanager
    argv = exec_argv(task_xml(win, stack, "alertmanager"))
    assert argv[0] == lay.alertmanager_bin
    assert sorted(argv[1:]) == sorted([
        f"--config.file={lay.alertmanager_config}",
        f"--web.listen-address={am.listen.host}:{am.listen.port}",
        f"--storage.path={lay.alertmanager_data}",
        "--cluster.listen-address=",
    ])


def test_task_xml_stays_well_formed_with_markup_in_names(stack: Stack) -> None:
    markup = "<&>\"'"
    odd = parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides={"windows": {"tasks": {
        "folder": f"\\PF {markup}\\",
        **{key: f"{key} {markup}" for key in TASK_KEYS},
    }}})
    lay = layout(odd, "windows")
    rendered = windows.artifacts(odd, lay)
    for key in TASK_KEYS:
        root = task_xml(rendered, odd, key)  # parses, and the URI round-trips
        assert root.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == (
            odd.windows.tasks.folder + getattr(odd.windows.tasks, key))
    for rel, artifact in rendered.items():
        name = PureWindowsPath(artifact.dest).name
        assert not set('<>"') & set(name), f"{name!r} is no Windows file name"
        assert rel.rsplit("/", 1)[-1] == name
    values = script_assignments(script(rendered, "register-tasks.ps1"))
    assert values["TaskPath"] == [odd.windows.tasks.folder]
    assert set(values["Tasks"][1::3]) == {a.dest for r, a in rendered.items() if r.endswith(".xml")}


# --------------------------------------------------------------------------- injection

#: Everything PowerShell would read as code or as the end of a string, if a value got out.
EVIL = "x 'a' \u2018b\u2019 \u201ac\u201b $(Stop-Computer) $env:USERNAME `t ; Remove-Item -r"
MARKER = b"Stop-Computer"
#: In a path: Windows allows no ':' after the drive (validation refuses it), so the variable
#: is written in PowerShell's other spelling.
EVIL_PATH = EVIL.replace("$env:USERNAME", "${env:USERNAME}").replace(":", "")


@pytest.fixture(scope="module")
def evil_stack() -> Stack:
    overrides = {"windows": {
        "install_root": f"C:\\PF {EVIL_PATH}",
        "python": f"C:\\Py {EVIL_PATH}\\python.exe",
        "firewall": {"name": f"LiteLLM {EVIL}",
                     "remote_addresses": ["LocalSubnet", f"10.0.0.0/8 {EVIL}"]},
        "tasks": {"folder": f"\\PF {EVIL}\\", **{key: f"{key} {EVIL}" for key in TASK_KEYS}},
        "event_log": {"source": f"Source {EVIL}", "log": f"Log {EVIL}"},
    }}
    return parse_stack(STACK_FILE.read_text(encoding="utf-8"), overrides=overrides)


@pytest.fixture(scope="module")
def evil(evil_stack: Stack) -> Rendered:
    return windows.artifacts(evil_stack, layout(evil_stack, "windows"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_hostile_values_stay_inside_single_quoted_literals(evil: Rendered, name: str) -> None:
    data = script(evil, name)
    assert_parses(data, name)
    body = data.removeprefix(BOM)
    literals = verbatim_strings(body)
    spans = [(lit.start_byte, lit.end_byte) for lit in literals]
    positions = [m.start() for m in re.finditer(re.escape(MARKER), body)]
    assert positions, "the hostile values reach the script"
    for pos in positions:
        assert any(start < pos < end for start, end in spans), (
            f"{name}: a hostile value is outside a single-quoted literal at byte {pos}")
    for text in expandable_strings(body):
        assert MARKER.decode() not in text


def test_each_hostile_value_is_one_literal(evil: Rendered, evil_stack: Stack) -> None:
    lay = layout(evil_stack, "windows")
    win = evil_stack.windows

    def values(name: str) -> set[str]:
        return {lit.value for lit in verbatim_strings(script(evil, name))}

    assert {lay.python, lay.litellm_config, lay.state_dir, win.tasks.litellm,
            win.tasks.folder.rstrip("\\")} <= values("manage-litellm.ps1")
    assert {win.firewall.name, *win.firewall.remote_addresses} <= values("firewall.ps1")
    assert {win.event_log.source, win.event_log.log} <= values("eventlog.ps1")
    assert {win.tasks.folder, *task_names(evil_stack).values()} <= values("register-tasks.ps1")
    manage = script_assignments(script(evil, "manage-litellm.ps1"))
    assert [split_cmdline(v) for v in manage["ProxyArguments"]] == [
        proxy_command(evil_stack, lay)[1:]]


def test_hostile_values_survive_the_task_xml(evil: Rendered, evil_stack: Stack) -> None:
    lay = layout(evil_stack, "windows")
    assert exec_argv(task_xml(evil, evil_stack, "watchdog")) == watchdog_command(lay)
    argv = exec_argv(task_xml(evil, evil_stack, "litellm"))
    assert argv[argv.index("-File") + 1] == evil["windows/scripts/manage-litellm.ps1"].dest
    argv = exec_argv(task_xml(evil, evil_stack, "prometheus"))
    assert argv[0] == lay.prometheus_bin
    assert f"--storage.tsdb.path={lay.prometheus_data}" in argv


# --------------------------------------------------------------------------- helpers and guards


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "PT0S"), (60, "PT1M"), (90, "PT1M30S"), (3600, "PT1H"), (86400, "P1D"),
    (93784, "P1DT2H3M4S"),
])
def test_iso8601_duration(seconds: int, text: str) -> None:
    assert windows.iso8601_duration(seconds) == text
    assert iso_seconds(text) == seconds


@given(st.lists(st.text(alphabet=st.sampled_from(list('ab \t"\\\'$`;%')), max_size=8), max_size=5))
def test_windows_cmdline_splits_back_into_the_same_arguments(args: list[str]) -> None:
    assert split_cmdline(windows.windows_cmdline(args)) == args


def test_quote_arg_keeps_simple_arguments_bare() -> None:
    assert windows.quote_arg("--port") == "--port"
    assert windows.quote_arg("") == '""'
    assert windows.quote_arg("C:\\a b\\") == '"C:\\a b\\\\"'


@pytest.mark.parametrize(("given_", "reported"), [
    ("LocalSubnet", "LocalSubnet"), ("10.0.0.0/8", "10.0.0.0/255.0.0.0"),
    ("192.168.1.7/32", "192.168.1.7"), ("10.1.2.3", "10.1.2.3"), ("fe80::/64", "fe80::/64"),
    ("10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9"),
])
def test_firewall_address_as_windows_reports_it(given_: str, reported: str) -> None:
    assert windows.firewall_address(given_) == reported


@pytest.mark.parametrize(("tasks", "field", "words"), [
    ({"restart_interval": "30s"}, "windows.tasks.restart_interval", "between 1m and 31d"),
    ({"restart_count": 256}, "windows.tasks.restart_count", "less than or equal to 255"),
    ({"litellm": "sub\\name"}, "windows.tasks.litellm", "a value matching"),
    ({"watchdog": "LITELLM-AUTOSTART"}, "windows.tasks.watchdog", "a name of its own"),
])
def test_task_settings_task_scheduler_refuses_are_refused_by_the_schema(
        tasks: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(StackError) as caught:
        parse_stack(STACK_FILE.read_text(), overrides={"windows": {"tasks": tasks}})
    assert field in str(caught.value)
    assert words in str(caught.value)


def test_two_task_names_that_make_one_file_name_are_refused(
        stack: Stack, windows_layout: Layout) -> None:
    with pytest.raises(ValueError, match="same file name"):
        windows.artifacts(with_tasks(stack, litellm="a<b", watchdog="a>b"), windows_layout)


def test_a_control_character_is_refused_before_it_breaks_the_xml(
        stack: Stack, windows_layout: Layout) -> None:
    with pytest.raises(ValueError, match="control character"):
        windows.artifacts(with_tasks(stack, prometheus="bell\x07"), windows_layout)
