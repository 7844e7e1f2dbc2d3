"""WSL: systemd as PID 1 is switched on in /etc/wsl.conf (``[boot] systemd=true``)."""

from __future__ import annotations

from pyinfra import host, logger  # type: ignore[attr-defined]
from pyinfra.operations import python

from tasks.linux.operations import ini_values

WSL_CONF = "/etc/wsl.conf"


def _tell_shutdown() -> None:
    logger.warning(f"{host.name}: {WSL_CONF} now has [boot] systemd=true: run `wsl --shutdown` "
                   "once from Windows, then deploy again to move the services to systemd "
                   "(WSL 2; WSL 1 has no systemd and keeps the init scripts)")


def wsl_systemd() -> None:
    op = ini_values(name=f"{WSL_CONF}: [boot] systemd=true", path=WSL_CONF, section="boot",
                    values={"systemd": "true"})
    python.call(name="WSL: tell the user to restart the distribution", function=_tell_shutdown,
                _if=op.did_change)
