"""provider-fallback: the watchdog on the host, and what a person asks of it.

Each subcommand reads the rendered watchdog config (--config, or the PROVIDER_FALLBACK_CONFIG
variable) and takes --json for programs: one JSON document (events: one JSON object per line),
timestamps in ISO 8601 UTC with Z; the shapes are in docs/cli-json/. Colour only on a
terminal, never with NO_COLOR set.

Exit codes: 0 ok; 1 `check` found the watchdog stopped or too few healthy providers (or
`select` found no provider); 2 bad usage or config; 3 `switch`/`restore` was not picked up by
a running watchdog in time.
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
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from monitoring import console as out
from monitoring.atomic import atomic_write
from monitoring.events import Event, EventLog, parse_line, read_events
from monitoring.file_cursor import FileCursor
from monitoring.host_config import WatchdogConfig
from monitoring.proxy.budget import BudgetStatus, budget_status
from monitoring.proxy.choice import TASKS, NoProviderError, cost_table, select_provider
from monitoring.proxy.cost_log import iter_records
from monitoring.proxy.kill_switch import KillSwitch
from monitoring.stack.scalars import parse_duration
from monitoring.version import installed
from monitoring.watchdog.circuit import circuit_of
from monitoring.watchdog.classify import process_alive, redact
from monitoring.watchdog.exporter import Exporter
from monitoring.watchdog.heap import keep_big_buffers_out_of_the_heap
from monitoring.watchdog.loop import PIN_FILE, WATCHDOG_PID_FILE, Watchdog, agent_manager
from monitoring.watchdog.probes import PROXY_ROUTE, Prober
from monitoring.watchdog.recovery import choose_backend
from monitoring.watchdog.report import (
    ReportInputs,
    history,
    history_table,
    outage_data,
    outage_report,
)
from monitoring.watchdog.state import WatchdogState, load_state, save_state

if TYPE_CHECKING:  # rich is imported by the commands that print: `watch` never loads it
    from rich.text import Text  # (monitoring/console.py; issue 13, B9)

    from monitoring.agents.base import Adapter
    from monitoring.agents.engine import AgentManager

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, EXIT_NOT_APPLIED = 0, 1, 2, 3
DEFAULT_CONFIG = os.environ.get("PROVIDER_FALLBACK_CONFIG",
                                "/etc/provider-fallback/watchdog.json")
#: The watchdog's data is stale when its state file is older than this many probe intervals
#: (and never less than STALE_MIN_S): it saves the state on every tick that changed anything,
#: and the proxy's route changes on every tick (its last success or failure).
STALE_INTERVALS, STALE_MIN_S = 10, 30.0
#: How often `events --follow` and `status --wait` look at the files again.
POLL_S = 0.5


def _load(path: str) -> WatchdogConfig:
    try:
        return WatchdogConfig.load(path)
    except FileNotFoundError:
        raise SystemExit(_usage(f"no watchdog config at {path} (--config or "
                                "PROVIDER_FALLBACK_CONFIG)")) from None
    except PermissionError:
        raise SystemExit(_usage(f"cannot read {path}: run it through sudo (or as a member "
                                "of the service's group)")) from None
    except (ValueError, ValidationError) as exc:
        raise SystemExit(_usage(f"{path} is not a valid watchdog config: {exc}")) from None


def _usage(message: str) -> int:
    print(f"provider-fallback: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print_json(data: Any) -> None:
    out.print_json(data)


# --------------------------------------------------------------------------- the watchdog


@dataclass(frozen=True)
class Liveness:
    """Whether the watchdog runs, and how old the state it left is (``systemctl status``'s
    first line). ``state``: running, stale (its process exists but has not saved a tick for
    too long: hung), stopped, or never-run (no state file)."""

    state: str
    pid: int | None
    updated: datetime | None
    stale_after_s: float

    @property
    def running(self) -> bool:
        return self.state == "running"

    def age_s(self, now: datetime) -> float | None:
        return None if self.updated is None else max(0.0, (now - self.updated).total_seconds())

    def to_json(self, now: datetime) -> dict[str, Any]:
        age = self.age_s(now)
        return {"state": self.state, "pid": self.pid, "updated_at": self.updated,
                "age_s": None if age is None else round(age, 1),
                "stale_after_s": self.stale_after_s}

    def line(self, now: datetime) -> Text:
        """The first line of ``status``: dot, verdict, pid, age of the data."""
        from rich.text import Text

        dot = out.glyph("●", "*") if self.pid is not None else out.glyph("○", "o")
        verdict = {"running": "active (running)", "stale": "active but STALE (not saving)",
                   "stopped": "inactive (not running)",
                   "never-run": "inactive (it has never run here)"}[self.state]
        style = out.STYLES["running" if self.running else self.state.split("-")[0]
                            if self.state != "never-run" else "stopped"]
        text = Text.assemble((f"{dot} ", style), "watchdog: ", (verdict, style))
        if self.pid is not None and self.state != "stopped":
            text.append(f", pid {self.pid}")
        if self.updated is not None:
            text.append(f"; data from {out.ago(self.updated, now)} ({out.iso(self.updated)})")
        return text


def _pid_file(config: WatchdogConfig) -> Path:
    return Path(config.paths.state_file).with_name(WATCHDOG_PID_FILE)


def _watchdog_pid(config: WatchdogConfig) -> int | None:
    """From the watchdog's PID file; ``process_alive`` never signals the process (on Windows
    ``os.kill`` would terminate it) and counts another user's process as alive."""
    pid_file = _pid_file(config)
    try:
        pid = int(pid_file.read_text().strip())
        written = pid_file.stat().st_mtime
    except (OSError, ValueError):
        return None
    # A process younger than its PID file's write is another one that reused the PID.
    return pid if process_alive(pid, started_by=written) else None


def _watchdog_running(config: WatchdogConfig) -> bool:
    return _watchdog_pid(config) is not None


def watchdog_liveness(config: WatchdogConfig) -> Liveness:
    pid = _watchdog_pid(config)
    try:
        mtime = Path(config.paths.state_file).stat().st_mtime
        updated: datetime | None = datetime.fromtimestamp(mtime, UTC)
    except OSError:
        updated = None
    stale_after = max(STALE_MIN_S, STALE_INTERVALS * config.probes.interval)
    if pid is None:
        state = "stopped" if updated is not None else "never-run"
    elif updated is None or (datetime.now(UTC) - updated).total_seconds() > stale_after:
        state = "stale"
    else:
        state = "running"
    return Liveness(state, pid, updated, stale_after)


# --------------------------------------------------------------------------- status


def wait_for_proxy(config: WatchdogConfig, seconds: float,
                   progress: Callable[[str, float], None] | None = None) -> bool:
    """Wait (up to ``seconds``) until the watchdog has seen the proxy answer since this call,
    so that a status right after a deploy shows a settled picture, not the boot. Polls the
    watchdog's state file; True when it did. ``progress`` gets what it is waiting on and the
    seconds left, at each poll."""
    started = datetime.now(UTC)
    deadline = time.monotonic() + seconds
    while True:
        state = load_state(config.paths.state_file).state
        proxy = state.route(PROXY_ROUTE)
        seen = proxy.last_success
        if state.active_target and seen is not None and seen >= started:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if progress is not None:
            live = watchdog_liveness(config)
            circuit = circuit_of(proxy)
            if not live.running:
                why = f"the watchdog is {live.state}"
            elif proxy.last_message and not circuit.usable:
                why = f"proxy {circuit.label}: {redact(proxy.last_message)[:70]}"
            else:
                why = "no answer from the proxy since the wait began"
            progress(f"waiting for the watchdog to see the proxy at {config.proxy.url} "
                     f"answer ({why})", left)
        time.sleep(min(POLL_S, left))


def _wait_with_progress(config: WatchdogConfig, seconds: float) -> bool:
    """:func:`wait_for_proxy` with a spinner on a terminal; elsewhere (a pipe, make's log) a
    line each time what it waits on changes."""
    err = out.console(sys.stderr)
    if err.is_terminal:
        with err.status("waiting for the watchdog…") as spinner:
            return wait_for_proxy(config, seconds, lambda what, left: spinner.update(
                f"{what}; {left:.0f} s left"))
    said = ""

    def line(what: str, left: float) -> None:
        nonlocal said
        if what != said:
            said = what
            print(f"{what}; up to {left:.0f} s more", file=sys.stderr, flush=True)

    return wait_for_proxy(config, seconds, line)


def _summary(config: WatchdogConfig, state: WatchdogState, live: Liveness,
             now: datetime) -> dict[str, Any]:
    """``status --json`` (docs/cli-json/status.schema.json); a new field is one entry here
    and one line in :func:`_status_lines`."""
    routes = [PROXY_ROUTE, *(p.name for p in config.providers)]
    hour = now - timedelta(hours=1)
    pin = state.active_pin(now)
    budget, kill = _budget(config, now)
    return {
        "generated_at": now,
        "watchdog": live.to_json(now),
        "active_target": state.active_target,
        "active_since": state.active_since,
        "pin": pin.model_dump() if pin else None,
        "degraded": state.degraded,
        "restarts_last_hour": state.restarts_since(hour),
        "switches_last_hour": state.switches_since(hour),
        "crash_loop": bool(state.extra.get("crash_loop")),
        # Set while the hourly switch cap is what keeps the agents where they are.
        "cap_hold": state.extra.get("cap_hold"),
        "budget": {**budget.to_json(), "kill_switch_active": kill},
        "agents": state.extra.get("agents", []),
        "routes": {name: {"state": circuit_of(state.route(name)).label,
                          **state.route(name).model_dump(exclude={"state"})}
                   for name in routes},
    }


def _status_lines(config: WatchdogConfig, summary: dict[str, Any], now: datetime) -> list[Text]:
    from rich.text import Text

    labels = {t.name: t.label for t in config.targets}
    active = summary["active_target"]
    pin = summary["pin"]
    target = Text("  active target: ")
    if active is None:
        target.append("unknown (the watchdog has not run yet)", "yellow")
    else:
        target.append(labels.get(active, active),
                      "green" if active == config.targets[0].name else "bold yellow")
        if summary["active_since"] is not None:
            target.append(f" (since {out.ago(summary['active_since'], now)})")
    if pin:
        until = f" until {out.iso(pin['expires_at'])}" if pin["expires_at"] else ""
        target.append(f", pinned{until} by hand", "yellow")
    degraded = Text("  degraded mode: ")
    degraded.append(*(("ON (every provider failed: repeated prompts get stale answers)",
                       "bold red") if summary["degraded"] else ("off", "green")))
    degraded.append(f"; proxy restarts in the last hour: {summary['restarts_last_hour']}")
    if summary["crash_loop"]:
        degraded.append("; CRASH LOOP", "bold red")
    hold = summary.get("cap_hold")
    cap = None
    if isinstance(hold, dict):
        cap = Text("  switch cap: ", "bold yellow")
        cap.append(f"holding the agents off {hold.get('target')} until "
                   f"{hold.get('until') or 'a switch of the last hour ages out'} "
                   f"({hold.get('switches_last_hour')} switches in the last hour, "
                   f"cap {hold.get('cap')})")
    b = summary["budget"]
    budget = Text("  budget: ")
    budget.append_text(out.styled(b["status"]))
    budget.append(f", ${b['total_spent']:.2f} of ${b['budget']:.2f} this month "
                  f"({b['percent_used']:.0f}%); kill switch ")
    budget.append(*(("ON (free providers only)", "bold red") if b["kill_switch_active"]
                    else ("off", "green")))
    budget.append(f"; stale answers this month: {b['stale_answers']}")
    return [target, degraded, *([cap] if cap is not None else []), budget]


def _route_rows(config: WatchdogConfig, summary: dict[str, Any],
                now: datetime) -> list[list[str | Text]]:
    rows: list[list[str | Text]] = []
    for name, route in summary["routes"].items():
        latency = "-" if route["last_latency_s"] is None else \
            f"{route['last_latency_s'] * 1000:.0f}ms"
        detail = route["diagnosis"] or route["last_message"] or ""
        rows.append([name, out.styled(route["state"]), route["last_error_class"] or "-",
                     latency, out.ago(route["last_success"], now), redact(detail)])
    return rows


def cmd_status(config: WatchdogConfig, as_json: bool, wait: float = 0) -> int:
    from rich.text import Text

    if wait > 0:
        waited = time.monotonic()
        if _wait_with_progress(config, wait):
            print(f"the watchdog saw the proxy answer after "
                  f"{out.human_age(time.monotonic() - waited)}", file=sys.stderr)
        else:
            print(f"(the proxy did not answer the watchdog within {wait:.0f} s)",
                  file=sys.stderr)
    state = load_state(config.paths.state_file).state
    now = datetime.now(UTC)
    live = watchdog_liveness(config)
    summary = _summary(config, state, live, now)
    if as_json:
        _print_json(summary)
        return EXIT_OK
    con = out.console()
    con.print(live.line(now))
    if not live.running:
        when = (f"from {out.ago(live.updated, now)}" if live.updated is not None
                else "(there is none)")
        con.print(Text(f"  What follows is the last state the watchdog saved, {when}: it is "
                       "not the present. Start the watchdog's service (or deploy again); "
                       "`provider-fallback check` probes now.",
                       "yellow"))
    for line in _status_lines(config, summary, now):
        con.print(line)
    title = None if live.running else f"as last saved, {out.ago(live.updated, now)} (STALE)"
    con.print()
    out.show(con, out.table(["ROUTE", "STATE", "CLASS", "LATENCY", "LAST OK",
                             "LAST ERROR / DIAGNOSIS"], _route_rows(config, summary, now),
                            title=title))
    for agent in summary["agents"] if isinstance(summary["agents"], list) else []:
        if not isinstance(agent, dict):
            continue
        if agent.get("ok"):
            hint = f" ({agent['restart']})" if agent.get("restart") else ""
            hint += " (decided; not applied by the follower yet)" if agent.get("pending") else ""
            con.print(Text(f"  agent {agent.get('agent')}: on {agent.get('target')}{hint}"))
        else:
            con.print(Text(f"  agent {agent.get('agent')}: NOT switched: {agent.get('error')}",
                           "bold red"))
    whose = next((a.get("whose") for a in summary["agents"] if isinstance(a, dict)
                  and a.get("whose")), None) if isinstance(summary["agents"], list) else None
    if whose:
        con.print(Text(f"  agents' files: {whose}"))
    return EXIT_OK


# --------------------------------------------------------------------------- check


async def _check(config: WatchdogConfig) -> list[dict[str, Any]]:
    async with Prober.from_config(config) as prober:
        alive = await prober.liveness()
        proxy = alive if not alive.ok else await prober.proxy_models()
        results = [proxy, *await prober.all_providers()]
    return [{"route": r.route, "ok": r.ok, "class": r.error_class.value if r.error_class
             else None, "latency_s": round(r.latency_s, 3), "message": r.message}
            for r in results]


def cmd_check(config: WatchdogConfig, as_json: bool) -> int:
    """Probe now; fails (exit 1) when the watchdog is not running, as nothing would act on a
    failure then, or when fewer than ``min_healthy_providers`` are healthy."""
    from rich.text import Text

    live = watchdog_liveness(config)
    results = asyncio.run(_check(config))
    healthy = [r["route"] for r in results if r["ok"]]
    enough = len(healthy) >= config.min_healthy_providers
    ok = enough and live.running
    now = datetime.now(UTC)
    if as_json:
        _print_json({"ok": ok, "watchdog": live.to_json(now), "healthy": healthy,
                     "minimum": config.min_healthy_providers, "results": results})
        return EXIT_OK if ok else EXIT_UNHEALTHY
    con = out.console()
    rows: list[list[str | Text]] = [
        [r["route"], out.styled("yes" if r["ok"] else "NO"), r["class"] or "-",
         f"{r['latency_s'] * 1000:.0f}ms", r["message"]] for r in results]
    out.show(con, out.table(["ROUTE", "OK", "CLASS", "LATENCY", "MESSAGE"], rows))
    con.print(Text.assemble(out.styled("OK" if enough else "WARNING"),
                            f": {len(healthy)} providers healthy (minimum "
                            f"{config.min_healthy_providers}): {healthy}"))
    if not live.running:
        con.print(Text.assemble(out.styled("FAILED", "failed"), ": ", live.line(now),
                                ": no one acts on a failure"))
    return EXIT_OK if ok else EXIT_UNHEALTHY


# --------------------------------------------------------------------------- switch


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
            manager = agent_manager(config)
            results = [manager.apply(name, spec) for name in manager.specs
                       if spec in manager.order(name)]
            failed = [r for r in results if not r.ok]
            for result in failed:
                print(f"agent file of {result.agent} left untouched: {result.error}",
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


# --------------------------------------------------------------------------- events


def _since(text: str | None) -> datetime | None:
    """A duration back from now (``1h``) or an ISO timestamp (naive means UTC, as in the log)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def follow_events(path: str | Path, since: datetime | None,
                  stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
    """The events of ``path`` since ``since``, then each new one as it is appended (like
    ``tail -f``): only complete lines, and from the start again if the file was replaced,
    cut or deleted and created again (:class:`~monitoring.file_cursor.FileCursor`)."""
    cursor = FileCursor()
    while not stop():
        _, lines = cursor.read_lines(path)
        if not lines:
            time.sleep(POLL_S)
            continue
        for raw in lines:
            event = parse_line(raw.decode("utf-8", "replace").rstrip("\r"))
            if event is not None and (since is None or event.ts >= since):
                yield event


def cmd_events(config: WatchdogConfig, since: str | None, as_json: bool,
               follow: bool = False) -> int:
    """The event log; ``--json`` is JSON Lines (one event per line, as events.jsonl holds
    them), so ``--follow --json`` streams and each line parses on its own."""
    from rich.text import Text

    try:
        start = _since(since)
    except ValueError:
        return _usage(f"--since {since!r}: a duration such as 1h or an ISO timestamp")
    path = config.paths.event_jsonl if as_json else config.paths.event_log
    events: Iterator[Event] | list[Event]
    if follow:
        events = follow_events(path, start)
    else:
        events = read_events(path, since=start) if Path(path).exists() else []
    con = out.console()
    try:
        for event in events:
            if as_json:
                out.print_json(event.to_json(), lines=True)
            else:
                con.print(Text.assemble(f"[{out.iso(event.ts)}] ",
                                        out.styled(str(event.kind), _EVENT_STYLE.get(
                                            str(event.kind))), f": {event.message}"))
                if follow:
                    sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


_EVENT_STYLE = {"FALLBACK": "warning", "EMERGENCY": "failed", "ERROR": "failed",
                "KILL-SWITCH": "failed", "RESTART": "warning", "RESTORED": "ok",
                "RECOVERY": "ok"}


# --------------------------------------------------------------------------- budget


def _budget(config: WatchdogConfig, now: datetime) -> tuple[BudgetStatus, bool]:
    status = budget_status(iter_records(config.paths.cost_log), config.budget, now)
    return status, KillSwitch(config).state().active_in(status.month)


def cmd_budget(config: WatchdogConfig, action: str | None, yes: bool, as_json: bool) -> int:
    """Runbook 9.1's status (and 9.3's switch); ``reset`` needs ``--yes``."""
    from rich.text import Text

    now = datetime.now(UTC)
    status, kill = _budget(config, now)
    if action == "reset":
        if not yes:
            return _usage("budget reset turns the kill switch off and lets paid providers be "
                          "used for the rest of the month: run it again with --yes to confirm")
        was = KillSwitch(config).reset(status.spent, now)
        message = (f"kill switch reset: paid providers allowed until the end of {status.month}"
                   if was else "the kill switch was not active; nothing changed")
        if as_json:
            _print_json({"action": "reset", "was_active": was, "month": status.month,
                         "message": message})
        else:
            print(message)
        return EXIT_OK
    if as_json:
        _print_json({**status.to_json(), "kill_switch_active": kill,
                     "allowed_providers": KillSwitch(config).allowed(kill)})
        return EXIT_OK
    con = out.console()
    con.print(Text.assemble("Budget Status: ", out.styled(str(status.level))))
    con.print(f"Spent: ${status.spent:.2f} of ${status.limit:.2f} ({status.percent_used:.1f}%) "
              f"in {status.month}, {status.requests} requests")
    con.print(f"Remaining: ${status.remaining:.2f}")
    today = Text(f"Today: ${status.spent_today:.2f} (daily threshold "
                 f"${status.daily_threshold:.2f}")
    if status.daily_warning:
        today.append(", EXCEEDED", "bold red")
    con.print(today + Text(")"))
    projected = Text(f"Projected month end: ${status.projected:.2f}")
    if status.projected_overspend:
        projected.append(" (over budget)", "bold red")
    con.print(projected)
    if status.by_provider:
        con.print("By provider: " + ", ".join(f"{k} ${v:.2f}"
                                              for k, v in sorted(status.by_provider.items())))
    if kill:
        warn = out.glyph("⚠ ", "! ")
        con.print(Text(f"{warn}KILL-SWITCH: Budget exceeded, switching to free providers only",
                       "bold red"))
        con.print(f"Allowed providers: {', '.join(config.budget.free_allow_list)}")
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


# --------------------------------------------------------------------------- reports


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
            _print_json([asdict(row) for row in rows])
        else:
            print(history_table(rows), end="")
        return EXIT_OK
    now = datetime.now(UTC)
    state = load_state(config.paths.state_file).state
    inputs = ReportInputs(config, state, events, now,
                          kill_switch_active=_budget(config, now)[1])
    if as_json:
        _print_json(outage_data(inputs))
    else:
        print(outage_report(inputs), end="")
    return EXIT_OK


# --------------------------------------------------------------------------- agents


def agent_key(var: str) -> int:
    """``agents key VAR``: print a key for an agent's helper (Claude Code's apiKeyHelper):
    from the caller's environment, else from ``~/.config/provider-fallback/keys.env``."""
    value = os.environ.get(var)
    if not value:
        from monitoring.agents import dotenv

        try:
            text = (Path.home() / ".config" / "provider-fallback" / "keys.env").read_text()
        except OSError:
            text = ""
        found = dotenv.get(text, var)
        value = found if isinstance(found, str) else None
    if not value:
        print(f"provider-fallback: {var} is neither in the environment nor in "
              "~/.config/provider-fallback/keys.env", file=sys.stderr)
        return EXIT_USAGE
    print(value)
    return EXIT_OK


def cmd_follow(state_dir: str, by: str, interval: float) -> int:
    """``agents follow``: the person's follower (``provider-fallback-agents@<login>``):
    applies the watchdog's decisions to the agent files in this user's home until SIGTERM.
    Reads no config: the decision file carries everything it needs, and no secrets (the
    keys Gemini CLI and Aider need as values come from this process' environment)."""
    import threading

    from monitoring.agents.engine import key_command
    from monitoring.agents.follower import Follower

    if interval <= 0:
        return _usage(f"--interval {interval}: a number of seconds above 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Follower(state_dir, by=by, key_command=key_command()).run(stop, interval)
    return EXIT_OK


def cmd_agents(config: WatchdogConfig, action: str | None, name: str | None,
               as_json: bool, *, every: bool = False) -> int:
    """``agents``: every known agent, where it points, traps; ``release``/``manage`` NAME.
    On WSL with ``linux.windows_profile``, the person's Windows-side agents are listed too, as
    ``NAME@windows`` (the names the watchdog's events and the follower's report use), and
    ``release``/``manage NAME@windows`` act on those files."""
    from monitoring.agents import ADAPTERS
    from monitoring.agents.engine import key_command
    from monitoring.agents.follower import WINDOWS_SUFFIX, follower_of, person_managers

    whose = follower_of(config.paths.state_dir) if config.os == "linux" else None
    report = whose.report() if whose is not None else None
    # A person's agents: their home (and Windows profile), their follower's records.
    sides = (person_managers(config.agents, config.targets, config.os, config.windows_side,
                             home=whose.home, folder=whose.folder, key_command=key_command())
             if whose is not None else {"": agent_manager(config)})
    manager = sides[""]
    if every:
        if action != "release" or name:
            return _usage("--all goes with `agents release` and no NAME")
        return _release_all(sides, whose.by(report) if whose else "the watchdog")
    if action in ("release", "manage"):
        name = name or ""
        side = WINDOWS_SUFFIX if name.endswith(WINDOWS_SUFFIX) and WINDOWS_SUFFIX in sides else ""
        on, bare = sides[side], name[:len(name) - len(side)]
        if bare not in on.specs:
            return _usage(f"{name!r} is not enrolled; one of: "
                          + ", ".join(n + s for s in sides for n in sides[s].specs))
        if action == "manage":
            on.manage(bare)
            print(f"{name}: managed again from the next tick")
            return EXIT_OK
        for line in on.release(bare) or ["nothing was ever written"]:
            print(f"{name}: {line}")
        print(f"{name}: released; {whose.by(report) if whose else 'the watchdog'} leaves "
              "its files alone "
              f"(`provider-fallback agents manage {name}` takes it back)")
        return EXIT_OK
    state = load_state(config.paths.state_file).state
    raw = state.extra.get("agents")
    last = {a.get("agent"): a for a in (raw if isinstance(raw, list) else [])
            if isinstance(a, dict)}
    managed_by = whose.phrase(report) if whose is not None else None
    known = {**ADAPTERS, **{n: manager.adapter(n) for n in manager.specs if n not in ADAPTERS}}
    rows = [_agent_row(manager, key, adapter, last.get(key), managed_by)
            for key, adapter in known.items()]
    for side, other in sides.items():
        if side:  # only what the follower manages there: no PATH or environment to look at
            rows += [_agent_row(other, key, other.adapter(key), last.get(key + side),
                                managed_by, side) for key in other.specs]
    if as_json:
        _print_json(rows)
        return EXIT_OK
    print(f"agent files of: {manager.home}" + (f" ({managed_by})" if managed_by else ""))
    if len(sides) > 1:
        print(f"and of the Windows profile: {sides[WINDOWS_SUFFIX].home} (NAME@windows)")
    for row in rows:
        state_text = "enrolled" if row["enrolled"] else "not enrolled"
        print(f"{row['label']} ({row['agent']}): {state_text}, "
              f"{'installed' if row['installed'] else 'not installed'}, speaks {row['wire']}, "
              f"{'follows live' if row['live_reload'] else 'needs a restart to follow'}")
        if row["enrolled"]:
            for path in row["files"].values():
                print(f"  file: {path}")
            print(f"  points at: {row['points_at'] or 'none of the targets'}; active for it: "
                  f"{row['expected'] or '-'}{'' if row['matches_active'] else '  (MISMATCH)'}"
                  f"; {'managed' if row['managed'] else 'not managed yet'}")
            if row["last_error"]:
                print(f"  not switched: {row['last_error']}")
        print(f"  key: {row['key']}")
        for trap in row["traps"]:
            print(f"  TRAP: {trap['what']}; fix: {trap['fix']}")
    return EXIT_OK


def _release_all(sides: Mapping[str, AgentManager], by: str) -> int:
    """``agents release --all``: every enrolled agent that was ever written, on every side, is
    given its person's own values back and released. The deploy runs it before it retires a
    person's follower, so their files are not left pointing where the last switch put them."""
    for side, manager in sides.items():
        for name in manager.specs:
            if not manager.managed(name):
                continue
            for line in manager.release(name) or ["nothing was ever written"]:
                print(f"{name}{side}: {line}")
            print(f"{name}{side}: released; {by} leaves its files alone")
    return EXIT_OK


def _agent_row(manager: AgentManager, key: str, adapter: Adapter, last: dict[str, Any] | None,
               managed_by: str | None, side: str = "") -> dict[str, Any]:
    """One row of ``agents``: the agent ``key`` as ``manager`` (one home, one side) sees it;
    ``last`` is what the watchdog's last tick recorded for it."""
    enrolled = key in manager.specs
    row: dict[str, Any] = {
        "agent": key + side, "label": adapter.label + (" (Windows)" if side else ""),
        # A Windows-side agent's programs are not on WSL's PATH: its IDE extension only.
        "installed": adapter.installed(env={"PATH": ""} if side else None, home=manager.home),
        "enrolled": enrolled, "wire": adapter.wire, "live_reload": adapter.live_reload,
        "key": adapter.key_mechanism, "whose": str(manager.home), "managed_by": managed_by,
        "traps": [] if side else [t.__dict__ for t in adapter.traps(manager.home, os.environ,
                                                                     Path.cwd())]}
    if enrolled:
        row["files"] = {r: str(p) for r, p in manager.paths(key).items()}
        row["points_at"] = manager.current(key)
        row["managed"] = manager.managed(key)
        row["expected"] = (last or {}).get("target")
        row["matches_active"] = row["points_at"] == row["expected"]
        row["last_error"] = (last or {}).get("error")
    return row


# --------------------------------------------------------------------------- watch


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
    keep_big_buffers_out_of_the_heap()  # a daemon's RSS must not creep (issue 13, B9)
    # httpx logs every request at INFO: several lines a second from the probes, which would
    # bury the events in the journal and grow the log by megabytes a day.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for directory in (config.paths.state_dir, config.paths.log_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
    asyncio.run(_watch(config))
    return EXIT_OK


# --------------------------------------------------------------------------- main


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and examples as written; every option's real default shown (not the
    None or False of an option that has none, nor twice where the help names it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


#: Subcommands without JSON output: ``--json`` is refused with exit 2 and this reason.
NO_JSON = {"watch": "it runs the service and prints its log; ask `status --json` instead"}


def _targets_hint(argv: Sequence[str] | None) -> list[str] | None:
    """The config's target names, for ``switch --help`` (None when it cannot be read)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = DEFAULT_CONFIG
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    try:
        return [t.name for t in WatchdogConfig.load(path).targets]
    except (OSError, ValueError, ValidationError):
        return None


def parser(targets: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line. ``targets``: the valid ``switch`` targets, listed in its help."""
    top = argparse.ArgumentParser(prog="provider-fallback", description=__doc__,
                                  formatter_class=_HelpFormatter)
    top.add_argument("--version", action="version", version=installed().line(),
                     help="print the version and the SHA256 of the installed wheel")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help="the rendered watchdog.json (env PROVIDER_FALLBACK_CONFIG)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, description: str, *examples: str) -> argparse.ArgumentParser:
        text = (textwrap.fill(description, 88) + "\n\nexamples:\n"
                + "\n".join(f"  {e}" for e in examples))
        return sub.add_parser(name, parents=[common], help=summary, description=text,
                              formatter_class=_HelpFormatter)

    add("watch", "run the watchdog loop (what the service runs)",
        "Probe the proxy and every provider each interval, fail over and back, restart the "
        "proxy, track spend, and serve /metrics. The service runs this; no --json.",
        "provider-fallback watch --config /etc/provider-fallback/watchdog.json")
    status = add("status", "whether the watchdog runs, and what it sees",
                 "Whether the watchdog is running and how old its data is, then the active "
                 "target, degraded mode, budget and kill switch, and per route its circuit, "
                 "error class, latency, last success and diagnosis.",
                 "provider-fallback status", "provider-fallback status --wait 120",
                 "provider-fallback status --json | jq .watchdog.state")
    status.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for the watchdog to see the proxy answer")
    add("check", "probe now; exit 1 if the watchdog is stopped or too few are healthy",
        "Probe the proxy and every provider now (runbook 6.1, 6.3). Exit 1 when fewer than "
        "min_healthy_providers answer or when the watchdog is not running.",
        "provider-fallback check", "provider-fallback check --json")
    valid = ", ".join(targets) if targets else "the targets of the config (see `status`)"
    switch = add("switch", "pin the agents to a target",
                 f"Pin the agents to TARGET until `restore` or the --for expiry. Valid "
                 f"targets: {valid}.",
                 f"provider-fallback switch {(targets or ['', 'kilo-code'])[1]} --for 30m")
    switch.add_argument("target", metavar="TARGET", help=f"one of: {valid}")
    switch.add_argument("--for", dest="ttl", metavar="DURATION",
                        help="pin expiry, e.g. 30m (default: until `restore`)")
    add("restore", "drop the pin; health decides again",
        "Drop a pin set by `switch`: the watchdog picks the target by health again.",
        "provider-fallback restore")
    events = add("events", "the event log (FALLBACK, RESTORED, EMERGENCY, ...)",
                 "The event log in the runbook's lines; with --json one JSON object per "
                 "line (JSON Lines), so --follow --json streams.",
                 "provider-fallback events --since 1h", "provider-fallback events --follow",
                 "provider-fallback events --since 2026-11-30T00:00:00Z --json | jq .kind")
    events.add_argument("--since", metavar="WHEN",
                        help="a duration back from now (1h) or an ISO timestamp (default: all)")
    events.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new events as they are logged (Ctrl+C stops)")
    budget = add("budget", "this month's spend, status and kill switch (runbook 9.1, 9.3)",
                 "Spend this month, its status (OK / WARNING / CRITICAL / EXCEEDED), the daily "
                 "threshold, the month-end projection and the kill switch. `budget reset "
                 "--yes` turns the kill switch off for the rest of the month.",
                 "provider-fallback budget", "provider-fallback budget reset --yes")
    budget.add_argument("action", nargs="?", choices=["reset"],
                        help="reset: turn the kill switch off for the rest of the month")
    budget.add_argument("--yes", action="store_true", help="confirm `budget reset`")
    select = add("select", "the cost-aware provider for a task (runbook 9.2)",
                 "The cheapest provider that suits TASK within the remaining budget (only "
                 "free ones while the kill switch is on).",
                 "provider-fallback select --task coding")
    select.add_argument("--task", required=True, choices=TASKS, help="the kind of work")
    report = add("report", "the outage report (runbook 7.3)",
                 "Runbook 7.3's outage report from the event log and the saved state: "
                 "Markdown, or its data with --json.",
                 "provider-fallback report --since 6h > outage.md")
    report.add_argument("--since", metavar="WHEN", default="24h",
                        help="events since: a duration or an ISO timestamp")
    hist = add("history", "recurring issues (runbook 5.3)",
               "Runbook 5.3's table of recurring issues: last date, issue, resolution and "
               "frequency, the most frequent first.",
               "provider-fallback history --since 30d")
    hist.add_argument("--since", metavar="WHEN",
                      help="events since: a duration or ISO time (default: all)")
    agents = add("agents", "the coding agents: their files, where they point, traps",
                 "Every known coding agent: installed or not, enrolled or not, its files, where "
                 "it points now and whether that matches the active target, whose files are "
                 "managed, and the precedence traps that would defeat a switch, each with its "
                 "fix. `release NAME` puts the user's own values back and stops managing it; "
                 "`manage NAME` takes it back; `key VAR` prints a key for an agent's key helper.",
                 "provider-fallback agents", "provider-fallback agents release codex")
    agents.add_argument("action", nargs="?", choices=["release", "manage", "key", "follow"],
                        help="release or manage an enrolled agent, print a key (key VAR), or "
                        "run a person's follower (follow: what provider-fallback-agents@ runs)")
    agents.add_argument("name", nargs="?", help="agent (release/manage) or variable (key)")
    agents.add_argument("--all", action="store_true", dest="every",
                        help="release: every enrolled agent of the person, on every side (the "
                        "deploy runs it when linux.agents_user stops naming them)")
    agents.add_argument("--state-dir", help="follow: the watchdog's state directory")
    agents.add_argument("--by", default="provider-fallback agents follow",
                        help="follow: the service name shown in status")
    agents.add_argument("--interval", type=float, default=1.0,
                        help="follow: seconds between two looks at the decision")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    out.harden_streams()
    try:
        return _run(argv)
    except BrokenPipeError:  # `provider-fallback events | head`: the reader left, not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run(argv: Sequence[str] | None) -> int:
    args = parser(_targets_hint(argv) if _wants_help(argv) else None).parse_args(argv)
    if args.json and args.command in NO_JSON:
        return _usage(f"{args.command} has no JSON output: {NO_JSON[args.command]}")
    if args.command == "agents" and args.action == "key":
        return agent_key(args.name or "")
    if args.command == "agents" and args.action == "follow":
        if not args.state_dir:
            return _usage("agents follow needs --state-dir (the watchdog's state directory)")
        return cmd_follow(args.state_dir, args.by, args.interval)
    config = _load(args.config)
    if args.command == "agents":
        return cmd_agents(config, args.action, args.name, args.json, every=args.every)
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
    return cmd_events(config, args.since, args.json, args.follow)


def _wants_help(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "-h" in args or "--help" in args


if __name__ == "__main__":
    sys.exit(main())
