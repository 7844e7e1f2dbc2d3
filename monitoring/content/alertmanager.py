"""alertmanager.yml as data: the route tree, the receivers and the inhibit rules.

Routing: every alert goes to :data:`DEFAULT_RECEIVER` (the webhook, when one is set), grouped
and timed by ``alertmanager.route``; alerts labelled ``severity="critical"`` go to
:data:`CRITICAL_RECEIVER` instead (the webhook AND email), repeated every
``critical_repeat_interval``.

With neither a webhook nor email configured, both receivers have no notifier. That is valid
Alertmanager configuration and drops nothing: alerts are still received, grouped, inhibited
and shown by Alertmanager's UI and ``amtool alert query`` (and by Prometheus' /alerts); they
are only not pushed anywhere. The rendered file says so in a comment.

The SMTP password is never written into the file. Alertmanager 0.25 (Debian 12) accepts
``auth_password_file`` in ``email_configs`` (checked with ``amtool check-config``, which
refuses unknown keys), so the file names :func:`smtp_password_file`, a file in the bundle's
config directory that the deploy fills from the environment variable named by
``alertmanager.receivers.email.auth_password_env``, readable only by root and the group
Alertmanager runs as.
"""

from __future__ import annotations

import re
from typing import Any

from monitoring.content import rules
from monitoring.stack.layout import Layout, layout
from monitoring.stack.schema import Email, Stack, prom_duration

DEFAULT_RECEIVER = "provider-fallback"
CRITICAL_RECEIVER = "provider-fallback-critical"

#: File name of the SMTP password inside the bundle's config directory.
SMTP_PASSWORD_FILE = "alertmanager-smtp-password"  # noqa: S105 (a file name, not a password)

NO_RECEIVER_NOTE = (
    "# No webhook or email is configured in stack.yaml (alertmanager.receivers): alerts are\n"
    "# kept, grouped and inhibited, and shown by Alertmanager's UI and `amtool alert query`,\n"
    "# but sent nowhere. A receiver without notifiers is valid; nothing is dropped silently.\n"
)


def smtp_password_file(lay: Layout) -> str:
    """Where the deploy writes the SMTP password that ``auth_password_file`` names."""
    return lay.join(lay.config_dir, SMTP_PASSWORD_FILE)


def has_notifier(stack: Stack) -> bool:
    """True when any alert would be pushed somewhere (a webhook, or email)."""
    receivers = stack.alertmanager.receivers
    return bool(receivers.webhook.url) or receivers.email.enabled


def _matcher(label: str, *values: str) -> str:
    if len(values) == 1:
        return f'{label}="{values[0]}"'
    return f'{label}=~"{"|".join(re.escape(v) for v in values)}"'


def _email(email: Email, lay: Layout) -> dict[str, Any]:
    """One email notifier; refuses what Alertmanager would refuse or silently ignore."""
    # host:port and a user name beside a password are checked by the schema.
    config: dict[str, Any] = {
        "to": email.to,
        "from": email.sender,
        "smarthost": email.smarthost,
    }
    if email.auth_username:
        config["auth_username"] = email.auth_username
    if email.auth_password_env:
        config["auth_password_file"] = smtp_password_file(lay)
    config["send_resolved"] = True
    return config


def _receiver(name: str, webhook_url: str | None, email: dict[str, Any] | None
              ) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    if email is not None:
        receiver["email_configs"] = [email]
    return receiver


def build(stack: Stack, lay: Layout | None = None) -> dict[str, Any]:
    """alertmanager.yml for ``stack``; ``lay`` places the SMTP password file (Linux default).

    Inhibit rules keep one alert per situation: the highest budget level that fires mutes the
    lower ones, and AllProvidersDown mutes the per-provider ProviderDown alerts it explains.
    """
    lay = lay or layout(stack, "linux")
    am = stack.alertmanager
    route = am.route
    receivers = am.receivers
    email = _email(receivers.email, lay) if receivers.email.enabled else None
    return {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": list(route.group_by),
            "group_wait": prom_duration(route.group_wait),
            "group_interval": prom_duration(route.group_interval),
            "repeat_interval": prom_duration(route.repeat_interval),
            "routes": [
                {
                    "receiver": CRITICAL_RECEIVER,
                    "matchers": [_matcher("severity", rules.CRITICAL)],
                    "repeat_interval": prom_duration(route.critical_repeat_interval),
                },
            ],
        },
        "receivers": [
            _receiver(DEFAULT_RECEIVER, receivers.webhook.url, None),
            _receiver(CRITICAL_RECEIVER, receivers.webhook.url, email),
        ],
        "inhibit_rules": [
            {
                "source_matchers": [_matcher("alertname", rules.BUDGET_EXCEEDED)],
                "target_matchers": [
                    _matcher("alertname", rules.BUDGET_CRITICAL, rules.BUDGET_WARNING)],
            },
            {
                "source_matchers": [_matcher("alertname", rules.BUDGET_CRITICAL)],
                "target_matchers": [_matcher("alertname", rules.BUDGET_WARNING)],
            },
            {
                "source_matchers": [_matcher("alertname", rules.ALL_PROVIDERS_DOWN)],
                "target_matchers": [_matcher("alertname", rules.PROVIDER_DOWN)],
            },
        ],
    }
