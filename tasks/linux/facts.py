"""pyinfra facts for a Linux/WSL host: small typed parsers of one command's output each.

Where a fact needs structure, the host prints JSON (from its own ``python3``) rather than
text that a parser would have to guess at.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.facts import FactBase

from monitoring.version import LINUX_MARKER


class Platform(TypedDict):
    """What the deploy branches on."""

    #: systemd is PID 1 (``/run/systemd/system`` exists): units, else the sysvinit script.
    systemd: bool
    #: WSL (1 or 2): the kernel says "microsoft".
    wsl: bool
    #: the host's python3, or None when it has none yet.
    python3: str | None


class HostPlatform(FactBase[Platform]):
    """Init system, WSL and python3 of the host, in one round trip."""

    def command(self) -> str:
        return ("if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi; "
                "if grep -qi microsoft /proc/sys/kernel/osrelease 2>/dev/null; "
                "then echo wsl=1; else echo wsl=0; fi; "
                "echo python3=$(command -v python3 || true)")

    def process(self, output: list[str]) -> Platform:
        values = dict(line.partition("=")[::2] for line in output)
        return Platform(systemd=values.get("systemd") == "1", wsl=values.get("wsl") == "1",
                        python3=values.get("python3") or None)


#: Printed by the host's python3: the environment markers of PEP 508 and the glibc version,
#: which select the wheels of the lock that this host installs.
_MARKERS_SCRIPT = (
    "import json, os, platform, sys; "
    "print(json.dumps({'python_version': '%d.%d' % sys.version_info[:2], "
    "'python_full_version': platform.python_version(), 'os_name': os.name, "
    "'sys_platform': sys.platform, 'platform_system': platform.system(), "
    "'platform_machine': platform.machine(), "
    "'implementation_name': sys.implementation.name, "
    "'platform_python_implementation': platform.python_implementation(), "
    "'glibc': platform.libc_ver()[1]}))"
)


class PythonMarkers(FactBase[dict[str, str] | None]):
    """PEP 508 markers of ``python`` on the host (None when it is missing)."""

    def command(self, python: str = "python3") -> StringCommand:
        return StringCommand(QuoteString(python), "-c", QuoteString(_MARKERS_SCRIPT),
                             "2>/dev/null || echo null")

    def process(self, output: list[str]) -> dict[str, str] | None:
        data: dict[str, str] | None = json.loads("\n".join(output))
        return data


#: Lists the venv's distributions and the marker our wheel's install left, as JSON.
_VENV_SCRIPT = (
    "import json, sys, importlib.metadata as m, pathlib; "
    f"marker = pathlib.Path(sys.prefix, {LINUX_MARKER!r}); "
    "print(json.dumps({'python': '%d.%d.%d' % sys.version_info[:3], "
    "'distributions': {d.metadata['Name'].lower().replace('_', '-').replace('.', '-'): "
    "d.version for d in m.distributions() if d.metadata['Name']}, "
    "'project_sha256': marker.read_text().strip() if marker.exists() else None}))"
)


class VenvState(TypedDict):
    python: str
    #: canonical distribution name -> version
    distributions: dict[str, str]
    #: sha256 of the provider-fallback wheel last installed here
    project_sha256: str | None


class Venv(FactBase[VenvState | None]):
    """What a venv holds; None when it is missing or its python does not run (broken)."""

    def command(self, path: str) -> StringCommand:
        python = f"{path.rstrip('/')}/bin/python"
        return StringCommand(QuoteString(python), "-I", "-c", QuoteString(_VENV_SCRIPT),
                             "2>/dev/null || echo null")

    def process(self, output: list[str]) -> VenvState | None:
        data: Any = json.loads("\n".join(output))
        if data is None:
            return None
        return VenvState(python=data["python"], distributions=data["distributions"],
                         project_sha256=data["project_sha256"])


class UfwStatus(FactBase[list[str] | None]):
    """``ufw status`` lines when ufw is installed and active, else None."""

    def command(self) -> str:
        return ("if command -v ufw >/dev/null 2>&1 && ufw status | grep -q '^Status: active'; "
                "then ufw status; else echo inactive; fi")

    def process(self, output: list[str]) -> list[str] | None:
        return None if output[:1] == ["inactive"] else output


class NftablesInput(FactBase[list[str] | None]):
    """The rules of nftables' ``inet filter input`` chain (Debian's default table), when
    nftables is in use with that chain; else None."""

    def command(self) -> str:
        return ("if command -v nft >/dev/null 2>&1 && nft list chain inet filter input "
                ">/dev/null 2>&1; then nft list chain inet filter input; else echo none; fi")

    def process(self, output: list[str]) -> list[str] | None:
        return None if output[:1] == ["none"] else output


class LinuxUser(FactBase[dict[str, str] | None]):
    """One passwd entry (name, uid, gid, home, shell), None when the user does not exist."""

    def command(self, user: str) -> StringCommand:
        return StringCommand("getent", "passwd", QuoteString(user), "|| echo none")

    def process(self, output: list[str]) -> dict[str, str] | None:
        if not output or output[0] == "none":
            return None
        name, _, uid, gid, _, home, shell = output[0].split(":")[:7]
        return {"name": name, "uid": uid, "gid": gid, "home": home, "shell": shell}
