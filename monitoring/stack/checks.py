"""Checks between the sections of a structurally valid stack.

pydantic proves each value has the right type and range; these prove the values agree with
each other: names refer to things that exist, services do not share a port, thresholds are in
order. Every check yields all of its problems, so a user fixes a file in one pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from monitoring.stack.schema import AgentTarget, Listen, Stack

#: LiteLLM refuses more than this many fallbacks for one model group.
MAX_FALLBACKS = 5
#: Prometheus' own default port: the runbook put its exporter here, which cannot work.
PROMETHEUS_DEFAULT_PORT = 9090

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in stack.yaml: where, what was found, and what is expected instead."""

    path: Path
    found: str
    expected: str


Check = Callable[[Stack], Iterator[Problem]]


def _defined_models(stack: Stack) -> str:
    return f"a model defined under litellm.models ({', '.join(sorted(stack.litellm.models))})"


def check_fallbacks(stack: Stack) -> Iterator[Problem]:
    """Every fallback chain starts from and names defined models, without loops."""
    models = stack.litellm.models
    for source, chain in stack.litellm.fallbacks.items():
        if source not in models:
            yield Problem(("litellm", "fallbacks", source), repr(source),
                          _defined_models(stack))
        for i, target in enumerate(chain):
            if target not in models:
                yield Problem(("litellm", "fallbacks", source, i), repr(target),
                              _defined_models(stack))
            elif target == source:
                yield Problem(("litellm", "fallbacks", source, i), repr(target),
                              "another model: a model cannot fall back to itself")
        for name, count in Counter(chain).items():
            if count > 1:
                yield Problem(("litellm", "fallbacks", source), f"{name!r} listed {count} times",
                              "each fallback once")
        if len(chain) > MAX_FALLBACKS:
            yield Problem(("litellm", "fallbacks", source), f"{len(chain)} fallbacks",
                          f"at most {MAX_FALLBACKS} (LiteLLM's limit)")


def check_models(stack: Stack) -> Iterator[Problem]:
    """A model marked free costs nothing; the completion probe names a defined model."""
    for name, model in stack.litellm.models.items():
        if model.is_free and (model.input_usd_per_1k or model.output_usd_per_1k):
            yield Problem(("litellm", "models", name, "is_free"), "true with a non-zero price",
                          "is_free: false, or input/output_usd_per_1k: 0")
    first: dict[str, tuple[str, str, str]] = {}
    for name, model in stack.litellm.models.items():
        seen = first.setdefault(model.provider, (name, model.api_base, model.api_key_env))
        for field, value, expected in (("api_base", model.api_base, seen[1]),
                                       ("api_key_env", model.api_key_env, seen[2])):
            if value != expected:
                yield Problem(("litellm", "models", name, field), repr(value),
                              f"{expected!r}, as for {seen[0]}: models of one provider "
                              f"({model.provider}) share its endpoint and key, which the "
                              "watchdog probes once")
    probe = stack.watchdog.completion_probe
    if probe.model not in stack.litellm.models:
        yield Problem(("watchdog", "completion_probe", "model"), repr(probe.model),
                      _defined_models(stack))


def check_targets(stack: Stack) -> Iterator[Problem]:
    """Targets are uniquely named, P1 is the local proxy, and each names a defined model."""
    targets = stack.targets
    if targets[0].kind != "litellm":
        yield Problem(("targets", 0, "kind"), repr(targets[0].kind),
                      "'litellm': the first target (P1) is the local LiteLLM proxy")
    for i, target in enumerate(targets[1:], start=1):
        if target.kind == "litellm":
            yield Problem(("targets", i, "kind"), "'litellm'",
                          "'direct' or 'agent': only the first target (P1) is the local proxy")
    for name, count in Counter(t.name for t in targets).items():
        if count > 1:
            yield Problem(("targets",), f"name {name!r} used {count} times", "unique target names")
    models = stack.litellm.models
    for i, target in enumerate(targets):
        if not isinstance(target, AgentTarget) and target.model not in models:
            yield Problem(("targets", i, "model"), repr(target.model),
                          f"a model defined under litellm.models ({', '.join(sorted(models))})")
    yield from check_agents(stack)
    for name, count in Counter(a.name for a in stack.agents).items():
        if count > 1:
            yield Problem(("agents",), f"name {name!r} used {count} times", "unique agent names")


#: The runbook's invented files, read by no real agent, and the adapter to enroll instead.
_INVENTED = {".kilocode/kilocode.json": "kilo-code", ".gemini/provider.json": "gemini-cli"}


def _spec(stack: Stack, target: object) -> object:
    from monitoring.agents.wire import target_endpoints
    from monitoring.host_config import TargetSpec

    assert not isinstance(target, str)
    return TargetSpec(name=target.name, label=target.label,  # type: ignore[attr-defined]
                      kind=target.kind, route=None, is_free=True,  # type: ignore[attr-defined]
                      settings={}, endpoints=target_endpoints(stack, target),  # type: ignore[arg-type]
                      agent=getattr(target, "agent", None))


def check_agents(stack: Stack) -> Iterator[Problem]:
    """Enrolled agents name real adapters, and their orders targets they can speak."""
    from monitoring.agents import ADAPTERS, GENERIC, adapter_for

    known = ", ".join([*ADAPTERS, GENERIC])
    targets = {t.name: t for t in stack.targets}
    for i, agent in enumerate(stack.agents):
        where: tuple[str | int, ...] = ("agents", i)
        kind = agent.adapter or agent.name
        if agent.path is not None:
            linux = agent.path.linux.replace("\\", "/").removeprefix("~/")
            if linux in _INVENTED:
                yield Problem((*where, "path"), repr(agent.path.linux),
                              "no release of the agent reads this file (the runbook invented "
                              "it): enroll the real adapter instead, one line: "
                              f"`- {_INVENTED[linux]}`")
                continue
            if kind != GENERIC:
                yield Problem((*where, "path"), repr(agent.path.linux),
                              f"no path: adapter {kind!r} knows its files (a path is only for "
                              f"adapter: {GENERIC})")
                continue
        if kind not in ADAPTERS and kind != GENERIC:
            yield Problem((*where, "name" if agent.adapter is None else "adapter"), repr(kind),
                          f"an agent adapter: one of {known}")
            continue
        if kind == GENERIC and agent.path is None:
            yield Problem((*where, "path"), "nothing", "the JSON file of your tool "
                          "({linux: ..., windows: ...}) for adapter generic-json")
            continue
        adapter = adapter_for(agent.name, agent.adapter, agent.path.linux if agent.path else None)
        for j, name in enumerate(agent.order or []):
            target = targets.get(name)
            if target is None:
                yield Problem((*where, "order", j), repr(name),
                              f"a target name ({', '.join(targets)})")
            elif adapter.endpoint(_spec(stack, target)) is None:  # type: ignore[arg-type]
                can = [t.name for t in stack.targets
                       if adapter.endpoint(_spec(stack, t)) is not None]  # type: ignore[arg-type]
                yield Problem((*where, "order", j), repr(name),
                              f"a target {adapter.label} can speak to: it speaks "
                              f"{adapter.wire}, which {target.label} does not serve "
                              f"(one of: {', '.join(can) or 'none'})")


def is_free(stack: Stack, name: str) -> bool | None:
    """Whether a model alias or target name is free; None when the name is unknown."""
    if name in stack.litellm.models:
        return stack.litellm.models[name].is_free
    for target in stack.targets:
        if target.name == name:
            if isinstance(target, AgentTarget):
                return target.is_free
            model = stack.litellm.models.get(target.model)
            return model.is_free if model else None
    return None


def check_budget(stack: Stack) -> Iterator[Problem]:
    """The kill switch's allow-list names free models or targets; levels rise."""
    for i, name in enumerate(stack.budget.free_allow_list):
        free = is_free(stack, name)
        if free is None:
            yield Problem(("budget", "free_allow_list", i), repr(name),
                          "the name of a model (litellm.models) or a target (targets)")
        elif not free:
            yield Problem(("budget", "free_allow_list", i), f"{name!r}, which is paid",
                          "only free models or targets: the kill switch must never reach "
                          "a paid one")
    for task, name in stack.budget.task_preferences.items():
        if is_free(stack, name) is None:
            yield Problem(("budget", "task_preferences", task), repr(name),
                          "the name of a model (litellm.models) or a target (targets)")
    levels = stack.budget.levels_percent
    if not levels.warning < levels.critical < levels.exceeded:
        yield Problem(("budget", "levels_percent"),
                      f"warning {levels.warning:g}, critical {levels.critical:g}, "
                      f"exceeded {levels.exceeded:g}",
                      "warning < critical < exceeded (the runbook's 75 < 90 < 100)")
    daily = stack.budget.daily_warning
    if daily > stack.budget.monthly_usd:
        yield Problem(("budget", "daily_warning_usd"), f"{daily:g}",
                      f"at most the monthly budget ({stack.budget.monthly_usd:g})")


def _listens(stack: Stack) -> list[tuple[Path, Listen]]:
    return [
        (("litellm", "listen", "port"), stack.litellm.listen),
        (("watchdog", "listen", "port"), stack.watchdog.listen),
        (("prometheus", "listen", "port"), stack.prometheus.listen),
        (("alertmanager", "listen", "port"), stack.alertmanager.listen),
        (("grafana", "listen", "port"), stack.grafana.listen),
    ]


def check_ports(stack: Stack) -> Iterator[Problem]:
    """No two services share a port; the exporter stays off Prometheus' own 9090."""
    listens = _listens(stack)
    wd_port = stack.watchdog.listen.port
    for i, (path, listen) in enumerate(listens):
        for other_path, other in listens[:i]:
            if listen.port == other.port and not (
                listen.port == wd_port == PROMETHEUS_DEFAULT_PORT
            ):  # reported below, with the reason
                yield Problem(path, str(listen.port),
                              f"a port not already used by {'.'.join(map(str, other_path[:-1]))}")
    if stack.watchdog.listen.port == PROMETHEUS_DEFAULT_PORT:
        yield Problem(("watchdog", "listen", "port"), str(PROMETHEUS_DEFAULT_PORT),
                      "another port: 9090 is Prometheus' own (the runbook's exporter port "
                      "clashes with it); the default is 9464")


def check_order(stack: Stack) -> Iterator[Problem]:
    """Pairs of durations and counts that only make sense in one order."""
    wd = stack.watchdog
    pairs: list[tuple[Path, float, Path, float, str]] = [
        (("watchdog", "probe_timeout"), wd.probe_timeout, ("watchdog", "probe_interval"),
         wd.probe_interval, "a probe must time out before the next one is due"),
        (("watchdog", "restart", "backoff_initial"), wd.restart.backoff_initial,
         ("watchdog", "restart", "backoff_max"), wd.restart.backoff_max,
         "the backoff grows from initial to max"),
        (("alertmanager", "route", "group_wait"), stack.alertmanager.route.group_wait,
         ("alertmanager", "route", "group_interval"), stack.alertmanager.route.group_interval,
         "Alertmanager waits less before a first notification than between groups"),
        (("alertmanager", "route", "group_interval"), stack.alertmanager.route.group_interval,
         ("alertmanager", "route", "repeat_interval"), stack.alertmanager.route.repeat_interval,
         "a notification repeats less often than groups are evaluated"),
        (("alertmanager", "route", "critical_repeat_interval"),
         stack.alertmanager.route.critical_repeat_interval,
         ("alertmanager", "route", "repeat_interval"), stack.alertmanager.route.repeat_interval,
         "critical alerts repeat at least as often as others"),
        (("prometheus", "scrape_interval"), stack.prometheus.scrape_interval,
         ("alerts", "all_providers_down_for"), stack.alerts.all_providers_down_for,
         "an alert's 'for' spans at least one scrape"),
    ]
    for low_path, low, high_path, high, why in pairs:
        if low > high:
            other = ".".join(map(str, high_path))
            yield Problem(low_path, f"{low:g}s, more than {other} ({high:g}s)",
                          f"at most {high:g}s: {why}")
    providers = {m.provider for m in stack.litellm.models.values()}
    if wd.min_healthy_providers > len(providers) + 1:
        yield Problem(("watchdog", "min_healthy_providers"), str(wd.min_healthy_providers),
                      f"at most {len(providers) + 1} (the proxy and {len(providers)} providers)")


def check_email(stack: Stack) -> Iterator[Problem]:
    """An enabled email receiver has what Alertmanager needs to send."""
    email = stack.alertmanager.receivers.email
    if email.enabled:
        for field in ("to", "sender", "smarthost"):
            if not getattr(email, field):
                yield Problem(("alertmanager", "receivers", "email", field), "''",
                              "a value: email is enabled (or set enabled: false)")
    if email.auth_password_env and not email.auth_username:
        yield Problem(("alertmanager", "receivers", "email", "auth_username"), "''",
                      "a user name: Alertmanager sends no SMTP AUTH without one, so the "
                      "password would go unused (or set auth_password_env: null)")


def check_windows_tasks(stack: Stack) -> Iterator[Problem]:
    """Each scheduled task has its own name (Task Scheduler compares names without case)."""
    tasks = stack.windows.tasks
    seen: dict[str, str] = {}
    for key in ("litellm", "watchdog", "prometheus", "alertmanager"):
        name = getattr(tasks, key)
        other = seen.setdefault(name.casefold(), key)
        if other != key:
            yield Problem(("windows", "tasks", key), repr(name),
                          f"a name of its own: windows.tasks.{other} already uses it")


#: Units of the services the bundle runs beside its own (Debian's packages, Grafana's).
OTHER_UNITS = ("prometheus.service", "prometheus-alertmanager.service", "grafana-server.service")


def check_linux_units(stack: Stack) -> Iterator[Problem]:
    """The two units have names of their own, distinct from the units of the packages the
    bundle installs beside them (systemd compares unit names exactly)."""
    units = stack.linux.units
    if units.litellm == units.watchdog:
        yield Problem(("linux", "units", "watchdog"), repr(units.watchdog),
                      "a name of its own: linux.units.litellm already uses it")
    for key in ("litellm", "watchdog"):
        name = getattr(units, key)
        if name in OTHER_UNITS:
            yield Problem(("linux", "units", key), repr(name),
                          f"a name no package uses ({', '.join(OTHER_UNITS)} are taken)")


CHECKS: tuple[Check, ...] = (
    check_fallbacks, check_models, check_targets, check_budget, check_ports, check_order,
    check_email, check_windows_tasks, check_linux_units,
)


def cross_check(stack: Stack) -> list[Problem]:
    """Every problem found by every check, in file order of the sections."""
    return [problem for check in CHECKS for problem in check(stack)]
