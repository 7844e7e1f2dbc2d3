"""Linux/WSL hosts over SSH (`pyinfra inventory/linux.py deploy.py`, from the repo root).

Host names come from the controller's environment so this file holds no address and no
secret: PF_HOSTS is a comma-separated list of ``[user@]host`` (root, or a user with
passwordless sudo: set PF_SUDO=1). The host keys must be in ~/.ssh/known_hosts (pyinfra
checks them). Per-host stack changes go in the host data under ``stack``, for instance a
proxy that listens on the LAN: ``{"stack": {"litellm": {"listen": {"host": "0.0.0.0"}}}}``.
The API keys are read from the controller's environment (GROQ_API_KEY, ...) and reach the
host only in the 0600 secrets file.
"""

import os

_sudo = os.environ.get("PF_SUDO") == "1"
linux = []
for _entry in filter(None, os.environ.get("PF_HOSTS", "").split(",")):
    _user, _, _name = _entry.rpartition("@")
    _data = {"target_os": "linux", "_sudo": _sudo}
    if _user:
        _data["ssh_user"] = _user
    linux.append((_name, _data))
