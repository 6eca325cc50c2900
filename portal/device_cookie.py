"""The device cookie: a long-lived, signed, random device id (never the MAC) given to every
browser at its first visit. The free allowance and voucher ownership follow it across MAC
changes (:mod:`hotspot.identity`).

Signed like the console's device cookie (:mod:`hotspot.devicecookie`, purpose ``device``), and
valid for ``portal.device_cookie_days``, its Max-Age. HttpOnly (no script reads it),
SameSite=Lax (not sent on cross-site sub-requests). Not ``Secure``: the captive pages are
served over plain HTTP too (only port 80 is intercepted), and a Secure cookie would never come
back there.
"""

from __future__ import annotations

import datetime as dt

from flask import Response, g, request

from hotspot import devicecookie
from hotspot.identity import is_device_id, new_device_id
from portal.state import state

COOKIE = "hotspot_device"
PURPOSE = "device"  # keys the signature: no other signed cookie of the portal passes for it


def sign(secret: bytes, device_id: str, now: dt.datetime) -> str:
    """The cookie value that gives a browser ``device_id``."""
    return devicecookie.issue(secret, PURPOSE, device_id, now)


def verify(secret: bytes, value: str | None, max_age: dt.timedelta, now: dt.datetime) -> str | None:
    """The device id a cookie value carries, if the portal signed it within ``max_age``;
    None otherwise."""
    device_id = devicecookie.check(secret, PURPOSE, value, max_age, now)
    return device_id if device_id is not None and is_device_id(device_id) else None


def _max_age() -> dt.timedelta:
    return dt.timedelta(days=state().config.portal.device_cookie_days)


def cookie_device_id() -> str | None:
    """The device id of this request's cookie, when it is ours (verified, not guessed)."""
    if "cookie_device_id" not in g:
        st = state()
        g.cookie_device_id = verify(
            st.secret_key, request.cookies.get(COOKIE), _max_age(), st.clock()
        )
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
        st = state()
        resp.set_cookie(
            COOKIE,
            sign(st.secret_key, want, st.clock()),
            max_age=int(_max_age().total_seconds()),
            httponly=True,
            samesite="Lax",
            path="/",
        )
    return resp
