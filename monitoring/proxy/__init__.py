"""The proxy side: what LiteLLM loads (``litellm_hooks``) and what it decides without
LiteLLM: the cost log, the month's budget, the kill switch, degraded answers and the
cost-aware choice of a provider. The watchdog and the CLI read the same files through these
modules.

May import: ``monitoring.proxy``, ``monitoring.stack`` and the shared top modules. Never
``watchdog`` (the proxy must keep working while the watchdog is down), ``agents``,
``content``, the CLI or ``tasks``. Enforced by ``tests/test_import_directions.py``.
"""
