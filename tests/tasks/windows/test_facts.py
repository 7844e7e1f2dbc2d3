"""Fact parsers on the shapes PowerShell really prints: ConvertTo-Json of one object or an
array, no output at all, null fields, enum names or numbers, /Date()/ dates, non-ASCII text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pyinfra.api.exceptions import FactProcessError

from tasks.windows import facts
from tests.support.powershell import assert_parses, verbatim_strings


def run(fact: Any, printed: str) -> Any:
    """What the fact makes of what PowerShell printed (pyinfra passes stdout lines)."""
    return fact.process(printed.splitlines())


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("printed", "expected"), [
    ("", None),
    ("null", None),
    ('{"a":1}', {"a": 1}),
    ('\ufeff{"a":1}', {"a": 1}),
    ('[\r\n  {"a":1}\r\n]', [{"a": 1}]),
])
def test_load_json_takes_every_shape(printed: str, expected: Any) -> None:
    assert facts.load_json(printed.splitlines()) == expected


def test_load_json_refuses_table_text() -> None:
    with pytest.raises(FactProcessError, match="expected JSON"):
        facts.load_json(["Name    Enabled", "----    -------", "LiteLLM True"])


@pytest.mark.parametrize(("value", "expected"), [
    (None, []), ([], []), ({"a": 1}, [{"a": 1}]), ([{"a": 1}, None], [{"a": 1}]),
])
def test_as_list_accepts_one_object_or_an_array(value: Any, expected: list[Any]) -> None:
    assert facts.as_list(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("/Date(1764151205000)/", datetime(2025, 11, 26, 10, 0, 5, tzinfo=UTC)),
    ("/Date(1764151205000+0100)/", datetime(2025, 11, 26, 10, 0, 5, tzinfo=UTC)),
    ("2025-11-26T10:00:05.0000000Z", datetime(2025, 11, 26, 10, 0, 5, tzinfo=UTC)),
    ("2025-11-26T10:00:05", datetime(2025, 11, 26, 10, 0, 5, tzinfo=UTC)),
    (None, None),
])
def test_json_date_reads_powershell_5_and_7(value: Any, expected: datetime | None) -> None:
    assert facts.json_date(value) == expected


# --------------------------------------------------------------------------- files


def test_file_fact_lowercases_get_filehash() -> None:
    info = run(facts.File(), '{"exists":true,"type":"file","sha256":"ABCDEF","size":12}')
    assert info == facts.PathInfo(True, "file", "abcdef", 12)
    assert info.is_file


def test_file_fact_missing_and_directory() -> None:
    assert run(facts.File(), '{"exists":false,"type":null,"sha256":null,"size":null}') == \
        facts.PathInfo(False)
    info = run(facts.Directory(), '{"exists":true,"type":"directory"}')
    assert info.is_directory
    assert not info.is_file


def test_file_fact_size_may_be_a_json_number_or_text() -> None:
    # Int64 values come as numbers; some hosts' serializers quote them.
    info = run(facts.File(), '{"exists":true,"type":"file","sha256":"aa","size":"5000000000"}')
    assert info.size == 5_000_000_000


# --------------------------------------------------------------------------- firewall


COM_RULE = {"name": "LiteLLM Proxy", "description": "Règle — ünïcode", "enabled": True,
            "direction": 1, "action": 1, "protocol": 6, "local_port": "4000",
            "remote_port": "*", "profiles": 2, "remote_addresses": "LocalSubnet,10.0.0.0/255.0.0.0",
            "local_addresses": "*", "program": None}


def test_firewall_rule_from_com_numbers() -> None:
    [rule] = run(facts.FirewallRule(), json.dumps([COM_RULE], ensure_ascii=False))
    assert rule == facts.FirewallRuleInfo(
        name="LiteLLM Proxy", enabled=True, direction="in", action="allow", protocol="tcp",
        local_port="4000", remote_port="*", profiles=("Private",),
        remote_addresses=("LocalSubnet", "10.0.0.0/255.0.0.0"), local_addresses=("*",),
        program="", description="Règle — ünïcode")


def test_firewall_rule_one_object_empty_and_escaped_unicode() -> None:
    # PowerShell 5.1 escapes non-ASCII as \\uXXXX in some versions: the same text.
    one = run(facts.FirewallRule(), json.dumps(COM_RULE, ensure_ascii=True))
    assert [r.description for r in one] == ["Règle — ünïcode"]
    assert run(facts.FirewallRule(), "[]") == []
    assert run(facts.FirewallRule(), "") == []


@pytest.mark.parametrize(("mask", "names"), [
    (1, ("Domain",)), (2, ("Private",)), (6, ("Private", "Public")),
    (7, ("Domain", "Private", "Public")), (0x7FFFFFFF, ("Domain", "Private", "Public")),
])
def test_firewall_profile_masks(mask: int, names: tuple[str, ...]) -> None:
    [rule] = run(facts.FirewallRule(), json.dumps([{**COM_RULE, "profiles": mask}]))
    assert rule.profiles == names


def test_firewall_rule_enum_names_and_nulls() -> None:
    netsecurity = {"name": "x", "enabled": "True", "direction": "Outbound", "action": "Block",
                   "protocol": "UDP", "profiles": "Domain, Public", "local_port": None,
                   "remote_port": None, "remote_addresses": None, "local_addresses": None}
    [rule] = run(facts.FirewallRule(), json.dumps([netsecurity]))
    assert (rule.enabled, rule.direction, rule.action, rule.protocol) == \
        (True, "out", "block", "udp")
    assert rule.profiles == ("Domain", "Public")
    assert (rule.local_port, rule.remote_addresses) == ("*", ("*",))


# --------------------------------------------------------------------------- scheduled tasks

TASK_XML = ('<?xml version="1.0" encoding="UTF-16"?>\r\n<Task version="1.2" '
            'xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"><Settings>'
            '<Enabled>true</Enabled></Settings><Actions><Exec><Command>C:\\Jürgen\\a.exe'
            '</Command></Exec></Actions></Task>')


@pytest.mark.parametrize(("state", "name"), [
    (4, "running"), (3, "ready"), (1, "disabled"), ("Running", "running"), ("Ready", "ready"),
    (None, "unknown"),
])
def test_task_state_numbers_and_names(state: Any, name: str) -> None:
    info = run(facts.ScheduledTask(), json.dumps(
        {"exists": True, "enabled": True, "state": state, "xml": TASK_XML,
         "last_result": 0, "last_run": None}))
    assert info.state == name


def test_task_fact_reads_the_definition_and_dates() -> None:
    info = run(facts.ScheduledTask(), json.dumps(
        {"exists": True, "enabled": False, "state": 1, "xml": TASK_XML,
         "last_result": 267011, "last_run": "/Date(1764151205000)/"}))
    assert not info.enabled
    assert info.last_result == 267011
    assert info.last_run == datetime(2025, 11, 26, 10, 0, 5, tzinfo=UTC)
    assert info.definition().actions[0]["Command"] == \
        "C:\\Jürgen\\a.exe"


def test_task_never_run_has_no_last_run() -> None:
    info = run(facts.ScheduledTask(), json.dumps(
        {"exists": True, "enabled": True, "state": 3, "xml": TASK_XML, "last_result": 267011,
         "last_run": "1899-12-30T00:00:00.0000000Z"}))
    assert info.last_run is None


def test_task_missing() -> None:
    assert run(facts.ScheduledTask(), '{"exists":false}') == facts.ScheduledTaskInfo(False)


# --------------------------------------------------------------------------- the others


def test_event_source() -> None:
    assert run(facts.EventLogSource(), '{"exists":true,"log":"Application"}') == \
        facts.EventSourceInfo(True, "Application")
    assert run(facts.EventLogSource(), '{"exists":false,"log":null}') == \
        facts.EventSourceInfo(False)


def test_python_and_venv() -> None:
    py = run(facts.PythonInterpreter(), '{"exists":true,"version":"3.11.9"}')
    assert (py.version, py.minor) == ("3.11.9", "3.11")
    venv = run(facts.Venv(), json.dumps({
        "exists": True, "version": "3.11.9.final.0", "home": "C:\\Python311",
        "marker": '\ufeff{"lock_sha256": "a", "wheel_sha256": "b"}'}))
    assert venv == facts.VenvInfo(True, "3.11.9", "C:\\Python311",
                                  {"lock_sha256": "a", "wheel_sha256": "b"})
    broken = run(facts.Venv(), json.dumps({"exists": True, "version": "3.11.9", "home": None,
                                           "marker": "{not json"}))
    assert broken.marker is None
    assert broken.home is None


def test_listening_ports_shapes() -> None:
    one = run(facts.ListeningPorts(), '{"address":"127.0.0.1","port":4000,"pid":42,'
                                      '"process":"python"}')
    assert one == [facts.Listener("127.0.0.1", 4000, 42, "python")]
    assert run(facts.ListeningPorts(), "") == []
    two = run(facts.ListeningPorts(), '[{"address":"::1","port":4000,"pid":7,"process":null},'
                                      '{"address":"0.0.0.0","port":4000,"pid":7,"process":null}]')
    assert [x.address for x in two] == ["::1", "0.0.0.0"]  # noqa: S104


def test_environment_variable_never_carries_a_value() -> None:
    info = run(facts.UserEnvironmentVariable(), '{"present":true,"digest":"ABC"}')
    assert info == facts.EnvVarInfo(True, "abc")
    assert "value" not in facts.EnvVarInfo.__dataclass_fields__


def test_current_user_with_non_ascii_name() -> None:
    info = run(facts.CurrentUser(), json.dumps(
        {"name": "WIN-TEST\\Jürgen", "sid": "S-1-5-21-1-2-3-1001", "elevated": True},
        ensure_ascii=True))
    assert info == facts.AccountInfo("WIN-TEST\\Jürgen", "S-1-5-21-1-2-3-1001", True)


@pytest.mark.parametrize("fact", [facts.File(), facts.ScheduledTask(), facts.Venv(),
                                  facts.CurrentUser(), facts.EventLogSource()])
def test_a_fact_expecting_one_object_refuses_an_array_of_two(fact: Any) -> None:
    with pytest.raises(FactProcessError, match="expected one JSON object"):
        run(fact, '[{"exists":true},{"exists":true}]')


# --------------------------------------------------------------------------- commands

FACT_COMMANDS = [
    (facts.File(), {"path": "C:\\x"}),
    (facts.Directory(), {"path": "C:\\x"}),
    (facts.FirewallRule(), {"rule": "x"}),
    (facts.ScheduledTask(), {"task": "x", "folder": "\\PF\\"}),
    (facts.EventLogSource(), {"source": "x"}),
    (facts.PythonInterpreter(), {"path": "C:\\x"}),
    (facts.Venv(), {"path": "C:\\x"}),
    (facts.ListeningPorts(), {"port": 4000}),
    (facts.UserEnvironmentVariable(), {"variable": "X", "salt": "s"}),
    (facts.CurrentUser(), {}),
]
HOSTILE = "C:\\it's $(calc) `n \u2019q\u2019 \"dq\" ;x\n# newline"


@pytest.mark.parametrize(("fact", "args"), FACT_COMMANDS,
                         ids=[type(f).__name__ for f, _ in FACT_COMMANDS])
def test_fact_command_parses_prints_json_and_names_itself(fact: Any, args: dict[str, Any]
                                                          ) -> None:
    script = fact.command(**args)
    assert_parses(script, type(fact).__name__)
    first = script.splitlines()[0]
    assert first == f"# fact {type(fact).__name__} {json.dumps(args, sort_keys=True)}"
    assert "ConvertTo-Json -Compress -Depth 6 -InputObject" in script
    assert "Format-" not in script
    assert "schtasks" not in script
    assert "netsh" not in script


@pytest.mark.parametrize(("fact", "args"), [f for f in FACT_COMMANDS if f[1]],
                         ids=[type(f).__name__ for f, a in FACT_COMMANDS if a])
def test_hostile_fact_arguments_are_single_literals(fact: Any, args: dict[str, Any]) -> None:
    hostile = {k: (HOSTILE if isinstance(v, str) else v) for k, v in args.items()}
    script = fact.command(**hostile)
    assert_parses(script, type(fact).__name__)
    # The comment line keeps the newline escaped, so it cannot start a line of code.
    assert script.splitlines()[1].startswith("$")
    values = [lit.value for lit in verbatim_strings(script)]
    for key, value in hostile.items():
        if isinstance(value, str) and key != "folder":
            assert value in values, f"{key} is not one literal holding exactly the value"


# --------------------------------------------------------------------------- ACLs


def test_directory_acl_reads_owner_protection_and_rules() -> None:
    printed = json.dumps({"exists": True, "owner": "S-1-5-32-544", "protected": True,
                          "rules": {"sid": "S-1-5-18", "rights": 2032127, "type": 0,
                                    "inherited": False, "inheritance": 3, "propagation": 0}})
    info = run(facts.DirectoryAcl(), printed)
    assert info == facts.AclInfo(True, "S-1-5-32-544", True, (
        facts.AccessRule("S-1-5-18", 2032127, True, False, 3, 0),))
    assert run(facts.DirectoryAcl(), '{"exists":false,"owner":null,"protected":false,'
                                     '"rules":[]}') == facts.AclInfo(False)
    deny = run(facts.DirectoryAcl(), json.dumps({
        "exists": True, "owner": "s-1-5-18", "protected": "False",
        "rules": [{"sid": "s-1-5-32-545", "rights": 278, "type": "Deny", "inherited": True,
                   "inheritance": 1, "propagation": 0}]}))
    assert deny.owner == "S-1-5-18"
    assert not deny.protected
    assert deny.rules[0].sid == "S-1-5-32-545"
    assert not deny.rules[0].allow


def test_directory_acl_script_parses_and_names_sids() -> None:
    script = facts.DirectoryAcl().command(path="C:\\PF\\it's")
    assert_parses(script)
    assert "SecurityIdentifier" in script
    assert next(s.value for s in verbatim_strings(script)) == "C:\\PF\\it's"
