"""Run the real deploy (``pyinfra INVENTORY deploy.py``) against test hosts, as a user would.

Used by the host tests and by ``bench/deploy_bench.py``: writes an inventory whose hosts are
reached over real SSH with their host keys pinned, runs the pyinfra CLI in a subprocess with
the secrets in its environment only, and reads pyinfra's own summary of what changed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.stack.layout import Layout
from monitoring.stack.schema import Stack
from tests.support.testhost import TestHost

REPO = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")

#: pyinfra's last summary row: "Grand total  <ops>  <changed>  <errors>  <no change>"
#: ("-" for zero); in --dry mode the columns are "<ops>  <change>  <no change>".
_TOTAL = re.compile(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*$", re.M)


def fake_key(prefix: str) -> str:
    """A real-looking key made at run time (no secret-shaped literal in the repo)."""
    return prefix + secrets.token_urlsafe(30)


def breakage(stack: Stack, lay: Layout) -> list[str]:
    """Shell commands that break a provisioned systemd host in every way the reprovision test
    and bench repair at once: services stopped and disabled, configs deleted and corrupted,
    LiteLLM removed from the venv, the watchdog killed."""
    units = stack.linux.units
    return [
        f"systemctl disable --now {units.litellm} prometheus.service",
        f"rm -f {lay.watchdog_config} {lay.alertmanager_config}",
        f"echo 'scrape_configs: [oops' > {lay.prometheus_config}",
        f"echo 'model_list: {{' > {lay.litellm_config}",
        f"{lay.venv}/bin/pip uninstall --quiet --yes litellm",
        f"systemctl kill --signal=SIGKILL {units.watchdog}",
    ]


def write_inventory(path: Path, hosts: Sequence[TestHost],
                    data: Mapping[str, Any] | None = None) -> Path:
    """An inventory module listing ``hosts`` with ``data`` merged into each one's data."""
    rows = [(h.address, {**h.pyinfra_data(), **(data or {})}) for h in hosts]
    path.write_text(f"hosts = {rows!r}\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class DeployResult:
    returncode: int
    output: str
    seconds: float

    def _total(self) -> tuple[str, ...]:
        found = _TOTAL.findall(self.output)
        if not found:
            raise AssertionError(f"no 'Grand total' row in pyinfra's output:\n{self.output}")
        return tuple(found[-1])

    @property
    def changed(self) -> int:
        """Operations that changed something (all hosts), from pyinfra's summary."""
        value = self._total()[1]
        return 0 if value == "-" else int(value)

    @property
    def proposed(self) -> int:
        """Operations ``--dry`` says will change (its "Change" column; the "Conditional
        Change" ones depend on an earlier change and are not counted)."""
        lines = self.output.splitlines()
        try:
            start = next(i for i, line in enumerate(lines) if "--> Detected changes:" in line)
        except StopIteration:
            raise AssertionError(
                f"no detected changes in pyinfra's output:\n{self.output}") from None
        header = lines[start + 1]
        column = header.index(" Change ") + 1
        count = 0
        for row in lines[start + 2:]:
            if not row.strip():
                break
            cell = row[column:].split()[:1]
            count += 0 if cell in ([], ["-"]) else 1
        return count

    def check(self) -> DeployResult:
        if self.returncode != 0:
            raise AssertionError(f"deploy exited {self.returncode}:\n{self.output[-8000:]}")
        return self


def run_deploy(inventory: Path, env: Mapping[str, str], *, dry: bool = False,
               extra: Sequence[str] = (), timeout: float = 900) -> DeployResult:
    """``pyinfra -y INVENTORY deploy.py`` from the repo root; output and wall time.

    ``dry``: ``pyinfra --dry`` (without ``-y``, which would skip change detection): pyinfra
    prints the changes it detects and stops before executing anything.
    """
    argv = [str(PYINFRA), *(["--dry"] if dry else ["-y"]), *extra, str(inventory),
            "deploy.py"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return DeployResult(done.returncode, done.stdout + done.stderr,
                        time.monotonic() - started)
