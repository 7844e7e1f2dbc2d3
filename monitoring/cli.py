"""``provider-fallback``: the watchdog on the host, and what a person asks of it.

Commands (all take ``--config``, the rendered watchdog.json; ``--json`` for tools):

- ``watch``: the watchdog loop (what the service runs), with its /metrics exporter.
- ``status``: per route its circuit state, error class, diagnosis, last error and latency, and
  the active target, pin, degraded mode and restarts, from the watchdog's saved state.
- ``check``: probe now (runbook 6.1 and 6.3): the proxy and every provider; exit 1 when fewer
  than ``min_healthy_providers`` are healthy.
- ``switch TARGET [--for DURATION]``: pin the agents to a target (manual, until ``restore`` or
  the expiry); ``restore``: drop the pin and let health decide again.
- ``events [--since DURATION|TIMESTAMP]``: the event log.
- ``budget``: this month's spend, status (OK / WARNING / CRITICAL / EXCEEDED), daily threshold,
  month-end projection and the kill switch (runbook 9.1, 9.3); ``budget reset --yes`` turns
  the kill switch off for the rest of the month.
- ``select --task coding|implementation|research|analysis``: the cost-aware choice (9.2).
- ``report [--since]``: the outage report of runbook 7.3; ``history``: the recurring-issues
  table of 5.3.

Exit codes: 0 ok; 1 ``check`` found too few healthy providers; 2 bad usage or config;
3 ``switch``/``restore`` was not picked up by a running watchdog in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitoring.agent_files import switch_agents
from monitoring.atomic import atomic_write
from monitoring.budget import BudgetStatus, budget_status
from monitoring.circuit import circuit_of
from monitoring.classify import process_alive, redact
from monitoring.cost_log import iter_records
from monitoring.events import EventLog, read_events
from monitoring.exporter import Exporter
from monitoring.kill_switch import KillSwitch
from monitoring.probes import PROXY_ROUTE, Prober
from monitoring.recovery import choose_backend
from monitoring.report import ReportInputs, history, history_table, outage_report
from monitoring.select import TASKS, NoProviderError, cost_table, select_provider
from monitoring.stack import parse_duration
from monitoring.state import load_state, save_state
from monitoring.watchdog import PIN_FILE, WATCHDOG_PID_FILE, Watchdog
from monitoring.watchdog_config import WatchdogConfig

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, EXIT_NOT_APPLIED = 0, 1, 2, 3
DEFAULT_CONFIG = os.environ.get("PROVIDER_FALLBACK_CONFIG",
                                "/etc/provider-fallback/watchdog.json")


def _load(path: str) -> WatchdogConfig:
    try:
        return WatchdogConfig.load(path)
    except FileNotFoundError:
        raise SystemExit(_usage(f"no watchdog config at {path} (--config or "
                                "PROVIDER_FALLBACK_CONFIG)")) from None
    except (ValueError, ValidationError) as exc:
        raise SystemExit(_usage(f"{path} is not a valid watchdog config: {exc}")) from None


def _usage(message: str) -> int:
    print(f"provider-fallback: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _age(when: datetime | None, now: datetime) -> str:
    return "-" if when is None else f"{(now - when).total_seconds():.0f}s ago"


# --------------------------------------------------------------------------- commands


def wait_for_proxy(config: WatchdogConfig, seconds: float) -> bool:
    """Wait (up to ``seconds``) until the watchdog has seen the proxy answer since this call,
    so that a status right after a deploy shows a settled picture, not the boot. Polls the
    watchdog's state file; True when it did."""
    started = datetime.now(UTC)
    deadline = time.monotonic() + seconds
    while True:
        state = load_state(config.paths.state_file).state
        seen = state.route(PROXY_ROUTE).last_success
        if state.active_target and seen is not None and seen >= started:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def cmd_status(config: WatchdogConfig, as_json: bool, wait: float = 0) -> int:
    if wait > 0 and not wait_for_proxy(config, wait):
        print(f"(the proxy did not answer the watchdog within {wait:.0f} s)", file=sys.stderr)
    state = load_state(config.paths.state_file).state
    now = datetime.now(UTC)
    routes = [PROXY_ROUTE, *(p.name for p in config.providers)]
    hour = now - timedelta(hours=1)
    pin = state.active_pin(now)
    summary = {
        "active_target": state.active_target,
        "active_since": state.active_since,
        "pin": pin.model_dump(mode="json") if pin else None,
        "degraded": state.degraded,
        "restarts_last_hour": state.restarts_since(hour),
        "switches_last_hour": state.switches_since(hour),
        "crash_loop": bool(state.extra.get("crash_loop")),
        # Set while the hourly switch cap is what keeps the agents where they are.
        "cap_hold": state.extra.get("cap_hold"),
        "budget": {**_budget(config, now)[0].to_json(),
                   "kill_switch_active": _budget(config, now)[1]},
        "routes": {name: {"state": circuit_of(state.route(name)).label,
                          **state.route(name).model_dump(mode="json", exclude={"state"})}
                   for name in routes},
    }
    if as_json:
        _print_json(summary)
        return EXIT_OK
    labels = {t.name: t.label for t in config.targets}
    active = state.active_target or "unknown (the watchdog has not run yet)"
    print(f"active target: {labels.get(active, active)}"
          f"{f' (pinned until {pin.expires_at})' if pin and pin.expires_at else ''}"
          f"{' (pinned)' if pin and not pin.expires_at else ''}")
    degraded = ("ON (every provider failed: repeated prompts get stale answers)"
                if state.degraded else "off")
    print(f"degraded mode: {degraded}; proxy restarts in the last "
          f"hour: {summary['restarts_last_hour']}{'; CRASH LOOP' if summary['crash_loop'] else ''}")
    hold = state.extra.get("cap_hold")
    if isinstance(hold, dict):
        print(f"switch cap: holding the agents off {hold.get('target')} until "
              f"{hold.get('until') or 'a switch of the last hour ages out'} "
              f"({hold.get('switches_last_hour')} switches in the last hour, "
              f"cap {hold.get('cap')})")
    budget, kill = _budget(config, now)
    print(f"budget: {budget.level}, ${budget.spent:.2f} of ${budget.limit:.2f} this month "
          f"({budget.percent_used:.0f}%); kill switch {'ON' if kill else 'off'}; stale answers "
          f"served this month: {budget.stale_answers}")
    rows = [["ROUTE", "STATE", "CLASS", "LATENCY", "LAST OK", "LAST ERROR / DIAGNOSIS"]]
    for name in routes:
        route = state.route(name)
        latency = "-" if route.last_latency_s is None else f"{route.last_latency_s * 1000:.0f}ms"
        detail = route.diagnosis or route.last_message or ""
        rows.append([name, circuit_of(route).label, route.last_error_class or "-", latency,
                     _age(route.last_success, now), redact(detail)[:90]])
    print(_table(rows))
    return EXIT_OK


async def _check(config: WatchdogConfig) -> list[dict[str, Any]]:
    async with Prober.from_config(config) as prober:
        alive = await prober.liveness()
        proxy = alive if not alive.ok else await prober.proxy_models()
        results = [proxy, *await prober.all_providers()]
    return [{"route": r.route, "ok": r.ok, "class": r.error_class.value if r.error_class
             else None, "latency_s": round(r.latency_s, 3), "message": r.message}
            for r in results]


def cmd_check(config: WatchdogConfig, as_json: bool) -> int:
    results = asyncio.run(_check(config))
    healthy = [r["route"] for r in results if r["ok"]]
    enough = len(healthy) >= config.min_healthy_providers
    if as_json:
        _print_json({"healthy": healthy, "minimum": config.min_healthy_providers,
                     "ok": enough, "results": results})
    else:
        rows = [["ROUTE", "OK", "CLASS", "LATENCY", "MESSAGE"]]
        rows += [[r["route"], "yes" if r["ok"] else "NO", r["class"] or "-",
                  f"{r['latency_s'] * 1000:.0f}ms", r["message"][:80]] for r in results]
        print(_table(rows))
        mark = "OK" if enough else "WARNING"
        print(f"{mark}: {len(healthy)} providers healthy (minimum "
              f"{config.min_healthy_providers}): {healthy}")
    return EXIT_OK if enough else EXIT_UNHEALTHY


def _watchdog_running(config: WatchdogConfig) -> bool:
    """From the watchdog's PID file; ``process_alive`` never signals the process (on Windows
    ``os.kill`` would terminate it) and counts another user's process as alive."""
    pid_file = Path(config.paths.state_file).with_name(WATCHDOG_PID_FILE)
    try:
        return process_alive(int(pid_file.read_text().strip()))
    except (OSError, ValueError):
        return False


def cmd_pin(config: WatchdogConfig, target: str | None, ttl: float | None,
            as_json: bool) -> int:
    """``switch`` (target set) and ``restore`` (target None)."""
    names = [t.name for t in config.targets]
    if target is not None and target not in names:
        return _usage(f"unknown target {target!r}; one of: {', '.join(names)}")
    state_path = Path(config.paths.state_file)
    reason = "provider-fallback switch"
    wish = {"target": target, "ttl_s": ttl, "reason": reason}
    if _watchdog_running(config):
        pin_path = state_path.with_name(PIN_FILE)
        atomic_write(pin_path, json.dumps(wish).encode(), new_mode=0o644)
        deadline = time.monotonic() + max(10.0, 5 * config.probes.interval)
        while time.monotonic() < deadline and pin_path.exists():
            time.sleep(0.1)
        if pin_path.exists():
            # Withdrawn, so a watchdog that comes back later does not apply a stale wish.
            with contextlib.suppress(OSError):
                pin_path.unlink()
            print("the watchdog did not pick the request up in time; nothing changed",
                  file=sys.stderr)
            return EXIT_NOT_APPLIED
        outcome = "handed to the running watchdog"
    else:
        # No watchdog: apply it here, the same way the watchdog would.
        state = load_state(state_path).state
        now = datetime.now(UTC)
        if target is None:
            state.pin = None
            outcome = "pin removed (no watchdog is running to restore by health)"
        else:
            spec = next(t for t in config.targets if t.name == target)
            state.set_pin(target, now, timedelta(seconds=ttl) if ttl else None,
                          reason=reason)
            failed = [r for r in switch_agents(config.agents, spec.settings).values()
                      if not r.ok]
            for result in failed:
                print(f"agent file {result.path} left untouched: {result.error}",
                      file=sys.stderr)
            if failed:
                return EXIT_NOT_APPLIED
            EventLog.from_config(config).record(
                "FALLBACK" if target != names[0] else "RESTORED",
                f"manual switch to {spec.label}", to=target, reason="manual")
            state.set_active(target, now)
            outcome = f"agents switched to {spec.label}"
        save_state(state, state_path)
    if as_json:
        _print_json({"target": target, "ttl_s": ttl, "outcome": outcome})
    else:
        print(outcome)
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    """A duration back from now (``1h``) or an ISO timestamp (naive means UTC, as in the log)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def cmd_events(config: WatchdogConfig, since: str | None, as_json: bool) -> int:
    try:
        start = _since(since)
    except ValueError:
        return _usage(f"--since {since!r}: a duration such as 1h or an ISO timestamp")
    path = config.paths.event_jsonl if as_json else config.paths.event_log
    events = read_events(path, since=start) if Path(path).exists() else []
    if as_json:
        _print_json([json.loads(e.json_line()) for e in events])
    else:
        for event in events:
            print(event.line(), end="")
    return EXIT_OK


def _budget(config: WatchdogConfig, now: datetime) -> tuple[BudgetStatus, bool]:
    status = budget_status(iter_records(config.paths.cost_log), config.budget, now)
    return status, KillSwitch(config).state().active_in(status.month)


def cmd_budget(config: WatchdogConfig, action: str | None, yes: bool, as_json: bool) -> int:
    """Runbook 9.1's status (and 9.3's switch); ``reset`` needs ``--yes``."""
    now = datetime.now(UTC)
    status, kill = _budget(config, now)
    if action == "reset":
        if not yes:
            return _usage("budget reset turns the kill switch off and lets paid providers be "
                          "used for the rest of the month: run it again with --yes to confirm")
        was = KillSwitch(config).reset(status.spent, now)
        print("kill switch reset: paid providers allowed until the end of "
              f"{status.month}" if was else "the kill switch was not active; nothing changed")
        return EXIT_OK
    if as_json:
        _print_json({**status.to_json(), "kill_switch_active": kill,
                     "allowed_providers": KillSwitch(config).allowed(kill)})
        return EXIT_OK
    print(f"Budget Status: {status.level}")
    print(f"Spent: ${status.spent:.2f} of ${status.limit:.2f} ({status.percent_used:.1f}%) in "
          f"{status.month}, {status.requests} requests")
    print(f"Remaining: ${status.remaining:.2f}")
    print(f"Today: ${status.spent_today:.2f} (daily threshold ${status.daily_threshold:.2f}"
          f"{', EXCEEDED' if status.daily_warning else ''})")
    print(f"Projected month end: ${status.projected:.2f}"
          f"{' (over budget)' if status.projected_overspend else ''}")
    if status.by_provider:
        print("By provider: " + ", ".join(f"{k} ${v:.2f}"
                                          for k, v in sorted(status.by_provider.items())))
    if kill:
        print("⚠️ KILL-SWITCH: Budget exceeded, switching to free providers only")
        print(f"Allowed providers: {', '.join(config.budget.free_allow_list)}")
    return EXIT_OK


def cmd_select(config: WatchdogConfig, task: str, as_json: bool) -> int:
    status, kill = _budget(config, datetime.now(UTC))
    try:
        choice = select_provider(task, cost_table(config), status.remaining,
                                 preferences=config.budget.task_preferences,
                                 allowed=config.budget.free_allow_list if kill else None)
    except NoProviderError as exc:
        print(f"provider-fallback: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if as_json:
        _print_json({"task": task, "provider": choice, "budget_status": str(status.level),
                     "remaining_usd": round(status.remaining, 8), "kill_switch_active": kill})
    else:
        print(choice)
    return EXIT_OK


def cmd_report(config: WatchdogConfig, since: str | None, kind: str, as_json: bool) -> int:
    try:
        start = _since(since or "24h")
    except ValueError:
        return _usage(f"--since {since!r}: a duration such as 1h or an ISO timestamp")
    path = config.paths.event_jsonl
    events = read_events(path, since=start if kind == "report" or since else None)
    if kind == "history":
        rows = history(events, config)
        if as_json:
            _print_json([row.__dict__ for row in rows])
        else:
            print(history_table(rows), end="")
        return EXIT_OK
    now = datetime.now(UTC)
    state = load_state(config.paths.state_file).state
    print(outage_report(ReportInputs(config, state, events, now,
                                     kill_switch_active=_budget(config, now)[1])), end="")
    return EXIT_OK


async def _watch(config: WatchdogConfig) -> None:
    exporter = Exporter()
    exporter.serve(config.listen.host, config.listen.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Windows has no loop signal handlers; Ctrl+C and task end still stop the process.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Prober.from_config(config) as prober:
        watchdog = Watchdog(config, prober=prober, backend=choose_backend(config),
                            events=EventLog.from_config(config), exporter=exporter)
        await watchdog.run(stop)


def cmd_watch(config: WatchdogConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request at INFO: several lines a second from the probes, which would
    # bury the events in the journal and grow the log by megabytes a day.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for directory in (config.paths.state_dir, config.paths.log_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
    asyncio.run(_watch(config))
    return EXIT_OK


# --------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="provider-fallback", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help="the rendered watchdog.json")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("watch", parents=[common], help="run the watchdog loop")
    status = sub.add_parser("status", parents=[common],
                            help="routes, circuits and the active target")
    status.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for the watchdog to see the proxy answer")
    sub.add_parser("check", parents=[common], help="probe now; exit 1 if too few are healthy")
    switch = sub.add_parser("switch", parents=[common], help="pin the agents to a target")
    switch.add_argument("target")
    switch.add_argument("--for", dest="ttl", help="pin expiry, e.g. 30m (default: until restore)")
    sub.add_parser("restore", parents=[common], help="drop the pin")
    events = sub.add_parser("events", parents=[common], help="the event log")
    events.add_argument("--since", help="a duration (1h) or an ISO timestamp")
    budget = sub.add_parser("budget", parents=[common],
                            help="this month's spend, status and kill switch (9.1, 9.3)")
    budget.add_argument("action", nargs="?", choices=["reset"],
                        help="reset: turn the kill switch off for the rest of the month")
    budget.add_argument("--yes", action="store_true", help="confirm `budget reset`")
    select = sub.add_parser("select", parents=[common], help="cost-aware provider choice (9.2)")
    select.add_argument("--task", required=True, choices=TASKS)
    report = sub.add_parser("report", parents=[common], help="the outage report (7.3)")
    report.add_argument("--since", help="events since: a duration (default 24h) or ISO time")
    hist = sub.add_parser("history", parents=[common], help="recurring issues (5.3)")
    hist.add_argument("--since", help="events since: a duration or ISO time (default all)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = _load(args.config)
    if args.command == "watch":
        return cmd_watch(config)
    if args.command == "status":
        return cmd_status(config, args.json, args.wait)
    if args.command == "check":
        return cmd_check(config, args.json)
    if args.command == "switch":
        try:
            ttl = parse_duration(args.ttl) if args.ttl else None
        except ValueError:
            return _usage(f"--for {args.ttl!r}: a duration such as 30m or 2h")
        return cmd_pin(config, args.target, ttl, args.json)
    if args.command == "restore":
        return cmd_pin(config, None, None, args.json)
    if args.command == "budget":
        return cmd_budget(config, args.action, args.yes, args.json)
    if args.command == "select":
        return cmd_select(config, args.task, args.json)
    if args.command in ("report", "history"):
        return cmd_report(config, args.since, args.command, args.json)
    return cmd_events(config, args.since, args.json)


if __name__ == "__main__":
    sys.exit(main())
