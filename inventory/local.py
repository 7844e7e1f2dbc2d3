"""This machine, over pyinfra's @local connector (the README's `make deploy`)."""

local = [("@local", {"target_os": "linux"})]
