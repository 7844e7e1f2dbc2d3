"""``python -m tasks.render``: write every host file under ``build/<os>/`` for review.

The whole stack is validated and rendered in memory first, and every file passes its format's
parser and the real tools installed here (:mod:`tasks.render.validate`); only then is anything
written, so a bad stack.yaml leaves ``build/`` exactly as it was. Each OS directory is
replaced as a whole (new tree written beside it, then swapped), so a stale file from an earlier
render cannot linger. ``MANIFEST.json`` lists each file's host destination, mode and SHA256.

Exit codes: 0 written; 2 the stack is invalid or does not render (nothing written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from monitoring.stack.layout import TARGET_OSES, TargetOS
from monitoring.stack.load import StackError, line_index, load_host_data, load_stack
from tasks.render import render
from tasks.render.common import Rendered
from tasks.render.validate import RenderError, tool_problems
from tasks.secrets import controller_secrets

EXIT_INVALID = 2


def _manifest(rendered: Rendered) -> bytes:
    entries = {
        rel: {"dest": a.dest, "mode": f"{a.mode:04o}", "secret": a.secret,
              "sha256": hashlib.sha256(a.data).hexdigest()}
        for rel, a in rendered.items()
    }
    return (json.dumps(entries, indent=2) + "\n").encode("utf-8")


def write_build(rendered: Rendered, target_dir: Path) -> None:
    """Replace ``target_dir`` with the rendered tree (modes as on the host)."""
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", dir=target_dir.parent))
    try:
        for rel, artifact in rendered.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, artifact.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(artifact.data)
        (staging / "MANIFEST.json").write_bytes(_manifest(rendered))
        staging.chmod(0o755)
        old = target_dir.with_name(f".{target_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if target_dir.exists():
            target_dir.rename(old)
        staging.rename(target_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="inventory/stack.yaml",
                        help="the stack file (default: inventory/stack.yaml)")
    parser.add_argument("--out", default="build", help="output directory (default: build)")
    parser.add_argument("--os", choices=[*TARGET_OSES, "all"], default="all",
                        help="the target OS to render for (default: all)")
    parser.add_argument("--host-data", help="a YAML file of per-host overrides (key: stack)")
    parser.add_argument("--no-secrets", action="store_true",
                        help="leave secret values out of secrets.env (names are still checked)")
    parser.add_argument("--version", action="store_true",
                        help="print the version and the SHA256 of the watchdog wheel a deploy "
                             "from this checkout installs (it decides reinstalls), and exit")
    args = parser.parse_args(argv)
    if args.version:
        from tasks.wheelhouse import checkout_build

        print(checkout_build().line("provider-fallback (render)"))
        return 0

    try:
        overrides = load_host_data(args.host_data) if args.host_data is not None else None
        stack = load_stack(args.stack, overrides)
    except StackError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_INVALID
    secrets = {} if args.no_secrets else controller_secrets(stack)
    targets: list[TargetOS] = list(TARGET_OSES) if args.os == "all" else [args.os]
    try:
        results = {target: render(stack, target, secrets) for target in targets}
        problems = [p for rendered in results.values() for p in tool_problems(rendered)]
        if problems:
            raise RenderError(problems)
    except StackError as exc:  # RenderError: the final check of every file
        print(StackError(args.stack, exc.problems, line_index(args.stack)).report(),
              file=sys.stderr)
        return EXIT_INVALID
    for target, rendered in results.items():
        write_build(rendered, Path(args.out) / target)
        print(f"{Path(args.out) / target}: {len(rendered)} files (see MANIFEST.json)")
    missing = [n for n in stack.secret_env_names() if n not in secrets]
    if missing and not args.no_secrets:
        print("not set in this environment, left out of secrets.env: " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
