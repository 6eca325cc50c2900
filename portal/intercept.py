"""The cheap path: plain HTTP for any other host, redirected here by the gateway's NAT.

Walled phones send a steady stream of background requests (OS probes, app updates, ad
beacons); all of them end up on the portal port. They are answered here, in front of Flask,
without a session, a template, a database or a gateway call: a redirect to the portal
carrying the signed original URL, and ``Connection: close`` so that the browser does not
reuse this (NATed) connection after login.

* ``GET``/``HEAD`` → ``302 Found`` to the splash. Android (``/generate_204``), Apple
  (``/hotspot-detect.html``), Windows (``/connecttest.txt``, ``/ncsi.txt``) and Firefox
  (``/success.txt``, ``/canonical.html``) all read a redirect as "captive" and open their
  sign-in sheet. Never an empty 200 (Android would take it for "online").
* anything else (an app's ``POST``) → ``511 Network Authentication Required`` (RFC 6585)
  with a link to the portal: a redirect would turn the POST into a GET of the splash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from urllib.parse import urlencode

from portal.urls import PortalUrls, Signer, original_url

# Known detection probes (for the docs and the tests: every path is treated alike).
PROBES = {
    "android": ("connectivitycheck.gstatic.com", "/generate_204"),
    "android-alt": ("clients3.google.com", "/generate_204"),
    "samsung": ("connectivity.samsung.com.cn", "/generate204"),
    "huawei": ("connectivitycheck.platform.hicloud.com", "/generate_204"),
    "apple": ("captive.apple.com", "/hotspot-detect.html"),
    "windows": ("www.msftconnecttest.com", "/connecttest.txt"),
    "windows-old": ("www.msftncsi.com", "/ncsi.txt"),
    "firefox": ("detectportal.firefox.com", "/success.txt"),
    "firefox-canonical": ("detectportal.firefox.com", "/canonical.html"),
}

_BODY_302 = (
    '<!doctype html><html lang="id"><meta charset="utf-8"><title>WiFi</title>'
    '<a href="{url}">Masuk / Sign in</a></html>'
)
_BODY_511 = (
    '<!doctype html><html lang="id"><meta charset="utf-8">'
    "<title>511 Network Authentication Required</title>"
    '<meta http-equiv="refresh" content="0; url={url}">'
    "<p>Masuk dulu ke WiFi desa / Sign in to the village WiFi: "
    '<a href="{url}">{url}</a></html>'
)

HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Connection", "close"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


class CaptiveIntercept:
    """WSGI middleware: requests for the portal's own host go to ``app``; the rest are
    answered here."""

    def __init__(self, app: Callable, urls: PortalUrls, signer: Signer):
        self.app = app
        self.urls = urls
        self.signer = signer

    def target(self, environ: dict[str, Any]) -> str:
        host = environ.get("HTTP_HOST", "")
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not raw:
            path = environ.get("PATH_INFO", "/").encode("latin-1", "replace")
            from urllib.parse import quote

            raw = quote(path, safe="/%:@!$&'()*+,;=-._~")
            if environ.get("QUERY_STRING"):
                raw += "?" + environ["QUERY_STRING"]
        url = original_url(host, raw) if host else None
        base = self.urls.captive_base + "/"
        if url is None:
            return base
        return base + "?" + urlencode(self.signer.sign(environ.get("REMOTE_ADDR", ""), url))

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if self.urls.is_own(environ.get("HTTP_HOST", "")):
            return self.app(environ, start_response)
        location = self.target(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        if method in ("GET", "HEAD"):
            status, body = "302 Found", _BODY_302.format(url=escape(location))
            headers = [("Location", location)]
        else:
            status, body = (
                "511 Network Authentication Required",
                _BODY_511.format(url=escape(location)),
            )
            headers = []
        data = body.encode()
        headers += HEADERS + [("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [b""] if method == "HEAD" else [data]
