"""``linux.windows_profile`` (tasks/linux/agents.py): named, checked on the host before any
change; refused without a person, without the folder, or with an IPv6-only proxy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pyinfra.api.exceptions import DeployError

from monitoring.stack.load import StackError, load_stack
from tasks.linux import agents

ALICE = {"name": "alice", "uid": "1000", "gid": "1000", "home": "/home/alice",
         "shell": "/bin/bash"}
PROFILE = "/mnt/c/Users/Alice Smith"


@dataclass
class FakeHost:
    folders: set[str]
    name: str = "wsl"
    asked: list[str] = field(default_factory=list)

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        assert cls.__name__ == "Directory"
        self.asked.append(kwargs["path"])
        return {"mode": 755} if kwargs["path"] in self.folders else None


def _stack(profile: object = PROFILE, listen: str = "127.0.0.1") -> Any:
    return load_stack("inventory/stack.yaml", {"linux": {"windows_profile": profile},
                                               "litellm": {"listen": {"host": listen}}})


def test_not_set_is_nothing_and_asks_the_host_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost(set())
    monkeypatch.setattr(agents, "host", fake)
    assert agents.windows_profile(_stack(None), ALICE) is None
    assert fake.asked == []


def test_an_existing_profile_of_a_person_is_enrolled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "host", FakeHost({PROFILE}))
    assert agents.windows_profile(_stack(), ALICE) == PROFILE
    assert agents.home_dropin("/home/alice", PROFILE).endswith(
        b'ReadWritePaths="/home/alice" "/mnt/c/Users/Alice Smith"\n')


@pytest.mark.parametrize(("folders", "person", "listen", "says"), [
    (set(), ALICE, "127.0.0.1", "no folder /mnt/c/Users/Alice Smith"),
    ({PROFILE}, None, "127.0.0.1", "linux.agents_user names nobody"),
    ({PROFILE}, ALICE, "::1", "litellm.listen.host: ::1 is not reached from Windows"),
    ({PROFILE}, ALICE, "192.168.1.5", "only binds on 127.0.0.1 or 0.0.0.0"),
])
def test_refused_naming_the_field_and_the_fix(monkeypatch: pytest.MonkeyPatch,
                                              folders: set[str], person: Any, listen: str,
                                              says: str) -> None:
    monkeypatch.setattr(agents, "host", FakeHost(folders))
    with pytest.raises(DeployError) as err:
        agents.windows_profile(_stack(listen=listen), person)
    assert says in str(err.value)
    assert "deploy again" in str(err.value)


def test_a_relative_profile_is_refused_by_the_stack() -> None:
    with pytest.raises(StackError) as err:
        _stack("Users/alice")
    assert "windows_profile" in err.value.report()
