"""Whose agents a deploy enrolls (tasks/linux/agents.py): the person behind the deploy, the
WSL default user, an explicit login, or the service account; a missing user is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pyinfra.api.exceptions import DeployError

from monitoring.stack.load import load_stack
from tasks.linux import agents

ALICE = {"name": "alice", "uid": "1000", "gid": "1000", "home": "/home/alice",
         "shell": "/bin/bash"}


@pytest.mark.parametrize(("env", "euid", "login", "want"), [
    ({"SUDO_USER": "alice"}, 0, "root", "alice"),      # sudo make deploy
    ({}, 1000, "alice", "alice"),                      # make deploy (pyinfra sudoes)
    ({}, 0, "root", None),                             # CI, a container: nobody
    ({"SUDO_USER": "root"}, 0, "root", None),          # sudo from root: still nobody
    ({}, 1000, None, None),                            # no login name known
])
def test_the_person_behind_a_local_deploy(env: dict[str, str], euid: int, login: str | None,
                                          want: str | None) -> None:
    assert agents.deploying_person(env, euid, login) == want


def test_wsl_default_user_is_read_from_wsl_conf() -> None:
    assert agents.wsl_default_user("[boot]\nsystemd=true\n[user]\ndefault = bob\n") == "bob"
    assert agents.wsl_default_user("[boot]\nsystemd=true\n") is None
    assert agents.wsl_default_user(None) is None
    assert agents.wsl_default_user("not an ini [") is None


@pytest.mark.parametrize(("setting", "person", "wsl", "want"), [
    ("auto", "alice", "bob", "alice"),          # the person first
    ("auto", None, "bob", "bob"),               # root on WSL: the distribution's default user
    ("auto", None, None, None),                 # a server: the service account
    ("carol", "alice", None, "carol"),          # explicit wins
    (None, "alice", "bob", None),               # null: the service account, whoever deploys
    ("auto", "provider-fallback", None, None),  # the service account itself
])
def test_resolve(setting: str | None, person: str | None, wsl: str | None,
                 want: str | None) -> None:
    assert agents.resolve(setting, person, wsl, "provider-fallback") == want


@dataclass
class FakeHost:
    data: dict[str, Any]
    users: dict[str, dict[str, str]]
    wsl_conf: list[str] | None = None
    name: str = "ws"
    asked: list[str] = field(default_factory=list)

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        self.asked.append(cls.__name__)
        if cls.__name__ == "LinuxUser":
            return self.users.get(kwargs["user"])
        assert cls.__name__ == "FileContents"
        assert kwargs["path"] == agents.WSL_CONF
        return self.wsl_conf


def _stack(agents_user: object = "auto") -> Any:
    return load_stack("inventory/stack.yaml", {"linux": {"agents_user": agents_user}})


def test_the_deploying_person_is_enrolled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost({agents.PERSON_DATA: "alice"}, {"alice": ALICE})
    monkeypatch.setattr(agents, "host", fake)
    assert agents.agents_user(_stack(), wsl=False) == ALICE


def test_root_on_wsl_enrolls_the_wsl_default_user(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost({}, {"alice": ALICE}, wsl_conf=["[user]", "default=alice"])
    monkeypatch.setattr(agents, "host", fake)
    assert agents.agents_user(_stack(), wsl=True) == ALICE
    fake = FakeHost({}, {"alice": ALICE}, wsl_conf=["[user]", "default=alice"])
    monkeypatch.setattr(agents, "host", fake)
    assert agents.agents_user(_stack(), wsl=False) is None
    assert fake.asked == []  # a server: no fact asked, the service account


def test_null_keeps_the_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHost({agents.PERSON_DATA: "alice"}, {"alice": ALICE})
    monkeypatch.setattr(agents, "host", fake)
    assert agents.agents_user(_stack(None), wsl=False) is None


def test_a_missing_user_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "host", FakeHost({}, {"alice": ALICE}))
    with pytest.raises(DeployError) as err:
        agents.agents_user(_stack("nobodyhere"), wsl=False)
    text = str(err.value)
    assert "linux.agents_user" in text
    assert "'nobodyhere'" in text
    assert "null" in text


def test_a_bad_login_is_refused_by_the_stack_schema() -> None:
    from monitoring.stack.load import StackError
    with pytest.raises(StackError) as err:
        _stack("Not A Login")
    assert "agents_user" in err.value.report()


def test_a_missing_wsl_default_user_says_where_it_came_from(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "host", FakeHost({}, {}, wsl_conf=["[user]", "default=ghost"]))
    with pytest.raises(DeployError, match=r"'ghost'.*\[user\] default of /etc/wsl.conf"):
        agents.agents_user(_stack(), wsl=True)
