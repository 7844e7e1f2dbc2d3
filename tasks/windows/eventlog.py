"""Event Log sources (runbook 10.4): the watchdog writes its events under one.

Registering a source needs an administrator once; writing with it later does not, which is
why the deploy registers it and the watchdog (a user's task) only writes.
"""

from __future__ import annotations

from pyinfra.api.operation import operation
from pyinfra.context import host

from tasks.windows import powershell as ps
from tasks.windows.facts import EventLogSource
from tasks.windows.powershell import Commands


def _create(source: str, log: str) -> str:
    return ps.script("op eventlog.create", {"Source": source, "LogName": log},
                     "[System.Diagnostics.EventLog]::CreateEventSource($Source, $LogName)")


def _delete(source: str) -> str:
    return ps.script("op eventlog.delete", {"Source": source},
                     "[System.Diagnostics.EventLog]::DeleteEventSource($Source)")


@operation()
def source(source: str, log: str = "Application", present: bool = True) -> Commands:
    """
    Register or remove an Event Log source.

    + source: the source name (e.g. ``ProviderFallback``)
    + log: the log it writes to (``Application``); a source registered in another log is
      moved (deleted and registered again; Windows may need a restart to route it anew)
    + present: whether the source should be registered
    """
    info = host.get_fact(EventLogSource, source=source)
    if not present:
        if info.exists:
            yield _delete(source)
        else:
            host.noop(f"event source {source} is not registered")
        return
    if info.exists and (info.log or "").casefold() == log.casefold():
        host.noop(f"event source {source} is registered in {log}")
        return
    if info.exists:
        yield _delete(source)
    yield _create(source, log)
