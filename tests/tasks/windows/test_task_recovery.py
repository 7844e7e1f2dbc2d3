"""Tasks that come back: after a crash (repetition + IgnoreNew), after a boot (BootTrigger),
and restartable by the watchdog's filtered token (the proxy task's security descriptor)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.render.windows import task_specs, task_xml
from tasks.windows import taskxml
from tests.tasks.windows.fakehost import check_task_xml

T = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
SID = "S-1-5-21-1111-2222-3333-1001"


def _root(stack: Stack, lay: Layout, key: str) -> ET.Element:
    spec = next(s for s in task_specs(stack, lay) if s.key == key)
    xml = task_xml(stack, spec).decode("utf-8")
    wanted = taskxml.with_user(xml, "WIN-TEST\\pavel")
    return check_task_xml(wanted)  # what Task Scheduler would refuse fails here


@pytest.mark.parametrize("key", ["litellm", "watchdog", "prometheus", "alertmanager"])
def test_every_trigger_repeats_so_a_crashed_program_comes_back(
        stack: Stack, windows_layout: Layout, key: str) -> None:
    root = _root(stack, windows_layout, key)
    assert root.findtext(f"{T}Settings/{T}MultipleInstancesPolicy") == "IgnoreNew"
    triggers = list(root.find(f"{T}Triggers") or [])
    assert [t.tag.removeprefix(T) for t in triggers] == ["BootTrigger", "LogonTrigger"]
    for trigger in triggers:
        repetition = trigger.find(f"{T}Repetition")
        assert repetition is not None, trigger.tag
        interval = repetition.findtext(f"{T}Interval") or ""
        assert taskxml.normalize(interval) == f"{round(stack.windows.tasks.restart_interval)}s"
        assert repetition.find(f"{T}Duration") is None  # repeated indefinitely
        assert repetition.findtext(f"{T}StopAtDurationEnd") == "false"
    assert root.findtext(f"{T}Principals/{T}Principal/{T}LogonType") == "S4U"


def test_boot_start_can_be_turned_off(stack: Stack, windows_layout: Layout) -> None:
    tasks = stack.windows.tasks.model_copy(update={"start_at_boot": False})
    off = stack.model_copy(update={"windows": stack.windows.model_copy(update={"tasks": tasks})})
    root = _root(off, windows_layout, "watchdog")
    assert [t.tag.removeprefix(T) for t in root.find(f"{T}Triggers") or []] == ["LogonTrigger"]


def test_the_fake_refuses_what_task_scheduler_refuses() -> None:
    ns = 'xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"'
    with pytest.raises(AssertionError, match="Switch from current encoding"):
        check_task_xml(f'<?xml version="1.0" encoding="UTF-8"?><Task {ns}/>')
    with pytest.raises(AssertionError, match="out of sequence"):
        check_task_xml(f"<Task {ns}><Triggers><LogonTrigger><UserId>x</UserId>"
                       "<Enabled>true</Enabled></LogonTrigger></Triggers></Task>")
    with pytest.raises(AssertionError, match="cannot hold"):
        check_task_xml(f"<Task {ns}><Triggers><BootTrigger><UserId>x</UserId></BootTrigger>"
                       "</Triggers></Task>")
    with pytest.raises(AssertionError, match="PT1M"):
        check_task_xml(f"<Task {ns}><Triggers><BootTrigger><Repetition><Interval>PT30S"
                       "</Interval></Repetition></BootTrigger></Triggers></Task>")


def test_the_proxy_task_sddl_grants_the_account_exactly_read_run_stop() -> None:
    sddl = taskxml.run_stop_sddl(SID)
    assert sddl == f"D:(A;;FA;;;SY)(A;;FA;;;BA)(A;;FRFX;;;{SID})"
    rights = taskxml.allowed_rights(sddl)
    assert rights[SID] == taskxml.RUN_STOP_RIGHTS == 0x1200A9
    assert rights["S-1-5-18"] == rights["S-1-5-32-544"] == taskxml.FILE_ALL_ACCESS
    assert taskxml.grants_run_stop(sddl, SID)
    # no write (0x2), append (0x4), write EA/attributes, delete or WRITE_DAC for the account
    assert rights[SID] & (0x2 | 0x4 | 0x10 | 0x100 | 0x10000 | 0x40000) == 0


@pytest.mark.parametrize(("sddl", "ok"), [
    (f"D:(A;;0x1200a9;;;{SID})", True),               # hex, as Windows may write it back
    (f"O:BAD:AI(A;;FA;;;SY)(A;;FRFX;;;{SID.lower()})", True),
    (f"D:(A;;FR;;;{SID})", False),                    # read only: cannot run or stop
    (f"D:(A;;FA;;;BA)(A;;FRFX;;;{SID})(D;;FX;;;{SID})", False),
    ("D:(A;;FA;;;BA)(A;;FA;;;SY)", False),            # the filtered token is not BA
])
def test_run_stop_check_reads_sddl_as_windows_writes_it(sddl: str, ok: bool) -> None:
    assert taskxml.grants_run_stop(sddl, SID) is ok


def test_with_security_puts_the_sddl_in_registration_info(
        stack: Stack, windows_layout: Layout) -> None:
    spec = next(s for s in task_specs(stack, windows_layout) if s.key == "litellm")
    xml = taskxml.with_security(task_xml(stack, spec).decode(), taskxml.run_stop_sddl(SID))
    root = check_task_xml(xml)
    assert root.findtext(f"{T}RegistrationInfo/{T}SecurityDescriptor") == \
        taskxml.run_stop_sddl(SID)
    with pytest.raises(ValueError, match="not a SID"):
        taskxml.run_stop_sddl("WIN-TEST\\pavel")


def test_the_host_suite_scripts_parse() -> None:
    """The real-host suite's own PowerShell (run only where a host is configured) parses."""
    from tasks.windows import powershell as ps
    from tests.host.windows import test_windows_host as suite
    from tests.support.powershell import assert_parses

    assert_parses(ps.wrap(ps.script("pids", {"Marker": "C:\\PF\\x"}, suite._PIDS)))


def test_the_manual_scripts_agree_with_the_deploy(stack: Stack) -> None:
    """register-tasks.ps1 gives the proxy task the same DACL; firewall.ps1 makes no rule for a
    loopback proxy and scopes one to the base interpreter."""
    from monitoring.stack.layout import layout
    from tasks.render.windows import firewall_script, register_script
    from tests.support.powershell import assert_parses, script_assignments

    lay = layout(stack, "windows")
    register = register_script(stack, lay, task_specs(stack, lay))
    assert_parses(register)
    values = script_assignments(register)
    assert values["RunStopSddl"] == [taskxml.run_stop_sddl("S-1-5-0").replace("S-1-5-0", "{0}")]
    assert register.count(b"RunStop = $true") == 1
    assert b"Set-TaskSecurity -Document $document -Sddl ($RunStopSddl -f $sid)" in register
    firewall = firewall_script(stack)
    assert_parses(firewall)
    assert b"$Loopback = $true" in firewall
    assert script_assignments(firewall)["Program"] == [stack.windows.python]
    assert b"-Program $Program" in firewall
