"""The watchdog on the host: the loop (``loop``) and its parts: probes, error classes,
circuits, proxy recovery, persisted state, the exporter, the port listener check and the
outage report.

May import: ``monitoring.watchdog``, ``monitoring.proxy`` (it reads the spend and drives the
kill switch), ``monitoring.agents`` (it switches them), ``monitoring.stack`` and the shared top
modules. Never ``content``, the CLI or ``tasks``. Enforced by
``tests/test_import_directions.py``.
"""
