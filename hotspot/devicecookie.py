"""Device cookies: a browser's signed word that it did something here before.

The portal signs its two device cookies here, each with its own purpose: the villagers'
``hotspot_device`` (purpose ``device``, a random device id that the free allowance and voucher
ownership follow, :mod:`portal.device_cookie`) and the console's ``hs_opdev`` (#10.13: the
login brake trusts a device that logged in to an account before; it carries
``issue(secret, "operator-login", "budi,siti", now)``). The value is
``<base64 subject>.<unix time>.<HMAC-SHA256>``, keyed by the portal's cookie secret and the
purpose, so a cookie made for one purpose never passes for another, and checked against a
maximum age. It proves only that this browser was given the cookie; it holds nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac

from hotspot.timeutil import naive_utc


def _mac(secret: bytes, purpose: str, payload: str) -> str:
    digest = hmac.new(secret, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _seconds(now: dt.datetime) -> int:
    return int(naive_utc(now).replace(tzinfo=dt.UTC).timestamp())


def issue(secret: bytes, purpose: str, subject: str, now: dt.datetime) -> str:
    encoded = base64.urlsafe_b64encode(subject.encode()).decode().rstrip("=")
    payload = f"{encoded}.{_seconds(now)}"
    return f"{payload}.{_mac(secret, purpose, payload)}"


def check(
    secret: bytes, purpose: str, token: str | None, max_age: dt.timedelta, now: dt.datetime
) -> str | None:
    """The subject of a genuine, unexpired cookie, or None."""
    if not token or len(token) > 1000 or token.count(".") != 2:
        return None
    encoded, stamp, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, purpose, f"{encoded}.{stamp}")):
        return None
    if not stamp.isdigit() or not 0 <= _seconds(now) - int(stamp) <= max_age.total_seconds():
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
