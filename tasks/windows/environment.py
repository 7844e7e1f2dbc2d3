"""User environment variables set from the controller's environment, never echoed.

Windows keeps the bundle's API keys in the user's environment variables (HKCU\\Environment),
where the proxy and the watchdog, running as that user, read them. The value:

* is read from the controller's environment when the operation runs, and is not an argument
  of the operation, so pyinfra never prints it;
* travels on the command's standard input (base64 of UTF-8, inside the encrypted WinRM
  channel), never on a command line, which Windows can log (process creation auditing), and
  never in the script text, which PowerShell can log (script block logging);
* is compared without being read back: the host answers an HMAC-SHA256 of its value keyed
  with a salt that names the host and the variable, and the controller computes the same of
  its own value. Equal digests: nothing to do; a key rotated on the controller: set again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from pyinfra import logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.operation import operation
from pyinfra.context import host

from tasks.windows import powershell as ps
from tasks.windows.facts import UserEnvironmentVariable
from tasks.windows.powershell import Commands

SET_BODY = """\
$encoded = (@($input) -join '').Trim()
$value = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($encoded))
[System.Environment]::SetEnvironmentVariable($Variable, $value, 'User')"""


def salt_for(host_name: str, variable: str) -> str:
    """The HMAC key for one variable on one host (not secret: it only keeps one digest from
    being compared across hosts and variables)."""
    return f"provider-fallback/{host_name}/{variable}"


def digest(salt: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` keyed with ``salt``, lower-case hex (what the fact prints)."""
    return hmac.new(salt.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def set_command(variable: str, value: str) -> StringCommand:
    """The command that sets ``variable``: the value only on standard input, masked."""
    payload = base64.b64encode(value.encode("utf-8")).decode("ascii") + "\r\n"
    script = ps.script("op environment.set_user_variable", {"Variable": variable}, SET_BODY)
    # The connector unmasks a HiddenValue on stdin; anything that prints the command or its
    # arguments sees *MASKED*.
    hidden: Any = HiddenValue(payload)  # type: ignore[no-untyped-call]
    return StringCommand(script, _stdin=hidden)


@operation()
def user_variable(variable: str, from_env: str | None = None, present: bool = True,
                  value: str | None = None) -> Commands:
    """
    Set (or remove) a user environment variable to the controller's value of it.

    + variable: the variable on the host, e.g. ``GROQ_API_KEY``
    + from_env: the controller's variable to read (default: the same name); when it is not set
      on the controller, the host's value is left as it is
    + present: False removes the variable from the host
    + value: a value that is not a secret, given here instead of read from the controller
      (``PROVIDER_FALLBACK_CONFIG``); it travels and is compared the same way
    """
    if not variable or "=" in variable or "\0" in variable:
        raise OperationValueError(f"variable: {variable!r} is not a variable name")
    salt = salt_for(host.name, variable)
    info = host.get_fact(UserEnvironmentVariable, variable=variable, salt=salt)
    if not present:
        if info.present:
            yield ps.script("op environment.remove_user_variable", {"Variable": variable},
                            "[System.Environment]::SetEnvironmentVariable($Variable, $null, "
                            "'User')")
        else:
            host.noop(f"user variable {variable} is not set")
        return
    source = from_env or variable
    if value is None:
        value = os.environ.get(source)
    if not value:
        if not info.present:
            logger.warning(f"{host.name}: {variable} is set neither on the controller "
                           f"(${source}) nor on the host; what needs it will fail to "
                           "authenticate")
        host.noop(f"user variable {variable}: ${source} is not set on the controller; the "
                  "host's value is left as it is")
        return
    if "\0" in value:
        raise OperationValueError(f"${source} holds a NUL character, which an environment "
                                  "variable cannot")
    if info.present and info.digest == digest(salt, value):
        host.noop(f"user variable {variable} already has the controller's value")
        return
    yield set_command(variable, value)
