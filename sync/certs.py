"""The gateway's HTTPS certificate through the collector (issue #15, item 4).

On the agent's collect cycle, while ``[sync] cert_zone`` is set: when no certificate is in
force for ``<gateway_id>.<cert_zone>``, or its renewal is due (hotspot.certs.renew_at), the
agent makes a new key (``next-key.pem``, kept on the device, mode 0600), sends its CSR
(``POST /cert/v1/request``, signed like a report) and fetches the chain
(``GET /cert/v1/certificate``, conditional with ``If-None-Match``) until the collector has it;
the chain is installed only when it carries the new key and the name and is valid now. The
pair in force is never touched before the new one is complete: a renewal that fails, for
days, leaves the old certificate served until it expires, and the portal falls back to plain
HTTP after that (and says so).

Failures (collector unreachable, a refusal, a chain that does not check) back off
exponentially up to ``sync.backoff_max_seconds``; a pending issuance is asked about again
each cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hotspot import certs as certs_mod
from hotspot import wire
from hotspot.config import Config
from hotspot.timeutil import parse_utc, utcnow
from sync.outbox import Outbox
from sync.policy import Fetcher

log = logging.getLogger(__name__)

REQUEST_PATH = "/cert/v1/request"
CERT_PATH = "/cert/v1/certificate"
ETAG_STATE = "cert_etag"  # of the last chain fetched that was not installed
NEXT_TRY_STATE = "cert_next_try"
FAILURES_STATE = "cert_failures"
LAST_STATE = "cert_last"  # the last step's outcome, for `hotspot sync status` and health
FIRST_RETRY = 30.0


@dataclass
class CertKeeper:
    config: Config
    outbox: Outbox
    fetcher: Fetcher
    poster: Any  # sync.agent.Transport
    clock: Callable[[], dt.datetime] = utcnow
    wallclock: Callable[[], float] = time.time
    clock_offset: Callable[[], float] = lambda: 0.0

    @property
    def folder(self) -> Path:
        return Path(self.config.sync.cert_dir)

    @property
    def name(self) -> str:
        return self.config.sync.cert_name

    def _headers(self, body: bytes, etag: str | None = None) -> dict[str, str]:
        s = self.config.sync
        ts = str(int(self.wallclock() + self.clock_offset()))
        headers = wire.signed_headers(s.secret, s.gateway_id, ts, uuid.uuid4().hex, body)
        if body:
            headers["Content-Type"] = "application/pkcs10"
        if etag:
            headers["If-None-Match"] = f'"{etag}"'
        return headers

    def _put(self, **values: Any) -> None:
        with Session(self.outbox.db) as s, s.begin():
            for name, value in values.items():
                Outbox.put_state(s, name, value)

    def _failed(self, now: dt.datetime, why: str) -> str:
        failures = int(self.outbox.get_state(FAILURES_STATE) or 0) + 1
        cap = float(self.config.sync.backoff_max_seconds)
        delay = min(cap, FIRST_RETRY * 2 ** min(failures - 1, 20))
        log.warning("certificate: %s (try %d; again in %.0f s)", why, failures, delay)
        self._put(
            **{
                FAILURES_STATE: failures,
                NEXT_TRY_STATE: (now + dt.timedelta(seconds=delay)).isoformat(),
                LAST_STATE: f"failed: {why}"[:300],
            }
        )
        return "failed"

    def _next_key(self) -> Any:
        """The key waiting for its certificate, made now if there is none (atomically: a
        power cut leaves no key or a whole one)."""
        path = self.folder / certs_mod.NEXT_KEY_FILE
        key = certs_mod.load_key(path)
        if key is None:
            key = certs_mod.new_key()
            certs_mod.write_atomically(path, certs_mod.key_pem(key), 0o600)
            log.info("certificate: new key made for %s", self.name)
        return key

    def step(self, force: bool = False) -> str:
        """One look: ``off``, ``valid`` (nothing due), ``waiting`` (backing off), ``pending``
        (the collector is on it), ``installed`` or ``failed``."""
        if not self.config.sync.cert_zone:
            return "off"
        now = self.clock()
        current = certs_mod.installed(self.folder, self.name, now)
        if current is not None and now < current.renew_at and not force:
            return "valid"
        next_try = self.outbox.get_state(NEXT_TRY_STATE)
        if next_try and now < parse_utc(next_try) and not force:
            return "waiting"
        try:
            key = self._next_key()
        except OSError as exc:
            return self._failed(now, f"cannot write the key: {exc}")
        etag = self.outbox.get_state(ETAG_STATE)
        try:
            status, headers, body = self.fetcher.get(CERT_PATH, self._headers(b"", etag))
        except OSError as exc:
            return self._failed(now, str(exc))
        if status == 200:
            try:
                chain = certs_mod.check_chain(body, key, self.name, now)
            except certs_mod.CertError as exc:
                new_etag = (headers.get("ETag") or headers.get("etag") or "").strip('W/"')
                mine = headers.get("X-Hotspot-Key-Fingerprint") == certs_mod.key_fingerprint(
                    key.public_key()
                )
                if mine:  # for our key, and yet wrong: tampered with, or a bad CA answer
                    return self._failed(now, f"chain refused: {exc}")
                # The chain of an earlier key (the one in force): ask for ours.
                self._put(**{ETAG_STATE: new_etag})
            else:
                try:
                    certs_mod.install(self.folder, certs_mod.key_pem(key), chain)
                except OSError as exc:
                    return self._failed(now, f"cannot install: {exc}")
                self._put(
                    **{
                        FAILURES_STATE: 0,
                        NEXT_TRY_STATE: "",
                        ETAG_STATE: "",
                        LAST_STATE: f"installed {chain.serial} until {chain.not_after}",
                    }
                )
                log.info("certificate for %s installed (until %s UTC)", self.name, chain.not_after)
                return "installed"
        elif status not in (202, 304, 404):
            return self._failed(now, f"collector answered {status}")
        csr = certs_mod.make_csr(key, self.name)
        try:
            status, answer = self.poster.post(REQUEST_PATH, csr, self._headers(csr))
        except OSError as exc:
            return self._failed(now, str(exc))
        if status not in (200, 202):
            detail = f"{answer.get('error', '')}: {answer.get('message', '')}"
            return self._failed(now, f"collector answered {status} ({detail})")
        self._put(**{FAILURES_STATE: 0, NEXT_TRY_STATE: "", LAST_STATE: "pending"})
        log.info("certificate for %s requested; the collector is on it", self.name)
        return "pending"


def status(config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """hotspot.certs.status (kept here for the agent's callers)."""
    return certs_mod.status(config, now)
