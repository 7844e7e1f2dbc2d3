"""Release archives for Windows hosts (Prometheus, Alertmanager, the Python installer): fetched
on the controller, verified by the SHA256 stack.yaml gives, and only then used.

Verifying on the controller means a wrong or tampered download never reaches a host, and a host
without internet access can be provisioned. Archives are cached under
``$PF_CACHE/releases/`` (``~/.cache/provider-fallback`` by default) by hash, so a second deploy
downloads nothing; a cached file is hashed again before each use. From a zip only the one
program the host runs is extracted (``prometheus.exe``, ``alertmanager.exe``); the host gets
that file, checked again by SHA256 by the connector.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from monitoring.stack.schema import Release
from tasks.wheelhouse import cache_root

Opener = Callable[[str], IO[bytes]]


class ReleaseError(RuntimeError):
    """A release cannot be used; the message names the stack.yaml field and the fix."""


def releases_dir() -> Path:
    return cache_root() / "releases"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str) -> IO[bytes]:
    if not url.startswith(("https://", "http://")):
        raise ReleaseError(f"{url}: only http(s) URLs are fetched")
    return urllib.request.urlopen(url, timeout=60)  # type: ignore[no-any-return]  # noqa: S310


def fetch(release: Release, field: str, cache: Path | None = None,
          opener: Opener = _open) -> Path:
    """The archive of ``release``, verified: from the cache, or downloaded into it.

    ``field`` is the stack.yaml path (``windows.prometheus_release``) errors name.
    """
    cache = cache or releases_dir()
    name = PurePosixPath(release.url.split("?", 1)[0]).name or "download"
    path = cache / f"{release.sha256[:16]}-{name}"
    if path.is_file() and file_sha256(path) == release.sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with opener(release.url) as response:
                    shutil.copyfileobj(response, out)
            except OSError as exc:
                raise ReleaseError(f"{field}: cannot download {release.url} ({exc}); nothing "
                                   "was deployed. Check the URL and the network, or put the "
                                   f"file at {path}") from None
        got = file_sha256(tmp)
        if got != release.sha256:
            raise ReleaseError(
                f"{field}: {release.url} has SHA256 {got}, stack.yaml says {release.sha256}; "
                "the file was discarded and nothing was deployed. Take the SHA256 from the "
                "project's sha256sums.txt for exactly this file")
        tmp.replace(path)
        return path
    finally:
        tmp.unlink(missing_ok=True)


def _crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            crc = zlib.crc32(chunk, crc)
    return crc


def extract_program(archive: Path, program: str, field: str) -> Path:
    """``program`` (e.g. ``prometheus.exe``) from a verified release zip, extracted beside it.

    An earlier extraction is reused when its size and CRC-32 are the zip entry's; zipfile
    checks the CRC of what it extracts."""
    out_dir = archive.parent / archive.stem
    out = out_dir / program
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist()
                       if PurePosixPath(m.filename).name.lower() == program.lower()
                       and not m.is_dir()]
            if len(members) != 1:
                raise ReleaseError(
                    f"{field}: {archive.name} holds {len(members)} files named {program}, "
                    "expected one: is this the windows-amd64 zip of the release?")
            member = members[0]
            if out.is_file() and out.stat().st_size == member.file_size \
                    and _crc32(out) == member.CRC:
                return out
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            with zf.open(member) as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(out)
    except zipfile.BadZipFile as exc:
        raise ReleaseError(f"{field}: {archive.name} is not a zip ({exc})") from None
    return out


def required(release: Release | None, field: str, what: str) -> Release:
    """``release``, or a ReleaseError naming the field when stack.yaml leaves it null."""
    if release is None:
        raise ReleaseError(
            f"{field} is null, and a Windows deploy needs it to install {what}. Set it in "
            "inventory/stack.yaml (or host data stack:) to the windows-amd64 zip of the "
            "release and its SHA256 from the project's sha256sums.txt, e.g. "
            f"{field}: {{url: https://github.com/prometheus/.../...windows-amd64.zip, "
            "sha256: <64 hex digits>}")
    return release
