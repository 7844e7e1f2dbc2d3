"""pyinfra operations this bundle needs beyond pyinfra's own, in pyinfra's style: each is a
generator that compares a fact with the desired state and yields only the difference, and
calls ``host.noop`` when there is none.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import io
import shlex
from collections.abc import Generator, Mapping

from pyinfra import host, logger  # type: ignore[attr-defined]
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.exceptions import OperationError
from pyinfra.api.operation import operation
from pyinfra.facts.files import File, FileContents, Sha256File

from monitoring.version import LINUX_MARKER
from tasks.linux.facts import UfwStatus, Venv
from tasks.wheelhouse import PROJECT, Wheelhouse

Commands = Generator[str | StringCommand | FileUploadCommand, None, None]


def _mode_digits(mode: int) -> int:
    """pyinfra's File fact gives a mode as the digits of its octal form (0o640 -> 640)."""
    return int(f"{mode:o}")


def stdin_write(path: str, data: bytes) -> StringCommand:
    """A command writing ``data`` to ``path`` from its standard input (base64), 0600 from the
    first byte, with no file anywhere else.

    pyinfra's upload with ``_sudo`` (an SSH user that is not root) goes through
    ``/tmp/pyinfra-<sha1 of the destination>``: a name anyone can predict and pre-create, made
    with the SSH user's umask, read by ``sudo cp`` a moment later (issue 12, M2). Over stdin
    the bytes go from the controller straight into the root-written file.
    """
    return StringCommand(f"(umask 077 && rm -f {shlex.quote(path)} && "
                         f"base64 -d > {shlex.quote(path)})",
                         _stdin=base64.b64encode(data).decode("ascii"))


@operation()
def put_bytes(data: bytes, dest: str, user: str = "root", group: str = "root",
              mode: int = 0o644, validate: str | None = None) -> Commands:
    """Put ``data`` at ``dest`` atomically, validated first when ``validate`` is given.

    Unlike ``files.put`` it never prints the content (``--diff`` included): secrets go
    through here. The bytes travel on the command's stdin (:func:`stdin_write`), never
    through a file in /tmp. A new or changed file is uploaded beside ``dest``, given its owner and
    mode, checked with ``validate`` (a command with ``{path}``, e.g. ``promtool check config
    {path}``) and renamed over ``dest``; a file that fails validation is removed and the
    live one stays as it was. Same content: only owner and mode are corrected.
    """
    info = host.get_fact(File, path=dest)
    want = hashlib.sha256(data).hexdigest()
    if info is False:
        raise OperationError(f"{dest} exists and is not a regular file")
    if not info or host.get_fact(Sha256File, path=dest) != want:
        staged = f"{dest}.pf-new"
        q_staged, q_dest = shlex.quote(staged), shlex.quote(dest)
        yield stdin_write(staged, data)
        yield f"chown {shlex.quote(user)}:{shlex.quote(group)} {q_staged}"
        yield f"chmod {mode:o} {q_staged}"
        if validate:
            check = validate.format(path=q_staged)
            yield (f"{check} || {{ status=$?; rm -f {q_staged}; "
                   f"echo 'validation failed, {dest} left unchanged' >&2; exit $status; }}")
        yield f"mv -f {q_staged} {q_dest}"
        return
    changed = False
    if info["user"] != user or info["group"] != group:
        yield f"chown {shlex.quote(user)}:{shlex.quote(group)} {shlex.quote(dest)}"
        changed = True
    if info["mode"] != _mode_digits(mode):
        yield f"chmod {mode:o} {shlex.quote(dest)}"
        changed = True
    if not changed:
        host.noop(f"{dest} is up to date")


def venv_missing(venv: str, wheelhouse: Wheelhouse) -> list[str]:
    """What the venv lacks to match the wheelhouse, for humans (empty when it matches)."""
    state = host.get_fact(Venv, path=venv)
    if state is None:
        return ["the venv (missing or its python does not run)"]
    have = state["distributions"]
    lacking = [f"{name}=={version}" for name, version in wheelhouse.desired().items()
               if have.get(name) != version]
    if have.get(PROJECT) is None or state["project_sha256"] != wheelhouse.project_sha256:
        lacking.append(f"{PROJECT} ({wheelhouse.project_wheel})")
    return lacking


@operation()
def venv_from_wheelhouse(venv: str, python: str, wheelhouse: Wheelhouse,
                         staging_dir: str) -> Commands:
    """A venv holding exactly the lock's pins and our wheel, installed from the wheelhouse.

    Compared by distribution versions and our wheel's SHA256 (read from the venv itself),
    so a removed or downgraded package, a broken venv or a new watchdog build is repaired
    and anything else is a no-op. The wheelhouse (one tar) is pushed only when something
    must be installed; pip runs with ``--no-index --require-hashes``: nothing is fetched
    by the host, and a file that does not match the lock is refused.
    """
    lacking = venv_missing(venv, wheelhouse)
    if not lacking:
        host.noop(f"{venv} matches the lock ({len(wheelhouse.pins)} pins) and {PROJECT}")
        return
    shown = ", ".join(lacking[:4]) + (f" and {len(lacking) - 4} more" if len(lacking) > 4 else "")
    host.log(f"{venv} lacks {shown}: installing from the wheelhouse", logger.info)
    q_venv = shlex.quote(venv)
    pip = shlex.quote(f"{venv}/bin/pip")
    stage = shlex.quote(f"{staging_dir}/wheelhouse-{wheelhouse.key}")
    tar = f"{staging_dir}/wheelhouse-{wheelhouse.key}.tar"
    if host.get_fact(Venv, path=venv) is None:
        yield f"rm -rf {q_venv} && {shlex.quote(python)} -m venv {q_venv}"
    yield f"mkdir -p {shlex.quote(staging_dir)} && chmod 700 {shlex.quote(staging_dir)}"
    yield FileUploadCommand(str(wheelhouse.tar), tar,
                            remote_temp_filename=host.get_temp_filename(tar))
    # Through sudo the tar passed a predictable /tmp name: unpack only the bytes we built.
    q_tar = shlex.quote(tar)
    yield (f"echo {wheelhouse.tar_sha256}'  '{q_tar} | sha256sum -c --quiet - || "
           f"{{ rm -f {q_tar}; echo 'the wheelhouse changed on its way to the host' >&2; "
           "exit 1; }")
    yield f"rm -rf {stage} && mkdir -p {stage} && tar -xf {shlex.quote(tar)} -C {stage}"
    yield (f"{pip} install --quiet --disable-pip-version-check --no-index --no-deps "
           f"--require-hashes --find-links {stage}/wheels -r {stage}/requirements.txt")
    yield (f"{pip} install --quiet --disable-pip-version-check --no-index --no-deps "
           f"--force-reinstall {stage}/{shlex.quote(wheelhouse.project_wheel)}")
    marker = shlex.quote(f"{venv}/{LINUX_MARKER}")
    yield f"echo {wheelhouse.project_sha256} > {marker}"
    yield f"rm -rf {stage} {shlex.quote(tar)}"


def merged_ini(current: str | None, section: str, values: Mapping[str, str]) -> str | None:
    """``current`` with ``values`` set in ``section``, every other section and key kept
    (comments are not: configparser drops them); None when it already holds them."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(current or "")
    if parser.has_section(section) and all(
            parser.get(section, key, fallback=None) == value for key, value in values.items()):
        return None
    if not parser.has_section(section):
        parser.add_section(section)
    for key, value in values.items():
        parser.set(section, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


@operation()
def ini_values(path: str, section: str, values: dict[str, str], mode: int = 0o644) -> Commands:
    """Set ``values`` in ``[section]`` of an INI file (``/etc/wsl.conf``), keeping the rest."""
    lines = host.get_fact(FileContents, path=path)
    current = "\n".join(lines) + "\n" if lines else None
    merged = merged_ini(current, section, values)
    if merged is None:
        host.noop(f"{path} already sets {section} {values}")
        return
    staged = f"{path}.pf-new"
    yield stdin_write(staged, merged.encode())
    yield f"chmod {mode:o} {shlex.quote(staged)} && mv -f {shlex.quote(staged)} {shlex.quote(path)}"


@operation()
def ufw_allow(port: int, sources: list[str], comment: str) -> Commands:
    """ufw rules allowing TCP ``port`` from each of ``sources``, matched by their comment."""
    status = host.get_fact(UfwStatus) or []
    present = [line for line in status if f"# {comment}" in line and f"{port}/tcp" in line]
    missing = [src for src in sources if not any(src in line for line in present)]
    if not missing:
        host.noop(f"ufw already allows {port}/tcp from {', '.join(sources)}")
        return
    for src in missing:
        yield (f"ufw allow proto tcp from {shlex.quote(src)} to any port {port} "
               f"comment {shlex.quote(comment)}")
