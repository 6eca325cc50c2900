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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.ruleset import FAMILY, WALLED_DNS
from hotspot import dnsfilter
from hotspot.config import Config
from hotspot.timeutil import iso, utcnow

if TYPE_CHECKING:  # hotspot.certs loads cryptography (8 MB): only where a zone is set
    from hotspot import certs

# The pair's file names, as hotspot/certs.py writes them (not imported: see above).
CERT_FILE, KEY_FILE = "cert.pem", "key.pem"

log = logging.getLogger(__name__)

DNSMASQ = "/usr/sbin/dnsmasq"
TEST_TIMEOUT = 120.0


def _origin(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{host}" + ("" if port == (443 if scheme == "https" else 80) else f":{port}")


def portal_of(config: Config, cert: certs.Installed | None) -> tuple[str, str, bool]:
    """(hostname, option 114 URL, HTTPS?) of the portal. With ``[sync] cert_zone`` and no TLS
    pair of the file's own, the certificate in force decides (``cert``: usable now, or None):
    its name and ``https://<name>/api/captive``, or the file's values (plain HTTP). The
    configuration may already carry the certificate (hotspot.config.with_certificate, at
    load): the file's own values are then read from its raw tables. Same rule as
    portal.urls.PortalUrls.api_url (provisioning renders the same for a gateway without
    ``[dns_filter] conf_dir``)."""
    p, net = config.portal, config.network
    derived = bool(config.sync.cert_zone) and (
        not p.tls_cert or p.tls_cert == str(Path(config.sync.cert_dir) / CERT_FILE)
    )
    if derived:
        file_name = p.hostname
        if p.tls_cert:  # the certificate was put in at load: the file's name is in raw
            raw = config.raw.get("portal")
            file_name = str(raw.get("hostname") or "") if isinstance(raw, Mapping) else ""
        hostname, tls = (cert.name, True) if cert is not None else (file_name, False)
    else:
        hostname, tls = p.hostname, p.tls
    if config.dhcp.captive_api_url:
        url = config.dhcp.captive_api_url
    elif hostname and tls:
        url = _origin("https", hostname, p.https_port) + "/api/captive"
    elif hostname:
        url = _origin("http", hostname, net.portal_port) + "/api/captive"
    else:
        url = _origin("http", str(net.gateway_ip), net.portal_port) + "/api/captive"
    return hostname, url, tls


def settings_of(config: Config, watch: CertWatch | None = None) -> dnsfilter.Settings:
    """What the live files hold for ``config``; the certificate as ``watch`` sees it (a
    fresh look at ``[sync] cert_dir`` without one)."""
    net = config.network
    if watch is None:
        watch = CertWatch(config)
    hostname, url, tls = portal_of(config, watch.current())
    return dnsfilter.Settings(
        enabled=config.dns_filter.enabled,
        portal_ip=str(net.gateway_ip),
        garden_domains=tuple(net.walled_garden_domains),
        nft_set_ref=f"{FAMILY}#{config.gateway.table}#{WALLED_DNS}",
        main_resolver=dnsfilter.MAIN_RESOLVER,
        ntp_servers=tuple(config.gateway.ntp_servers),
        fallback_ntp_servers=tuple(config.gateway.fallback_ntp_servers),
        list_sha256=config.dns_filter.list_sha256 if config.dns_filter.enabled else "",
        portal_hostname=hostname,
        captive_api_url=url,
        portal_tls=tls,
    )


class CertWatch:
    """The certificate in force in ``[sync] cert_dir`` for ``[sync] cert_name``, checked at
    every tick for the price of two ``stat`` calls: the pair is parsed again only when one of
    its files changed (the agent installs by rename), and its expiry is compared with the
    clock. A pair that is there but not usable (another name, a key that does not match, not
    PEM) is ignored and reported (:attr:`problem`)."""

    def __init__(self, config: Config, clock: Callable[[], dt.datetime] = utcnow):
        self.folder = Path(config.sync.cert_dir)
        self.name = config.sync.cert_name if config.sync.cert_zone else ""
        self.clock = clock
        self._seen: tuple[tuple[int, int, int] | None, ...] | None = None
        self._installed: certs.Installed | None = None
        self.problem: str | None = None

    def _stat(self, name: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.folder / name)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def seen(self) -> dict[str, Any]:
        """The pair as last looked at (for the gateway's status and the health report)."""
        got, now = self._installed, self.clock().replace(tzinfo=None)
        return {
            **(got.as_dict(now) if got is not None else {"state": "none"}),
            "problem": self.problem,
        }

    def current(self) -> certs.Installed | None:
        """The pair when complete, for the name and not expired now; else None."""
        if not self.name:
            return None
        seen = (self._stat(CERT_FILE), self._stat(KEY_FILE))
        if seen != self._seen:
            self._seen = seen
            now = self.clock().replace(tzinfo=None)
            from hotspot import certs  # with a zone only: the daemon without one never loads it

            self._installed = certs.installed(self.folder, self.name, now)
            if self._installed is None and seen[0] is not None:
                self.problem = (
                    f"{self.folder / CERT_FILE} is not a certificate for {self.name} "
                    "with the key in key.pem: ignored (plain HTTP)"
                )
                log.warning("certificate: %s", self.problem)
            else:
                self.problem = None
        got = self._installed
        if got is None or got.expired(self.clock().replace(tzinfo=None)):
            return None
        return got


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
        cert_watch: CertWatch | None = None,
    ):
        self.folder = Path(folder)
        self.cert_watch = cert_watch
        self.config: Config | None = None  # the last one wanted, to re-derive on a new pair
        self.announced = False  # the reload unit told once since start (portal-tls at boot)
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
        self.config = config
        if self.cert_watch is None:
            self.cert_watch = CertWatch(config, self.clock)
        settings = settings_of(config, self.cert_watch)
        with self.lock:
            if settings == self.wanted:
                return
            self.wanted = settings
        self.wake.set()

    def retry(self) -> None:
        """Try again (a tick, while something was missing): cheap when nothing is pending.
        Also where a new, expired or removed certificate is noticed (two stat calls)."""
        if self.cert_watch is not None and self.config is not None:
            self.want(self.config)
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
            if not self.announced and settings.portal_tls:
                # At boot the TLS portal is started by the reload unit, not by systemd (an
                # expired pair must not come back with the machine): tell it once.
                dnsfilter.request_reload(self.folder, gen, None)
            self.announced = True
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
        self.announced = True
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
            "portal_tls": self.wanted.portal_tls if self.wanted is not None else None,
            "certificate": self.cert_watch.seen() if self.cert_watch is not None else None,
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
        # the TLS portal after a boot (it is not enabled: the files in force decide)
        _portal_tls(base / f"gen-{gen}", None, run)
        return status
    ok = run(["restart", "dnsmasq.service"]) and run(["is-active", "--quiet", "dnsmasq.service"])
    if ok:
        status["result"] = "applied"
        tls = _portal_tls(base / f"gen-{gen}", last.get("portal_tls"), run)
        if tls is not None:
            status["portal_tls"] = tls
        try:
            _timesyncd(base / f"gen-{gen}" / dnsfilter.TIMESYNCD_FILE, timesyncd_dropin, run)
        except OSError as exc:  # dnsmasq runs on the new files: that stands, and is said
            status["timesyncd"] = f"NTP servers not written: {exc}"
            log.error("dns-reload: the NTP servers' drop-in: %s", exc)
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


PORTAL_TLS_UNIT = "hotspot-portal-tls.service"


def _portal_tls(gen_dir: Path, before: object, run: Runner) -> str | None:
    """Bring the TLS portal in line with the generation in force (only once dnsmasq runs on
    it: nothing half-applied): ``on <name>`` starts it, or restarts it when the name changed
    (``before``: what the last applied generation said; None = only make sure); ``off``
    stops it (no certificate, or an expired one). A generation without the file (written by
    an older gateway) leaves it alone. What the files say, or None."""
    try:
        want = (gen_dir / dnsfilter.PORTAL_FILE).read_text().strip()
    except OSError:
        return None
    if want.startswith("on "):
        if before is not None and before != want:
            run(["restart", PORTAL_TLS_UNIT])
        else:
            run(["start", PORTAL_TLS_UNIT])
    else:
        run(["stop", PORTAL_TLS_UNIT])
    return want


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
