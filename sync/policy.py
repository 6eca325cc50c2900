"""Pulling the province's policy (issue #15, item 1): on the agent's normal cycle, a signed
``GET /policy/v1/document`` with ``If-None-Match`` (the collector answers ``304`` while
nothing changed), and a new envelope handed to the gateway over the control socket.

The agent is not trusted with the policy: it neither reads nor checks the document, the
gateway verifies it (gateway/policy.py). The ETag of the last envelope the gateway answered
for (taken, or refused for good: the same bytes would be refused again) is kept in the
agent's state, so a restart does not fetch it again; one the gateway could not be asked about
(it was restarting) is fetched again at the next cycle.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from hotspot import dnsfilter, wire
from hotspot.config import Config
from hotspot.errors import ErrorCode, HotspotError
from hotspot.policy import (
    MAX_ENVELOPE_BYTES,
    POLICY_PATH,
    document_version,
    drop_in_inbox,
    load_stored,
    stored_version,
)
from sync.outbox import Outbox

LIST_PATH = "/policy/v1/lists"  # + /<sha256>: the blocklist a policy names (hotspot/dnsfilter.py)
LIST_KEEP_SECONDS = 7 * 86400  # an older list stays a week (a policy naming it again)

log = logging.getLogger(__name__)

ETAG_STATE = "policy_etag"
HANDED_STATE = "policy_handed_version"
REFUSALS = (ErrorCode.POLICY_SIGNATURE, ErrorCode.POLICY_REPLAY, ErrorCode.POLICY_INVALID)


class Fetcher(Protocol):
    def get(self, path: str, headers: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); raises OSError when there is no answer."""


class HttpFetcher:
    """Plain urllib, no proxy from the environment (as the agent's reports)."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        req = urllib.request.Request(self.base_url + path, method="GET", headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers), resp.read(MAX_ENVELOPE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), exc.read(4096)
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise OSError(f"collector unreachable: {getattr(exc, 'reason', exc)}") from None

    def download(self, path: str, headers: dict[str, str], dest: Path, size: int) -> int:
        """Stream a blocklist into ``dest`` (at most ``size`` + 1 bytes: a longer answer is
        cut and fails its hash); fsynced. The HTTP status."""
        req = urllib.request.Request(self.base_url + path, method="GET", headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp, open(dest, "wb") as out:
                left = size + 1
                while left > 0 and (block := resp.read(min(1 << 20, left))):
                    out.write(block)
                    left -= len(block)
                out.flush()
                os.fsync(out.fileno())
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise OSError(f"collector unreachable: {getattr(exc, 'reason', exc)}") from None


Hand = Callable[[dict[str, str]], object]  # envelope → the gateway (raises a refusal)


@dataclass
class PolicyPuller:
    config: Config
    outbox: Outbox
    fetcher: Fetcher
    hand: Hand | None = None  # None: the inbox file in the state folder
    wallclock: Callable[[], float] = time.time
    clock_offset: Callable[[], float] = lambda: 0.0

    def _headers(self, etag: str | None) -> dict[str, str]:
        s = self.config.sync
        ts = str(int(self.wallclock() + self.clock_offset()))
        headers = wire.signed_headers(s.secret, s.gateway_id, ts, uuid.uuid4().hex, b"")
        if etag:
            headers["If-None-Match"] = f'"{etag}"'
        return headers

    def _hand(self, envelope: dict[str, str]) -> object:
        if self.hand is not None:
            return self.hand(envelope)
        drop_in_inbox(self.config.policy.state_file, envelope)
        return None

    def _keep(self, etag: str, version: int | None) -> None:
        with Session(self.outbox.db) as s, s.begin():
            Outbox.put_state(s, ETAG_STATE, etag)
            Outbox.put_state(s, HANDED_STATE, version if version is not None else 0)

    def _etag_to_send(self) -> str | None:
        """The kept ETag, while the gateway runs what it names (or newer)."""
        etag = self.outbox.get_state(ETAG_STATE)
        handed = int(self.outbox.get_state(HANDED_STATE) or 0)
        running = stored_version(self.config.policy.state_file) or 0
        return etag if etag and running >= handed else None

    def pull(self) -> str:
        """The policy (:meth:`pull_document`), then the blocklist it names, if that is not
        here yet (:meth:`pull_list`)."""
        result = self.pull_document()
        try:
            self.pull_list()
        except OSError as exc:
            log.warning("blocklist: %s (the list in force stays)", exc)
        return result

    def wanted_list(self) -> tuple[str, int] | None:
        """(SHA-256, size) of the blocklist the policy in force names and this gateway does
        not have yet; None when there is nothing to fetch. Read from the gateway's last good
        policy (verified by the gateway; the agent only reads which list it names)."""
        try:
            envelope = load_stored(self.config.policy.state_file)
        except HotspotError:
            return None
        if envelope is None:
            return None
        try:
            fields = json.loads(envelope["document"]).get("policy", {})
        except (ValueError, AttributeError):
            return None
        bl = fields.get("dns_blocklist") if isinstance(fields, dict) else None
        if not isinstance(bl, dict) or not bl.get("enabled") or not bl.get("sha256"):
            return None
        sha, size = str(bl["sha256"]), int(bl.get("size", 0))
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            return None
        if dnsfilter.list_path(self.config.dns_filter.list_dir, sha).exists():
            return None
        return sha, size

    def pull_list(self) -> str:
        """Fetch the named blocklist (``GET /policy/v1/lists/<sha256>``, signed like the
        policy), check its size and SHA-256 against the policy's, and keep it under its hash
        (written aside, fsynced, renamed): ``none``, ``fetched``, ``refused`` or ``failed``.
        A list that is not the one named is thrown away; the one in force stays."""
        wanted = self.wanted_list()
        if wanted is None:
            return "none"
        sha, size = wanted
        download = getattr(self.fetcher, "download", None)
        if download is None:
            return "none"
        folder = Path(self.config.dns_filter.list_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{sha}.{os.getpid()}.part"
        try:
            status = download(f"{LIST_PATH}/{sha}", self._headers(None), tmp, size)
            if status != 200:
                log.warning("blocklist %s…: the collector answered %s", sha[:16], status)
                return "failed"
            try:
                dnsfilter.verify_list(tmp, sha, size)
            except dnsfilter.ListRefused as exc:
                log.warning("blocklist %s… refused: %s", sha[:16], exc)
                return "refused"
            tmp.chmod(0o644)
            os.rename(tmp, dnsfilter.list_path(folder, sha))
        finally:
            tmp.unlink(missing_ok=True)
        for old in folder.glob("*.txt"):  # the new list and the one before it stay
            if old.stem != sha and old.stat().st_mtime < time.time() - LIST_KEEP_SECONDS:
                old.unlink(missing_ok=True)
        log.info("blocklist %s… fetched (%d bytes)", sha[:16], size)
        return "fetched"

    def pull_document(self) -> str:
        """One conditional fetch: ``unchanged``, ``handed`` (left for the gateway, or taken by
        the ``hand`` given), ``refused``, ``none`` (nothing published for us), ``unreachable``
        or ``failed``."""
        etag = self._etag_to_send()
        try:
            status, headers, body = self.fetcher.get(POLICY_PATH, self._headers(etag))
        except OSError as exc:
            log.info("policy: %s (the policy in force stays)", exc)
            return "unreachable"
        if status == 304:
            return "unchanged"
        if status == 404:
            return "none"
        if status != 200:
            log.warning(
                "policy: collector answered %d: %s", status, body[:200].decode(errors="replace")
            )
            return "failed"
        new_etag = (headers.get("ETag") or headers.get("etag") or "").strip('W/"')
        try:
            envelope = json.loads(body) if len(body) <= MAX_ENVELOPE_BYTES else None
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or not all(
            isinstance(envelope.get(k), str) for k in ("document", "signature")
        ):
            # Not even an envelope: the gateway would refuse it; nothing to hand over.
            log.warning("policy: the collector's answer is not a policy envelope")
            return "refused"
        envelope = {k: str(v) for k, v in envelope.items()}
        version = document_version(envelope)
        try:
            self._hand(envelope)
        except HotspotError as exc:
            if exc.code in REFUSALS:
                log.warning("policy refused by the gateway (%s): %s", exc.code, exc.message)
                return "refused"
            log.warning("policy: the gateway could not take it now: %s", exc.message)
            return "failed"
        except OSError as exc:
            log.warning("policy: cannot leave it for the gateway: %s", exc)
            return "failed"
        if new_etag:
            self._keep(new_etag, version)
        log.info("policy version %s handed to the gateway", version)
        return "handed"
