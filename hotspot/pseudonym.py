"""Keyed pseudonyms: what stands for a device (MAC) in every report and API.

``pseudonym = hex(HMAC-SHA256(key, "hotspot-desa/client/v1\\0" + mac))[:16]`` — stable on one
gateway (so "users per day" and repeat visits can be counted), unlinkable across gateways and
not reversible without the key.

The key is *not* the sync secret: the collector knows that secret (it checks signatures with
it), and with it could try every MAC of a vendor prefix (2^24 guesses) and undo a pseudonym.
The key is ``[privacy] pseudonym_key`` if set, else 32 random bytes generated on first use
and kept in the gateway's database (``sync_state``); it never leaves the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.mac import normalize_mac
from hotspot.model_sync import SyncState
from hotspot.timeutil import utcnow

STATE_KEY = "pseudonym_key"
_PREFIX = b"hotspot-desa/client/v1\0"


def pseudonym(key: bytes, mac: str) -> str:
    """The pseudonym of ``mac`` (any common notation) under ``key``: 16 hex digits."""
    mac = normalize_mac(mac)
    return hmac.new(key, _PREFIX + mac.encode(), hashlib.sha256).hexdigest()[:16]


def stored_key(config: Config, db: Engine) -> bytes | None:
    """The gateway's pseudonym key if it exists already (reads only), else None."""
    if config.privacy.pseudonym_key:
        return config.privacy.pseudonym_key.encode()
    with Session(db) as s:
        row = s.get(SyncState, STATE_KEY)
        return bytes.fromhex(row.value) if row is not None else None


def load_key(config: Config, db: Engine) -> bytes:
    """The gateway's pseudonym key (see the module docstring); created once if needed."""
    key = stored_key(config, db)
    if key is not None:
        return key
    try:
        with Session(db) as s, s.begin():
            s.add(SyncState(name=STATE_KEY, value=secrets.token_hex(32), updated_at=utcnow()))
    except IntegrityError:
        pass  # another process made it first: use theirs
    with Session(db) as s:
        return bytes.fromhex(s.get(SyncState, STATE_KEY).value)  # type: ignore[union-attr]


class Pseudonymizer:
    """Caches pseudonyms of one key (HMAC is cheap, but a report may name a device often)."""

    def __init__(self, key: bytes):
        self.key = key
        self._cache: dict[str, str] = {}

    def __call__(self, mac: str) -> str:
        p = self._cache.get(mac)
        if p is None:
            p = self._cache[mac] = pseudonym(self.key, mac)
        return p
