"""This machine, over pyinfra's @local connector (the README's `make deploy`).

As root (CI, a container) the deploy runs directly; as a user (WSL's default user) every
operation goes through sudo. ``deploy_person``: who ran it (``SUDO_USER`` under sudo), whose
agents ``linux.agents_user: auto`` enrolls (tasks/linux/agents.py).
"""

import os

from tasks.linux.agents import PERSON_DATA, local_person

local = [("@local", {"target_os": "linux", "_sudo": os.geteuid() != 0,
                     PERSON_DATA: local_person()})]
