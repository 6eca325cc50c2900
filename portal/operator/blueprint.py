"""The console's blueprint and what every page shares: the LAN-only gate, the login session,
roles, error pages, the operator as the audit log's actor, village time in templates."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, g, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext

from hotspot import operators
from hotspot.audit import Actor
from hotspot.config import Config
from hotspot.timeutil import naive_utc, zone_name
from portal import fmt
from portal.state import state

log = logging.getLogger(__name__)

bp = Blueprint("operator", __name__, url_prefix="/operator")
COOKIE = "hs_op"
PUBLIC = {"operator.login"}
# What an agent (a warung reselling vouchers) may open: their own stock, sales and prints,
# their password, logging out. Everything else is a 403 page: a list of what they may do,
# not of what they may not, so a page added later is closed to agents until listed here.
AGENT_PAGES = {
    "operator.login",
    "operator.logout",
    "operator.account",
    "operator.agent_home",
    "operator.agent_sell",
    "operator.agent_sheet",
    "operator.receipt",
    "operator.receipt_escpos",
}


def cfg() -> Config:
    """The configuration (short for ``state().config``: most pages need only that)."""
    return state().config


def is_console_path() -> bool:
    return request.path == "/operator" or request.path.startswith("/operator/")


def on_management_network(config: Any, addr: str | None) -> bool:
    """Loopback or one of ``[operator] management_networks`` (the operator SSID, the wired
    management port, a VPN): never the villagers' open LAN."""
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if config.management.enabled and ip in config.management.network:
        return True
    return any(ip in ipaddress.ip_network(net) for net in config.operator.management_networks)


def on_lan(config: Any, addr: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return bool(ip.version == 4 and ip in config.network.lan_network)


def address_allowed(config: Any, addr: str | None) -> bool:
    return on_management_network(config, addr) or (
        config.operator.allow_lan and on_lan(config, addr)
    )


def cleartext_on_open_lan(config: Any) -> bool:
    """A console request over plain HTTP from the villagers' open WiFi (#10.12): whoever sits
    nearby would read the password, the session cookie and the codes."""
    return (
        not request.is_secure
        and not config.operator.lan_plain_http
        and not on_management_network(config, request.remote_addr)
    )


def console_elsewhere() -> tuple[str, int]:
    """The page instead of the console on the open LAN over HTTP: where to open it."""
    config = cfg()
    ways = []
    if config.management.enabled:
        # The portal listens on the LAN address only; the gateway routes the management
        # subnet to it, and the gate knows the management subnet by the source address.
        mgmt = f"http://{config.network.gateway_ip}:{config.network.portal_port}/operator/"
        if config.management.ssid:
            ways.append(
                gettext(
                    "Join the operator WiFi “%(ssid)s” (ask the admin for its password) and "
                    "open %(url)s",
                    ssid=config.management.ssid,
                    url=mgmt,
                )
            )
        if config.management.wired_port:
            ways.append(
                gettext(
                    "Or plug a laptop into the management port (%(port)s) and open %(url)s",
                    port=config.management.wired_port,
                    url=mgmt,
                )
            )
    if config.portal.tls:
        port = config.portal.https_port
        url = f"https://{config.portal.hostname}{'' if port == 443 else f':{port}'}/operator/"
        ways.append(gettext("Or open the secure address %(url)s", url=url))
    if not ways:
        ways.append(
            gettext(
                "Ask the technician to set up the operator network or HTTPS "
                "(docs/operator-guide.md)."
            )
        )
    body = render_template(
        "operator/message.html",
        title=gettext("Open the console on the operator network"),
        text=gettext(
            "The village WiFi is open: anyone nearby can read what is sent over it without "
            "encryption, such as passwords and voucher codes. So the console does not open "
            "here."
        ),
        ways=ways,
        kind="lan-only",
    )
    return body, 403


MESSAGES: dict[str, tuple[Callable[[], str], Callable[[], str]]] = {
    "lan-only": (
        lambda: gettext("Not reachable from here"),
        lambda: gettext(
            "The operator console can only be opened from the village "
            "network or the management network."
        ),
    ),
    "admin-only": (
        lambda: gettext("For admins only"),
        lambda: gettext(
            "This page is for the BUMDes admin. Ask the admin if you need something here."
        ),
    ),
    "agent-only": (
        lambda: gettext("Not for agents"),
        lambda: gettext(
            "Your account is an agent's: it shows your own stock and sales only. Go back to "
            "My stock. Ask the BUMDes admin if you need something else."
        ),
    ),
    "not-found": (lambda: gettext("Page not found"), lambda: gettext("This page does not exist.")),
    "receipt-denied": (
        lambda: gettext("This receipt cannot be printed"),
        lambda: gettext(
            "A kasir prints a receipt only for a voucher they have just sold. "
            "Ask the admin to print a lost card again."
        ),
    ),
    "expired": (
        lambda: gettext("This form has expired"),
        lambda: gettext(
            "The page was open too long or was sent twice. Nothing was "
            "changed. Please open it again and try once more."
        ),
    ),
    "bad-request": (
        lambda: gettext("Something is not right"),
        lambda: gettext("What was sent could not be read. Nothing was changed."),
    ),
    "too-large": (
        lambda: gettext("Too much data"),
        lambda: gettext("What was sent is too large. Nothing was changed."),
    ),
    "busy": (
        lambda: gettext("Please try again"),
        lambda: gettext("The database is busy right now. Please try again in a moment."),
    ),
    "gateway": (
        lambda: gettext("The gateway does not answer"),
        lambda: gettext(
            "The WiFi gateway service is not answering. Sessions cannot "
            "be shown or changed right now; sales still work."
        ),
    ),
    "disk-full": (
        lambda: gettext("The gateway's storage is full"),
        lambda: gettext(
            "Nothing was changed or sold. Devices already online stay online, but no new "
            "login, sale or change can be saved until there is room again. Tell the "
            "technician (docs/operator-guide.md: storage full)."
        ),
    ),
    "no-key": (
        lambda: gettext("Vouchers are not set up"),
        lambda: gettext(
            "The voucher key is missing on this gateway, so codes cannot "
            "be made or printed. Ask the technician."
        ),
    ),
    "error": (
        lambda: gettext("Something went wrong"),
        lambda: gettext("Please try again in a moment. If it happens again, tell the technician."),
    ),
}


def render_error(kind: str, status: int) -> tuple[str, int]:
    title, text = MESSAGES.get(kind, MESSAGES["error"])
    return render_template("operator/message.html", title=title(), text=text(), kind=kind), status


def actor() -> Actor:
    op = g.op
    return Actor(op.name, op.id, op.role, request.remote_addr)


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kw: Any) -> Any:
        if g.op is None or g.op.role != "admin":
            return render_error("admin-only", 403)
        return view(*args, **kw)

    return wrapped


def see_other(endpoint: str, **params: Any) -> Any:
    return redirect(url_for(endpoint, **params), code=303)


def flash_to(endpoint: str, note: str, **params: Any) -> Any:
    """303 to a page with a short confirmation in ``?done=`` (no flash cookie needed)."""
    return redirect(url_for(endpoint, done=note, **params), code=303)


@bp.before_request
def _gate() -> Any:
    config = cfg()
    if not config.operator.enabled:
        return render_error("not-found", 404)
    if not address_allowed(config, request.remote_addr):
        return render_error("lan-only", 403)
    if cleartext_on_open_lan(config):
        return console_elsewhere()
    g.op = operators.session_operator(
        state().db,
        request.cookies.get(COOKIE),
        dt.timedelta(minutes=config.operator.idle_minutes),
        clock=state().clock,
    )
    if g.op is None and request.endpoint not in PUBLIC:
        nxt = (
            request.full_path.rstrip("?")
            if request.method == "GET"
            else url_for("operator.dashboard")
        )
        return redirect(url_for("operator.login") + "?" + urlencode({"next": nxt}), code=303)
    if g.op is not None and g.op.role == "agen" and request.endpoint not in AGENT_PAGES:
        if request.endpoint == "operator.dashboard":
            return redirect(url_for("operator.agent_home"), code=303)
        return render_error("agent-only", 403)
    return None


@bp.after_request
def _no_cache(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


def local(ts: dt.datetime | None, pattern: str = "d MMM yyyy, HH.mm") -> str:
    """A naive-UTC moment in village time."""
    if ts is None:
        return ""
    ts = naive_utc(ts)
    if str(g.get("lang", "id")) == "en":
        pattern = pattern.replace("HH.mm", "HH:mm")
    return format_datetime(ts, pattern)


def role_label(role: str) -> str:
    """A role as the console names it."""
    return {"admin": gettext("admin"), "agen": gettext("agent")}.get(str(role), gettext("kasir"))


@bp.app_context_processor
def _console_globals() -> dict[str, Any]:
    if not is_console_path():
        return {}
    from flask_babel import get_locale

    g.lang = str(get_locale() or "id")
    params = {k: v for k, v in request.args.items() if k not in ("lang", "done")}
    params["lang"] = "en" if g.lang == "id" else "id"
    return {
        "op": g.get("op"),
        "local": local,
        "console_lang_url": request.path + "?" + urlencode(params),
        "done": "",
        "village_tz": zone_name(cfg().village.tz),  # WIB, not Asia/Jakarta
        "role_label": role_label,
        # A date and time with the zone as people name it (WIB, WITA, WIT).
        "zoned": lambda ts: fmt.date_time(ts, cfg().village.tz),
    }
