"""This machine, over pyinfra's @local connector (the README's `make deploy`).

As root (CI, a container) the deploy runs directly; as a user (WSL's default user) every
operation goes through sudo.
"""

import os

local = [("@local", {"target_os": "linux", "_sudo": os.geteuid() != 0})]
