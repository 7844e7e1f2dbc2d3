"""Shared fixtures: the default stack, and what render makes of it for each OS."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.stack.layout import Layout, layout
from monitoring.stack.load import load_stack
from monitoring.stack.schema import Stack
from tasks.render import render
from tasks.render.common import Rendered

REPO = Path(__file__).resolve().parents[1]
STACK_FILE = REPO / "inventory" / "stack.yaml"


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(STACK_FILE)


@pytest.fixture(scope="session")
def linux_layout(stack: Stack) -> Layout:
    return layout(stack, "linux")


@pytest.fixture(scope="session")
def windows_layout(stack: Stack) -> Layout:
    return layout(stack, "windows")


@pytest.fixture(scope="session")
def rendered_linux(stack: Stack) -> Rendered:
    return render(stack, "linux")


@pytest.fixture(scope="session")
def rendered_windows(stack: Stack) -> Rendered:
    return render(stack, "windows")


def write_tree(rendered: Rendered, root: Path) -> Path:
    """Write rendered artifacts under ``root`` (by their build-relative paths)."""
    for rel, artifact in rendered.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(artifact.data)
    return root
