"""A real Debian 12 device for the tests: a minimal root made with ``debootstrap``, booted
with ``systemd-nspawn --boot`` (systemd as its PID 1), its LAN and its uplink on veth pairs
the caller wires into its own namespaces.

The roots are cached outside the repository (``/var/cache/hotspot-desa-tests`` or
``$HOTSPOT_TEST_CACHE``), in two layers, each keyed by what went into it:

* ``debian12-<key>``: ``debootstrap --variant=minbase --include=<PACKAGES> bookworm``;
* ``venv-<key>``: that root plus ``python3 -m venv /opt/hotspot`` and this checkout's
  dependencies installed into it (keyed by the base and ``setup.cfg``/``pyproject.toml``).

A layer is built in a temporary folder next to the cache and renamed into place when it is
whole, under a lock: a run killed while building leaves a temporary folder (removed by the
next build), never a half cache. A run gets its own copy: an overlay mount on the cached
layer (a copy, ``cp --reflink=auto``, where overlayfs is not available), so nothing a test
does reaches the cache.

Inside a run's root the installation steps of docs/provisioning.md are taken for real
(``pip install`` of this checkout into ``/opt/hotspot``, with the host's network: PyPI for
the build requirements); ``hotspot provision`` then runs on the booted system.

The host's PID 1 need not be systemd (``--register=no --keep-unit``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "HOTSPOT_TEST_CACHE"
DEFAULT_CACHE = "/var/cache/hotspot-desa-tests"
SUITE = "bookworm"
MIRROR = os.environ.get("HOTSPOT_TEST_MIRROR", "http://deb.debian.org/debian")
# What a village gateway's Debian has before `hotspot provision`: systemd to boot, and what
# the installation needs (python3-venv) and provision would otherwise install with apt-get
# (dnsmasq, nftables, iproute2, systemd-timesyncd, fake-hwclock: the container's uplink
# leads to the test's namespaces only, so provision's apt-get could fetch nothing).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "python3",
    "python3-venv",
    "nftables",
    "dnsmasq",
    "ca-certificates",
    "systemd-timesyncd",
    "fake-hwclock",
)
VENV = "/opt/hotspot"
SOURCE_IN_ROOT = "/usr/src/hotspot-desa"
# systemd-nspawn's exit status when the container asked to reboot: its unit
# (systemd-nspawn@.service, RestartForceExitStatus=133) starts it again.
REBOOT_EXIT = 133


class BootError(RuntimeError):
    """The device could not be built or booted (says why)."""


def missing_tools() -> list[str]:
    return [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if shutil.which(t) is None]


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _run(
    argv: Sequence[str], *, timeout: float = 900, log: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}(exit {proc.returncode})\n")
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise BootError(f"{' '.join(argv)} failed ({proc.returncode}):\n" + "\n".join(tail))
    return proc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(name: str, build: object) -> Path:
    """``cache/name``, built by ``build(tmp_dir)`` into a temporary folder and renamed."""
    cache = cache_dir()
    final = cache / name
    with _locked(cache / f".{name}.lock"):
        if final.is_dir():
            return final
        for stale in cache.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=cache))
        try:
            build(tmp)  # type: ignore[operator]
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def base_root(log: Path | None = None) -> Path:
    """The cached minimal Debian 12 root (built with debootstrap on first use)."""
    key = _key(SUITE, MIRROR, "minbase", sorted(PACKAGES))

    def build(tmp: Path) -> None:
        root = tmp / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            timeout=1800,
            log=log,
        )
        # apt's caches are not needed to boot; a smaller cache copies faster.
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)

    return _cached(f"debian12-{key}", build) / "root"


def _requirements_key() -> str:
    return _key(
        (REPO / "setup.cfg").read_text().split("[options.packages.find]")[0],
        (REPO / "pyproject.toml").read_text().split("[tool.")[0],
    )


def _host_ca() -> str | None:
    """The host's CA bundle for pip (it may trust a proxy's CA the Debian root does not)."""
    for path in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE")):
        if path and Path(path).is_file():
            return path
    default = "/etc/ssl/certs/ca-certificates.crt"
    return default if Path(default).is_file() else None


def _nspawn_pipe(root: Path, script: str, *, log: Path | None) -> None:
    """Run ``script`` (sh) in ``root``, not booted, with the host's network and CA bundle
    (for pip)."""
    ca = _host_ca()
    _run(
        [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--quiet",
            "--resolv-conf=copy-host",
            "--timezone=off",
            "--pipe",
            *(
                [f"--bind-ro={ca}:/run/host-ca.crt", "--setenv=PIP_CERT=/run/host-ca.crt"]
                if ca
                else []
            ),
            "--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1",
            "-D",
            str(root),
            "/bin/sh",
            "-ec",
            script,
        ],
        timeout=1800,
        log=log,
    )


def venv_root(log: Path | None = None) -> Path:
    """The cached root with ``/opt/hotspot`` made and this checkout's requirements in it."""
    base = base_root(log)
    key = _key(base.parent.name, _requirements_key())

    def build(tmp: Path) -> None:
        root = tmp / "root"
        _run(["cp", "-a", "--reflink=auto", str(base), str(root)], log=log)
        copy_checkout(root)
        _nspawn_pipe(
            root,
            f"python3 -m venv {VENV}\n"
            f"{VENV}/bin/pip install -q {SOURCE_IN_ROOT}\n"
            # The project itself is installed again by every run; the cache keeps only
            # its requirements (and pip's wheel cache, for the build requirements).
            f"{VENV}/bin/pip uninstall -q -y hotspot-desa\n"
            f"rm -rf {SOURCE_IN_ROOT}\n",
            log=log,
        )

    return _cached(f"venv-{key}", build) / "root"


def checkout_files() -> list[str]:
    """This checkout's files as git sees them (tracked, and new ones not ignored)."""
    out = _run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    ).stdout
    return [p for p in out.split("\0") if p and (REPO / p).is_file()]


def copy_checkout(root: Path) -> Path:
    """Put this checkout (its working tree, uncommitted changes included) at
    ``SOURCE_IN_ROOT`` in ``root``."""
    dest = root / SOURCE_IN_ROOT.lstrip("/")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in checkout_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return dest


@dataclass
class RunRoot:
    """A run's own writable copy of a cached root."""

    path: Path
    work: Path
    overlay: bool

    @classmethod
    def make(cls, lower: Path, work: Path) -> RunRoot:
        work.mkdir(parents=True, exist_ok=True)
        merged, upper, scratch = work / "root", work / "upper", work / "overlay-work"
        for d in (merged, upper, scratch):
            d.mkdir()
        opts = f"lowerdir={lower},upperdir={upper},workdir={scratch}"
        mounted = _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=False)
        if mounted.returncode == 0:
            return cls(merged, work, True)
        merged.rmdir()
        _run(["cp", "-a", "--reflink=auto", str(lower), str(merged)])
        return cls(merged, work, False)

    def remove(self) -> None:
        if self.overlay:
            _run(["umount", "-l", str(self.path)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def install_checkout(root: Path, log: Path | None = None) -> None:
    """docs/provisioning.md's installation, in the (not yet booted) root: the checkout into
    the venv (``python3 -m venv`` and the requirements come from the cache)."""
    copy_checkout(root)
    _nspawn_pipe(root, f"{VENV}/bin/pip install -q {SOURCE_IN_ROOT}\n", log=log)


# -- the booted device ----------------------------------------------------------------------


@dataclass
class Device:
    """``systemd-nspawn --boot`` of ``root`` in the network namespace ``ns``, with veth pairs
    ``links`` (host end name → name inside). nspawn re-creates the pairs at every boot (a
    ``systemctl reboot`` of the container boots it again in the same nspawn), in ``ns``:
    :meth:`host_links` waits for them there, for the caller to wire."""

    root: Path
    ns: str
    links: dict[str, str]
    console: Path
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0  # nspawn runs started (a reboot is one more)
    exits: list[int] = field(default_factory=list)  # nspawn's exit statuses
    _stopping: bool = False
    _supervisor: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Boot; a reboot asked for inside boots again (what ``systemd-nspawn@.service``
        does with ``RestartForceExitStatus=133``)."""
        self._stopping = False
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _spawn(self) -> None:
        argv = [
            # Not `ip netns exec`: it mounts a sysfs of its own over /sys, hiding the host's
            # cgroup hierarchy nspawn must find under /sys/fs/cgroup.
            "nsenter",
            f"--net=/run/netns/{self.ns}",
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "--boot",
            "--quiet",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
            *(f"--network-veth-extra={host}:{inside}" for host, inside in self.links.items()),
            "-D",
            str(self.root),
        ]
        with self.console.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.boots += 1

    def _supervise(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            with self._lock:
                self.exits.append(code)
                if self._stopping or code != REBOOT_EXIT:
                    return
                self._spawn()

    def running(self) -> bool:
        """nspawn runs, or is about to boot the container again."""
        return self._supervisor is not None and self._supervisor.is_alive()

    def pid1(self) -> int | None:
        """The host's pid of the container's PID 1 (systemd), if it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1" and pid != self.proc.pid:
                    return pid
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    todo += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
        return None

    def inside(self, *argv: str, pid: int | None = None) -> list[str]:
        """The command line that runs ``argv`` in the container (all its namespaces, a clean
        environment, as root)."""
        target = pid or self.pid1()
        if target is None:
            raise BootError(f"the container is not running:\n{self.console_tail()}")
        return [
            "nsenter",
            "--target",
            str(target),
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--root",
            "env",
            "-i",
            # nsenter's --wd= leaves a working directory getcwd() cannot name; a program
            # resolving a relative path (systemd-analyze verify NAME) then fails.
            "--chdir=/",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "HOME=/root",
            *argv,
        ]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.inside(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise BootError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def systemctl(self, *args: str) -> str:
        return self.run("systemctl", *args, check=False).stdout.strip()

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_booted(self, timeout: float = 120) -> str:
        """Wait until systemd has finished booting (``is-system-running`` is ``running`` or
        ``degraded``); returns that state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise BootError(f"nspawn exited {self.exits}:\n{self.console_tail()}")
            if self.pid1() is not None:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.2)
        raise BootError(f"not booted after {timeout} s (state {state!r}):\n{self.console_tail()}")

    def host_links(self, timeout: float = 60) -> list[str]:
        """Wait until the host ends of ``links`` exist in ``ns`` (a new boot's pairs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = _run(["ip", "-n", self.ns, "-o", "link", "show"], check=False).stdout
            names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
            if all(h in names for h in self.links):
                return list(self.links)
            time.sleep(0.05)
        raise BootError(f"{list(self.links)} did not appear in {self.ns}:\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """A power cut: SIGKILL to the container's PID 1 (the kernel kills everything in its
        PID namespace at once: no shutdown, no unit stops) and to nspawn."""
        with self._lock:
            self._stopping = True
            pid = self.pid1()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        self._join()

    def stop(self, timeout: float = 60) -> None:
        """Power off: SIGTERM makes nspawn ask the container's systemd to shut down."""
        with self._lock:
            self._stopping = True
            proc = self.proc
        if proc is None or proc.poll() is not None:
            self._join()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        self._join()

    def _join(self) -> None:
        if self._supervisor is not None:
            self._supervisor.join(timeout=30)
