"""stack.yaml validation: one report naming every bad field and its fix; nothing written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.stack.load import StackError, load_stack, parse_stack
from tasks.render.__main__ import EXIT_INVALID, main
from tests.conftest import STACK_FILE

BASE: dict[str, Any] = yaml.safe_load(STACK_FILE.read_text())
PASTED_GROQ = "gsk_" + "Zq8" * 17
PASTED_OPENAI = "sk-proj-" + "aB3dE6gH9" * 5


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]
    return mutate


def _rename(path: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        node[new] = node.pop(last)
    return mutate


def _text(mutate: Callable[[dict[str, Any]], None]) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    return yaml.safe_dump(data, sort_keys=False)


# (id, file text, a path the report must name, words of the fix it must give)
CASES: list[tuple[str, str, str, str]] = [
    ("wrong type", _text(_set("litellm.listen.port", "four thousand")),
     "litellm.listen.port", "valid integer"),
    ("typo'd key", _text(_rename("watchdog.probe_interval", "probe_intervl")),
     "watchdog.probe_intervl", "did you mean 'probe_interval'"),
    ("typo'd section", _text(_rename("grafana", "grafanna")),
     "grafanna", "did you mean 'grafana'"),
    ("missing field", _text(_delete("budget.monthly_usd")),
     "budget.monthly_usd", "required key: The monthly budget in US dollars"),
    ("dangling fallback", _text(_set("litellm.fallbacks.groq-70b", ["groq-405b"])),
     "litellm.fallbacks.groq-70b.0", "a model defined under litellm.models"),
    ("fallback from an unknown model", _text(_set("litellm.fallbacks.mistral", ["groq-70b"])),
     "litellm.fallbacks.mistral", "a model defined under litellm.models"),
    ("fallback to itself", _text(_set("litellm.fallbacks.groq-8b", ["groq-8b"])),
     "litellm.fallbacks.groq-8b.0", "cannot fall back to itself"),
    ("port clash", _text(_set("alertmanager.listen.port", 4000)),
     "alertmanager.listen.port", "not already used by litellm.listen"),
    ("exporter on 9090", _text(_set("watchdog.listen.port", 9090)),
     "watchdog.listen.port", "9090 is Prometheus' own"),
    ("compromised 1.82.7", _text(_set("litellm.version", "1.82.7")),
     "litellm.version", "known to be compromised"),
    ("compromised 1.107.x", _text(_set("litellm.version", "1.107.4")),
     "litellm.version", "known to be compromised"),
    ("unpinned version", _text(_set("litellm.version", ">=1.108")),
     "litellm.version", "exact version X.Y.Z"),
    ("negative budget", _text(_set("budget.monthly_usd", -20)),
     "budget.monthly_usd", "greater than 0"),
    ("misordered budget levels", _text(_set("budget.levels_percent.critical", 70)),
     "budget.levels_percent", "warning < critical < exceeded"),
    ("misordered backoff", _text(_set("watchdog.restart.backoff_initial", "10m")),
     "watchdog.restart.backoff_initial", "the backoff grows"),
    ("probe timeout over interval", _text(_set("watchdog.probe_timeout", "2s")),
     "watchdog.probe_timeout", "time out before the next one"),
    ("pasted Groq key", _text(_set("litellm.models.groq-70b.api_key_env", PASTED_GROQ)),
     "litellm.models.groq-70b.api_key_env", "looks like a pasted key"),
    ("pasted master key", _text(_set("litellm.master_key_env", PASTED_OPENAI)),
     "litellm.master_key_env", "looks like a pasted key"),
    ("lower-case env name", _text(_set("litellm.models.gpt-4.api_key_env", "openai_key")),
     "litellm.models.gpt-4.api_key_env", "environment variable NAME"),
    ("bad duration", _text(_set("watchdog.min_dwell", "a while")),
     "watchdog.min_dwell", "a duration such as"),
    ("zero duration", _text(_set("alerts.provider_down_for", "0s")),
     "alerts.provider_down_for", "positive duration"),
    ("paid model on the free allow-list",
     _text(_set("budget.free_allow_list", ["kilo-code", "gpt-4"])),
     "budget.free_allow_list.1", "only free models or targets"),
    ("unknown name on the allow-list",
     _text(_set("budget.free_allow_list", ["kilo-code", "groq-free"])),
     "budget.free_allow_list.1", "the name of a model"),
    ("target naming an unknown model", _text(_set("targets.2.model", "openrouter-paid")),
     "targets.2.model", "a model defined under litellm.models"),
    ("primary is not the proxy", _text(lambda d: d["targets"].reverse()),
     "targets.0.kind", "the first target (P1) is the local LiteLLM proxy"),
    ("unknown target kind", _text(_set("targets.1.kind", "proxy")),
     "targets.1", "kind: one of"),
    ("free model with a price", _text(_set("litellm.models.groq-8b.input_usd_per_1k", 0.01)),
     "litellm.models.groq-8b.is_free", "is_free: false"),
    ("host name where an IP belongs", _text(_set("prometheus.listen.host", "localhost")),
     "prometheus.listen.host", "an IP address"),
    ("email enabled without a server",
     _text(_set("alertmanager.receivers.email.enabled", True)),
     "alertmanager.receivers.email.smarthost", "email is enabled"),
    ("one provider, two endpoints",
     _text(_set("litellm.models.groq-8b.api_base", "https://example.test/v1")),
     "litellm.models.groq-8b.api_base", "share its endpoint and key"),
    ("YAML syntax error", STACK_FILE.read_text().replace("port: 4000}", "port: [4000}", 1),
     "(the whole file)", "valid YAML"),
    ("duplicate key", "litellm: {}\nlitellm: {}\n", "(the whole file)", "appears twice"),
    ("empty file", "", "(the whole file)", "the sections of inventory/stack.yaml"),
    ("a list, not a mapping", "- litellm\n", "(the whole file)", "a mapping of sections"),
]


def test_there_are_at_least_twenty_distinct_broken_files() -> None:
    assert len({text for _, text, _, _ in CASES}) >= 20


@pytest.mark.parametrize(("text", "path", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_broken_file_names_the_field_and_the_fix_and_writes_nothing(
        text: str, path: str, fix: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(text)
    out = tmp_path / "build"
    assert main(["--stack", str(stack_file), "--out", str(out)]) == EXIT_INVALID
    report = capsys.readouterr().err
    assert f"- {path}" in report or f": {path}" in report, report
    assert fix in report, report
    assert "nothing was rendered or deployed" in report
    assert not out.exists()
    for secret in (PASTED_GROQ, PASTED_OPENAI):
        assert secret not in report


def test_the_default_stack_is_valid() -> None:
    stack = load_stack(STACK_FILE)
    assert stack.litellm.listen.port == BASE["litellm"]["listen"]["port"]


def test_one_report_lists_every_problem_with_its_line() -> None:
    data = copy.deepcopy(BASE)
    data["litellm"]["listen"]["port"] = "x"
    data["watchdog"]["probe_intervl"] = data["watchdog"].pop("probe_interval")
    data["budget"]["monthly_usd"] = 0
    text = yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(StackError) as caught:
        parse_stack(text)
    report = str(caught.value)
    assert "3 problems" in report
    assert len(caught.value.problems) == 3
    port_line = next(i for i, line in enumerate(text.splitlines(), 1) if "port: x" in line)
    assert f"line {port_line}: litellm.listen.port" in report


def test_a_pasted_key_never_appears_in_the_report_or_its_traceback() -> None:
    text = _text(_set("litellm.models.gpt-4.api_key_env", PASTED_OPENAI))
    with pytest.raises(StackError) as caught:
        parse_stack(text)
    assert PASTED_OPENAI not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_host_data_goes_through_the_same_validation_and_is_named() -> None:
    with pytest.raises(StackError) as caught:
        parse_stack(STACK_FILE.read_text(), overrides={"litellm": {"version": "1.82.8"}})
    assert "litellm.version (from host data)" in str(caught.value)


def test_host_data_merges_over_the_file() -> None:
    stack = parse_stack(STACK_FILE.read_text(),
                        overrides={"linux": {"user": "pavel"}, "budget": {"monthly_usd": 50}})
    assert stack.linux.user == "pavel"
    assert stack.linux.group == BASE["linux"]["group"]
    assert stack.budget.monthly_usd == 50


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "stack.yaml"
    bad.write_bytes(b"litellm: \xff\xfe\n")
    with pytest.raises(StackError, match="UTF-8"):
        load_stack(bad)
