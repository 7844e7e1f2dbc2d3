"""A one-operation deploy for tests/host/test_sudo_staging.py: the bundle's own ``put_bytes``
puts a secret (``$PF_TEST_SECRET``) at ``$PF_TEST_DEST``, 0600 root, through sudo."""

import os

from pyinfra.operations import files

from tasks.linux.operations import put_bytes

dest = os.environ["PF_TEST_DEST"]
files.directory(name="the secret's directory", path=os.path.dirname(dest), user="root",
                group="root", mode="700")
put_bytes(name="a secret through sudo", data=os.environ["PF_TEST_SECRET"].encode(), dest=dest,
          user="root", group="root", mode=0o600)
