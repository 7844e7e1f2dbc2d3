"""Windows hosts over WinRM: the project's own pyinfra 3 connector, facts and operations.

pyinfra 3 has no Windows support of its own. Here:

- :mod:`tasks.windows.connector`: the ``@winrm/HOST`` connector (pywinrm, HTTPS by default);
- :mod:`tasks.windows.powershell`: how values enter PowerShell and scripts travel;
- :mod:`tasks.windows.facts`: host state from ``ConvertTo-Json``;
- operations, one module per family: :mod:`~tasks.windows.files`,
  :mod:`~tasks.windows.firewall`, :mod:`~tasks.windows.scheduled_tasks`,
  :mod:`~tasks.windows.eventlog`, :mod:`~tasks.windows.python`,
  :mod:`~tasks.windows.environment`;
- :mod:`tasks.windows.releases`: Prometheus and Alertmanager release zips, verified;
- :mod:`tasks.windows.deploy`: :func:`~tasks.windows.deploy.windows_stack`, the Windows branch
  of deploy.py.
"""
