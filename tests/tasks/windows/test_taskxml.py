"""Comparing a wanted task definition with what Task Scheduler hands back."""

from __future__ import annotations

import pytest

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tasks.render.common import Rendered
from tasks.render.windows import TASKS_REL, task_specs
from tasks.windows import taskxml

NS = 'xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"'


def task(settings: str = "", principal: str = "", trigger: str = "", action: str = "") -> str:
    return (f'<Task version="1.2" {NS}><Triggers><LogonTrigger>{trigger}</LogonTrigger>'
            f'</Triggers><Principals><Principal id="Author">{principal}</Principal></Principals>'
            f"<Settings>{settings}</Settings><Actions><Exec><Command>a.exe</Command>{action}"
            "</Exec></Actions></Task>")


@pytest.mark.parametrize(("value", "normal"), [
    ("PT1M", "60s"), ("PT60S", "60s"), ("P1DT2H", "93600s"), ("PT0S", "0s"), ("True", "true"),
    ("0", "false"), (" IgnoreNew ", "IgnoreNew"),
])
def test_normalize(value: str, normal: str) -> None:
    assert taskxml.normalize(value) == normal


def test_defaults_windows_drops_count_as_equal() -> None:
    wanted = taskxml.parse(task("<AllowHardTerminate>true</AllowHardTerminate>"
                                "<Priority>7</Priority>"))
    assert taskxml.differences(wanted, taskxml.parse(task())) == []
    assert taskxml.differences(taskxml.parse(task("<Priority>5</Priority>")),
                               taskxml.parse(task())) == ["settings.Priority: 7 -> 5"]


def test_only_wanted_fields_are_compared() -> None:
    current = taskxml.parse(task("<WakeToRun>true</WakeToRun>"))
    assert taskxml.differences(taskxml.parse(task()), current) == []


def test_user_as_name_or_sid() -> None:
    wanted = taskxml.parse(task(principal="<UserId>WIN\\pavel</UserId>",
                                trigger="<UserId>WIN\\pavel</UserId>"))
    as_sid = taskxml.parse(task(principal="<UserId>S-1-5-21-9</UserId>",
                                trigger="<UserId>S-1-5-21-9</UserId>"))
    assert taskxml.differences(wanted, as_sid, ("S-1-5-21-9", "WIN\\pavel")) == []
    assert taskxml.differences(wanted, as_sid, ("S-1-5-21-8",)) == [
        "triggers[0].LogonTrigger.UserId: S-1-5-21-9 -> WIN\\pavel",
        "principal.UserId: S-1-5-21-9 -> WIN\\pavel"]
    short = taskxml.parse(task(principal="<UserId>pavel</UserId>",
                               trigger="<UserId>pavel</UserId>"))
    assert taskxml.differences(wanted, short) == []


def test_actions_and_triggers_are_compared() -> None:
    wanted = taskxml.parse(task(action="<Arguments>watch</Arguments>"))
    assert taskxml.differences(wanted, taskxml.parse(task(action="<Arguments>x</Arguments>"))) \
        == ["actions[0].Arguments: x -> watch"]
    boot = taskxml.parse(task().replace("LogonTrigger", "BootTrigger"))
    assert "triggers: ['BootTrigger'] -> ['LogonTrigger']" in taskxml.differences(wanted, boot)


def test_with_user_fills_principal_and_logon_trigger() -> None:
    text = taskxml.with_user('<?xml version="1.0" encoding="UTF-8"?>\n' + task(), "WIN\\it's")
    parsed = taskxml.parse(text)
    assert parsed.principal["UserId"] == "WIN\\it's"
    assert parsed.triggers[0][1]["UserId"] == "WIN\\it's"
    assert not text.startswith("<?xml")


def test_refuses_what_is_not_a_task() -> None:
    with pytest.raises(ValueError, match="not a task definition"):
        taskxml.parse("<Other/>")
    with pytest.raises(ValueError, match="not a task definition"):
        taskxml.parse("not xml")


def test_every_rendered_task_equals_itself_once_registered(
        stack: Stack, windows_layout: Layout, rendered_windows: Rendered) -> None:
    for spec in task_specs(stack, windows_layout):
        xml = rendered_windows[f"{TASKS_REL}/{spec.file_name}"].data.decode("utf-8")
        wanted = taskxml.parse(taskxml.with_user(xml, "WIN\\pavel"))
        assert wanted.settings["RestartOnFailure.Count"] == str(stack.windows.tasks.restart_count)
        assert taskxml.differences(wanted, wanted) == []
