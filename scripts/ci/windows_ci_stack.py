"""The stack a CI run on a GitHub Windows runner deploys, and the paths its steps read.

``write``: inventory/stack.yaml with the Prometheus and Alertmanager release archives for
Windows (their URL, and the SHA256 from the release's ``sha256sums.txt``, which the job
downloads next to the archive over HTTPS) and ``windows.python`` set to the runner's own
interpreter. The file is validated before it is written; a bad one exits 2 naming the field.

``paths``: the host paths of a stack as JSON (install root, logs, the CLI, its config), so the
job's PowerShell never spells a path of its own.

Run by scripts/ci/windows-host.ps1; tested in tests/ci/test_workflows.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from monitoring.stack.layout import layout
from monitoring.stack.load import StackError, load_stack

RELEASES = {"prometheus_release": "prometheus", "alertmanager_release": "alertmanager"}


def sha256_from_sums(sums: str, file_name: str) -> str:
    """The SHA256 ``sha256sums.txt`` gives for ``file_name`` (ValueError when absent)."""
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == file_name:
            return parts[0].lower()
    raise ValueError(f"{file_name} is not listed in the sha256sums.txt given")


def write(stack_file: Path, out: Path, python: str, releases: dict[str, tuple[str, str]]) -> None:
    """``releases``: stack field -> (archive URL, text of its sha256sums.txt)."""
    data = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    windows = data["windows"]
    windows["python"] = python
    for field, (url, sums) in releases.items():
        windows[field] = {"url": url, "sha256": sha256_from_sums(sums, url.rsplit("/", 1)[-1])}
    out.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False)
    candidate = out.with_name(out.name + ".new")
    candidate.write_text(text, encoding="utf-8")
    load_stack(candidate)  # StackError names the field
    candidate.replace(out)


def paths(stack_file: Path) -> dict[str, str]:
    stack = load_stack(stack_file)
    lay = layout(stack, "windows")
    return {"install_root": stack.windows.install_root, "log_dir": lay.log_dir,
            "cli": lay.watchdog_bin, "config": lay.watchdog_config}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--stack", type=Path, default=Path("inventory/stack.yaml"))
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--python", required=True)
    for name in RELEASES.values():
        w.add_argument(f"--{name}-url", required=True, dest=f"{name}_url")
        w.add_argument(f"--{name}-sums", type=Path, required=True, dest=f"{name}_sums")
    p = sub.add_parser("paths")
    p.add_argument("--stack", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "paths":
            print(json.dumps(paths(args.stack)))
            return 0
        releases = {field: (getattr(args, f"{name}_url"),
                            getattr(args, f"{name}_sums").read_text(encoding="utf-8"))
                    for field, name in RELEASES.items()}
        write(args.stack, args.out, args.python, releases)
    except (StackError, ValueError, OSError) as exc:
        print(f"windows_ci_stack: {exc}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
