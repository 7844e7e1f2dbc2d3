"""The Linux operations against data files, in pyinfra's own style: one file per case
(``cases/<operation>/<case>.yaml``) with the arguments and the facts the host would give
(as the fact's parsed value, like pyinfra's own operation tests), and the exact commands the
operation yields, or ``noop: true``. Every operation has a no-op case."""

from __future__ import annotations

import base64
import configparser
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyinfra.api.command import FileUploadCommand, PyinfraCommand, StringCommand
from pyinfra.context import ctx_host

from monitoring.stack.load import load_stack
from tasks.linux import firewall, operations
from tasks.linux.files import owner
from tasks.render import render
from tasks.wheelhouse import Pin, Wheelhouse

CASES = Path(__file__).resolve().parent / "cases"
OPERATIONS: dict[str, Callable[..., Any]] = {
    "put_bytes": operations.put_bytes,
    "venv_from_wheelhouse": operations.venv_from_wheelhouse,
    "ini_values": operations.ini_values,
    "ufw_allow": operations.ufw_allow,
    "nft_allow": firewall.nft_allow,
}


@dataclass
class CaseHost:
    facts: dict[str, Any]
    name: str = "linux-test"
    noops: list[str] = field(default_factory=list)

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        key = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        by_key = self.facts.get(cls.__name__, {})
        assert key in by_key, f"the case gives no {cls.__name__} fact for {key!r}"
        return by_key[key]

    def noop(self, text: str) -> None:
        self.noops.append(text)

    def log(self, text: str, log_func: Any = None) -> None:
        pass

    def get_temp_filename(self, key: str | None = None, **kwargs: Any) -> str:
        return "/tmp/pyinfra-temp"


#: What each stdin_write command of the last case carried, decoded.
SENT_ON_STDIN: list[bytes] = []


def _describe(command: str | PyinfraCommand) -> str | dict[str, str]:
    if isinstance(command, FileUploadCommand):
        return {"upload": command.dest}
    if isinstance(command, StringCommand) and "_stdin" in command.connector_arguments:
        # The bytes travel on stdin (base64), never through a file in /tmp (issue 12, M2).
        SENT_ON_STDIN.append(base64.b64decode(str(command.connector_arguments["_stdin"])))
        raw = str(command.get_raw_value())
        assert raw.startswith("(umask 077 && rm -f "), raw
        return {"stdin": raw.rsplit("> ", 1)[1].rstrip(")")}
    if isinstance(command, StringCommand):
        return str(command.get_raw_value())
    return str(command).strip()


def _args(op: str, args: dict[str, Any]) -> dict[str, Any]:
    if "data" in args:
        args["data"] = args["data"].encode()
    if op == "venv_from_wheelhouse":
        wh = args["wheelhouse"]
        args["wheelhouse"] = Wheelhouse(
            key=wh["key"], tar=Path(wh["tar"]), project_wheel=wh["project_wheel"],
            project_sha256=wh["project_sha256"], tar_sha256=wh.get("tar_sha256", ""),
            pins=tuple(Pin(name, version, ("sha256:00",)) for name, version in wh["pins"].items()))
    return args


def _cases() -> list[Path]:
    return sorted(CASES.glob("*/*.yaml"))


@pytest.mark.parametrize("path", _cases(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    op = OPERATIONS[path.parent.name]
    facts = case.get("facts", {})
    if "Sha256File" in facts:  # written as the content the file holds
        facts["Sha256File"] = {k: hashlib.sha256(v.encode()).hexdigest() if isinstance(v, str)
                               else v for k, v in facts["Sha256File"].items()}
    host = CaseHost(facts)
    SENT_ON_STDIN.clear()
    with ctx_host.use(host):
        inner = op._inner  # type: ignore[attr-defined]
        commands = [_describe(c) for c in inner(**_args(path.parent.name, case["args"]))]
    assert commands == [c.strip() if isinstance(c, str) else c for c in case.get("commands", [])]
    if SENT_ON_STDIN and path.parent.name == "put_bytes":
        assert [case["args"]["data"]] == SENT_ON_STDIN
    if case.get("noop"):
        assert not commands
        assert host.noops, "a no-op must say why (host.noop)"
    else:
        assert commands, "a case without commands must say noop: true"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_has_a_noop_case_and_a_change_case(name: str) -> None:
    cases = [yaml.safe_load(p.read_text()) for p in (CASES / name).glob("*.yaml")]
    assert any(c.get("noop") for c in cases)
    assert any(not c.get("noop") for c in cases)


def test_merged_ini_keeps_the_users_keys_and_sections() -> None:
    current = "[network]\ngenerateResolvConf = false\n\n[boot]\nsystemd = false\ncommand = x\n"
    merged = operations.merged_ini(current, "boot", {"systemd": "true"})
    assert merged is not None
    back = configparser.ConfigParser(interpolation=None)
    back.optionxform = str  # type: ignore[assignment,method-assign]
    back.read_string(merged)
    assert dict(back["boot"]) == {"systemd": "true", "command": "x"}
    assert dict(back["network"]) == {"generateResolvConf": "false"}
    assert operations.merged_ini(merged, "boot", {"systemd": "true"}) is None


def test_alertmanager_yml_is_readable_by_alertmanager_only() -> None:
    """Issue 12, M3: a webhook URL (and its token) is not for every local user."""
    stack = load_stack(Path(__file__).resolve().parents[3] / "inventory" / "stack.yaml")
    artifact = render(stack, "linux")["alertmanager/alertmanager.yml"]
    assert artifact.mode == 0o640
    assert owner(stack, artifact) == ("root", "prometheus")
