"""Release archives: verified by SHA256 on the controller before anything uses them."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import IO

import pytest

from monitoring.stack.schema import Release
from tasks.windows import releases


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


DATA = zip_bytes({"prometheus-3.5.0.windows-amd64/prometheus.exe": b"MZ prometheus",
                  "prometheus-3.5.0.windows-amd64/promtool.exe": b"MZ promtool"})
SHA = hashlib.sha256(DATA).hexdigest()
URL = "https://example.invalid/prometheus-3.5.0.windows-amd64.zip"


class Server:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.hits = 0

    def __call__(self, url: str) -> IO[bytes]:
        assert url == URL
        self.hits += 1
        return io.BytesIO(self.data)


def test_download_is_verified_cached_and_reused(tmp_path: Path) -> None:
    server = Server(DATA)
    path = releases.fetch(Release(url=URL, sha256=SHA), "windows.prometheus_release", tmp_path,
                          server)
    assert path.read_bytes() == DATA
    assert releases.fetch(Release(url=URL, sha256=SHA), "f", tmp_path, server) == path
    assert server.hits == 1
    exe = releases.extract_program(path, "prometheus.exe", "windows.prometheus_release")
    assert exe.read_bytes() == b"MZ prometheus"
    assert releases.extract_program(path, "prometheus.exe", "f") == exe


def test_a_wrong_hash_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    server = Server(DATA + b"tampered")
    with pytest.raises(releases.ReleaseError,
                       match=r"windows\.prometheus_release: .* has SHA256 .*stack\.yaml says"):
        releases.fetch(Release(url=URL, sha256=SHA), "windows.prometheus_release", tmp_path,
                       server)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_cache_is_downloaded_again(tmp_path: Path) -> None:
    server = Server(DATA)
    path = releases.fetch(Release(url=URL, sha256=SHA), "f", tmp_path, server)
    path.write_bytes(b"bit rot")
    assert releases.fetch(Release(url=URL, sha256=SHA), "f", tmp_path, server).read_bytes() \
        == DATA
    assert server.hits == 2


def test_a_tampered_extraction_is_extracted_again(tmp_path: Path) -> None:
    path = releases.fetch(Release(url=URL, sha256=SHA), "f", tmp_path, Server(DATA))
    exe = releases.extract_program(path, "prometheus.exe", "f")
    exe.write_bytes(b"MZ evil  xxxxx")  # same size, other bytes
    assert releases.extract_program(path, "prometheus.exe", "f").read_bytes() == \
        b"MZ prometheus"


def test_a_zip_without_the_program_names_the_field(tmp_path: Path) -> None:
    other = zip_bytes({"x/readme.txt": b""})
    path = releases.fetch(Release(url=URL, sha256=hashlib.sha256(other).hexdigest()), "f",
                          tmp_path, Server(other))
    with pytest.raises(releases.ReleaseError, match=r"windows\.alertmanager_release: .* 0 files"):
        releases.extract_program(path, "alertmanager.exe", "windows.alertmanager_release")


def test_a_null_release_names_the_field() -> None:
    with pytest.raises(releases.ReleaseError, match=r"windows\.prometheus_release is null"):
        releases.required(None, "windows.prometheus_release", "Prometheus")


def test_only_http_urls_are_opened() -> None:
    with pytest.raises(releases.ReleaseError, match="only http"):
        releases._open("file:///etc/passwd")
