"""The monitoring content: alert rules, alertmanager.yml, prometheus.yml and Grafana's
provisioning, as data built from the stack (render dumps them; ``tasks/render/dashboard.py``
builds the dashboard).

Controller only: no host module imports it, and the wheel shipped to hosts leaves it out
(``pyproject.toml``, ``[tool.setuptools.packages.find]``).

May import: ``monitoring.content``, ``monitoring.stack`` and the shared top modules
(``monitoring.metrics`` for every metric name). Never ``watchdog``, ``proxy``, ``agents`` or
the CLI. Enforced by ``tests/test_import_directions.py``.
"""
