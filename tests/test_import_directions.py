"""The rooms of ``monitoring/`` import only in the allowed directions.

Each subpackage is a room with one role (its ``__init__`` docstring says which); the top holds
the CLI and what every room shares. Why the directions matter:

- ``proxy/`` runs inside LiteLLM: it must keep answering while the watchdog is down or broken,
  so it never imports ``watchdog/``; the watchdog reads the proxy's files through ``proxy/``.
- ``content/`` (alert rules, alertmanager.yml, prometheus.yml, Grafana provisioning) is built
  on the controller only and left out of the wheel shipped to hosts: no host room imports it.
- Nothing under ``monitoring/`` imports the controller (``tasks``, ``deploy``, ``tests``,
  ``bench``, ``scripts``): hosts have neither the code nor pyinfra.
- The shared top modules (metric names, the host config, the event log, atomic files, the
  version) sit under every room, so they import only each other and the stack schema.

The full matrix (importer -> rooms it may import; its own room always):

========  =================================================
shared    stack
stack     shared; agents from ``stack/checks.py`` only (each agent target is checked by its
          own adapter, imported lazily)
content   stack, shared
agents    stack, shared
proxy     stack, shared
watchdog  proxy, agents, stack, shared
cli       watchdog, proxy, agents, stack, shared (never content)
========  =================================================

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest

from tasks.wheelhouse import build_project_wheel

REPO = Path(__file__).resolve().parents[1]

#: The CLI at the top (it may import every host room); every other top module is shared.
CLI_MODULES = frozenset({"cli", "console"})

ALLOWED: dict[str, frozenset[str]] = {
    "shared": frozenset({"shared", "stack"}),
    "stack": frozenset({"stack", "shared"}),
    "content": frozenset({"content", "stack", "shared"}),
    "agents": frozenset({"agents", "stack", "shared"}),
    "proxy": frozenset({"proxy", "stack", "shared"}),
    "watchdog": frozenset({"watchdog", "proxy", "agents", "stack", "shared"}),
    "cli": frozenset({"cli", "watchdog", "proxy", "agents", "stack", "shared"}),
}

#: (importing module, imported room) pairs allowed beyond the matrix, each with its reason
#: in the module docstring above.
EXCEPTIONS = frozenset({("monitoring.stack.checks", "agents")})

#: Top-level names of the controller's code, never imported on a host.
CONTROLLER = frozenset({"tasks", "deploy", "tests", "bench", "scripts", "inventory"})


def room_of(module: str, rooms: set[str]) -> str:
    """``monitoring.proxy.budget`` -> ``proxy``; ``monitoring.cli`` -> ``cli``;
    ``monitoring.metrics`` (or ``monitoring`` itself) -> ``shared``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in rooms:
        return parts[1]
    return "cli" if len(parts) > 1 and parts[1] in CLI_MODULES else "shared"


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``tree``; ``from pkg import name`` yields
    ``pkg.name`` (a submodule or an attribute: the room is the same either way)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def violations(root: Path) -> list[str]:
    """Every import under ``root/monitoring`` that goes against the matrix, one line each."""
    package = root / "monitoring"
    rooms = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    unknown = rooms - set(ALLOWED)
    out = [f"monitoring/{r}/: a room without rules; add it to ALLOWED in {Path(__file__).name}"
           for r in sorted(unknown)]
    for path in sorted(package.rglob("*.py")):
        module = module_name(root, path)
        importer = room_of(module, rooms)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, imported in imports_of(tree, module, path.name == "__init__.py"):
            top = imported.split(".")[0]
            where = f"{path.relative_to(root)}:{line}: {module} imports {imported}"
            if top in CONTROLLER:
                out.append(f"{where}: the host never imports controller code ({top})")
            elif top == "monitoring":
                target = room_of(imported, rooms)
                if (target not in ALLOWED.get(importer, frozenset())
                        and (module, target) not in EXCEPTIONS):
                    out.append(f"{where}: {importer}/ may not import {target}/")
    return out


def test_every_import_in_monitoring_goes_the_allowed_way() -> None:
    assert violations(REPO) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("rel", "text", "expected"), [
    ("monitoring/proxy/budget.py", "from monitoring.watchdog.loop import Watchdog\n",
     "proxy/ may not import watchdog/"),
    ("monitoring/proxy/budget.py", "def f():\n    from ..watchdog import loop\n",
     "proxy/ may not import watchdog/"),
    ("monitoring/watchdog/loop.py", "import tasks.render\n", "never imports controller code"),
    ("monitoring/events.py", "from monitoring.proxy import budget\n",
     "shared/ may not import proxy/"),
    ("monitoring/cli.py", "from monitoring.content import rules\n",
     "cli/ may not import content/"),
    ("monitoring/stack/schema.py", "from monitoring.agents import ADAPTERS\n",
     "stack/ may not import agents/"),
    ("monitoring/content/rules.py", "from monitoring.proxy import budget\n",
     "content/ may not import proxy/"),
    ("monitoring/agents/engine.py", "from monitoring.proxy.choice import cost_order\n",
     "agents/ may not import proxy/"),
    ("monitoring/newroom/x.py", "", "a room without rules"),
])
def test_a_wrong_way_import_is_named(tmp_path: Path, rel: str, text: str,
                                     expected: str) -> None:
    """The checker itself: each kind of wrong import is reported with its file and line."""
    rooms = ["stack", "content", "watchdog", "proxy", "agents", Path(rel).parent.name]
    files = {f"monitoring/{r}/__init__.py": "" for r in rooms if r != "monitoring"}
    files["monitoring/__init__.py"] = ""
    files["monitoring/stack/checks.py"] = "def f():\n    from monitoring.agents import A\n"
    root = _tree(tmp_path, {**files, rel: text})
    found = violations(root)
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(rel) or expected == "a room without rules"


def test_the_host_wheel_leaves_the_controller_content_out(tmp_path: Path) -> None:
    """The wheel installed on hosts holds every host room and not ``content/``, which only
    render uses (pyproject's ``[tool.setuptools.packages.find]``)."""
    wheel = build_project_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packages == {"monitoring", "monitoring/stack", "monitoring/watchdog",
                        "monitoring/proxy", "monitoring/agents"}
    assert not any(n.startswith("monitoring/content/") for n in names)
    for host_module in ("monitoring/cli.py", "monitoring/proxy/litellm_hooks.py",
                        "monitoring/watchdog/loop.py", "monitoring/stack/schema.py"):
        assert host_module in names
