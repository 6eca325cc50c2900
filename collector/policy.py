"""The province's policy on the collector (issue #15, item 1; docs/sync-and-collector.md).

``hotspot collector policy publish SCOPE FILE`` stores a scope's fields
(:class:`~collector.models.PolicyScope`), then renders the document of every gateway the
scope reaches: its scopes merged (:func:`hotspot.policy.merge_scopes`), numbered with a
version above every earlier one, and signed with the key in ``[collector] policy_key_file``
(:class:`~collector.models.PolicyDocument`). Signing happens here, in the command, not in
the web server: the server only serves documents already signed, and never reads the key.

``GET /policy/v1/document`` serves a gateway its document: signed like an ingest request
(the gateway's HMAC, a timestamp within the replay window; the same answer for an unknown id
and a bad signature), with an ``ETag``; ``If-None-Match`` with it answers ``304``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request, send_file
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.config import CollectorConfig
from collector.gateway_auth import authenticate_gateway
from collector.gateway_auth import refusal as _refused
from collector.models import Gateway, PolicyDocument, PolicyScope
from hotspot import policy as policy_mod
from hotspot.errors import ConfigError, NotFound, UsageError

log = logging.getLogger(__name__)
bp = Blueprint("policy", __name__)
LIST_ROUTE = "/policy/v1/lists/<sha256>"  # sync/policy.py LIST_PATH


# -- the key --------------------------------------------------------------------------------


def keygen(path: str, force: bool = False) -> dict[str, str]:
    """A new signing key in ``path`` (mode 0600; an existing key only with ``force``: every
    gateway pinned its public key, and a new one means provisioning them all again)."""
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(
            f"{path} exists: a new key must be pinned on every gateway again (--force to replace)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    private = policy_mod.new_private_key()
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, private.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    public = policy_mod.public_key_of(private)
    return {"key_file": str(target), "public_key": public, "key_id": policy_mod.key_id(public)}


def read_key(path: str) -> bytes:
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            "collector.policy_key_file", f"{path} not found (hotspot collector policy keygen)"
        ) from None
    except PermissionError:
        raise ConfigError("collector.policy_key_file", f"permission denied: {path}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError("collector.policy_key_file", f"{path} is not an Ed25519 key")
    return key


# -- publishing -------------------------------------------------------------------------------


def next_version(s: Session) -> int:
    """Above every version published so far (scopes and documents)."""
    top = max(
        s.scalar(select(func.max(PolicyScope.version))) or 0,
        s.scalar(select(func.max(PolicyDocument.version))) or 0,
    )
    return int(top) + 1


def _layers(s: Session, gw: Gateway) -> list[tuple[str, dict[str, Any]]]:
    scopes = [policy_mod.SCOPE_PROVINCE]
    if gw.kecamatan:
        try:
            scopes.append(policy_mod.kecamatan_scope(gw.kecamatan))
        except ValueError:  # a name of punctuation only: no kecamatan scope reaches it
            log.warning("gateway %s: kecamatan %r has no scope", gw.id, gw.kecamatan)
    scopes.append(policy_mod.scope_name("gateway", gw.id))
    rows = {r.scope: r for r in s.scalars(select(PolicyScope).where(PolicyScope.scope.in_(scopes)))}
    return [(sc, json.loads(rows[sc].fields)) for sc in scopes if sc in rows]


def render(s: Session, gw: Gateway, version: int, key: bytes, now: dt.datetime) -> int | None:
    """Sign ``gw``'s merged document as ``version``; None when no scope reaches it."""
    layers = _layers(s, gw)
    if not layers:
        return None
    fields, sources = policy_mod.merge_scopes(layers)
    fields = policy_mod.validate_fields(fields)
    document = policy_mod.make_document(gw.id, version, fields, sources, now)
    envelope = policy_mod.sign(key, document)
    text = policy_mod.canonical(envelope)
    etag = hashlib.sha256(text.encode()).hexdigest()[:32]
    row = s.get(PolicyDocument, gw.id)
    if row is None:
        row = PolicyDocument(gateway_id=gw.id)
        s.add(row)
    row.version, row.envelope, row.etag, row.published_at = version, text, etag, now
    return version


def _in_scope(gw: Gateway, scope: str) -> bool:
    try:
        return gw.kecamatan is not None and policy_mod.kecamatan_scope(gw.kecamatan) == scope
    except ValueError:
        return False


def _reached(s: Session, scope: str) -> list[Gateway]:
    q = select(Gateway).order_by(Gateway.id)
    kind, _, name = scope.partition(":")
    if kind == "gateway":
        q = q.where(Gateway.id == name)
    gateways = list(s.scalars(q))
    if kind == "kecamatan":  # names as the dashboard shows them: compared by their scope
        return [gw for gw in gateways if _in_scope(gw, scope)]
    return gateways


def publish(s: Session, scope: str, fields: Any, key: bytes, now: dt.datetime) -> dict[str, Any]:
    """Store ``fields`` for ``scope`` and re-sign the document of every gateway it reaches.
    Invalid fields raise :class:`hotspot.policy.PolicyRefused` and store nothing."""
    scope = policy_mod.parse_scope(scope)
    checked = policy_mod.validate_fields(fields)
    if scope.startswith("gateway:") and s.get(Gateway, scope.partition(":")[2]) is None:
        raise NotFound(f"no gateway {scope.partition(':')[2]!r} registered")
    # One publish at a time (PostgreSQL): two would number their documents alike.
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(0x7015C1)))
    version = next_version(s)
    row = s.get(PolicyScope, scope)
    if row is None:
        row = PolicyScope(scope=scope)
        s.add(row)
    row.fields, row.version, row.published_at = policy_mod.canonical(checked), version, now
    s.flush()
    gateways = [gw.id for gw in _reached(s, scope) if render(s, gw, version, key, now)]
    log.info("policy %s version %d published to %d gateways", scope, version, len(gateways))
    return {"scope": scope, "version": version, "gateways": gateways, "policy": checked}


def place(
    s: Session, gateway_id: str, kecamatan: str, key: bytes, now: dt.datetime
) -> dict[str, Any]:
    """Put a gateway in a kecamatan ("" = none) and re-sign its document."""
    gw = s.get(Gateway, gateway_id)
    if gw is None:
        raise NotFound(f"no gateway {gateway_id!r} registered")
    kecamatan = kecamatan.strip()
    if kecamatan:
        try:
            policy_mod.kecamatan_scope(kecamatan)
        except ValueError:
            raise UsageError(f"kecamatan: {kecamatan!r} has no letters or digits") from None
        if len(kecamatan) > 100:
            raise UsageError("kecamatan: at most 100 characters")
    gw.kecamatan = kecamatan or None
    s.flush()
    return {"id": gw.id, "kecamatan": gw.kecamatan, "version": resign(s, gw, key, now)}


def resign(s: Session, gw: Gateway, key: bytes, now: dt.datetime) -> int | None:
    """Sign ``gw``'s document again after its kecamatan changed (a new version: a gateway
    never takes one that is not newer); None when no scope reaches it any more."""
    version = render(s, gw, next_version(s), key, now)
    if version is None:  # nothing reaches it now: the old document must not stay published
        row = s.get(PolicyDocument, gw.id)
        if row is not None:
            s.delete(row)
    return version


def show(s: Session) -> dict[str, Any]:
    """Every scope's fields and every gateway's document version and the one it runs."""
    scopes = [
        {
            "scope": r.scope,
            "version": r.version,
            "published_at": r.published_at,
            "policy": json.loads(r.fields),
        }
        for r in s.scalars(select(PolicyScope).order_by(PolicyScope.scope))
    ]
    docs = {d.gateway_id: d for d in s.scalars(select(PolicyDocument))}
    gateways = [
        {
            "id": gw.id,
            "kecamatan": gw.kecamatan,
            "published": docs[gw.id].version if gw.id in docs else None,
            "running": gw.policy_version,
        }
        for gw in s.scalars(select(Gateway).order_by(Gateway.id))
    ]
    return {"scopes": scopes, "gateways": gateways}


def document_of(s: Session, gateway_id: str) -> dict[str, Any] | None:
    """A gateway's merged document as served (fields and sources), None when none."""
    row = s.get(PolicyDocument, gateway_id)
    if row is None:
        return None
    doc = json.loads(json.loads(row.envelope)["document"])
    return {"version": row.version, "published_at": row.published_at, **doc}


# -- serving ----------------------------------------------------------------------------------


@bp.get(policy_mod.POLICY_PATH)
def document() -> Response:
    gateway_id, refused = authenticate_gateway()
    if refused is not None:
        return refused
    with Session(current_app.extensions["collector_db"]) as s:
        row = s.get(PolicyDocument, gateway_id)
        if row is None:
            return _refused(404, "no-policy", "no policy published for this gateway")
        etag, envelope = row.etag, row.envelope
    if request.if_none_match.contains(etag):
        resp = Response(status=304)
    else:
        resp = Response(envelope, mimetype="application/json")
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


def publish_list(folder: str, path: str, name: str) -> dict[str, Any]:
    """Keep the blocklist at ``path`` under its SHA-256 in ``folder`` (written aside, renamed)
    and say what the policy's ``dns_blocklist`` field must be to name it. The list travels
    as it is (the gateway parses it: hotspot/dnsfilter.py); it is counted here so that a
    list with no valid name is caught before a province publishes it."""
    from hotspot import dnsfilter

    if not policy_mod._LIST_REF.match(name):
        raise ValueError("--name: 1-200 printable characters")
    parsed = dnsfilter.parse_file(path)
    if not parsed.names:
        raise ValueError(f"{path}: no valid name in {parsed.lines} lines")
    sha, size = dnsfilter.file_digest(path)
    if size > policy_mod.MAX_LIST_BYTES:
        raise ValueError(f"{path}: {size} bytes, at most {policy_mod.MAX_LIST_BYTES}")
    os.makedirs(folder, exist_ok=True)
    target = dnsfilter.list_path(folder, sha)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    os.rename(tmp, target)
    field = {"enabled": True, "list": name, "sha256": sha, "size": size, "count": len(parsed.names)}
    return {"dns_blocklist": field, "kept": str(target), **parsed.summary()}


@bp.get(LIST_ROUTE)
def blocklist(sha256: str) -> Response:
    """A published blocklist, to a gateway whose request is signed (as the policy's)."""
    cfg: CollectorConfig = current_app.config["COLLECTOR"]
    _gateway_id, refused = authenticate_gateway()
    if refused is not None:
        return refused
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return _refused(404, "no-list", "no such list")
    from hotspot import dnsfilter

    path = dnsfilter.list_path(cfg.policy_lists_dir, sha256)
    if not path.is_file():
        return _refused(404, "no-list", "no such list")
    resp = send_file(path, mimetype="text/plain", etag=sha256, conditional=True, max_age=0)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp
