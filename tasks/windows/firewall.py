"""Windows Firewall rules, with the semantics of community.windows' ``win_firewall_rule``.

A rule is matched by its name (what the firewall UI and ``netsh`` show: the COM API's
``Name``, NetSecurity's ``DisplayName``). With ``present=True`` a missing rule is created and
an existing one is brought in line, comparing ONLY the options given: an option left out is
neither checked nor changed. With ``present=False`` every rule of that name is removed. Two
rules of one name are an error to resolve by hand (which one is meant cannot be guessed; the
runbook's own ``New-NetFirewallRule -DisplayName`` makes one with a random ID).

The rule is written through the ``HNetCfg.FwPolicy2`` COM API, which answers in numbers in
every display language and works on every Windows version the bundle supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host

from tasks.render.windows import firewall_address
from tasks.windows import powershell as ps
from tasks.windows.facts import (
    ACTIONS,
    DIRECTIONS,
    PROTOCOLS,
    FirewallRule,
    FirewallRuleInfo,
)
from tasks.windows.powershell import Commands

_PROTOCOL_NUMBERS = {name: number for number, name in PROTOCOLS.items()}
_PROFILE_MASK = {"domain": 1, "private": 2, "public": 4}
_ALL = {"*", "any"}


def _ports(value: str | int | Sequence[str | int] | None) -> str | None:
    """``4000``, ``"80,443"`` or ``[80, 443]`` as the firewall writes it; ``*`` for any."""
    if value is None:
        return None
    parts = [str(p).strip() for p in (value if isinstance(value, list | tuple) else
                                      str(value).split(","))]
    parts = [p for p in parts if p]
    if not parts or any(p.lower() in _ALL for p in parts):
        return "*"
    return ",".join(parts)


def _port_set(value: str) -> frozenset[str]:
    return frozenset(p.strip().lower() for p in value.split(",") if p.strip())


def _addresses(values: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Addresses as the firewall reports them (prefixes as masks; ``*`` for any)."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    out = [firewall_address(v.strip()) for v in items if v.strip()]
    if not out or any(v.lower() in _ALL for v in out):
        return ("*",)
    return tuple(out)


def _address_set(values: Sequence[str]) -> frozenset[str]:
    return frozenset(firewall_address(v).casefold() for v in values)


def _profiles(values: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    names = {v.strip().lower() for v in items if v.strip()}
    if names & {"any", "all"}:
        names = set(_PROFILE_MASK)
    unknown = names - set(_PROFILE_MASK)
    if unknown or not names:
        raise OperationValueError(f"profiles: {sorted(unknown) or '(none)'} is not a profile; "
                                  "use Domain, Private, Public or any")
    return tuple(sorted(n.capitalize() for n in names))


def _choice(field: str, value: str | None, allowed: dict[str, str]) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    if key not in allowed:
        raise OperationValueError(f"{field}: {value!r} is not one of "
                                  f"{', '.join(sorted(set(allowed.values())))}")
    return allowed[key]


def _protocol(value: str | int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return PROTOCOLS.get(value, str(value))
    key = value.strip().lower()
    if key in _PROTOCOL_NUMBERS or key.isdigit():
        return PROTOCOLS.get(int(key), key) if key.isdigit() else key
    raise OperationValueError(f"protocol: {value!r} is not one of tcp, udp, icmpv4, icmpv6, any "
                              "or a protocol number")


@dataclass(frozen=True)
class Wanted:
    """The options given, normalized; None means "not given": not compared, not changed."""

    description: str | None = None
    program: str | None = None
    protocol: str | None = None
    local_port: str | None = None
    remote_port: str | None = None
    local_addresses: tuple[str, ...] | None = None
    remote_addresses: tuple[str, ...] | None = None
    direction: str | None = None
    profiles: tuple[str, ...] | None = None
    action: str | None = None
    enabled: bool | None = None

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def com(self, only: Sequence[str] | None = None) -> list[tuple[str, str, object]]:
        """(variable, COM property, value) for the given options (or ``only`` these), in the
        order COM needs them: the protocol before the ports (ports are refused for "any")."""
        out: list[tuple[str, str, object]] = []
        for option in self.given():
            if only is not None and option not in only:
                continue
            value = getattr(self, option)
            variable, prop = _COM[option]
            if option == "protocol":
                value = int(_PROTOCOL_NUMBERS.get(value, value))
            elif option in ("local_addresses", "remote_addresses"):
                value = ",".join(value)
            elif option == "direction":
                value = _DIRECTION_NUMBERS[value]
            elif option == "action":
                value = _ACTION_NUMBERS[value]
            elif option == "profiles":
                value = sum(_PROFILE_MASK[p.lower()] for p in value)
            out.append((variable, prop, value))
        return out

    def differences(self, rule: FirewallRuleInfo) -> list[str]:
        """The given options whose value differs from the rule's."""
        current: dict[str, object] = {
            "description": rule.description,
            "program": rule.program.casefold(),
            "protocol": rule.protocol,
            "local_port": _port_set(rule.local_port),
            "remote_port": _port_set(rule.remote_port),
            "local_addresses": _address_set(rule.local_addresses),
            "remote_addresses": _address_set(rule.remote_addresses),
            "direction": rule.direction,
            "profiles": tuple(sorted(rule.profiles)),
            "action": rule.action,
            "enabled": rule.enabled,
        }
        wanted: dict[str, object] = {
            "description": self.description,
            "program": (self.program or "").casefold(),
            "protocol": self.protocol,
            "local_port": _port_set(self.local_port or ""),
            "remote_port": _port_set(self.remote_port or ""),
            "local_addresses": _address_set(self.local_addresses or ()),
            "remote_addresses": _address_set(self.remote_addresses or ()),
            "direction": self.direction,
            "profiles": self.profiles,
            "action": self.action,
            "enabled": self.enabled,
        }
        return [option for option in self.given() if wanted[option] != current[option]]


#: Option -> (PowerShell variable, COM property); in the order they must be set.
_COM: dict[str, tuple[str, str]] = {
    "description": ("Description", "Description"),
    "program": ("Program", "ApplicationName"),
    "protocol": ("Protocol", "Protocol"),
    "local_port": ("LocalPort", "LocalPorts"),
    "remote_port": ("RemotePort", "RemotePorts"),
    "local_addresses": ("LocalAddresses", "LocalAddresses"),
    "remote_addresses": ("RemoteAddresses", "RemoteAddresses"),
    "direction": ("Direction", "Direction"),
    "profiles": ("Profiles", "Profiles"),
    "action": ("Action", "Action"),
    "enabled": ("Enabled", "Enabled"),
}
_DIRECTION_NUMBERS = {name: number for number, name in DIRECTIONS.items()}
_ACTION_NUMBERS = {name: number for number, name in ACTIONS.items()}


def _find_rule() -> str:
    return ("$policy = New-Object -ComObject HNetCfg.FwPolicy2\n"
            "$rule = @($policy.Rules | Where-Object { $_.Name -eq $RuleName })[0]")


@operation()
def rule(
    rule: str,
    present: bool = True,
    enabled: bool | None = None,
    direction: str | None = None,
    action: str | None = None,
    protocol: str | int | None = None,
    local_port: str | int | Sequence[str | int] | None = None,
    remote_port: str | int | Sequence[str | int] | None = None,
    profiles: Sequence[str] | str | None = None,
    remote_addresses: Sequence[str] | str | None = None,
    local_addresses: Sequence[str] | str | None = None,
    program: str | None = None,
    description: str | None = None,
) -> Commands:
    """
    Add, update or remove a Windows Firewall rule (``win_firewall_rule`` semantics).

    + rule: the rule's name (matched ignoring case, as the firewall does)
    + present: whether the rule should exist
    + enabled: whether it is enabled (a new rule is enabled unless this says False)
    + direction: ``in`` or ``out`` (a new rule: ``in``)
    + action: ``allow`` or ``block`` (a new rule: ``allow``)
    + protocol: ``tcp``, ``udp``, ``icmpv4``, ``icmpv6``, ``any`` or a number
    + local_port, remote_port: a port, ``"80,443"``, a range ``"5000-5010"``, a list, or ``any``
    + profiles: some of ``Domain``, ``Private``, ``Public``, or ``any``
    + remote_addresses, local_addresses: addresses, prefixes, ranges or keywords
      (``LocalSubnet``), or ``any``
    + program: the program the rule applies to
    + description: the rule's description

    Options left as None are not compared and not changed.
    """
    wanted = Wanted(
        description=description,
        program=program,
        protocol=_protocol(protocol),
        local_port=_ports(local_port),
        remote_port=_ports(remote_port),
        local_addresses=_addresses(local_addresses),
        remote_addresses=_addresses(remote_addresses),
        direction=_choice("direction", direction, {"in": "in", "inbound": "in", "out": "out",
                                                   "outbound": "out"}),
        profiles=_profiles(profiles),
        action=_choice("action", action, {"allow": "allow", "block": "block"}),
        enabled=enabled,
    )
    found = host.get_fact(FirewallRule, rule=rule)

    if not present:
        if not found:
            host.noop(f"firewall rule {rule!r} does not exist")
            return
        for _ in found:
            yield ps.script("op firewall.delete", {"RuleName": rule},
                            "$policy = New-Object -ComObject HNetCfg.FwPolicy2\n"
                            "$policy.Rules.Remove($RuleName)")
        return

    if len(found) > 1:
        raise OperationError(
            f"{len(found)} firewall rules are named {rule!r}; which one to manage cannot be "
            "guessed. Remove the extra ones on the host (Get-NetFirewallRule -DisplayName "
            "<name> | Format-List Name, Enabled, Profile, then Remove-NetFirewallRule -Name "
            "<the Name of each extra rule>) and deploy again")

    if not found:
        create = replace(wanted, direction=wanted.direction or "in",
                         action=wanted.action or "allow",
                         enabled=True if wanted.enabled is None else wanted.enabled)
        settings = create.com()
        values: dict[str, object] = {"RuleName": rule}
        values.update({var: value for var, _, value in settings})
        body = ["$policy = New-Object -ComObject HNetCfg.FwPolicy2",
                "$rule = New-Object -ComObject HNetCfg.FWRule",
                "$rule.Name = $RuleName"]
        body += [f"$rule.{prop} = ${var}" for var, prop, _ in settings]
        body.append("$policy.Rules.Add($rule)")
        yield ps.script("op firewall.create", values, "\n".join(body))
        return

    changed = wanted.differences(found[0])
    if not changed:
        host.noop(f"firewall rule {rule!r} is as wanted")
        return
    settings = wanted.com(only=changed)
    values = {"RuleName": rule}
    values.update({var: value for var, _, value in settings})
    body = [_find_rule()] + [f"$rule.{prop} = ${var}" for var, prop, _ in settings]
    yield ps.script("op firewall.update", values, "\n".join(body))

