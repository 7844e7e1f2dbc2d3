"""Cost-aware choice of a provider (runbook 9.2), budget-aware.

The provider cost table is stack.yaml's: every model alias with its per-1K prices and
``is_free``, and every agent-built-in target (Kilo Code's own) as a free provider. The runbook's
``select_cost_effective_provider`` is kept in shape:

- free providers first; among them the task's preference (``coding``/``implementation`` ->
  ``kilo-code``, ``research``/``analysis`` -> ``groq-70b``; from ``budget.task_preferences``),
  else the first free one;
- no free provider: the cheapest paid one while budget remains, else an error;

and made budget-aware: while the kill switch is on only the free allow-list counts, and
:func:`cost_order` (the same ordering) sorts the watchdog's fallback targets free-first when
the budget is tight (CRITICAL or EXCEEDED), so a failover does not spend the last dollars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from monitoring.host_config import TargetSpec, WatchdogConfig

TASKS: Final = ("coding", "implementation", "research", "analysis")
#: A request of this size prices a provider for the table (the runbook's estimate_cost).
REFERENCE_TOKENS: Final = (1000, 1000)


class NoProviderError(RuntimeError):
    """The runbook's ``RuntimeError("No providers available within budget")``."""


@dataclass(frozen=True)
class ProviderCost:
    """Runbook 9.2's ProviderCost, from stack.yaml."""

    name: str
    input_cost_per_1k: float
    output_cost_per_1k: float
    is_free: bool

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        if self.is_free:
            return 0.0
        return (input_tokens / 1000 * self.input_cost_per_1k
                + output_tokens / 1000 * self.output_cost_per_1k)


def cost_table(config: WatchdogConfig) -> dict[str, ProviderCost]:
    """Every model alias, then every agent-built-in target, in stack order."""
    table = {name: ProviderCost(name, m.input_usd_per_1k, m.output_usd_per_1k, m.is_free)
             for name, m in config.models.items()}
    for target in config.targets:
        if target.kind == "agent" and target.name not in table:
            table[target.name] = ProviderCost(target.name, 0.0, 0.0, target.is_free)
    return table


def cost_order(names: Iterable[str], table: dict[str, ProviderCost]) -> list[str]:
    """``names`` with free ones first, then paid ones cheapest first; stable otherwise."""
    items = list(names)

    def key(indexed: tuple[int, str]) -> tuple[bool, float, int]:
        i, name = indexed
        cost = table.get(name)
        if cost is None:
            return (True, float("inf"), i)
        return (not cost.is_free, cost.estimate_cost(*REFERENCE_TOKENS), i)

    return [name for _, name in sorted(enumerate(items), key=key)]


def select_provider(task: str, table: dict[str, ProviderCost], budget_remaining: float, *,
                    preferences: dict[str, str], allowed: Sequence[str] | None = None) -> str:
    """The runbook's choice for ``task``; ``allowed`` narrows it (the kill switch's list)."""
    names = [n for n in table if allowed is None or n in allowed]
    free = [n for n in names if table[n].is_free]
    if free:
        preferred = preferences.get(task)
        return preferred if preferred in free else free[0]
    paid = cost_order(names, table)
    if paid and budget_remaining > 0:
        return paid[0]
    raise NoProviderError("No providers available within budget")


def order_targets(targets: Sequence[TargetSpec], table: dict[str, ProviderCost], *,
                  tight: bool, free_only: bool) -> list[TargetSpec]:
    """The watchdog's fallback order: stack order normally; free first when the budget is
    tight; free targets only while the kill switch is on. P1 stays first when it is free."""
    out = list(targets)
    if free_only:
        out = [t for t in out if t.is_free]
    if tight:
        by_name = {t.name: t for t in out}
        priced = {t.name: ProviderCost(t.name, *_target_price(t, table), t.is_free) for t in out}
        out = [by_name[n] for n in cost_order(by_name, priced)]
    return out


def _target_price(target: TargetSpec, table: dict[str, ProviderCost]) -> tuple[float, float]:
    model = target.settings.get("model", "")
    cost = table.get(model) or table.get(target.name)
    return (cost.input_cost_per_1k, cost.output_cost_per_1k) if cost else (0.0, 0.0)
