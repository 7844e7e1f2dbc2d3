"""``python -m tests.tasks.windows.cli_runner HOST_STATE -- <pyinfra arguments>``: the real
pyinfra CLI with the connector's pywinrm session replaced by the fake in front of a simulated
host, whose state is read from and written back to HOST_STATE (a pickle this test suite
writes). Used by test_deploy.py to run ``pyinfra INVENTORY deploy.py`` as a user does.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    # pyinfra's CLI patches the process with gevent first, as its own script does.
    from pyinfra_cli.main import main as pyinfra_main  # type: ignore[import-untyped]

    from tasks.windows.connector import WinRMConnector
    from tests.tasks.windows.fakewinrm import FakeSessionFactory

    state_file = Path(argv[0])
    host = pickle.loads(state_file.read_bytes())  # noqa: S301 (written by the test itself)
    WinRMConnector.session_factory = FakeSessionFactory(host)
    sys.argv = ["pyinfra", *argv[2:]]
    try:
        pyinfra_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        code = 0
    state_file.write_bytes(pickle.dumps(host))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
