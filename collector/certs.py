"""The gateways' certificates through the collector (issue #15, item 4;
docs/sync-and-collector.md).

A gateway makes its key and a CSR for ``<gateway-id>.<zone>`` and sends the CSR; the collector
obtains the certificate from an ACME CA with the DNS-01 challenge and serves the chain. The
province's DNS credentials (the TSIG key) and the ACME account key stay here.

* ``POST /cert/v1/request``: the CSR (PEM), signed like an ingest request (the gateway's
  HMAC over the body; the same answer for an unknown id and a bad signature). Refused
  (``400 bad-csr``) unless it names exactly the authenticated gateway's own name. The same
  CSR again changes nothing (a replayed request is harmless). ``202`` pending, ``200`` when
  the chain for this key is there already.
* ``GET /cert/v1/certificate``: signed; ``404`` none requested, ``202`` pending (with the
  last error), ``200`` the chain (PEM) with an ``ETag``; ``If-None-Match`` answers ``304``.
* :func:`issue_pending`: the worker. Each gunicorn worker runs it every ``poll_seconds``
  (:class:`AcmeJob`), ``hotspot collector acme issue`` once. A request is claimed by one
  conditional UPDATE (two collectors never both run the same order), and on PostgreSQL one
  process at a time runs orders at all (an advisory lock, as the daily maintenance).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from collector.config import AcmeConfig, CollectorConfig
from collector.gateway_auth import authenticate_gateway, refusal
from collector.models import CertState, GatewayCertificate
from collector.periodic import PeriodicJob
from hotspot import certs as certs_mod
from hotspot.timeutil import utcnow

log = logging.getLogger(__name__)
bp = Blueprint("certs", __name__)

REQUEST_PATH = "/cert/v1/request"
CERT_PATH = "/cert/v1/certificate"
LOCK_KEY = 726217003  # collector.maintenance takes 726217002
CLAIM_STALE = dt.timedelta(minutes=15)  # a worker that died mid-order: claim it again


# -- serving ----------------------------------------------------------------------------------


def _refused(status: int, code: str, message: str, **extra: Any) -> Response:
    log.info("certificate request refused %s %s: %s", status, code, message)
    return refusal(status, code, message, **extra)


def _acme_cfg() -> AcmeConfig:
    cfg: CollectorConfig = current_app.config["COLLECTOR"]
    return cfg.acme


@bp.post(REQUEST_PATH)
def request_certificate() -> Response:
    acme = _acme_cfg()
    if not acme.enabled:
        return _refused(404, "no-acme", "this collector issues no certificates ([acme])")
    if (request.content_length or 0) > 16 * 1024:
        return _refused(413, "too-large", "a CSR is at most 16 kB")
    body = request.get_data(cache=False)
    gateway_id, refused = authenticate_gateway(body)
    if refused is not None:
        return refused
    assert gateway_id is not None
    try:
        name = certs_mod.name_for(gateway_id, acme.zone)
        csr = certs_mod.check_csr(body, name)
    except certs_mod.CertError as exc:
        return _refused(400, "bad-csr", str(exc))
    now = utcnow()
    with Session(current_app.extensions["collector_db"]) as s, s.begin():
        row = s.get(GatewayCertificate, gateway_id, with_for_update=True)
        if row is not None and row.key_fingerprint == csr.fingerprint:
            if row.state == CertState.ISSUED:
                return _status(row, 200)
            return _status(row, 202)  # the same CSR again: already on its way
        if row is None:
            row = GatewayCertificate(gateway_id=gateway_id, attempts=0)
            s.add(row)
        # A new key (first request, renewal, a key made again after a power cut): the chain
        # in force stays served until the new one is issued.
        row.name, row.csr, row.key_fingerprint = name, csr.pem.decode(), csr.fingerprint
        row.state, row.requested_at, row.next_attempt_at = CertState.PENDING, now, now
        row.attempts, row.error, row.claimed_at = 0, None, None
        log.info("certificate for %s requested by %s", name, gateway_id)
        return _status(row, 202)


def _status(row: GatewayCertificate, status: int) -> Response:
    resp = jsonify(
        {
            "ok": True,
            "name": row.name,
            "state": str(row.state),
            "error": row.error,
            "key_fingerprint": row.key_fingerprint,
        }
    )
    resp.status_code = status
    return resp


@bp.get(CERT_PATH)
def certificate() -> Response:
    gateway_id, refused = authenticate_gateway(b"")
    if refused is not None:
        return refused
    with Session(current_app.extensions["collector_db"]) as s:
        row = s.get(GatewayCertificate, gateway_id)
        if row is None:
            return _refused(404, "none", "no certificate requested")
        pending = row.key_fingerprint != row.chain_fingerprint
        if row.chain is None or row.etag is None:
            return _status(row, 202)
        etag, chain = row.etag, row.chain
        # The chain for the key requested, or (while a renewal is pending) the one before.
        state = str(row.state) if pending else "issued"
        fingerprint = row.chain_fingerprint or ""
    if request.if_none_match.contains(etag):
        resp = Response(status=304)
    else:
        resp = Response(chain, mimetype="application/pem-certificate-chain")
    resp.set_etag(etag)
    resp.headers["X-Hotspot-Cert-State"] = state
    resp.headers["X-Hotspot-Key-Fingerprint"] = fingerprint
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


# -- DNS (RFC 2136 with TSIG) -------------------------------------------------------------------


class Dns:
    """The ``_acme-challenge`` TXT records in the province's zone, by RFC 2136 updates signed
    with TSIG to ``dns_server`` (its primary), and checked there before the CA is asked."""

    def __init__(self, cfg: AcmeConfig):
        import dns.name
        import dns.tsigkeyring

        self.cfg = cfg
        secret = Path(cfg.tsig_secret_file).read_text().strip()
        self.keyname = dns.name.from_text(cfg.tsig_key_name)
        self.keyring = dns.tsigkeyring.from_text({cfg.tsig_key_name: secret})
        self.host, self.port = cfg.dns_host_port

    def _update(self, record: str, value: str, add: bool) -> None:
        import dns.query
        import dns.rcode
        import dns.update

        upd = dns.update.Update(
            self.cfg.zone + ".",
            keyring=self.keyring,
            keyname=self.keyname,
            keyalgorithm=self.cfg.tsig_algorithm + ".",
        )
        if add:
            upd.add(record + ".", 60, "TXT", f'"{value}"')
        else:
            upd.delete(record + ".", "TXT", f'"{value}"')
        answer = dns.query.tcp(upd, self.host, port=self.port, timeout=10)
        if answer.rcode() != dns.rcode.NOERROR:
            raise OSError(f"DNS update of {record} refused: {dns.rcode.to_text(answer.rcode())}")

    def add(self, record: str, value: str) -> None:
        self._update(record, value, True)

    def remove(self, record: str, value: str) -> None:
        self._update(record, value, False)

    def visible(self, record: str, value: str) -> bool:
        import dns.message
        import dns.query
        import dns.rdatatype

        query = dns.message.make_query(record + ".", dns.rdatatype.TXT)
        answer = dns.query.tcp(query, self.host, port=self.port, timeout=5)
        for rrset in answer.answer:
            for rdata in rrset:
                if b"".join(getattr(rdata, "strings", ())) == value.encode():
                    return True
        return False

    def wait_visible(self, record: str, value: str, sleep: Callable[[float], Any]) -> None:
        deadline = time.monotonic() + self.cfg.propagation_timeout_seconds
        delay = 0.2
        while not self.visible(record, value):
            if time.monotonic() >= deadline:
                raise OSError(f"{record} TXT not visible at {self.cfg.dns_server} in time")
            sleep(delay)
            delay = min(delay * 2, 5.0)


# -- ACME -----------------------------------------------------------------------------------------


def _account_key(path: str) -> Any:
    """The collector's ACME account key (RSA 2048 in a PEM file, mode 0600), made on first use
    (written atomically: two workers making it at once leave one of theirs)."""
    import josepy as jose
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    target = Path(path)
    try:
        key = serialization.load_pem_private_key(target.read_bytes(), None)
    except FileNotFoundError:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        certs_mod.write_atomically(target, pem, 0o600)
        key = serialization.load_pem_private_key(target.read_bytes(), None)
    return jose.JWKRSA(key=key)


def acme_client(cfg: AcmeConfig) -> Any:
    """An ACME v2 client (the ``acme`` package, certbot's library) with the account
    registered (or found again: the same key is the same account)."""
    from acme import client, errors, messages

    net = client.ClientNetwork(
        _account_key(cfg.account_key_file), user_agent="hotspot-desa-collector/1"
    )
    if cfg.ca_bundle:
        # requests takes a CA file where the library says bool: a private CA's ACME server.
        net.verify_ssl = cfg.ca_bundle  # type: ignore[assignment]
    directory = client.ClientV2.get_directory(cfg.directory_url, net)
    acme = client.ClientV2(directory, net)
    reg = messages.NewRegistration.from_data(
        email=cfg.contact_email or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(reg)
    except errors.ConflictError as exc:  # registered before: use it
        acme.net.account = messages.RegistrationResource(
            uri=exc.location, body=messages.Registration()
        )
    return acme


def order_certificate(
    acme: Any, dns: Dns, csr_pem: bytes, timeout: float, sleep: Callable[[float], Any]
) -> str:
    """One ACME order for the CSR's name with DNS-01: the TXT record added, seen at the zone's
    server, the challenge answered, the order finalized; the TXT record removed whatever
    happened. The full chain (PEM)."""
    from acme import challenges

    order = acme.new_order(csr_pem)
    added: list[tuple[str, str]] = []
    try:
        for authz in order.authorizations:
            domain = authz.body.identifier.value
            dns01 = [c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)]
            if not dns01:
                raise OSError(f"the CA offers no DNS-01 challenge for {domain}")
            chall = dns01[0]
            response, validation = chall.response_and_validation(acme.net.key)
            record = chall.chall.validation_domain_name(domain)
            dns.add(record, validation)
            added.append((record, validation))
            dns.wait_visible(record, validation, sleep)
            acme.answer_challenge(chall, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        done = acme.poll_and_finalize(order, deadline)
        return str(done.fullchain_pem)
    finally:
        for record, validation in added:
            try:
                dns.remove(record, validation)
            except OSError as exc:  # it expires with its TTL anyway
                log.warning("could not remove %s TXT: %s", record, exc)


# -- the worker -----------------------------------------------------------------------------------


Issuer = Callable[[bytes], str]  # CSR PEM → full chain PEM (raises on failure)


def _claim(engine: Engine, now: dt.datetime) -> GatewayCertificate | None:
    """One due request, claimed for this process by a conditional UPDATE (whoever updates
    the row first has it); None when nothing is due."""
    with Session(engine) as s:
        rows = s.scalars(
            select(GatewayCertificate)
            .where(
                (
                    GatewayCertificate.state.in_([CertState.PENDING, CertState.FAILED])
                    & (GatewayCertificate.next_attempt_at <= now)
                )
                | (
                    (GatewayCertificate.state == CertState.WORKING)
                    & (GatewayCertificate.claimed_at < now - CLAIM_STALE)
                )
            )
            .order_by(GatewayCertificate.next_attempt_at)
            .limit(5)
        ).all()
        for row in rows:
            s.expunge(row)
    for row in rows:
        with Session(engine) as s, s.begin():
            got = s.execute(
                update(GatewayCertificate)
                .where(
                    GatewayCertificate.gateway_id == row.gateway_id,
                    GatewayCertificate.key_fingerprint == row.key_fingerprint,
                    GatewayCertificate.state == row.state,
                    GatewayCertificate.claimed_at.is_(None)
                    if row.claimed_at is None
                    else GatewayCertificate.claimed_at == row.claimed_at,
                )
                .values(state=CertState.WORKING, claimed_at=now)
            )
        if got.rowcount == 1:  # type: ignore[attr-defined]
            row.state, row.claimed_at = CertState.WORKING, now
            return row
    return None


def _finish(
    engine: Engine, row: GatewayCertificate, chain: str | None, error: str | None, cfg: AcmeConfig
) -> None:
    now = utcnow()
    with Session(engine) as s, s.begin():
        cur = s.get(GatewayCertificate, row.gateway_id, with_for_update=True)
        if cur is None or cur.key_fingerprint != row.key_fingerprint:
            return  # a new CSR came meanwhile: it is pending, this result is moot
        if chain is not None:
            cur.chain, cur.chain_fingerprint = chain, row.key_fingerprint
            cur.etag = hashlib.sha256(chain.encode()).hexdigest()[:32]
            cur.state, cur.issued_at, cur.error, cur.claimed_at = CertState.ISSUED, now, None, None
            leaf = certs_mod.split_chain(chain.encode())[0]
            cur.not_after = leaf.not_valid_after_utc.replace(tzinfo=None)
            log.info("certificate for %s issued (until %s)", cur.name, cur.not_after)
            return
        cur.attempts += 1
        delay = min(cfg.retry_max_seconds, 60 * 2 ** min(cur.attempts - 1, 16))
        cur.state, cur.error, cur.claimed_at = CertState.FAILED, (error or "")[:300], None
        cur.next_attempt_at = now + dt.timedelta(seconds=delay)
        log.warning(
            "certificate for %s not issued (attempt %d; again in %d s): %s",
            cur.name,
            cur.attempts,
            delay,
            error,
        )


def _check_issued(row: GatewayCertificate, chain: str) -> None:
    """The CA's answer is for this CSR's key and name only (a CA must never be trusted to
    have kept to the CSR: a mismatch is an error, not a chain to serve)."""
    certs = certs_mod.split_chain(chain.encode())
    if certs_mod.key_fingerprint(certs[0].public_key()) != row.key_fingerprint:
        raise certs_mod.CertError("the CA's certificate does not carry the CSR's key")
    if certs_mod.dns_names(certs[0]) != [row.name]:
        raise certs_mod.CertError("the CA's certificate names other names")


def _try_lock(engine: Engine) -> Any:
    """On PostgreSQL, a connection holding the ACME advisory lock (None: another process
    has it); elsewhere a plain connection (a laptop trial has one collector)."""
    conn = engine.connect()
    if conn.dialect.name != "postgresql":
        return conn
    if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
        conn.commit()
        return conn
    conn.close()
    return None


def issue_pending(
    engine: Engine,
    cfg: AcmeConfig,
    issuer: Issuer | None = None,
    now: Callable[[], dt.datetime] = utcnow,
    limit: int = 20,
) -> dict[str, Any]:
    """Run the due requests' orders, one at a time: {"issued": [...], "failed": [...]}."""
    report: dict[str, Any] = {"issued": [], "failed": [], "skipped": None}
    if not cfg.enabled:
        report["skipped"] = "[acme] directory_url not set"
        return report
    conn = _try_lock(engine)
    if conn is None:
        report["skipped"] = "another process is issuing"
        return report
    try:
        made: Issuer | None = issuer
        for _ in range(limit):
            row = _claim(engine, now())
            if row is None:
                break
            try:
                if made is None:
                    made = _live_issuer(cfg)
                chain = made(row.csr.encode())
                _check_issued(row, chain)
            except Exception as exc:  # noqa: BLE001 - any failure is kept, retried, logged
                _finish(engine, row, None, f"{type(exc).__name__}: {exc}", cfg)
                report["failed"].append({"gateway": row.gateway_id, "error": str(exc)[:200]})
                continue
            _finish(engine, row, chain, None, cfg)
            report["issued"].append(row.gateway_id)
    finally:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.commit()
        conn.close()
    return report


def _live_issuer(cfg: AcmeConfig) -> Issuer:
    dns = Dns(cfg)
    acme = acme_client(cfg)
    timeout = float(cfg.propagation_timeout_seconds) + 60

    def issue(csr: bytes) -> str:
        return order_certificate(acme, dns, csr, timeout, time.sleep)

    return issue


def status(s: Session) -> list[dict[str, Any]]:
    """Each gateway's certificate: name, state, expiry, last error (CLI and dashboard)."""
    return [
        {
            "gateway": r.gateway_id,
            "name": r.name,
            "state": str(r.state),
            "not_after": r.not_after.isoformat() + "Z" if r.not_after else None,
            "error": r.error,
            "attempts": r.attempts,
        }
        for r in s.scalars(select(GatewayCertificate).order_by(GatewayCertificate.gateway_id))
    ]


class AcmeJob(PeriodicJob):
    """:func:`issue_pending` every ``poll_seconds`` in a daemon thread of each gunicorn worker
    (started after its fork, like collector.maintenance.DailyJob)."""

    def __init__(self, engine: Engine, cfg: AcmeConfig):
        self.engine, self.cfg = engine, cfg
        super().__init__("collector-acme", cfg.poll_seconds, lambda: issue_pending(engine, cfg))
