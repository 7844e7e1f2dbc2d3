"""Throwaway Debian hosts with real systemd, for deploying to over SSH exactly as a user would.

How (facts measured on this kind of machine: shared/notes/test-host.md):

- one root filesystem built by mmdebstrap (``bookworm``, minbase + systemd, sshd, python3) and
  cached under ``$PF_CACHE/testhost``; every host boots a copy-on-write overlay of it, so each
  boot starts from the same bare host and the cache is never written;
- each host gets its own network namespace joined to this machine by a veth pair with
  link-local addresses (``169.254.N.1`` here, ``169.254.N.2`` in the guest): nothing else is
  reachable from the guest;
- apt inside the guest goes through a private apt-cacher-ng on the host end of the veth (its
  cache kept under ``$PF_CACHE`` so a second run downloads nothing);
- ``systemd-nspawn -b --register=no --keep-unit`` boots it in its own cgroups; stopping sends
  SIGTERM to nspawn, then kills whatever is left in those cgroups.

Nothing here is a fake: the guest is a real Debian with systemd as PID 1 and sshd.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.litellm_proxy import cache_dir

SUITE = "bookworm"
#: A bare host: what a fresh Debian server or a WSL distribution has, plus sshd to reach it.
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo",
                   "iproute2", "ca-certificates")
#: Debian tools this module needs on the machine running the tests.
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "systemd-nspawn": "systemd-container",
              "apt-cacher-ng": "apt-cacher-ng", "ssh-keygen": "openssh-client",
              "ip": "iproute2"}
CGROUP_ROOT = Path("/sys/fs/cgroup")


class TestHostError(RuntimeError):
    """A test host could not be built, booted or reached (the message says which step)."""


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                          **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise TestHostError(f"{' '.join(argv)} exited {done.returncode}: "
                            f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done  # type: ignore[no-any-return]


def missing_tools() -> list[str]:
    """Debian packages to install before a test host can be built ([] when all are here)."""
    return sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})


def ensure_tools() -> None:
    """Install the Debian tools above when missing (root, as on CI)."""
    missing = missing_tools()
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def debian_mirrors() -> list[tuple[str, str, str]]:
    """(uri, suite, components) of this machine's Debian sources (deb822 or one-line)."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
            if fields.get("Types", "").split()[:1] != ["deb"]:
                continue
            for uri in fields.get("URIs", "").split():
                for suite in fields.get("Suites", "").split():
                    found.append((uri, suite, fields.get("Components", "main")))
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "deb" and not parts[1].startswith("["):
                found.append((parts[1], parts[2], " ".join(parts[3:])))
    if not found:
        raise TestHostError("no Debian source in /etc/apt: cannot build a test host")
    return found


# --------------------------------------------------------------------------- root filesystem


@dataclass(frozen=True)
class Rootfs:
    """The cached base image and the key that logs in to every host booted from it."""

    path: Path
    ssh_key: Path
    host_key_pub: str


def _rootfs_id(mirrors: list[tuple[str, str, str]]) -> str:
    text = repr((SUITE, ROOTFS_PACKAGES, mirrors, 1))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_rootfs() -> Rootfs:
    """The base root filesystem, built once (~50 s) and reused while the cache is kept."""
    mirrors = [m for m in debian_mirrors() if m[1].startswith(SUITE)]
    base = cache_dir() / "testhost"
    rootfs = base / f"rootfs-{SUITE}-{_rootfs_id(mirrors)}"
    key = base / "id_ed25519"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "provider-fallback tests",
                  "-f", str(key)])
        if not (rootfs / ".complete").exists():
            _build_rootfs(rootfs, mirrors, key)
    host_key = (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return Rootfs(rootfs, key, " ".join(host_key[:2]))


def _build_rootfs(rootfs: Path, mirrors: list[tuple[str, str, str]], key: Path) -> None:
    tmp = rootfs.with_name(rootfs.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    lines = [f"deb {uri} {suite} {comps}" for uri, suite, comps in mirrors]
    _run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(ROOTFS_PACKAGES),
          SUITE, str(tmp), *lines])
    ssh = tmp / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (ssh / "authorized_keys").chmod(0o600)
    # A console login is never needed; the machine-id is made fresh at each boot.
    (tmp / "etc/machine-id").write_text("")
    (tmp / ".complete").write_text(SUITE)
    tmp.rename(rootfs)


# --------------------------------------------------------------------------- apt cache


@dataclass
class AptCache:
    """A private apt-cacher-ng on every address of this machine, on a port of its own."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    def proxy_url(self, address: str) -> str:
        return f"http://{address}:{self.port}/"

    def stop(self) -> None:
        _terminate(self.process, 10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free_port(first: int = 3150, last: int = 3299) -> int:
    """A free port in a low range: apt-cacher-ng 3.7 fails to bind ephemeral ports such as
    55617 ("Error resolving address for binding"), and 3142 is the packaged instance's."""
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - guests reach it via their veth
            except OSError:
                continue
            return port
    raise TestHostError(f"no free port in {first}-{last} for apt-cacher-ng")


def start_apt_cache() -> AptCache:
    """apt-cacher-ng with its config copied to a private directory and its backend set to
    this machine's mirror (its default backend list is unreachable here: apt then hangs)."""
    workdir = Path(tempfile.mkdtemp(prefix="pf-acng-"))
    conf = workdir / "conf"
    shutil.copytree("/etc/apt-cacher-ng", conf)
    debian = sorted({uri.rstrip("/") + "/" for uri, _, _ in debian_mirrors()
                     if not uri.rstrip("/").endswith("-security")})
    (conf / "backends_debian").write_text("\n".join(debian) + "\n")
    store = cache_dir() / "testhost" / "apt-cache"
    store.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = workdir / "log"
    log.mkdir()
    process = subprocess.Popen(
        ["apt-cacher-ng", "-c", str(conf), "ForeGround=1", f"Port={port}",
         f"CacheDir={store}", f"LogDir={log}", f"PidFile={workdir / 'pid'}",
         f"SocketPath={workdir / 'socket'}", "BindAddress=0.0.0.0"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "stderr").open("wb"))
    cache = AptCache(port, process, workdir)
    try:
        _wait_port("127.0.0.1", port, 20, process, "apt-cacher-ng")
    except TestHostError:
        cache.stop()
        raise
    return cache


# --------------------------------------------------------------------------- hosts


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_port(address: str, port: int, timeout: float,
               process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TestHostError(f"{what} exited with {process.returncode} before "
                                f"{address}:{port} answered")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return
        time.sleep(0.1)
    raise TestHostError(f"{what}: nothing answered on {address}:{port} within {timeout:.0f} s")


@dataclass
class TestHost:
    """One booted guest: reach it at ``address`` as root with ``ssh_key``."""

    __test__ = False  # not a pytest class

    index: int
    rootfs: Rootfs
    apt_cache: AptCache
    #: False: no init system at all (a container, WSL without systemd=true). nspawn's stub
    #: init is PID 1 and runs sshd; /run/systemd/system does not exist.
    systemd: bool = True
    workdir: Path = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.index <= 250:
            raise ValueError("index must be 1..250 (it is the third octet of 169.254.N.x)")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pf-host{self.index}-"))

    @property
    def name(self) -> str:
        return f"pf-test{self.index}"

    @property
    def address(self) -> str:
        """The guest's address."""
        return f"169.254.{self.index}.2"

    @property
    def gateway(self) -> str:
        """This machine's end of the veth: where the guest reaches the apt cache and fakes."""
        return f"169.254.{self.index}.1"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def root(self) -> Path:
        """The guest's root filesystem as seen from here (the merged overlay)."""
        return self.workdir / "root"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    def _network(self) -> None:
        host_if, guest_if = f"pfh{self.index}", f"pfg{self.index}"
        self._cleanup_network()
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", guest_if])
        _run(["ip", "link", "set", guest_if, "netns", self.netns])
        _run(["ip", "addr", "add", f"{self.gateway}/30", "dev", host_if])
        _run(["ip", "link", "set", host_if, "up"])
        ns = ["ip", "-n", self.netns]
        _run([*ns, "addr", "add", f"{self.address}/30", "dev", guest_if])
        _run([*ns, "link", "set", guest_if, "up"])
        _run([*ns, "link", "set", "lo", "up"])

    def _cleanup_network(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"pfh{self.index}"], capture_output=True,
                       check=False)

    def _overlay(self) -> None:
        for part in ("upper", "work", "root"):
            (self.workdir / part).mkdir(exist_ok=True)
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={self.rootfs.path},upperdir={self.workdir / 'upper'},"
              f"workdir={self.workdir / 'work'}", str(self.root)])
        (self.root / "etc/hostname").write_text(self.name + "\n")
        (self.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        proxy = self.apt_cache.proxy_url(self.gateway)
        (self.root / "etc/apt/apt.conf.d/01proxy").write_text(
            f'Acquire::http::Proxy "{proxy}";\n')

    def _cgroups(self) -> list[Path]:
        return [CGROUP_ROOT / ctl / f"nspawn-{self.name}" for ctl in ("systemd", "unified")
                if (CGROUP_ROOT / ctl).is_dir()]

    def boot(self, timeout: float = 60) -> None:
        """Network, overlay, nspawn; returns once sshd answers."""
        self._network()
        self._overlay()
        groups = self._cgroups()
        for group in groups:
            group.mkdir(exist_ok=True)

        def enter_cgroups() -> None:  # runs in the child before exec
            for group in groups:
                (group / "cgroup.procs").write_text(str(os.getpid()))

        console = (self.workdir / "console.log").open("wb")
        init = ["-b"] if self.systemd else ["--as-pid2"]
        payload = ([] if self.systemd else
                   ["/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"])
        self.process = subprocess.Popen(
            ["systemd-nspawn", "--quiet", *init, "-D", str(self.root), "-M", self.name,
             "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{self.netns}",
             "--console=read-only", *payload],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=enter_cgroups)
        self.known_hosts.write_text(f"{self.address} {self.rootfs.host_key_pub}\n")
        self.ssh_config.write_text(
            f"Host {self.address}\n  User root\n  IdentityFile {self.rootfs.ssh_key}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
            "  StrictHostKeyChecking yes\n")
        try:
            _wait_port(self.address, 22, timeout, self.process, f"{self.name} (sshd)")
        except TestHostError as exc:
            raise TestHostError(f"{exc}\n--- console ---\n{self.console_tail()}") from None

    def console_tail(self, lines: int = 40) -> str:
        path = self.workdir / "console.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the guest over real SSH (not checked: read returncode)."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes",
                               self.address, command], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def pyinfra_data(self) -> dict[str, object]:
        """Host data for a pyinfra inventory: real SSH with the host key pinned."""
        return {"ssh_user": "root", "ssh_key": str(self.rootfs.ssh_key),
                "ssh_known_hosts_file": str(self.known_hosts),
                "ssh_strict_host_key_checking": "yes"}

    def testinfra_url(self) -> str:
        return f"paramiko://root@{self.address}"

    def stop(self) -> None:
        """Stop the guest and remove everything it used, whatever state it is in."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for group in self._cgroups():
            self._kill_cgroup(group)
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True, check=False)
        self._cleanup_network()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _kill_cgroup(group: Path) -> None:
        if not group.is_dir():
            return
        for _ in range(50):
            pids = [int(p) for p in group.joinpath("cgroup.procs").read_text().split()]
            for child in group.rglob("cgroup.procs"):
                pids += [int(p) for p in child.read_text().split()]
            if not pids:
                break
            for pid in set(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for child in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            group.rmdir()


def _claim_indexes(count: int, first: int, stack: contextlib.ExitStack) -> list[int]:
    """``count`` host indexes no other test session on this machine holds (an flock each),
    so two sessions never boot two guests with one name, namespace and address."""
    claimed: list[int] = []
    lock_dir = Path("/run/provider-fallback-testhosts")
    lock_dir.mkdir(exist_ok=True)
    for index in range(first, 251):
        lock = stack.enter_context(open(lock_dir / f"{index}.lock", "w"))  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        claimed.append(index)
        if len(claimed) == count:
            return claimed
    raise TestHostError(f"no {count} free test host indexes")


@contextlib.contextmanager
def booted_hosts(count: int, first_index: int = 10, *,
                 systemd: bool = True) -> Iterator[list[TestHost]]:
    """``count`` booted hosts sharing one apt cache; all torn down on exit, also on error.
    ``systemd=False``: hosts without an init system (see :attr:`TestHost.systemd`)."""
    ensure_tools()
    rootfs = ensure_rootfs()
    with contextlib.ExitStack() as locks:
        indexes = _claim_indexes(count, first_index, locks)
        cache = start_apt_cache()
        hosts = [TestHost(index, rootfs, cache, systemd) for index in indexes]
        try:
            for host in hosts:
                host.boot()
            yield hosts
        finally:
            for host in hosts:
                host.stop()
            cache.stop()
