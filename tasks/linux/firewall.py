"""The firewall rule for the proxy (runbook 10.2), where this host has a firewall to hold it.

- LiteLLM on a loopback address: no rule is needed (nothing off the host can connect).
- WSL: the host's packets reach the LAN through Windows, so the rule belongs on the Windows
  side (the Windows deploy creates it); said in the output.
- ufw active: one rule per allowed source, matched by its comment (the rule's name).
- nftables in use (Debian's ``inet filter`` table): a rule in its input chain, matched by
  comment. It is live at once; to keep it across a reboot save the ruleset (said in output).
- neither: a line in the output says so.
"""

from __future__ import annotations

import ipaddress
import shlex

from pyinfra import host, logger  # type: ignore[attr-defined]
from pyinfra.api.command import StringCommand
from pyinfra.api.operation import operation

from monitoring.stack.schema import Stack
from tasks.linux.facts import NftablesInput, Platform, UfwStatus
from tasks.linux.operations import Commands, ufw_allow


@operation()
def nft_allow(port: int, sources: list[str], comment: str) -> Commands:
    """An accept rule for TCP ``port`` from ``sources`` in ``inet filter input``."""
    chain = host.get_fact(NftablesInput) or []
    if any(f'comment "{comment}"' in line for line in chain):
        host.noop(f"nftables already has the rule {comment!r}")
        return
    v4 = [s for s in sources if ipaddress.ip_network(s, strict=False).version == 4]
    v6 = [s for s in sources if ipaddress.ip_network(s, strict=False).version == 6]
    for family, nets in (("ip", v4), ("ip6", v6)):
        if nets:
            yield StringCommand(
                "nft", "add", "rule", "inet", "filter", "input", family, "saddr",
                "'{ " + ", ".join(nets) + " }'", "tcp", "dport", str(port), "accept",
                "comment", shlex.quote(f'"{comment}"'))


def firewall(stack: Stack, platform: Platform) -> None:
    listen = stack.litellm.listen
    name = stack.windows.firewall.name
    if listen.loopback_only:
        logger.info(f"{host.name}: firewall: LiteLLM listens on {listen.host} only, "
                    "no rule is needed")
        return
    if platform["wsl"]:
        logger.warning(f"{host.name}: firewall: on WSL the rule for port {listen.port} belongs "
                       "on the Windows side (runbook 10.2; the Windows deploy creates it)")
        return
    sources = [str(net) for net in stack.linux.firewall_allow_from]
    if host.get_fact(UfwStatus) is not None:
        ufw_allow(name=f"ufw: allow {listen.port}/tcp ({name})", port=listen.port,
                  sources=sources, comment=name)
    elif host.get_fact(NftablesInput) is not None:
        nft_allow(name=f"nftables: allow {listen.port}/tcp ({name})", port=listen.port,
                  sources=sources, comment=name)
        logger.warning(f"{host.name}: firewall: the nftables rule is live; to keep it after a "
                       "reboot run `nft list ruleset > /etc/nftables.conf`")
    else:
        logger.warning(f"{host.name}: firewall: neither ufw nor nftables is active, no rule "
                       f"was added for port {listen.port}")
