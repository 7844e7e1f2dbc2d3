"""provider-fallback's Python package: what runs on a host, and the builders render uses.

The rooms, one subpackage per role:

- ``stack/``: the typed stack.yaml, reading and checking it, and the host layout (paths).
- ``content/``: alert rules, alertmanager.yml, prometheus.yml and Grafana provisioning, as
  data for render (controller only; not in the host wheel).
- ``watchdog/``: the loop on the host: probes, error classes, circuits, proxy recovery,
  state, the exporter, the outage report.
- ``proxy/``: what LiteLLM loads and what it decides: cost log, budget, kill switch, degraded
  answers, the cost-aware choice of a provider.
- ``agents/``: one adapter per coding agent, and the engine that switches their files.

At the top: the CLI (``cli``, ``console``) and what every room shares: metric names
(``metrics``), the watchdog's config file on the host (``host_config``), the event log
(``events``), crash-safe files (``atomic``) and the build's version (``version``). Who may
import whom is in ``tests/test_import_directions.py``.
"""
