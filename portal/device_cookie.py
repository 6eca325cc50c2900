"""The device cookie: a long-lived, signed, random device id (never the MAC) given to every
browser at its first visit. The free allowance and voucher ownership follow it across MAC
changes (:mod:`hotspot.identity`).

HttpOnly (no script reads it), SameSite=Lax (not sent on cross-site sub-requests), Max-Age
``portal.device_cookie_days``. Not ``Secure``: the captive pages are served over plain HTTP
too (only port 80 is intercepted), and a Secure cookie would never come back there.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Response, g, request

from hotspot.identity import is_device_id, new_device_id
from portal.state import state

COOKIE = "hotspot_device"
_LABEL = b"hotspot device cookie v1\0"
_MAC_HEX = 32  # 128 bits of HMAC-SHA256


def sign(secret: bytes, device_id: str) -> str:
    mac = hmac.new(secret, _LABEL + device_id.encode(), hashlib.sha256).hexdigest()
    return f"{device_id}.{mac[:_MAC_HEX]}"


def verify(secret: bytes, value: str | None) -> str | None:
    """The device id a cookie value carries, if the portal signed it; None otherwise."""
    if not value or value.count(".") != 1:
        return None
    device_id, tag = value.split(".")
    if not is_device_id(device_id):
        return None
    if not hmac.compare_digest(sign(secret, device_id), value):
        return None
    return device_id


def cookie_device_id() -> str | None:
    """The device id of this request's cookie, when it is ours (verified, not guessed)."""
    if "cookie_device_id" not in g:
        g.cookie_device_id = verify(state().secret_key, request.cookies.get(COOKIE))
    did: str | None = g.cookie_device_id
    return did


def remember(device_id: str) -> None:
    """This response gives the device ``device_id`` (the identity its MAC belongs to)."""
    g.device_id = device_id


def give_cookie(resp: Response) -> Response:
    """After every villager page: a device without our cookie gets one (a fresh random id);
    one whose MAC belongs to another identity gets that identity's."""
    have = cookie_device_id()
    want = g.get("device_id") or have or new_device_id()
    if want != have:
        resp.set_cookie(
            COOKIE,
            sign(state().secret_key, want),
            max_age=state().config.portal.device_cookie_days * 86400,
            httponly=True,
            samesite="Lax",
            path="/",
        )
    return resp
