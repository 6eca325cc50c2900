"""The villagers' pages: splash, free tier, voucher, status, allowance used up, RFC 8908 API.

A client is who the gateway says is at ``request.remote_addr``: the gateway maps the address
to a MAC itself. Nothing a request carries (form field, header, query) names a device — except
the portal's own signed device cookie (:mod:`portal.device_cookie`), which only ever ties a new
MAC to an identity the portal made: the free allowance and voucher ownership follow it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session
from flask_babel import gettext
from markupsafe import Markup

from hotspot import announcements
from hotspot.announcements import Notice
from hotspot.errors import ControlUnavailable, ErrorCode, HotspotError, NotFound, Refused
from hotspot.identity import accepted_free_since
from hotspot.model import EndReason, Source
from hotspot.protocol import AuthorizeRequest, ClientInfo, ClientRequest, DeauthorizeRequest
from hotspot.radius.attributes import MAX_USERNAME
from hotspot.timeutil import iso, local_day, local_time, naive_utc
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.redemption import (
    BrakeScope,
    RateLimited,
    Redemption,
    held_voucher,
    moved_away,
)
from portal import fmt
from portal.blocked import is_blocked
from portal.device_cookie import cookie_device_id, give_cookie, remember
from portal.state import state

log = logging.getLogger(__name__)

bp = Blueprint("captive", __name__)
bp.after_request(give_cookie)

# How long the owner of a voucher that went to another device is told so.
MOVED_NOTICE = dt.timedelta(hours=24)

CAPTIVE_JSON = "application/captive+json"
CARRY = ("to", "t", "s")


def client_ip() -> str:
    return request.remote_addr or ""


def carry() -> dict[str, str]:
    """The signed continue-to parameters and an explicit language, passed from page to page
    (a captive sheet may not keep cookies)."""
    out = {k: request.values[k] for k in CARRY if request.values.get(k)}
    if len(out) != len(CARRY) or target() is None:  # only what the portal signed for this device
        out = {}
    lang = request.values.get("lang")
    if lang in ("id", "en"):
        out["lang"] = lang
    return out


def target() -> str | None:
    """Where this device was going before the portal, if the portal itself signed it."""
    v = request.values
    return state().signer.verify(client_ip(), v.get("to"), v.get("t"), v.get("s"))


def see_other(path: str, params: dict[str, str] | None = None) -> Response:
    """303 to one of our own pages: an absolute URL on the origin this page was asked at,
    chosen from the configured ones (never from the Host header as such)."""
    base = state().urls.base_for(request.scheme, request.host)
    url = base + path + ("?" + urlencode(params) if params else "")
    resp = cast(Response, redirect(url, code=303))  # typed werkzeug's; flask's in a request
    return resp


def lang_url() -> str:
    from flask_babel import get_locale

    params = {k: v for k, v in carry().items() if k != "lang"}
    params["lang"] = "en" if str(get_locale()) == "id" else "id"
    return request.path + "?" + urlencode(params)


def fragment(name: str) -> Markup:
    """A part of a page that is the same for every phone (the free service, the rules, the
    price list): rendered once per language and price list, then reused. Rendered with
    autoescaping like any template, so the cached HTML is safe to insert."""
    from flask_babel import get_locale

    st = state()
    packages = st.packages()
    key = (name, str(get_locale()), tuple(packages))
    html = st.fragments.get(key)
    if html is None:
        cfg = st.config
        html = Markup(
            render_template(
                name,
                free=cfg.tiers.get("free"),
                tiers=cfg.tiers,
                packages=packages,
                terms=cfg.portal.terms,
            )
        )
        if len(st.fragments) > 64:
            st.fragments.clear()
        st.fragments[key] = html
    return html


def page(template: str, status: int = 200, **ctx: Any) -> tuple[str, int]:
    st = state()
    ctx.setdefault("carry", carry())
    ctx.setdefault("error", None)
    ctx.setdefault("code", "")
    ctx.setdefault("radius_error", None)
    ctx.setdefault("username", "")
    # The village's internet is down: say so on every page of the portal, so that a page that
    # loads but a web that does not is not taken for a broken WiFi.
    down_since = st.uplink_down_since()
    uplink_down = fmt.clock_time(down_since, st.config.village.tz, st.clock()) if down_since else ""
    return render_template(
        template,
        uplink_down=uplink_down,
        free=st.config.tiers.get("free"),
        fragment=fragment,
        vouchers_on=st.vouchers is not None,
        radius_on=st.radius is not None,
        lang_url=lang_url(),
        **ctx,
    ), status


MESSAGES = {
    # kind: (title, text, show a "try again" link)
    "not-found": (
        lambda: gettext("Page not found"),
        lambda: gettext("This page does not exist."),
        True,
    ),
    "too-large": (
        lambda: gettext("Too much data"),
        lambda: gettext("What was sent is too large."),
        True,
    ),
    "expired": (
        lambda: gettext("This page has expired"),
        lambda: gettext("Please open the page again and try once more."),
        True,
    ),
    "bad-request": (
        lambda: gettext("Something is not right"),
        lambda: gettext("Please open the page again and try once more."),
        True,
    ),
    "busy": (
        lambda: gettext("Please try again"),
        lambda: gettext("The WiFi service is busy right now. Please try again in a moment."),
        True,
    ),
    "device-unknown": (
        lambda: gettext("Your device is not recognised"),
        lambda: gettext("Turn WiFi off and on again, then open this page once more."),
        True,
    ),
    "blocked": (
        lambda: gettext("This device is blocked"),
        lambda: gettext("This device may not use the village WiFi. Please contact the BUMDes."),
        False,
    ),
    "conflict": (
        lambda: gettext("Please try again"),
        lambda: gettext(
            "Your device is being connected already. Please wait a moment and try again."
        ),
        True,
    ),
    "not-yours": (
        lambda: gettext("This is not your session"),
        lambda: gettext(
            "Another device is using the same address as yours, so nothing was changed. "
            "Turn WiFi off and on again. If it keeps happening, please tell the BUMDes."
        ),
        True,
    ),
    "quota": (
        lambda: gettext("Today's allowance is used up"),
        lambda: gettext(
            "This service's allowance for today is used up. It comes back "
            "at midnight, village time."
        ),
        True,
    ),
    "disk-full": (
        lambda: gettext("New connections are paused"),
        lambda: gettext(
            "The WiFi service's storage is full, so no new device can be connected right "
            "now. Devices already connected stay online. Please try again later, or tell "
            "the BUMDes."
        ),
        True,
    ),
    "error": (
        lambda: gettext("Something went wrong"),
        lambda: gettext("Please try again in a moment."),
        True,
    ),
    # DNS filtering (issue #15): a blocked name resolves to the portal for logged-in devices.
    "blocked-site": (
        lambda: gettext("This site is blocked"),
        lambda: gettext(
            "This site is on the list of sites blocked in Indonesia (Kominfo's TRUST+ "
            "Positif), which the province applies on this WiFi. The rest of the internet works "
            "as usual. If you think it is blocked by mistake, tell the BUMDes."
        ),
        False,
    ),
}


def render_message(kind: str, status: int, **extra: Any) -> tuple[str, int]:
    title, text, retry = MESSAGES.get(kind, MESSAGES["error"])
    try:
        params = carry()
    except Exception:  # noqa: BLE001 - an unreadable body (413): no parameters then
        params = {}
    return render_template(
        "message.html",
        title=title(),
        text=text(),
        retry=retry,
        carry=params,
        lang_url=lang_url_safe(),
        kind=kind,
        **extra,
    ), status


def lang_url_safe() -> str:
    try:
        return lang_url()
    except Exception:  # noqa: BLE001
        return "/?lang=en"


# What a villager sees for each error code: (MESSAGES kind, HTTP status). Every code is here
# (tests/unit/test_errors.py checks), so a new code is a decision about this page too.
# "error" pages are logged: the villager can do nothing about them, the technician can.
ERROR_PAGES: dict[ErrorCode, tuple[str, int]] = {
    ErrorCode.BLOCKED: ("blocked", 403),
    ErrorCode.CONFLICT: ("conflict", 409),
    ErrorCode.QUOTA_EXHAUSTED: ("quota", 403),
    ErrorCode.NOT_YOUR_SESSION: ("not-yours", 403),
    ErrorCode.GATEWAY_UNAVAILABLE: ("busy", 503),
    # The gateway cannot tell who this is (or there is nothing to act on): reconnecting helps.
    ErrorCode.UNKNOWN_DEVICE: ("device-unknown", 400),
    ErrorCode.NO_SESSION: ("device-unknown", 400),
    ErrorCode.NOT_BLOCKED: ("device-unknown", 400),
    ErrorCode.NOT_TRUSTED: ("device-unknown", 400),
    ErrorCode.NOT_FOUND: ("device-unknown", 400),
    ErrorCode.BAD_REQUEST: ("device-unknown", 400),
    ErrorCode.BAD_PASSWORD: ("device-unknown", 400),
    ErrorCode.EXPIRED: ("error", 503),
    ErrorCode.ERROR: ("error", 503),
    ErrorCode.BAD_CONFIG: ("error", 503),
    ErrorCode.INTERNAL: ("error", 503),
    ErrorCode.DATABASE: ("error", 503),
    # Nothing is broken and nothing changed: it works again by itself once there is room.
    ErrorCode.STORAGE_FULL: ("disk-full", 503),
    ErrorCode.ALREADY_RUNNING: ("error", 503),
    ErrorCode.NFTABLES: ("error", 503),
    ErrorCode.TC: ("error", 503),
    ErrorCode.CONNTRACK: ("error", 503),
    ErrorCode.NEIGHBOURS: ("error", 503),
    ErrorCode.NO_INTERFACE: ("error", 503),
    ErrorCode.SYSCTL: ("error", 503),
    # Voucher refusals are shown on the form (VOUCHER_MESSAGES); these are for one that
    # escapes it.
    ErrorCode.VOUCHER_UNKNOWN: ("error", 503),
    ErrorCode.VOUCHER_USED: ("error", 503),
    ErrorCode.VOUCHER_EXPIRED: ("error", 503),
    ErrorCode.VOUCHER_EXHAUSTED: ("error", 503),
    ErrorCode.VOUCHER_TIME_USED: ("error", 503),
    ErrorCode.VOUCHER_TOPUP_MIXED: ("error", 503),
    ErrorCode.VOUCHER_VOID: ("error", 503),
    ErrorCode.VOUCHER_SOLD: ("error", 503),
    ErrorCode.VOUCHER_UNSOLD: ("error", 503),
    ErrorCode.OUT_OF_STOCK: ("error", 503),
    ErrorCode.VOUCHER_AGENT: ("error", 503),
    ErrorCode.RATE_LIMITED: ("error", 503),
    ErrorCode.NO_KEY: ("error", 503),
    ErrorCode.BAD_KEY: ("error", 503),
    ErrorCode.BAD_VOUCHER_KEY: ("error", 503),
    ErrorCode.BAD_LOGIN: ("error", 503),
    ErrorCode.LOCKED: ("error", 503),
    # RADIUS refusals are shown on the login form (portal/radius_login.py); these are for
    # one that escapes it.
    ErrorCode.RADIUS_REJECT: ("error", 503),
    ErrorCode.RADIUS_UNAVAILABLE: ("busy", 503),
    ErrorCode.EXISTS: ("error", 503),
    ErrorCode.SYNC: ("error", 503),
    ErrorCode.POLICY_SIGNATURE: ("error", 503),
    ErrorCode.POLICY_REPLAY: ("error", 503),
    ErrorCode.POLICY_INVALID: ("error", 503),
    ErrorCode.PROVISION: ("error", 503),
    ErrorCode.TESTBED: ("error", 503),
}


# The refusal's code (hotspot/errors.py) on its page, for programs: several codes share an
# HTTP status (a used-up day and another device at the address are both 403), and the benches
# and tests must tell them apart. The page says the same in words.
ERROR_HEADER = "X-Hotspot-Error"


def with_error_code(page: tuple[Any, ...], code: ErrorCode) -> tuple[str, int, dict[str, str]]:
    """``(body, status[, headers])`` with :data:`ERROR_HEADER` added."""
    body, status, *rest = page
    return body, status, {**(rest[0] if rest else {}), ERROR_HEADER: code.value}


def render_gateway_error(exc: HotspotError) -> Any:
    kind, status = ERROR_PAGES[exc.code]
    if isinstance(exc, ControlUnavailable):
        log.warning("gateway unavailable: %s", exc.message)
        page = render_message(kind, status)[0], status, {"Retry-After": "10"}
        return with_error_code(page, exc.code)
    if kind == "error":
        log.error("gateway refused: %s: %s", exc.code, exc.message)
    if exc.code is ErrorCode.STORAGE_FULL:
        return with_error_code(storage_full_page(), exc.code)
    return with_error_code(render_message(kind, status), exc.code)


# How soon a phone may try again after the storage-full page (an operator frees space in
# minutes, not seconds).
STORAGE_RETRY_SECONDS = 60


def storage_full_page() -> Any:
    """The page for a login that could not be written because the storage is full (in the
    gateway's reply, or the portal's own write): a 503 that says to come back later."""
    log.warning("storage full: a login was turned away")
    kind, status = ERROR_PAGES[ErrorCode.STORAGE_FULL]
    body, _ = render_message(kind, status)
    return body, status, {"Retry-After": str(STORAGE_RETRY_SECONDS)}


def lookup(brief: bool = False) -> ClientInfo:
    """The gateway's view of the requesting device. ``brief`` (a login form's POST): who it
    is and its running session, without the allowances of every tier — a page that shows
    the device's situation again (a refusal) asks for the whole view then."""
    info = state().gateway.send(ClientRequest(ip=client_ip(), brief=True if brief else None))
    if info.get("blocked"):
        raise Refused("blocked", code=ErrorCode.BLOCKED)
    if not brief:
        remember_mac(info)
    return info


# The gateway's MAC at this address, as a page's answer said, kept in the signed session
# cookie: the free tier's form links it to the device's identity without asking again, and
# the authorize names it (``expect_mac``: refused, nothing done, if another device is at the
# address now; the form then asks). One control round trip less per free login.
KNOWN_MAC = "gw_mac"
KNOWN_MAC_SECONDS = 600  # a villager reading the terms; older: asked again
_EPOCH = dt.datetime(1970, 1, 1)


def _now_s() -> int:
    return int((state().clock() - _EPOCH).total_seconds())


def remember_mac(info: ClientInfo) -> None:
    """After a page's whole answer: keep this address's MAC for the form (a device with a
    session has no form to send; the cookie is written again only when it changes or is
    half its age)."""
    mac = info.get("mac")
    if not mac or info.get("session"):
        return
    now, ip = _now_s(), client_ip()
    kept = session.get(KNOWN_MAC)
    if (
        isinstance(kept, list)
        and kept[:2] == [ip, mac]
        and 0 <= now - kept[2] < KNOWN_MAC_SECONDS // 2
    ):
        return
    session[KNOWN_MAC] = [ip, mac, now]


def remembered_mac() -> str | None:
    """The MAC a page's answer gave for this very address within ``KNOWN_MAC_SECONDS``
    (a clock step backwards makes it stale too), else None."""
    kept = session.get(KNOWN_MAC)
    if not (isinstance(kept, list) and len(kept) == 3 and kept[0] == client_ip()):
        return None
    mac, at = kept[1], kept[2]
    if not isinstance(mac, str) or not isinstance(at, int):
        return None
    return mac if 0 <= _now_s() - at < KNOWN_MAC_SECONDS else None


def home(
    info: ClientInfo,
    error: str | None = None,
    code: str = "",
    status: int = 200,
    radius_error: str | None = None,
    username: str = "",
) -> tuple[str, int]:
    """The page for this device's situation: connected, allowance used up, or the splash."""
    st = state()
    now = st.clock()
    tz = st.config.village.tz
    moved = ""
    held = None
    sess = info.get("session")
    if st.vouchers is not None:
        at = moved_away(
            st.db, mac=info.get("mac"), device_id=cookie_device_id(), since=now - MOVED_NOTICE
        )
        moved = fmt.clock_time(at, tz, now) if at else ""
        if not sess:  # the owner's phone under a new MAC: one tap takes its voucher back
            held = held_voucher(st.db, cookie_device_id(), now)
    ctx_held: dict[str, str] | None = None
    if held is not None and not moved:
        left = int((held.expires_at - now).total_seconds())
        ctx_held = {"title": held.title, "left": fmt.duration(left)}
    # What every one of the three pages shows: the last error, the code typed, a voucher
    # taken away, the RADIUS form's answer.
    shown: dict[str, Any] = {
        "error": error,
        "code": code,
        "moved_at": moved,
        "radius_error": radius_error,
        "username": username,
        "announcements": shown_announcements(now),
    }
    if sess:
        ends = fmt.clock_time(sess.get("expires_at"), tz, now) if sess.get("expires_at") else ""
        speed_note = fmt.speed_window(sess, tz, now)
        # An online-time voucher: its validity end as a date and time in WIB/WITA/WIT.
        valid_until = fmt.date_time(sess.get("expires_at"), tz)
        return page(
            "status.html",
            status,
            s=sess,
            ends=ends,
            speed_note=speed_note,
            valid_until=valid_until,
            **shown,
        )
    free = (info.get("allowance") or {}).get("free")
    if free and free.get("exhausted"):
        resets = fmt.clock_time(free.get("resets_at"), tz, now)
        return page("exhausted.html", status, resets=resets, held=ctx_held, **shown)
    bye = request.args.get("bye") == "1"
    return page(
        "splash.html",
        status,
        bye=bye,
        held=ctx_held,
        accepted_today=not bye and free is not None and accepted_today(info, now),
        **shown,
    )


def province_announcements() -> list[dict[str, Any]]:
    """The province's announcements from its signed policy (issue #15 item 1), as the
    portal's state last read them (within ``POLICY_TTL`` of a new policy)."""
    return state().province_announcements


def shown_announcements(now: dt.datetime) -> list[Notice]:
    """The notices on the splash and status pages, at ``now`` — the wall clock at render,
    the best the gateway has (hotspot/announcements.py: why a clock jump cannot keep an ended
    one up)."""
    return announcements.active(state().db, now, province_announcements())


def accepted_today(info: ClientInfo, now: dt.datetime) -> bool:
    """This device (its MAC, or its device cookie's identity) accepted the free tier's terms
    today, local time: one tap, no terms again (``portal.free_remember_acceptance``)."""
    st = state()
    if st.config.portal.free_remember_acceptance != "day":
        return False
    tz = st.config.village.tz
    midnight = naive_utc(dt.datetime.combine(local_time(now, tz).date(), dt.time(), tzinfo=tz))
    return accepted_free_since(
        st.db, mac=info.get("mac"), device_id=cookie_device_id(), since=midnight
    )


def identify(info: ClientInfo) -> str | None:
    """Link this device's MAC (from the gateway) to its identity — the one its signed cookie
    names, or a new one (at most ``portal.free_devices_per_address`` a day per address) — and
    give the device that identity's cookie. Returns the device id."""
    mac = info.get("mac")
    if not mac:
        raise NotFound("no MAC for this address", code=ErrorCode.UNKNOWN_DEVICE)
    return identify_mac(mac)


def identify_mac(mac: str) -> str | None:
    st = state()
    now = st.clock()
    who = st.identities.identify(
        mac, client_ip(), cookie_device_id(), now=now, day=local_day(now, st.config.village.tz)
    )
    if who.device_id is not None:
        remember(who.device_id)
    return who.device_id


# -- pages --------------------------------------------------------------------------------------


@bp.get("/")
def index():
    info = lookup()
    to = target()
    if info.get("session") and to:
        site = urlsplit(to).hostname or ""
        st = state()
        if (
            site
            and not st.urls.is_own(site)
            and is_blocked(site, str(st.config.network.gateway_ip))
        ):
            # Logged in, yet sent here from another site: its name is on the DNS blocklist.
            log.info("blocked site %s asked by %s", site[:100], client_ip())
            return render_message("blocked-site", 451, site=site[:100])
        return success_page(info["session"], to)
    return home(info, code=printed_code())


def printed_code() -> str:
    """``/?code=ABCD-EFGH-JK`` — the QR code on a printed voucher card fills the form in."""
    from hotspot.vouchers.codes import format_code, normalize_code

    bare = normalize_code(request.args.get("code", "")[:40])
    return format_code(bare) if bare else ""


@bp.get("/status")
def status():
    return home(lookup())


@bp.post("/accept")
def accept():
    """Terima & Sambungkan: the free tier."""
    if "free" not in state().config.tiers:
        return render_message("not-found", 404)
    gateway = state().gateway
    known = remembered_mac()
    try:
        if known is not None:
            # Before the gateway checks the allowance (it counts it over the identity's
            # MACs): the MAC the splash was told, which the authorize must find there.
            identify_mac(known)
            try:
                gateway.send(free_login(expect_mac=known))
                return see_other("/ok", carry())
            except Refused as exc:
                if exc.code is not ErrorCode.CONFLICT:
                    raise
                # Another device at the address now (or a login of this one running): ask.
                session.pop(KNOWN_MAC, None)
        identify(lookup(brief=True))
        gateway.send(free_login())
    except Refused as exc:
        if exc.code is ErrorCode.QUOTA_EXHAUSTED:
            return with_error_code(home(lookup(), status=403), exc.code)
        raise
    return see_other("/ok", carry())


def free_login(expect_mac: str | None = None) -> AuthorizeRequest:
    return AuthorizeRequest(ip=client_ip(), tier="free", source=Source.FREE, expect_mac=expect_mac)


VOUCHER_MESSAGES = {
    ErrorCode.VOUCHER_UNKNOWN: (
        lambda: gettext("That code is not valid. Check it and try again."),
        400,
    ),
    ErrorCode.VOUCHER_USED: (
        lambda: gettext("This code is being used by another device."),
        409,
    ),
    ErrorCode.VOUCHER_EXPIRED: (lambda: gettext("This voucher has expired."), 410),
    ErrorCode.VOUCHER_EXHAUSTED: (lambda: gettext("This voucher's data is used up."), 410),
    ErrorCode.VOUCHER_TIME_USED: (lambda: gettext("This voucher's online time is used up."), 410),
    ErrorCode.VOUCHER_TOPUP_MIXED: (
        lambda: gettext(
            "This code is of another kind than the voucher running on this device (hours or "
            "online time), so they cannot be added up. Disconnect first, then enter this code."
        ),
        409,
    ),
    ErrorCode.VOUCHER_VOID: (lambda: gettext("This voucher was withdrawn by the BUMDes."), 410),
}


def voucher_refused(exc: VoucherError, code: str = "") -> tuple[str, int, dict[str, str]]:
    """The device's page again (the gateway's whole view of it: the form's POST asked for
    the brief one), saying why its voucher (or its code, ``code``) was refused."""
    text, status = VOUCHER_MESSAGES.get(exc.code, VOUCHER_MESSAGES[ErrorCode.VOUCHER_UNKNOWN])
    return with_error_code(home(lookup(), error=text(), code=code, status=status), exc.code)


def connected_by_voucher(done: Redemption) -> Response:
    """On to the success page, which shows the voucher's terms (kept in the session: /ok
    asks the gateway nothing)."""
    session["voucher"] = {
        "package": done.title,
        "tier": done.tier,
        "until": iso(done.expires_at, exact=True),
        "bytes": done.bytes_limit,
        "online": done.online_seconds_left,
    }
    return see_other("/ok", carry())


@bp.post("/voucher")
def voucher():
    code = request.form.get("code", "")[:40]
    info = lookup(brief=True)
    svc = state().vouchers
    if svc is None:
        return render_message("busy", 503)
    device_id = identify(info)
    try:
        done = svc.redeem(
            code,
            ip=client_ip(),
            mac=info["mac"],
            live_session=info.get("session"),
            device_id=device_id,
        )
    except RateLimited as exc:
        body, status = home(lookup(), error=too_many(exc), code=code, status=429)
        return with_error_code((body, status, {"Retry-After": str(exc.retry_after)}), exc.code)
    except VoucherError as exc:
        return voucher_refused(exc, code=code)
    return connected_by_voucher(done)


@bp.post("/voucher/resume")
def voucher_resume():
    """Sambungkan lagi: the device's own running voucher, under its new MAC, without the code
    (its signed device cookie says whose it is)."""
    svc = state().vouchers
    if svc is None:
        return render_message("busy", 503)
    info = lookup(brief=True)
    device_id = identify(info)
    if device_id is None or cookie_device_id() != device_id:
        return home(lookup(), status=409)
    try:
        done = svc.resume(
            ip=client_ip(), mac=info["mac"], device_id=device_id, live_session=info.get("session")
        )
    except VoucherError as exc:
        return voucher_refused(exc)
    return connected_by_voucher(done)


def too_many(exc: RateLimited) -> str:
    """What a villager reads when a brake on guessing holds (vouchers and RADIUS logins)."""
    if exc.scope is BrakeScope.GATEWAY:
        # Everyone waits (someone is guessing from many addresses): say so, and that it is
        # short, so that nobody thinks the card they paid for is bad.
        return gettext(
            "Too many wrong codes were tried on this WiFi just now. Please try again "
            "in %(seconds)d seconds.",
            seconds=exc.retry_after,
        )
    return gettext(
        "Too many attempts. Please wait %(minutes)d minutes and try again.",
        minutes=max(1, (exc.retry_after + 59) // 60),
    )


@bp.post("/radius")
def radius_login():
    """Masuk dengan akun: a name and password (or a code alone, sent as both) checked by the
    RADIUS server (portal/radius_login.py); the gateway opens the session on its grant."""
    st = state()
    if st.radius is None:
        return render_message("not-found", 404)
    username = request.form.get("username", "").strip()[:MAX_USERNAME]
    password = request.form.get("password", "")[:128] or username
    info = lookup()
    if not username:
        text = gettext("Enter your user name or code.")
        return home(info, radius_error=text, status=400)
    mac, ip = info.get("mac"), client_ip()
    if not mac:
        raise NotFound("no MAC for this address", code=ErrorCode.UNKNOWN_DEVICE)
    # The same brakes on guessing as voucher codes: per device, per address, gateway-wide.
    if st.vouchers is not None:
        wait, scope = st.vouchers.brake(mac, ip)
        if wait:
            limited = RateLimited("too many attempts", wait, scope)
            body, status = home(info, radius_error=too_many(limited), username=username, status=429)
            return body, status, {"Retry-After": str(wait)}
    try:
        done = st.radius.login(username, password, ip=ip, mac=mac)
    except HotspotError as exc:
        if st.vouchers is not None and exc.code in (
            ErrorCode.RADIUS_REJECT,
            ErrorCode.RADIUS_UNAVAILABLE,
        ):
            # Counted like a wrong voucher code. A login while no server answers counts too:
            # each one holds a portal thread for the whole deadline.
            st.vouchers._failed(mac, ip)
        if exc.code is ErrorCode.RADIUS_REJECT:
            text = gettext("Wrong user name or password. Check them and try again.")
            return home(info, radius_error=text, username=username, status=401)
        if exc.code is ErrorCode.RADIUS_UNAVAILABLE:
            text = gettext(
                "The account server cannot be reached right now, so new logins with an "
                "account are not possible. Please try again later, or use a voucher."
            )
            return home(info, radius_error=text, username=username, status=503)
        raise
    sess = st.gateway.send(done.request(client_ip(), st.config.radius.tier))
    session["voucher"] = {
        "account": True,  # the success page says "logged in as", not "your voucher"
        "package": done.username,
        "tier": sess.get("tier"),
        "until": sess.get("expires_at"),
        "bytes": sess.get("bytes_limit"),
    }
    return see_other("/ok", carry())


def success_page(
    sess: dict[str, Any] | None, to: str | None, voucher: dict[str, Any] | None = None
) -> tuple[str, int]:
    st = state()
    host = urlsplit(to).hostname if to else None
    until = ""
    if voucher and voucher.get("until"):
        until = fmt.clock_time(voucher["until"], st.config.village.tz, st.clock())
        if voucher.get("online") is not None:
            until = fmt.date_time(voucher["until"], st.config.village.tz)
    return page("success.html", s=sess, to=to, to_host=host, voucher=voucher, until=until)


@bp.get("/ok")
def ok():
    """The success page. It asks the gateway nothing (it is only ever reached right after an
    authorization): the burst of logins after a power cut costs one request less each."""
    voucher = session.pop("voucher", None)
    return success_page(None, target(), voucher if isinstance(voucher, dict) else None)


@bp.post("/logout")
def logout():
    """Putuskan."""
    try:
        state().gateway.send(DeauthorizeRequest(ip=client_ip(), reason=EndReason.LOGOUT))
    except NotFound:
        pass
    params = {k: v for k, v in carry().items() if k == "lang"}
    return see_other("/", {**params, "bye": "1"})


@bp.get("/info")
def info():
    """Venue information (RFC 8908 ``venue-info-url``): the service, prices, contact."""
    return page("info.html")


@bp.get("/favicon.ico")
def favicon():
    return Response(status=204)


# -- RFC 8908 -----------------------------------------------------------------------------------


@bp.get("/api/captive")
def captive_api():
    urls = state().urls
    body: dict[str, Any] = {
        "captive": True,
        "user-portal-url": urls.user_portal_url,
        "venue-info-url": urls.venue_info_url,
    }
    status = 200
    try:
        info: ClientInfo | None = state().gateway.send(ClientRequest(ip=client_ip()))
    except ControlUnavailable:
        status = 503
        info = None
    except HotspotError:
        info = None
    sess = info["session"] if info is not None and not info["blocked"] else None
    if sess:
        body["captive"] = False
        body["can-extend-session"] = True
        if sess.get("seconds_remaining") is not None:
            body["seconds-remaining"] = int(sess["seconds_remaining"])
        if sess.get("bytes_remaining") is not None:
            body["bytes-remaining"] = int(sess["bytes_remaining"])
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type=CAPTIVE_JSON,
        headers={"Cache-Control": "private"},
    )
