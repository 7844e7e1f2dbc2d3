"""The stack: the typed shape of ``inventory/stack.yaml``, reading and checking it, and
the host layout (where every file lives on a host).

``schema`` (the pydantic model) and ``layout`` are read on the host too (the agents and the
event log use them); ``load``, ``reader`` and ``checks`` are what the controller runs on
stack.yaml before render.

May import: ``monitoring.stack``, the shared top modules (``monitoring.host_config``,
``monitoring.atomic``...) and, from ``checks`` only, ``monitoring.agents`` (every agent
target is checked by its own adapter). Never ``watchdog``, ``proxy``, ``content`` or the CLI.
Enforced by ``tests/test_import_directions.py``.
"""
