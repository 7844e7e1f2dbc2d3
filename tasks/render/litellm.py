"""Placeholder."""

from __future__ import annotations

from monitoring.layout import Layout
from monitoring.stack import Stack
from tasks.render.common import Rendered


def artifacts(stack: Stack, lay: Layout) -> Rendered:
    return {}
