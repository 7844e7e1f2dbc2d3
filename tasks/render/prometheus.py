"""Prometheus, its alert rules and Alertmanager: three YAML files, plus Debian's ARGS files.

The YAML files are machine formats, built as data by :mod:`monitoring.content.prometheus`,
:mod:`monitoring.content.rules` and :mod:`monitoring.content.alertmanager` and dumped with a stable
key order: never through Jinja, whose ``{{ }}`` would eat Prometheus' own
``{{ $labels.provider }}``.

On Linux the services are Debian's own ``prometheus`` and ``prometheus-alertmanager`` units,
configured the Debian way: command-line flags in ``/etc/default/<package>`` (``ARGS``), a text
format, so Jinja templates. The flags come from :mod:`monitoring.stack.layout`'s command lines,
which the Windows scheduled tasks start as well.
"""

from __future__ import annotations

import re

from monitoring.content import alertmanager, prometheus, rules
from monitoring.stack.layout import Layout, alertmanager_command, prometheus_command
from monitoring.stack.schema import Stack
from tasks.render.common import Artifact, Rendered, dump_yaml, template

HEADER = "# rendered from stack.yaml by provider-fallback; edit stack.yaml, not this file\n"

PROMETHEUS_REL = "prometheus/prometheus.yml"
RULES_REL = "prometheus/rules/provider-fallback.rules.yml"
ALERTMANAGER_REL = "alertmanager/alertmanager.yml"
DEFAULT_PROMETHEUS_REL = "default/prometheus"
DEFAULT_ALERTMANAGER_REL = "default/prometheus-alertmanager"


#: What an ARGS word may contain: systemd splits ``$ARGS`` on whitespace and the init scripts
#: expand it unquoted in a shell, so quotes, ``$``, backslashes and spaces cannot pass.
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_./:=\[\]@%+,-]*$")


def _args(command: list[str]) -> list[str]:
    """The flags of ``command`` for an ARGS= line, refusing a word the line cannot carry."""
    args = command[1:]
    for word in args:
        if not _SAFE_WORD.match(word):
            raise ValueError(
                f"{word!r} cannot go in a Debian ARGS= line (systemd splits it on spaces and "
                "the init script passes it through a shell): use a path or address without "
                "spaces, quotes, $ or backslashes")
    return args


def _alertmanager_yaml(stack: Stack, lay: Layout) -> bytes:
    header = HEADER if alertmanager.has_notifier(stack) else HEADER + alertmanager.NO_RECEIVER_NOTE
    return dump_yaml(alertmanager.build(stack, lay), header)


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    """prometheus.yml, the rule file and alertmanager.yml; on Linux also Debian's ARGS files.

    None of them holds a secret: Prometheus scrapes without credentials, and the SMTP password
    is named by ``auth_password_file``, never written here.
    """
    out: Rendered = {
        PROMETHEUS_REL: Artifact(
            dump_yaml(prometheus.build(stack, lay), HEADER), lay.prometheus_config),
        RULES_REL: Artifact(dump_yaml(rules.build(stack), HEADER), lay.prometheus_rules),
        # 0640 root:prometheus on Linux (tasks/linux/files.py): a webhook URL may carry a token.
        ALERTMANAGER_REL: Artifact(_alertmanager_yaml(stack, lay), lay.alertmanager_config,
                                   mode=0o640 if lay.os == "linux" else 0o644),
    }
    if lay.prometheus_defaults and lay.alertmanager_defaults:  # Debian's, so Linux only
        out[DEFAULT_PROMETHEUS_REL] = Artifact(
            template("linux/prometheus.default.j2", header=HEADER,
                     args=_args(prometheus_command(stack, lay))),
            lay.prometheus_defaults)
        out[DEFAULT_ALERTMANAGER_REL] = Artifact(
            template("linux/prometheus-alertmanager.default.j2", header=HEADER,
                     args=_args(alertmanager_command(stack, lay))),
            lay.alertmanager_defaults)
    return out
