"""What to do after ``make deploy``: the last lines of its output, only what is not done yet.

Why after the deploy and not in it: pyinfra's output is about changes; a person who just
provisioned the machine wants to know what is left for them. Each line is decided from
facts, not printed by habit:

- API keys: the deploy takes them from the environment of ``make deploy`` (and writes only
  those to the host), so a key not set there is a provider the stack cannot use yet. The
  master key is not listed: without it the deploy made one for the host.
- Agents: where to point them, from ``provider-fallback agents`` when the installed CLI has it,
  else the proxy's URL.
- Where Prometheus, Alertmanager and the Grafana dashboard are, each checked by its own
  readiness endpoint; one that does not answer is said to be down, with where to look.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from monitoring.stack.layout import layout
from monitoring.stack.load import StackError, load_stack
from monitoring.stack.schema import Stack
from tasks.secrets import master_key_file

Reachable = Callable[[str], bool]


def missing_keys(stack: Stack, env: Mapping[str, str]) -> dict[str, list[str]]:
    """{variable: the providers that need it} for every provider key not set in ``env``."""
    need: dict[str, list[str]] = {}
    for model in stack.litellm.models.values():
        if not env.get(model.api_key_env):
            providers = need.setdefault(model.api_key_env, [])
            if model.provider not in providers:
                providers.append(model.provider)
    return need


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def has_agents_command(cli: str) -> bool:
    if not Path(cli).exists():
        return False
    done = subprocess.run([cli, "agents", "--help"], capture_output=True, check=False,
                          timeout=30)
    return done.returncode == 0


def steps(stack: Stack, env: Mapping[str, str], *, cli: str, host_name: str,
          reachable: Reachable = answers,
          agents_command: Callable[[str], bool] = has_agents_command) -> list[str]:
    """The lines to print, in the order a person does them."""
    lines: list[str] = []
    keys = missing_keys(stack, env)
    if keys:
        named = ", ".join(f"{k} ({', '.join(v)})" for k, v in keys.items())
        lines += [f"Set the API keys this deploy did not have: {named}.",
                  "  Then apply them: export them and run `make deploy` again (they go to "
                  "the host's secrets file, mode 0600, never to the repository)."]
    if agents_command(cli):
        lines.append(f"Point your coding agents at the proxy: run `{cli} agents`.")
    else:
        master = stack.litellm.master_key_env
        key = (f"${master}" if env.get(master)
               else f"the key in {master_key_file(host_name, env)}")
        lines.append(f"Point your coding agents at {stack.proxy_url}/v1 (OpenAI-compatible) "
                     f"with {key}.")
    prom, am = stack.prometheus.listen.url, stack.alertmanager.listen.url
    for name, url, ready in (("Prometheus", prom, f"{prom}/-/ready"),
                             ("Alertmanager", am, f"{am}/-/ready")):
        lines.append(f"{name}: {url}" if reachable(ready)
                     else f"{name} does not answer at {url}: see `journalctl -u "
                          f"{name.lower().replace('alertmanager', 'prometheus-alertmanager')}`"
                          " or its log.")
    dash = stack.grafana.dashboard
    grafana = stack.grafana.listen.url
    if reachable(f"{grafana}/api/health"):
        lines.append(f"Grafana dashboard: {grafana}/d/{dash.uid}")
    elif stack.grafana.install:
        lines.append(f"Grafana does not answer at {grafana}: see `journalctl -u grafana-server`.")
    else:
        lines.append(f"Grafana dashboard: {layout(stack, 'linux').grafana_dashboard} is in "
                     "place for a Grafana on this machine (none answers at "
                     f"{grafana}; set grafana.install: true to have the deploy install it).")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.next_steps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="inventory/stack.yaml", help="the stack file")
    parser.add_argument("--cli", help="the provider-fallback CLI the deploy installed "
                                      "(default: the stack's Linux venv)")
    parser.add_argument("--host", default="@local", help="the inventory's host name")
    args = parser.parse_args(argv)
    try:
        stack = load_stack(args.stack)
    except StackError as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    print("--> What next:")
    cli = args.cli or layout(stack, "linux").watchdog_bin
    for line in steps(stack, os.environ, cli=cli, host_name=args.host):
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
