"""The outage report (runbook 7.3) and the recurring-issues table (5.3), from the event log.

Both are built from the watchdog's JSON event log and its saved state, never typed by hand:

- :func:`outage_report` fills 7.3's template: timestamp, severity, affected providers, the
  status of the primary (P1), fallback (P2) and tertiary (P3) target, impact, the active
  provider with the estimated recovery of runbook 7.2, and next steps per error class (the
  fixes of runbook 4.1). Severity: **Critical** when every provider failed (degraded mode) or
  the budget kill switch is on, **High** when the primary is not usable (the agents are on a
  fallback), **Medium** otherwise (a provider down behind LiteLLM's own fallbacks, or only
  events in the period). Impact: development workflow when the agents are not on the
  primary; CI/CD when fewer providers are healthy than ``provider-fallback check`` needs
  (6.3); production deployment when every provider failed.
- :func:`history` aggregates the events into 5.3's table: one row per issue (the kind, the
  target it hit and the error class), its last date, how it was resolved, and how often.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from monitoring.events import Event, EventKind, format_ts
from monitoring.host_config import TargetSpec, WatchdogConfig
from monitoring.watchdog.circuit import circuit_of
from monitoring.watchdog.classify import ErrorClass
from monitoring.watchdog.loop import LEAVING_DEGRADED
from monitoring.watchdog.probes import PROXY_ROUTE
from monitoring.watchdog.state import WatchdogState

#: Runbook 7.2's recovery times, by priority (P1..P4).
RECOVERY: Final = ("1-2 min (restart the LiteLLM service)", "immediate (already available)",
                   "2-5 min (check the provider's API status)",
                   "5-10 min (check the API key and rate limits)")
#: Runbook 4.1's fixes, per error class.
NEXT_STEPS: Final[dict[str, tuple[str, ...]]] = {
    ErrorClass.NETWORK: ("Restart LiteLLM with the correct config (the watchdog restarts it)",
                         "Check the firewall rule for the proxy port",
                         "Check that the port is free (netstat / ss)"),
    ErrorClass.AUTH: ("Set the correct API key in the secrets file / user environment",
                      "Verify the key at the provider's console",
                      "Regenerate the key if it may be compromised"),
    ErrorClass.RATE: ("Wait for the rate limit to reset (Retry-After is honoured)",
                      "Queue or spread requests", "Add rate limiting to the proxy config"),
    ErrorClass.CONFIG: ("Fix the model names in stack.yaml", "Render and deploy the config",
                        "Restart LiteLLM"),
    ErrorClass.SERVER: ("Update the LiteLLM package (pinned in stack.yaml)",
                        "Check the Python dependencies of the proxy venv",
                        "Review the proxy's error log"),
    ErrorClass.TIMEOUT: ("Increase litellm.request_timeout", "Check network stability",
                         "Consider caching (litellm.cache)"),
}
GENERIC_STEPS: Final = ("Run `provider-fallback check` and `provider-fallback status`",
                        "Follow runbook phase 2 for the error class shown",
                        "Switch back with `provider-fallback restore` once it recovered")
_ISSUE_KINDS: Final = {EventKind.FALLBACK, EventKind.EMERGENCY, EventKind.RESTART,
                       EventKind.ERROR, EventKind.KILL_SWITCH}


def _target_status(config: WatchdogConfig, state: WatchdogState, target: TargetSpec) -> str:
    routes = [r for r in (target.route, *target.via) if r]
    if not routes:
        return "available (built into the agent)"
    main = state.route(target.route or routes[0])
    circuit = circuit_of(main)
    text = circuit.label
    if not circuit.usable and main.last_error_class:
        text += f" ({main.last_error_class}: {main.last_message or 'no message'})"
    if target.via and circuit.usable:
        down = [r for r in target.via if not circuit_of(state.route(r)).usable]
        if down and len(down) == len(target.via):
            text = f"degraded (every provider behind it failed: {', '.join(down)})"
        elif down:
            text += f" (behind it, failed: {', '.join(down)}; LiteLLM falls back)"
    return text


@dataclass(frozen=True)
class ReportInputs:
    config: WatchdogConfig
    state: WatchdogState
    events: Sequence[Event]
    now: datetime
    kill_switch_active: bool = False


def outage_data(inp: ReportInputs) -> dict[str, Any]:
    """Runbook 7.3's report as data (see the module docstring for the rules): what
    ``report --json`` prints and what :func:`outage_report` writes as Markdown."""
    config, state = inp.config, inp.state
    routes = [PROXY_ROUTE, *(p.name for p in config.providers)]
    down = [r for r in routes if not circuit_of(state.route(r)).usable]
    hit = {e.from_ for e in inp.events
           if e.kind in (EventKind.FALLBACK, EventKind.RESTART, EventKind.ERROR) and e.from_}
    affected = sorted(set(down) | {h for h in hit if h is not None and h in routes}
                      | {h for h in hit if h is not None and h not in routes})
    targets = config.targets
    primary = targets[0]
    active = next((t for t in targets if t.name == state.active_target), None)
    healthy = len(routes) - len(down)
    if state.degraded or inp.kill_switch_active:
        severity = "Critical"
    elif active is not None and active.name != primary.name:
        severity = "High"
    else:
        severity = "Medium"
    first = min((e.ts for e in inp.events), default=inp.now)
    classes = [state.route(r).last_error_class for r in down]
    classes += [e.reason for e in inp.events if e.kind in _ISSUE_KINDS and e.reason]
    steps: list[str] = []
    for cls in dict.fromkeys(c for c in classes if c):
        steps += [s for s in NEXT_STEPS.get(cls, ()) if s not in steps]
    if inp.kill_switch_active:
        steps.insert(0, "Budget exceeded: only free providers until the month rolls over or "
                        "`provider-fallback budget reset --yes`")
    steps = steps or list(GENERIC_STEPS)
    names = ("Primary", "Fallback", "Tertiary")
    rank = [t.name for t in targets]
    recovery = RECOVERY[min(rank.index(primary.name), 3)]
    if active is not None and active.name == primary.name and not down:
        recovery = "recovered"
    return {
        "date": format_ts(first),
        "severity": severity,
        "affected_providers": affected,
        "current_status": [{"role": names[i], "target": t.name, "label": t.label,
                            "status": _target_status(config, state, t)}
                           for i, t in enumerate(targets[:3])],
        "impact": {
            "development_workflow": active is None or active.name != primary.name
            or state.degraded,
            "ci_cd_pipeline": healthy < config.min_healthy_providers,
            "production_deployment": state.degraded,
        },
        "mitigation": {"active_target": active.name if active else None,
                       "active_label": active.label if active else None,
                       "degraded": state.degraded, "estimated_recovery": recovery},
        "next_steps": steps[:3],
        "events": [e.to_json() for e in inp.events],
    }


def outage_report(inp: ReportInputs) -> str:
    """Runbook 7.3's Markdown, filled from :func:`outage_data`."""
    data = outage_data(inp)
    impact, mitigation = data["impact"], data["mitigation"]

    def box(flag: bool) -> str:
        return "[x]" if flag else "[ ]"

    status_lines = [f"- {s['role']} ({s['label']}): {s['status']}"
                    for s in data["current_status"]]
    lines = [
        "## Provider Outage Report", "",
        f"**Date**: {data['date']}",
        f"**Severity**: {data['severity']}",
        f"**Affected Providers**: {', '.join(data['affected_providers']) or 'none'}", "",
        "### Current Status", "", *status_lines, "",
        "### Impact", "",
        f"- {box(impact['development_workflow'])} Development workflow affected",
        f"- {box(impact['ci_cd_pipeline'])} CI/CD pipeline affected",
        f"- {box(impact['production_deployment'])} Production deployment affected", "",
        "### Mitigation", "",
        f"- Current active provider: {mitigation['active_label'] or 'unknown'}"
        f"{' (degraded mode: stale answers from the cache)' if mitigation['degraded'] else ''}",
        f"- Estimated recovery: {mitigation['estimated_recovery']}", "",
        "### Next Steps", "",
        *[f"{i}. {step}" for i, step in enumerate(data["next_steps"], start=1)], "",
        "### Events", "",
        *([f"- {e.line().rstrip()}" for e in inp.events] or ["- none in this period"]),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Issue:
    date: str
    issue: str
    resolution: str
    count: int


def _issue_text(event: Event, labels: dict[str, str]) -> str:
    if event.kind == EventKind.FALLBACK:
        return event.message.split(", switched to ")[0]
    if event.kind == EventKind.RESTART:
        return event.message.split(", restarting it")[0] + " (proxy restarted)"
    if event.kind == EventKind.KILL_SWITCH:
        return "Budget exceeded (kill switch)"
    if event.kind == EventKind.EMERGENCY:
        return "All providers failed (degraded mode)"
    return event.message.split(" (")[0][:60]


def history(events: Sequence[Event], config: WatchdogConfig) -> list[Issue]:
    """Runbook 5.3's table: last date, issue, how its last occurrence ended, frequency; the
    most frequent first. A RECOVERY resolves open proxy restarts, a RESTORED open fallbacks."""
    labels = {t.name: t.label for t in config.targets}
    issues: dict[str, Issue] = {}
    unresolved: dict[str, str] = {}  # issue key -> kind of event that resolves it
    for event in events:
        if event.kind == EventKind.KILL_SWITCH and event.message.startswith("DEACTIVATED"):
            key = "Budget exceeded (kill switch)"
            if key in issues:
                issues[key].resolution = ("Month rolled over" if "within budget" in
                                          event.message else "Reset by hand")
            continue
        if event.kind in _ISSUE_KINDS:
            key = _issue_text(event, labels)
            date = event.ts.strftime("%Y-%m-%d")
            found = issues.setdefault(key, Issue(date, key, "open", 0))
            found.count += 1
            found.date = date
            found.resolution = "open"
            if event.kind == EventKind.RESTART:
                unresolved[key] = EventKind.RECOVERY
            elif event.kind == EventKind.FALLBACK:
                unresolved[key] = EventKind.RESTORED
            continue
        if event.kind == EventKind.RESTORED and event.message == LEAVING_DEGRADED:
            key = "All providers failed (degraded mode)"
            if key in issues:
                issues[key].resolution = "Providers recovered"
            continue
        for key, resolver in list(unresolved.items()):
            if resolver != event.kind:
                continue
            if event.reason == "manual":
                issues[key].resolution = "Switched back by hand"
            elif event.kind == EventKind.RECOVERY:
                issues[key].resolution = "Auto-recovery (restart)"
            else:
                back = labels.get(event.to or "", event.to or "primary")
                issues[key].resolution = f"Recovered, switched back to {back}"
            del unresolved[key]
    return sorted(issues.values(), key=lambda i: (-i.count, i.issue))


def history_table(rows: Sequence[Issue]) -> str:
    """The Markdown table of runbook 5.3."""
    lines = ["| Date       | Issue | Resolution | Frequency |",
             "| ---------- | ----- | ---------- | --------- |"]
    lines += [f"| {r.date} | {r.issue} | {r.resolution} | {r.count}x |" for r in rows]
    return "\n".join(lines) + "\n"
