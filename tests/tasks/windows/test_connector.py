"""The WinRM connector at the pywinrm boundary: how it connects, what it sends, how it reads
the answer, how it uploads and downloads, and that no secret leaks."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import subprocess
import tomllib
from typing import Any

import pytest
import requests
from pyinfra.api.command import StringCommand
from pyinfra.api.config import Config
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from winrm.exceptions import InvalidCredentialsError

from tasks.windows import powershell as ps
from tasks.windows.connector import DEFAULT_CHUNK_SIZE, WinRMConnector
from tests.conftest import REPO
from tests.support.powershell import assert_parses
from tests.tasks.windows.fakewinrm import Call, FakeSessionFactory, body

PASSWORD = "Pa55-w0rd-that-must-never-show"


def ok(stdout: str = "", code: int = 0, stderr: bytes = b"") -> tuple[int, bytes, bytes]:
    return code, stdout.encode("utf-8"), stderr


class Host:
    """A scripted Windows host: answers by the script's first line after the preamble."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.corrupt_upload = False
        self.next: list[tuple[int, bytes, bytes]] = []

    def __call__(self, script: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        first = body(script).splitlines()[0]
        if first.startswith("# put_file"):
            meta = json.loads(first.split(" ", 2)[2])
            data = b"".join(base64.b64decode(line) for line in stdin.split(b"\r\n") if line)
            if self.corrupt_upload:
                data = data[:-1] + b"?"
            digest = hashlib.sha256(data).hexdigest()
            result = {"sha256": digest, "size": len(data), "replaced": False}
            if digest != meta["sha256"]:
                return 3, json.dumps(result).encode(), b""
            self.files[meta["dest"]] = data
            return ok(json.dumps(result))
        if first.startswith("# get_file stat"):
            path = json.loads(first.split(" ", 3)[3])["path"]
            data = self.files[path]
            return ok(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
        if first.startswith("# get_file read"):
            meta = json.loads(first.split(" ", 3)[3])
            data = self.files[meta["path"]][meta["offset"]:meta["offset"] + meta["length"]]
            return ok(base64.b64encode(data).decode())
        if self.next:
            return self.next.pop(0)
        return ok("")


@pytest.fixture
def host_model() -> Host:
    return Host()


@pytest.fixture
def factory(host_model: Host, monkeypatch: pytest.MonkeyPatch) -> FakeSessionFactory:
    fake = FakeSessionFactory(host_model)
    monkeypatch.setattr(WinRMConnector, "session_factory", fake)
    return fake


def make(data: dict[str, Any] | None = None) -> WinRMConnector:
    inventory = Inventory(([("@winrm/win-test", data or {})], {}))  # type: ignore[no-untyped-call]
    State(inventory, Config())  # type: ignore[no-untyped-call]
    connector = inventory.get_host("@winrm/win-test").connector
    assert isinstance(connector, WinRMConnector)
    return connector


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What pyinfra's CLI would print (its echo, captured)."""
    lines: list[str] = []
    monkeypatch.setattr("tasks.windows.connector.echo",
                        lambda message=None, **kwargs: lines.append(str(message)))
    return lines


@pytest.fixture
def connected(factory: FakeSessionFactory, monkeypatch: pytest.MonkeyPatch) -> WinRMConnector:
    monkeypatch.setenv("WINRM_USER", "WIN-TEST\\pavel")
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    connector = make()
    connector.connect()
    return connector


def last(factory: FakeSessionFactory) -> Call:
    return factory.protocol.calls[-1]


# --------------------------------------------------------------------------- connecting


def test_defaults_are_https_ntlm_with_certificate_validation(
        connected: WinRMConnector, factory: FakeSessionFactory) -> None:
    [(endpoint, auth, options)] = factory.created
    assert endpoint == "https://win-test:5986/wsman"
    assert auth == ("WIN-TEST\\pavel", PASSWORD)
    assert options["transport"] == "ntlm"
    assert options["server_cert_validation"] == "validate"
    assert "message_encryption" not in options  # pywinrm's "auto"
    assert factory.protocol.shell_options["codepage"] == 65001


def test_inventory_name_resolves_through_the_entry_point() -> None:
    from pyinfra.api.connectors import get_all_connectors

    assert get_all_connectors()["winrm"] is WinRMConnector  # type: ignore[no-untyped-call]
    assert list(WinRMConnector.make_names_data("h1")) == [("@winrm/h1", {"winrm_hostname": "h1"},
                                                            [])]


def test_plain_http_is_refused_without_the_flag(factory: FakeSessionFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    connector = make({"winrm_scheme": "http", "winrm_user": "u"})
    with pytest.raises(ConnectError, match=r"plain HTTP.*winrm_allow_plaintext"):
        connector.connect()
    assert factory.created == []


def test_plain_http_with_the_flag_warns_and_forces_encryption(
        factory: FakeSessionFactory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    connector = make({"winrm_scheme": "http", "winrm_user": "u", "winrm_allow_plaintext": True})
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        connector.connect()
    [(endpoint, _, options)] = factory.created
    assert endpoint == "http://win-test:5985/wsman"
    assert options["message_encryption"] == "always"
    assert "server_cert_validation" not in options
    assert "plain HTTP" in caplog.text


def test_ca_bundle_and_validation_off(factory: FakeSessionFactory,
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    make({"winrm_user": "u", "winrm_ca_trust_path": "/etc/win-ca.pem"}).connect()
    assert factory.created[-1][2]["ca_trust_path"] == "/etc/win-ca.pem"
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        make({"winrm_user": "u", "winrm_cert_validation": False}).connect()
    assert factory.created[-1][2]["server_cert_validation"] == "ignore"
    assert "validation is OFF" in caplog.text


@pytest.mark.parametrize("transport", ["basic", "plaintext", "certificate"])
def test_basic_and_unknown_transports_are_refused(factory: FakeSessionFactory,
                                                  transport: str) -> None:
    with pytest.raises(ConnectError, match="not supported"):
        make({"winrm_transport": transport, "winrm_user": "u", "winrm_password": "p"}).connect()


def test_kerberos_needs_no_password(factory: FakeSessionFactory,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WINRM_USER", raising=False)
    monkeypatch.delenv("WINRM_PASSWORD", raising=False)
    monkeypatch.setattr("winrm.transport.HAVE_KERBEROS", True)
    make({"winrm_transport": "kerberos"}).connect()
    assert factory.created[-1][2]["transport"] == "kerberos"


@pytest.mark.parametrize(("transport", "flag"), [("kerberos", "HAVE_KERBEROS"),
                                                 ("credssp", "HAVE_CREDSSP")])
def test_kerberos_and_credssp_without_their_extra_name_it(
        factory: FakeSessionFactory, monkeypatch: pytest.MonkeyPatch, transport: str,
        flag: str) -> None:
    monkeypatch.setattr(f"winrm.transport.{flag}", False)
    with pytest.raises(ConnectError, match=re.escape(
            f"needs pywinrm[{transport}], which is not installed on this controller: run "
            f"`make venv WINRM_TRANSPORT={transport}`")):
        make({"winrm_transport": transport, "winrm_user": "u", "winrm_password": "p"}).connect()
    assert factory.created == []
    monkeypatch.setattr(f"winrm.transport.{flag}", True)
    make({"winrm_transport": transport, "winrm_user": "u", "winrm_password": "p"}).connect()
    assert factory.created[-1][2]["transport"] == transport


def test_the_extras_are_declared_and_make_venv_installs_the_one_asked_for() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["project"]["optional-dependencies"]
    pinned = next(d for d in extras["controller"] if d.startswith("pywinrm=="))
    version = pinned.split("==")[1]
    for extra in ("kerberos", "credssp"):
        assert extras[extra] == [f"pywinrm[{extra}]=={version}"]
        plan = subprocess.run(["make", "-n", "-B", "venv", f"WINRM_TRANSPORT={extra}"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout
        assert f"-e '.[dev,{extra}]'" in plan
    plan = subprocess.run(["make", "-n", "-B", "venv", "WINRM_TRANSPORT=ntlm"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout
    assert "-e '.[dev]'" in plan


def test_missing_credentials_say_where_to_put_them(factory: FakeSessionFactory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WINRM_USER", raising=False)
    monkeypatch.delenv("WINRM_PASSWORD", raising=False)
    with pytest.raises(ConnectError, match="WINRM_USER and WINRM_PASSWORD"):
        make().connect()


def test_credentials_from_named_variables(factory: FakeSessionFactory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_WIN_USER", "alice")
    monkeypatch.setenv("MY_WIN_PASS", PASSWORD)
    make({"winrm_user_env": "MY_WIN_USER", "winrm_password_env": "MY_WIN_PASS"}).connect()
    assert factory.created[-1][1] == ("alice", PASSWORD)


def test_connect_retries_network_errors_then_gives_up(
        factory: FakeSessionFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINRM_USER", "u")
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    data = {"winrm_connect_retries": 2, "winrm_connect_retry_delay": 0.0}
    factory.protocol.open_shell_errors = [requests.exceptions.ConnectionError("refused")] * 2
    make(data).connect()
    assert len(factory.created) == 3
    factory.protocol.open_shell_errors = [requests.exceptions.ConnectTimeout("slow")] * 3
    with pytest.raises(ConnectError, match="after 3 attempt"):
        make(data).connect()


def test_rejected_credentials_fail_at_once_without_the_password(
        factory: FakeSessionFactory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WINRM_USER", "u")
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    # A library that quotes what it was given would leak it; the connector scrubs it.
    factory.protocol.open_shell_errors = [InvalidCredentialsError(f"bad password {PASSWORD}")]
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectError) as info:
        make({"winrm_connect_retries": 5}).connect()
    assert "rejected" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in caplog.text
    assert len(factory.created) == 1


def test_certificate_failure_explains_the_fix(factory: FakeSessionFactory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINRM_USER", "u")
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    factory.protocol.open_shell_errors = [requests.exceptions.SSLError("self-signed")]
    with pytest.raises(ConnectError, match="winrm_ca_trust_path"):
        make().connect()


def test_disconnect_closes_the_shell(connected: WinRMConnector,
                                     factory: FakeSessionFactory) -> None:
    connected.disconnect()
    assert factory.protocol.closed == ["shell-1"]


# --------------------------------------------------------------------------- commands


def test_command_is_sent_encoded_with_the_preamble(connected: WinRMConnector,
                                                   factory: FakeSessionFactory,
                                                   host_model: Host) -> None:
    host_model.next = [ok("Jürgen\r\nzwei\r\n")]
    status, output = connected.run_shell_command(StringCommand("Write-Output 'Jürgen'"))
    assert status
    assert output.stdout_lines == ["Jürgen", "zwei"]
    script = last(factory).script
    assert script.startswith(ps.PREAMBLE)
    assert body(script) == "Write-Output 'Jürgen'"
    assert_parses(script)
    assert factory.protocol.cleaned, "each command is cleaned up"


def test_exit_codes_and_clixml_errors(connected: WinRMConnector, host_model: Host) -> None:
    clixml = (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/'
              b'powershell/2004/04"><S S="Error">Access is denied._x000D__x000A_</S></Objs>')
    host_model.next = [ok("partial", code=5, stderr=clixml)]
    status, output = connected.run_shell_command(StringCommand("x"))
    assert not status
    assert output.stdout_lines == ["partial"]
    assert output.stderr_lines == ["Access is denied."]
    host_model.next = [ok(code=3)]
    status, _ = connected.run_shell_command(StringCommand("x"), _success_exit_codes=[0, 3])
    assert status


def test_chdir_and_env_are_literals(connected: WinRMConnector,
                                    factory: FakeSessionFactory) -> None:
    hidden: Any = HiddenValue("hidden-v")  # type: ignore[no-untyped-call]
    connected.run_shell_command(StringCommand("x"), _chdir="C:\\it's",
                                _env={"A": "$(calc)", "B": hidden})
    script = last(factory).script
    assert "Set-Location -LiteralPath 'C:\\it''s'" in script
    assert "'$(calc)'" in script
    assert "'hidden-v'" in script
    assert_parses(script)


@pytest.mark.parametrize("argument", ["_sudo", "_su_user", "_doas"])
def test_privilege_arguments_are_refused(connected: WinRMConnector,
                                         factory: FakeSessionFactory, argument: str) -> None:
    arguments: Any = {argument: "root"}
    status, output = connected.run_shell_command(StringCommand("x"), **arguments)
    assert not status
    assert "not supported on Windows" in output.stderr
    assert factory.protocol.calls == []


def test_stdin_secret_travels_on_stdin_and_never_in_logs(
        connected: WinRMConnector, factory: FakeSessionFactory,
        caplog: pytest.LogCaptureFixture, printed: list[str]) -> None:
    secret = "sk-secret-0123456789abcdefghij"
    hidden: Any = HiddenValue(secret + "\r\n")  # type: ignore[no-untyped-call]
    command = StringCommand("$v = @($input) -join ''", _stdin=hidden)
    with caplog.at_level(logging.DEBUG):
        connected.run_shell_command(command, print_input=True, print_output=True,
                                    _stdin=hidden)
    call = last(factory)
    assert call.stdin == (secret + "\r\n").encode()
    assert secret not in call.script
    assert secret not in caplog.text
    assert printed
    assert secret not in "\n".join(printed)


def test_masked_bits_are_printed_masked(connected: WinRMConnector, factory: FakeSessionFactory,
                                        printed: list[str]) -> None:
    command = StringCommand("$x =", HiddenValue("'top-secret'"))  # type: ignore[no-untyped-call]
    connected.run_shell_command(command, print_input=True)
    assert "top-secret" in last(factory).script
    assert "top-secret" not in "\n".join(printed)
    assert "*MASKED*" in "\n".join(printed)


def test_long_polls_are_waited_through(connected: WinRMConnector,
                                       factory: FakeSessionFactory, host_model: Host) -> None:
    factory.protocol.pending_polls = 3
    host_model.next = [ok("done")]
    status, output = connected.run_shell_command(StringCommand("x"))
    assert status
    assert output.stdout == "done"


def test_timeout_stops_the_command(connected: WinRMConnector,
                                   factory: FakeSessionFactory) -> None:
    factory.protocol.pending_polls = 10**9
    with pytest.raises(TimeoutError, match=r"timed out after 0\.05s"):
        connected.run_shell_command(StringCommand("Start-Sleep 60"),
                                    _timeout=0.05)  # type: ignore[arg-type]
    assert factory.protocol.cleaned, "the timed-out command is terminated"


def test_a_broken_shell_is_reopened_once(connected: WinRMConnector,
                                         factory: FakeSessionFactory) -> None:
    from winrm.exceptions import WinRMError

    original = factory.protocol.run_command
    failures = iter([WinRMError("shell not found")])

    def flaky(*args: Any, **kwargs: Any) -> str:
        for error in failures:
            raise error
        return original(*args, **kwargs)

    factory.protocol.run_command = flaky  # type: ignore[method-assign]
    status, _ = connected.run_shell_command(StringCommand("x"))
    assert status
    assert factory.protocol.shells == ["shell-1", "shell-2"]


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("size", [0, 10, DEFAULT_CHUNK_SIZE * 3 + 17])
def test_put_file_in_chunks_with_sha256(connected: WinRMConnector, factory: FakeSessionFactory,
                                        host_model: Host, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert connected.put_file(io.BytesIO(data), "C:\\PF\\it's\\file.bin")
    assert host_model.files["C:\\PF\\it's\\file.bin"] == data
    call = last(factory)
    assert call.stdin_messages == -(-size // DEFAULT_CHUNK_SIZE) + 1  # chunks + end of stream
    assert hashlib.sha256(data).hexdigest() in call.script
    assert_parses(call.script)


def test_a_large_upload_reports_its_progress_every_tenth(
        connected: WinRMConnector, host_model: Host, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("tasks.windows.connector.PROGRESS_FROM", 1024)
    data = b"w" * (DEFAULT_CHUNK_SIZE * 20)
    assert connected.put_file(io.BytesIO(data), "C:\\PF\\wheels.zip")
    lines = [line for line in capsys.readouterr().err.splitlines() if "wheels.zip" in line]
    assert [line.rsplit("(", 1)[1] for line in lines] == [f"{p}0%)" for p in range(1, 11)]
    assert lines[-1].endswith("1.3 MB of 1.3 MB (100%)")


def test_a_small_upload_stays_quiet(connected: WinRMConnector,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert connected.put_file(io.BytesIO(b"x" * 2048), "C:\\small.txt")
    assert "small.txt" not in capsys.readouterr().err


def test_put_file_from_a_local_path_and_a_string(connected: WinRMConnector, host_model: Host,
                                                 tmp_path: Any) -> None:
    local = tmp_path / "a.txt"
    local.write_bytes(b"abc")
    assert connected.put_file(str(local), "C:\\a.txt")
    assert connected.put_file(io.StringIO("é"), "C:\\b.txt")
    assert host_model.files == {"C:\\a.txt": b"abc", "C:\\b.txt": "é".encode()}


def test_put_file_fails_when_the_host_wrote_other_bytes(
        connected: WinRMConnector, host_model: Host, caplog: pytest.LogCaptureFixture) -> None:
    host_model.corrupt_upload = True
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        assert not connected.put_file(io.BytesIO(b"payload"), "C:\\f")
    assert "C:\\f" not in host_model.files
    assert re.search(r"upload of C:\\f failed .*expected", caplog.text)


def test_get_file_in_pieces_with_sha256(connected: WinRMConnector, host_model: Host,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.windows.connector.GET_CHUNK_SIZE", 7)
    host_model.files["C:\\log.txt"] = b"0123456789abcdefghij"
    out = io.BytesIO()
    assert connected.get_file("C:\\log.txt", out)
    assert out.getvalue() == b"0123456789abcdefghij"


def test_no_password_in_any_log_or_output(factory: FakeSessionFactory,
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture,
                                          printed: list[str]) -> None:
    monkeypatch.setenv("WINRM_USER", "u")
    monkeypatch.setenv("WINRM_PASSWORD", PASSWORD)
    with caplog.at_level(logging.DEBUG):
        connector = make()
        connector.connect()
        connector.run_shell_command(StringCommand("x"), print_input=True, print_output=True)
        connector.put_file(io.BytesIO(b"data"), "C:\\x")
        connector.disconnect()
    assert printed
    for text in (caplog.text, "\n".join(printed), repr(connector)):
        assert PASSWORD not in text
