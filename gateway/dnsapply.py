"""The policy's resolver part applied live (issue #15, item 2; docs/architecture.md, "The
resolvers' files").

The walled garden by name, the DNS filter (its switch, the DoH names, the blocklist) and the
NTP servers live in files dnsmasq and timesyncd read only when they start: dnsmasq 2.90
re-reads on SIGHUP its hosts files, ``--servers-file`` and DHCP files, not ``address=`` or
``nftset=`` lines. So the gateway (sandboxed: it cannot restart a service) writes a new
*generation* of those files in ``[dns_filter] conf_dir`` (hotspot/dnsfilter.py: a new
folder, each file fsynced, made current by renaming one symlink) after ``dnsmasq --test``
passed on it, and leaves a request file that ``hotspot-dns-reload.path`` watches; the unit's
service (``hotspot gateway dns-reload``, root, outside the sandbox) restarts dnsmasq (the
walled resolver follows: ``PartOf=``) and timesyncd, and if dnsmasq does not come back it
switches the symlink back, restarts again, and says so in a status file the gateway reports.

The same files give the same generation: nothing restarts when nothing changed.

The work (reading and checking a list of a million names, writing 40 MB, ``dnsmasq --test``)
takes seconds: it runs in a thread of its own, never in the daemon's tick. A blocklist the
policy names that is not there (not fetched yet) or not the one named (another hash, cut
short) leaves everything as it was — files and the nftables switch — and is reported; the
next tick tries again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.ruleset import FAMILY, WALLED_DNS
from hotspot import dnsfilter
from hotspot.config import Config
from hotspot.timeutil import iso, utcnow

log = logging.getLogger(__name__)

DNSMASQ = "/usr/sbin/dnsmasq"
TEST_TIMEOUT = 120.0


def settings_of(config: Config) -> dnsfilter.Settings:
    net = config.network
    return dnsfilter.Settings(
        enabled=config.dns_filter.enabled,
        portal_ip=str(net.gateway_ip),
        garden_domains=tuple(net.walled_garden_domains),
        nft_set_ref=f"{FAMILY}#{config.gateway.table}#{WALLED_DNS}",
        main_resolver=dnsfilter.MAIN_RESOLVER,
        ntp_servers=tuple(config.gateway.ntp_servers),
        fallback_ntp_servers=tuple(config.gateway.fallback_ntp_servers),
        list_sha256=config.dns_filter.list_sha256 if config.dns_filter.enabled else "",
    )


class NotReady(Exception):
    """The generation cannot be made now (the list is missing or refused); nothing changed."""


@dataclass
class Outcome:
    generation: str | None
    filter_on: bool
    changed: bool


def dnsmasq_test(path: Path) -> str | None:
    """None when ``dnsmasq --test`` takes the file, else its complaint."""
    exe = shutil.which("dnsmasq") or DNSMASQ
    try:
        res = subprocess.run(
            [exe, "--test", f"--conf-file={path}"],
            capture_output=True,
            text=True,
            timeout=TEST_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"dnsmasq --test: {exc}"
    if res.returncode != 0:
        return (
            (res.stderr or res.stdout).strip().splitlines()[-1][:300]
            if (res.stderr or res.stdout).strip()
            else f"dnsmasq --test exited {res.returncode}"
        )
    return None


class DnsApplier:
    """Keeps ``conf_dir``'s current generation equal to what the effective configuration
    asks for. :meth:`want` is cheap (the daemon's tick); the work is in :meth:`run_once`,
    called by the thread :meth:`start` runs (tests call it directly)."""

    def __init__(
        self,
        folder: str,
        list_dir: str,
        test: Callable[[Path], str | None] = dnsmasq_test,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.folder = Path(folder)
        self.list_dir = list_dir
        self.test = test
        self.clock = clock
        self.wanted: dnsfilter.Settings | None = None
        self.done: dnsfilter.Settings | None = None
        self.filter_on = False  # what the files in force do (the tick mirrors it in nftables)
        self.generation: str | None = None
        self.problem: dict[str, str] | None = None
        self.list_summary: dict[str, Any] | None = None
        self._parsed: tuple[str, list[str]] | None = None  # (sha256, names)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # -- the daemon's side ---------------------------------------------------------------------

    def want(self, config: Config) -> None:
        settings = settings_of(config)
        with self.lock:
            if settings == self.wanted:
                return
            self.wanted = settings
        self.wake.set()

    def retry(self) -> None:
        """Try again (a tick, while something was missing): cheap when nothing is pending."""
        with self.lock:
            pending = self.wanted is not None and self.wanted != self.done
        if pending:
            self.wake.set()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.generation = dnsfilter.current_generation(self.folder)
        self.thread = threading.Thread(target=self._loop, name="dns-apply", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait()
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                self.run_once()
            except NotReady:
                pass  # logged and reported; the next tick's retry() tries again
            except OSError as exc:
                self._problem("write-failed", f"cannot write the resolvers' files: {exc}")

    # -- the work ------------------------------------------------------------------------------

    def _problem(self, code: str, message: str) -> None:
        if self.problem is None or self.problem.get("message") != message:
            log.warning("resolvers' files: %s (the files in force stay)", message)
        self.problem = {"code": code, "message": message, "at": iso(self.clock())}

    def _blocked(self, settings: dnsfilter.Settings) -> list[str]:
        sha = settings.list_sha256
        if not settings.enabled or not sha:
            return []
        if self._parsed is not None and self._parsed[0] == sha:
            return self._parsed[1]
        path = dnsfilter.list_path(self.list_dir, sha)
        if not path.exists():
            self._problem("list-missing", f"the blocklist {sha[:16]}… has not arrived yet")
            raise NotReady
        try:
            dnsfilter.verify_list(path, sha, None)
        except dnsfilter.ListRefused as exc:
            self._problem("list-refused", f"the blocklist {path.name}: {exc}")
            raise NotReady from None
        parsed = dnsfilter.parse_file(path)
        self._parsed = (sha, parsed.names)
        self.list_summary = {"sha256": sha, **parsed.summary()}
        log.info(
            "blocklist %s…: %d names (%d invalid lines skipped, %d covered by a parent)",
            sha[:16],
            len(parsed.names),
            parsed.invalid,
            parsed.covered,
        )
        return parsed.names

    def run_once(self) -> Outcome:
        with self.lock:
            settings = self.wanted
        if settings is None:
            return Outcome(self.generation, self.filter_on, False)
        files = dnsfilter.render(settings, self._blocked(settings))
        gen = dnsfilter.generation_id(files)
        if gen == dnsfilter.current_generation(self.folder):
            with self.lock:
                self.done, self.generation, self.filter_on = settings, gen, settings.enabled
            self.problem = None
            return Outcome(gen, settings.enabled, False)
        dnsfilter.install_generation(self.folder, files)
        complaint = self.test(self.folder / f"gen-{gen}" / dnsfilter.MAIN_FILE)
        if complaint is not None:
            self._problem("test-failed", complaint)
            with self.lock:
                self.done = settings  # the same settings would fail the same way
            return Outcome(self.generation, self.filter_on, False)
        previous = dnsfilter.switch_to(self.folder, gen)
        dnsfilter.request_reload(self.folder, gen, previous)
        dnsfilter.prune(self.folder, (gen, previous))
        with self.lock:
            self.done, self.generation, self.filter_on = settings, gen, settings.enabled
        self.problem = None
        log.info(
            "resolvers' files: generation %s in force (filter %s), reload requested",
            gen,
            "on" if settings.enabled else "off",
        )
        return Outcome(gen, settings.enabled, True)

    def settled_filter(self) -> bool | None:
        """Whether the files in force filter; None while nothing was settled since start."""
        with self.lock:
            return self.filter_on if self.done is not None else None

    def status(self) -> dict[str, Any]:
        return {
            "conf_dir": str(self.folder),
            "generation": self.generation,
            "filter_on": self.filter_on,
            "blocklist": self.list_summary if self.filter_on else None,
            "problem": self.problem,
            "reload": dnsfilter.read_status(self.folder),
        }


# -- the reload unit's side (root, outside the gateway's sandbox) ---------------------------------

TIMESYNCD_DROPIN = "/run/systemd/timesyncd.conf.d/95-hotspot-policy.conf"
Runner = Callable[[list[str]], bool]


def _systemctl(args: list[str]) -> bool:
    try:
        return subprocess.run(["systemctl", *args], check=False, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def reload(
    folder: str | os.PathLike[str],
    run: Runner = _systemctl,
    timesyncd_dropin: str = TIMESYNCD_DROPIN,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Restart dnsmasq on the current generation (and timesyncd when its file changed); if
    dnsmasq does not come back, the previous generation is made current again and dnsmasq
    restarted on it. The status (also left in the folder for the gateway) is returned."""
    base = Path(folder)
    gen = dnsfilter.current_generation(base)
    last = dnsfilter.read_status(base) or {}
    try:
        req = json.loads((base / dnsfilter.REQUEST).read_text())
        previous = req.get("previous") if req.get("generation") == gen else None
    except (OSError, ValueError):
        previous = None
    status: dict[str, Any] = {"generation": gen, "at": iso(clock())}
    if gen is None:
        status["result"] = "nothing"
        return status
    if last.get("generation") == gen and last.get("result") == "applied":
        status["result"] = "unchanged"
        return status
    ok = run(["restart", "dnsmasq.service"]) and run(["is-active", "--quiet", "dnsmasq.service"])
    if ok:
        status["result"] = "applied"
        _timesyncd(base / f"gen-{gen}" / dnsfilter.TIMESYNCD_FILE, timesyncd_dropin, run)
    elif previous and (base / f"gen-{previous}").is_dir():
        dnsfilter.switch_to(base, previous)
        back = run(["restart", "dnsmasq.service"])
        status.update(
            result="rolled-back",
            failed=gen,
            generation=previous,
            message=f"dnsmasq did not start on generation {gen}; "
            + ("back on the previous one" if back else "and not on the previous one either"),
        )
    else:
        status.update(result="failed", message=f"dnsmasq did not start on generation {gen}")
    dnsfilter.write_status(base, status)
    return status


def _timesyncd(source: Path, dropin: str, run: Runner) -> None:
    try:
        text = source.read_text()
    except OSError:
        return
    target = Path(dropin)
    try:
        if target.read_text() == text:
            return
    except OSError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.rename(tmp, target)
    run(["try-restart", "systemd-timesyncd.service"])
