"""The watchdog on the host: the loop (``loop``) and its parts: probes, error classes,
circuits, proxy recovery, persisted state, the exporter, the port listener check and the
outage report.

May import: ``monitoring.watchdog``, ``monitoring.proxy`` (it reads the spend and drives the
kill switch), ``monitoring.agents`` (it switches them), ``monitoring.stack`` and the shared top
modules. Never ``content``, the CLI or ``tasks``. Enforced by
``tests/test_import_directions.py``.
"""

import sys

# ``import httpx`` also imports httpx's own command-line client (``httpx._main``: click,
# pygments and rich, 2.6 MB of the daemon's RSS) whenever click is installed, as it is in the
# host venv beside LiteLLM. The watchdog never runs that client: None in ``sys.modules`` makes
# its import raise ImportError, which httpx catches (``httpx.main`` then only says how to
# install it). No effect once httpx is imported. Issue 13, B9;
# tests/monitoring/watchdog/test_footprint.py.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
