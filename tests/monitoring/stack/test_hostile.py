"""Hostile and odd stack files and host data: every one gets THE report (exit 2, line, path,
found, expected), never a traceback, never an echoed secret, and nothing unsafe is accepted.

Each class of issue 13 part A has several cases of its own, not only the reviewers' example.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.stack.load import StackError, check_overrides, load_host_data, parse_stack
from monitoring.stack.reader import MAX_BYTES, MAX_DEPTH
from monitoring.stack.schema import redact_secrets
from tasks.render.__main__ import EXIT_INVALID, main
from tests.conftest import STACK_FILE
from tests.monitoring.stack.test_load import _set

TEXT = STACK_FILE.read_text()
BASE: dict[str, Any] = yaml.safe_load(TEXT)
# Made at import time from pieces, so no secret-shaped literal sits in the repository.
SECRET = "sk-proj-" + "Qx7" * 6 + "9fK2" * 5
GROQ_SECRET = "gsk_" + "Wb4" * 15


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _base_for(path: str) -> dict[str, Any] | None:
    """Agent paths exist only for the generic JSON adapter: a stack that enrolls one third."""
    if not path.startswith("agents.2."):
        return None
    data = copy.deepcopy(BASE)
    data["agents"] = [*data["agents"][:2], {
        "name": "mytool", "adapter": "generic-json",
        "path": {"linux": "~/.mytool/config.json", "windows": "~\\.mytool\\config.json"}}]
    return data


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> str:
    data = copy.deepcopy(base or BASE)
    _set(path, value)(data)
    return _dump(data)


def _report(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            host_data: str | bytes | None = None) -> str:
    """Run the render CLI on ``text``: it must exit 2 with the report and write nothing."""
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(text, encoding="utf-8")
    argv = ["--stack", str(stack_file), "--out", str(tmp_path / "build")]
    if host_data is not None:
        host_file = tmp_path / "host.yaml"
        if isinstance(host_data, bytes):
            host_file.write_bytes(host_data)
        else:
            host_file.write_text(host_data, encoding="utf-8")
        argv += ["--host-data", str(host_file)]
    assert main(argv) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "nothing was rendered or deployed" in err, err
    assert "      found:    " in err, err
    assert "      expected: " in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "build").exists()
    return err


# --------------------------------------------------------------------------- 1. no traceback

def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


COSTLY_OR_ODD: list[tuple[str, str, str]] = [
    ("billion laughs", _bomb(9), "alias counted expanded"),
    ("alias bomb inside a valid section", TEXT.replace(
        "litellm:\n", "litellm:\n  x: &x [" + ", ".join(["y"] * 300) + "]\n"
        "  xx: [" + ", ".join(["*x"] * 300) + "]\n", 1), "alias counted expanded"),
    ("anchor containing itself", "a: &a [1, *a]\n", "inside its own anchor"),
    ("mapping anchor containing itself", "a: &a {b: *a}\n", "inside its own anchor"),
    ("alias to no anchor", "a: *nowhere\n", "to no anchor"),
    ("list as a key", "? [a, b]\n: 1\n", "used as a key"),
    ("mapping as a key", "{a: 1}: 2\n", "used as a key"),
    ("mapping as a key through an alias", "x: &m {a: 1}\ny: {*m : 2}\n", "used as a key"),
    ("flow nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nesting"),
    ("block nesting", "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "x\n",
     "levels of nesting"),
    ("an integer Python will not convert", "a: " + "7" * 5000 + "\n", "cannot convert"),
    ("an impossible date", "a: 2026-02-30\n", "cannot convert"),
    ("a tab for indentation", "a:\n\tb: 1\n", "syntax error"),
    ("a Python tag", "a: !!python/object:os.system x\n", "syntax error"),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in COSTLY_OR_ODD],
                         ids=[c[0] for c in COSTLY_OR_ODD])
def test_costly_or_odd_yaml_gets_the_report_quickly(
        text: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    report = _report(text, tmp_path, capsys)
    assert words in report, report
    # Bounded: no expansion, no recursion. Generous for a loaded 2-core machine.
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999"])
@pytest.mark.parametrize("path", ["budget.monthly_usd", "litellm.models.gpt-4.input_usd_per_1k",
                                  "watchdog.probe_interval", "alerts.provider_down_for"])
def test_numbers_that_are_not_finite_are_refused(
        path: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _with(path, "PLACEHOLDER").replace("PLACEHOLDER", value)
    report = _report(text, tmp_path, capsys)
    assert path in report


def test_a_duration_too_long_for_a_float_is_refused() -> None:
    with pytest.raises(StackError, match=r"at most 10 years"):
        parse_stack(_with("prometheus.retention", "9" * 400 + "s"))
    with pytest.raises(StackError, match=r"at most 10 years"):
        parse_stack(_with("prometheus.retention", 10**400))


def test_a_directory_or_a_missing_path_gets_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, words in ((tmp_path, "not a directory"), (tmp_path / "nope.yaml", "no such file")):
        assert main(["--stack", str(path), "--out", str(tmp_path / "build")]) == EXIT_INVALID
        err = capsys.readouterr().err
        assert words in err, err
        assert "Traceback" not in err


def test_a_10_mb_file_is_refused_in_well_under_a_second(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "stack.yaml"
    big.write_bytes(b"a: " + b"[x, " * (10 * 1024 * 1024 // 4) + b"]\n")
    started = time.monotonic()
    assert main(["--stack", str(big), "--out", str(tmp_path / "build")]) == EXIT_INVALID
    elapsed = time.monotonic() - started
    assert "at most 1,048,576 bytes" in capsys.readouterr().err
    assert elapsed < 0.5, elapsed


def test_a_file_just_over_the_limit_is_refused_and_one_under_is_read() -> None:
    padding = "#" * (MAX_BYTES - len(TEXT.encode()) - 1) + "\n"
    parse_stack(TEXT + padding)  # at the limit: read and valid
    with pytest.raises(StackError, match="at most 1,048,576 bytes"):
        parse_stack(TEXT + padding + "#\n")


HOST_DATA: list[tuple[str, str | bytes, str]] = [
    ("does not parse", "stack:\n  linux: {user: [\n", "syntax error"),
    ("not UTF-8", b"stack:\n  linux: {user: \xff\xfe}\n", "not UTF-8"),
    ("a list", "- stack\n", "a mapping"),
    ("a scalar", "just text\n", "a mapping"),
    ("stack is a list", "stack: [linux]\n", "a mapping shaped like stack.yaml"),
    ("stack is empty", "stack:\n", "a mapping shaped like stack.yaml"),
    ("stack is an empty mapping", "stack: {}\n", "changes nothing"),
    ("a key twice", "stack:\n  linux: {user: a}\n  linux: {user: b}\n", "appears twice"),
    ("a key twice, deeper", "stack:\n  linux:\n    user: a\n    user: b\n", "appears twice"),
    ("a number that is not finite", "stack:\n  budget: {monthly_usd: .inf}\n", "finite"),
    ("a non-string key", "stack:\n  1: x\n", "a name"),
    ("a bomb", "stack:\n  " + _bomb(9).replace("\n", "\n  "), "alias counted expanded"),
]


@pytest.mark.parametrize(("host_data", "words"), [c[1:] for c in HOST_DATA],
                         ids=[c[0] for c in HOST_DATA])
def test_bad_host_data_gets_the_report(host_data: str | bytes, words: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(TEXT, tmp_path, capsys, host_data)
    assert words in report, report
    assert "host.yaml" in report


@pytest.mark.parametrize("overrides", [
    None, {}, [], "linux", {"budget": {"monthly_usd": float("nan")}}, {1: "x"},
    {"linux": {"user": {"a", "b"}}},
])
def test_pyinfra_host_data_is_checked_like_the_file(overrides: Any) -> None:
    """deploy.py passes pyinfra's Python values: the same checks, the same report."""
    with pytest.raises(StackError) as caught:
        check_overrides(overrides)
    assert "found:" in str(caught.value)


def test_host_data_without_the_stack_key_is_the_overrides(tmp_path: Path) -> None:
    host = tmp_path / "host.yaml"
    host.write_text("linux: {user: pavel}\n")
    assert load_host_data(host) == {"linux": {"user": "pavel"}}


# --------------------------------------------------------------------------- 2. secrets

SECRET_PLACES: list[tuple[str, str]] = [
    ("a pasted key as a key", TEXT.replace("  probe_interval: 1s\n",
                                           f"  probe_interval: 1s\n  {SECRET}: 1\n", 1)),
    ("a pasted key as a section", TEXT + f"{GROQ_SECRET}: x\n"),
    ("a pasted key as a model alias in fallbacks",
     _with("litellm.fallbacks.groq-70b", ["groq-8b", SECRET.lower()])),
    ("a pasted key on the allow-list", _with("budget.free_allow_list",
                                             ["kilo-code", SECRET.lower()])),
    ("a pasted key as a port", _with("litellm.listen.port", GROQ_SECRET)),
    ("a pasted key as a duration", _with("watchdog.min_dwell", SECRET)),
    ("a pasted key as a task name twice",
     _with("windows.tasks.watchdog", SECRET, yaml.safe_load(_with("windows.tasks.litellm",
                                                                   SECRET)))),
    ("a pasted key as an email password env", _with(
        "alertmanager.receivers.email.auth_password_env", GROQ_SECRET)),
]


@pytest.mark.parametrize("text", [c[1] for c in SECRET_PLACES], ids=[c[0] for c in SECRET_PLACES])
def test_a_secret_is_redacted_wherever_it_appears(
        text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(text, tmp_path, capsys)
    for secret in (SECRET, SECRET.lower(), GROQ_SECRET):
        assert secret not in report
        assert secret[8:30] not in report
    assert "[redacted]" in report or "redacted: looks like a secret" in report


def test_a_secret_in_host_data_keys_is_redacted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(TEXT, tmp_path, capsys, f"stack:\n  linux: {{{SECRET}: 1}}\n")
    assert SECRET not in report
    assert "[redacted]" in report


@pytest.mark.parametrize("harmless", [
    "provider-fallback-watchdog.service", "meta-llama/llama-3.3-70b-instruct:free",
    "/var/lib/grafana/dashboards/provider-fallback", "ProviderFallback-Alertmanager",
    "llama-3.1-405b-instruct-turbo", "https://generativelanguage.googleapis.com/v1beta/openai",
])
def test_redaction_leaves_names_paths_and_urls(harmless: str) -> None:
    assert redact_secrets(f"found: {harmless!r}") == f"found: {harmless!r}"


@pytest.mark.parametrize("secret", [
    SECRET, GROQ_SECRET, "AIza" + "Sy" * 10, "0123456789abcdef" * 2,
    "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi", "ghp_" + "a1" * 18,
])
def test_redaction_catches_key_shapes_in_any_position(secret: str) -> None:
    for text in (f"found: {secret!r}", f"a.b.{secret}.c", f"key={secret};", f"[{secret}]"):
        assert secret not in redact_secrets(text)


# --------------------------------------------------------------------------- 3. not as it looks

REFUSED: list[tuple[str, str, Any, str]] = [
    # IPv6 zones carrying shell or workflow-expression characters
    ("zone with $()", "litellm.listen.host", "fe80::1%$(id)", "IPv6 zone"),
    ("zone with ${{ }}", "watchdog.listen.host", "fe80::1%${{github.token}}", "IPv6 zone"),
    ("zone with a quote", "prometheus.listen.host", "fe80::1%a'b", "IPv6 zone"),
    ("zone with a space", "alertmanager.listen.host", "fe80::1%a b", "IPv6 zone"),
    # versions that only normalize to a refused release, or are not spelled canonically
    ("1.82.07 is 1.82.7", "litellm.version", "1.82.07", "compromised"),
    ("1.082.8 is 1.82.8", "litellm.version", "1.082.8", "compromised"),
    ("1.107.01 is 1.107.1", "litellm.version", "1.107.01", "compromised"),
    ("01.108.7 is not canonical", "litellm.version", "01.108.7", "canonical spelling 1.108.7"),
    ("1.108.07 is not canonical", "litellm.version", "1.108.07", "canonical spelling"),
    ("version with a newline", "litellm.version", "1.108.7\n", "exact version"),
    ("version with Arabic-Indic digits", "litellm.version", "1.108.\u0667", "exact version"),
    ("version with full-width digits", "litellm.version", "\uff11.108.7", "exact version"),
    # variable names
    ("env name with a newline", "litellm.master_key_env", "LITELLM_MASTER_KEY\n",
     "environment variable NAME"),
    ("env name with non-ASCII", "litellm.master_key_env", "MASTER_K\u0130Y", "NAME"),
    ("env name lower case", "litellm.models.groq-70b.api_key_env", "groq_key", "NAME"),
    ("env name with a dash", "litellm.models.groq-70b.api_key_env", "GROQ-KEY", "NAME"),
    ("env name starting with a digit", "litellm.master_key_env", "1KEY", "NAME"),
    ("PATH", "litellm.master_key_env", "PATH", "used by the system"),
    ("HOME", "litellm.models.gpt-4.api_key_env", "HOME", "used by the system"),
    ("LD_PRELOAD", "litellm.master_key_env", "LD_PRELOAD", "used by the system"),
    ("PYTHONPATH", "litellm.master_key_env", "PYTHONPATH", "used by the system"),
    ("GITHUB_TOKEN", "litellm.master_key_env", "GITHUB_TOKEN", "used by the system"),
    ("SYSTEMROOT", "alertmanager.receivers.email.auth_password_env", "SYSTEMROOT",
     "used by the system"),
    # Windows paths with %, relative host paths, dot segments
    ("% in the install root", "windows.install_root", "C:\\%TEMP%\\pf", "without %"),
    ("% in an agent path", "agents.2.path.windows", "~\\%APPDATA%\\kilo.json", "without %"),
    ("% in the python path", "windows.python", "C:\\Py%x%\\python.exe", "without %"),
    ("% in a grafana dir", "grafana.dashboards_dir.windows", "C:\\G%USERNAME%", "without %"),
    ("relative install root", "windows.install_root", "ProgramData\\PF", "absolute"),
    ("relative agent path", "agents.2.path.linux", ".kilocode/kilocode.json", "absolute"),
    ("relative grafana dir", "grafana.provisioning_dir.linux", "etc/grafana", "absolute"),
    ("home in a grafana dir", "grafana.dashboards_dir.linux", "~/dashboards", "absolute"),
    ("relative provider config", "budget.provider_config.windows", "kilo\\x.json", "absolute"),
    ("dot-dot in a linux dir", "linux.state_dir", "/var/lib/../../etc", "'..'"),
    ("dot-dot in a windows path", "windows.install_root", "C:\\PF\\..\\Windows", "'..'"),
    ("a second colon", "windows.install_root", "C:\\PF:stream", "second ':'"),
    # task names
    ("task named .", "windows.tasks.litellm", ".", "not '.' or '..'"),
    ("task named ..", "windows.tasks.watchdog", "..", "not '.' or '..'"),
    ("task name with a trailing dot", "windows.tasks.prometheus", "Prom.", "end with '.'"),
    ("task folder ..", "windows.tasks.folder", "\\..\\", "not '.' or '..'"),
    # durations Prometheus rounds to its unset 0s
    ("half a millisecond", "prometheus.retention", "0.5ms", "at least 1ms"),
    ("a tenth of a millisecond as seconds", "alerts.provider_down_for", 0.0001, "at least 1ms"),
    ("a group wait of 0.2ms", "alertmanager.route.group_wait", "0.2ms", "at least 1ms"),
    ("a duration in non-ASCII digits", "prometheus.retention", "\u0661\u0665d", "duration"),
    ("retention of a century", "prometheus.retention", "100y", "at most 10 years"),
    # label names Alertmanager refuses
    ("label with a dash", "alertmanager.route.group_by", ["alertname", "provider-name"],
     "a value matching"),
    ("label starting with a digit", "alertmanager.route.group_by", ["1provider"],
     "a value matching"),
    ("label with non-ASCII", "alertmanager.route.group_by", ["provid\u00e9r"], "a value matching"),
    # free text with line breaks or bidi overrides
    ("label with a newline", "targets.1.label", "Kilo\nCode", "one line"),
    ("title with a bidi override", "grafana.dashboard.title", "abc\u202edcba", "one line"),
    ("event source with NUL", "windows.event_log.source", "Provider\x00Fallback", "one line"),
    # URLs that are not only a URL
    ("URL with a newline", "litellm.models.gpt-4.api_base", "https://api.openai.com/v1\n", "URL"),
    ("URL with a quote", "litellm.models.gpt-4.api_base", "https://api.openai.com/v1'x", "URL"),
    ("URL with a space", "alertmanager.receivers.webhook.url", "https://h/a b", "URL"),
    ("URL with a bad port", "alertmanager.receivers.webhook.url", "https://h:99999/", "URL"),
    ("smarthost with non-ASCII digits", "alertmanager.receivers.email.smarthost",
     "mail.test:\u0665\u0668\u0667", "a value matching"),
]


@pytest.mark.parametrize(("path", "value", "words"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_values_that_are_not_what_they_look_like_are_refused(
        path: str, value: Any, words: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(_with(path, value, _base_for(path)), tmp_path, capsys)
    assert path in report, report
    assert words in report, report


@pytest.mark.parametrize(("path", "value"), [
    ("litellm.listen.host", "fe80::1%eth0"),
    ("litellm.listen.host", "fe80::1%enp0s31f6.100"),
    ("litellm.version", "1.108.7"),
    ("litellm.version", "1.82.6"),
    ("litellm.master_key_env", "PF_MASTER_KEY"),
    ("windows.install_root", "D:\\Provider Fallback"),
    ("agents.2.path.windows", "C:\\Users\\dev\\.mytool\\config.json"),
    ("targets.1.label", "Kilo Code \u2019s own: $(x) `y` ${{ z }} {{ w }} <v> & 'u' \"t\""),
    ("alertmanager.route.group_by", ["..."]),
    ("prometheus.retention", "1ms"),
])
def test_the_honest_spelling_is_still_accepted(path: str, value: Any) -> None:
    parse_stack(_with(path, value, _base_for(path)))


def test_two_units_with_one_name_are_refused() -> None:
    with pytest.raises(StackError, match=r"linux\.units\.litellm already uses it"):
        parse_stack(_with("linux.units.watchdog", BASE["linux"]["units"]["litellm"]))
    with pytest.raises(StackError, match="no package uses"):
        parse_stack(_with("linux.units.litellm", "prometheus.service"))


@pytest.mark.parametrize(("path", "plain"), [
    ("targets.1.label", "Off"), ("targets.1.label", "No"), ("grafana.dashboard.title", "yes"),
    ("windows.event_log.log", "on"), ("targets.1.model", "012"), ("targets.1.label", "~"),
])
def test_yaml_11_booleans_and_numbers_where_text_belongs_say_quote_it(
        path: str, plain: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _with(path, "PLACEHOLDER").replace("PLACEHOLDER", plain)
    report = _report(text, tmp_path, capsys)
    assert f'quote it, e.g. "{plain}"' in report, report
    parse_stack(_with(path, plain))  # quoted, it is a fine string


# --------------------------------------------------------------------------- 4. merge keys

MERGED = TEXT.replace(
    "    groq-70b:\n      provider: groq\n",
    "    groq-70b: &groq\n      provider: groq\n", 1).replace(
    "    groq-8b:\n      provider: groq\n      upstream_model: llama-3.1-8b-instant\n"
    "      api_base: https://api.groq.com/openai/v1\n      api_key_env: GROQ_API_KEY\n"
    "      input_usd_per_1k: 0\n      output_usd_per_1k: 0\n      is_free: true\n",
    "    groq-8b:\n      <<: *groq\n      upstream_model: llama-3.1-8b-instant\n", 1).replace(
    "    auth:    {retries: 0, allowed_fails: 1}",
    "    auth:    &strict {retries: 0, allowed_fails: 1}", 1).replace(
    "    config:  {retries: 0, allowed_fails: 1}", "    config:  {<<: *strict}", 1)


def test_merge_keys_are_standard_yaml_and_accepted() -> None:
    assert "<<: *groq" in MERGED
    assert "<<: *strict" in MERGED
    assert parse_stack(MERGED) == parse_stack(TEXT)


def _line_of(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[:text.index(needle, start)].count("\n") + 1


def test_a_problem_in_a_merging_mapping_has_its_own_line() -> None:
    text = MERGED.replace("      upstream_model: llama-3.1-8b-instant\n",
                          "      upstream_model: llama-3.1-8b-instant\n      is_fre: true\n", 1)
    with pytest.raises(StackError) as caught:
        parse_stack(text)
    line = _line_of(text, "is_fre: true")
    assert f"line {line}: litellm.models.groq-8b.is_fre" in str(caught.value)


def test_a_problem_in_a_merged_key_points_at_the_anchor() -> None:
    text = MERGED.replace("      api_key_env: GROQ_API_KEY\n", "      api_key_env: groq\n", 1)
    with pytest.raises(StackError) as caught:
        parse_stack(text)
    line = _line_of(text, "api_key_env: groq")
    report = str(caught.value)
    assert f"line {line}: litellm.models.groq-70b.api_key_env" in report
    assert f"line {line}: litellm.models.groq-8b.api_key_env" in report


def test_an_explicit_key_wins_over_the_merged_one_and_keeps_its_line() -> None:
    text = MERGED.replace("      upstream_model: llama-3.1-8b-instant\n",
                          "      upstream_model: llama-3.1-8b-instant\n      is_free: maybe\n",
                          1)
    with pytest.raises(StackError) as caught:
        parse_stack(text)
    assert f"line {_line_of(text, 'is_free: maybe')}: litellm.models.groq-8b.is_free" in str(
        caught.value)


def test_a_merge_of_something_not_a_mapping_gets_the_report() -> None:
    with pytest.raises(StackError, match="syntax error"):
        parse_stack("a: &x [1]\nb: {<<: *x}\n")


