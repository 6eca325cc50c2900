"""Where the portal lives, and the signed "where you were going" of a captive redirect.

Every URL the portal puts in a ``Location`` header or an API answer is built from the
configuration, never from the request's ``Host`` header: a forged Host cannot move a
redirect.

* ``captive_base``  ``http://<gateway address>:<portal port>`` — where intercepted plain HTTP
  is sent. An IP literal over plain HTTP needs neither DNS (a phone with strict Private DNS
  resolves nothing before login) nor a correct clock (certificates), so it always works.
* ``public_base``   the RFC 8908 API and its ``user-portal-url``: ``https://<hostname>`` when
  a hostname and a certificate are configured, else ``http://<hostname>:<port>``, else the
  captive base.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from hotspot.config import Config

MAX_URL = 1500
MAX_AGE = 24 * 3600  # a splash page may stay open this long before its continue link lapses
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?)+(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$"
)


def _origin(scheme: str, host: str, port: int) -> str:
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


@dataclass(frozen=True)
class PortalUrls:
    captive_base: str
    public_base: str
    venue_info_url: str
    own: frozenset[str]  # Host header values that mean "the portal itself"
    origins: frozenset[str]  # scheme://host[:port] the portal answers at

    @classmethod
    def from_config(cls, config: Config) -> PortalUrls:
        net, p = config.network, config.portal
        ip = str(net.gateway_ip)
        port = net.portal_port
        captive = _origin("http", ip, port)
        origins = {captive}
        own = {ip, f"{ip}:{port}"}
        if p.hostname:
            own |= {p.hostname, f"{p.hostname}:{port}"}
            origins.add(_origin("http", p.hostname, port))
            if p.tls:
                own.add(f"{p.hostname}:{p.https_port}")
                public = _origin("https", p.hostname, p.https_port)
                origins.add(public)
            else:
                public = _origin("http", p.hostname, port)
        else:
            public = captive
        if port == 80:
            own.add(f"{ip}:80")
        return cls(
            captive_base=captive,
            public_base=public,
            venue_info_url=p.venue_info_url or public + "/info",
            own=frozenset(h.lower() for h in own),
            origins=frozenset(origins),
        )

    @property
    def api_url(self) -> str:
        """What DHCP option 114 (RFC 8910) announces."""
        return self.public_base + "/api/captive"

    @property
    def user_portal_url(self) -> str:
        return self.public_base + "/"

    def is_own(self, host: str) -> bool:
        return host.strip().lower().rstrip(".") in self.own

    def base_for(self, scheme: str, host: str) -> str:
        """The origin a page was requested at, if it is one of ours; else the captive base."""
        host = host.strip().lower()
        for origin in self.origins:
            o = urlsplit(origin)
            if o.scheme != scheme:
                continue
            port = o.port or (443 if scheme == "https" else 80)
            if host in (o.hostname, f"{o.hostname}:{port}"):
                return origin
        return self.captive_base


def original_url(host: str, raw_uri: str) -> str | None:
    """``http://host/path?query`` of an intercepted request, or None if it does not look
    like a URL worth going back to."""
    host = host.strip().lower()
    if raw_uri.startswith(("http://", "https://")):  # absolute-form request line
        parts = urlsplit(raw_uri)
        host, raw_uri = (
            parts.netloc.lower(),
            (parts.path or "/") + ("?" + parts.query if parts.query else ""),
        )
    if not host or not _HOST.match(host) or not raw_uri.startswith("/"):
        return None
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in raw_uri):
        return None
    if host.endswith(":80"):
        host = host[:-3]
    url = f"http://{host}{raw_uri}"
    return url if len(url) <= MAX_URL else None


def safe_target(url: str) -> bool:
    """Only absolute http(s) URLs with a host: never javascript:, data:, //host or paths."""
    if not isinstance(url, str) or len(url) > MAX_URL:
        return False
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in url):
        return False
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and _HOST.match(parts.netloc.split("@")[-1].lower()) is not None
        and "@" not in parts.netloc
    )


class Signer:
    """Binds a "continue to" URL to the client address it was intercepted for, so the
    portal's success page links only to pages this device really asked for (no open
    redirect, no link planted by someone else)."""

    def __init__(self, secret: bytes, clock=time.time):
        self.key = hashlib.sha256(b"hotspot-portal-continue|" + secret).digest()
        self.clock = clock

    def _mac(self, ip: str, stamp: int, url: str) -> str:
        digest = hmac.new(self.key, f"{ip}\n{stamp}\n{url}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:15]).decode()

    def sign(self, ip: str, url: str) -> dict[str, str]:
        stamp = int(self.clock())
        return {"to": url, "t": str(stamp), "s": self._mac(ip, stamp, url)}

    def verify(self, ip: str, to: str | None, t: str | None, s: str | None) -> str | None:
        """The URL if the three parameters were made by :meth:`sign` for ``ip`` lately."""
        if not to or not t or not s or not t.isdigit() or len(t) > 12 or len(s) > 40:
            return None
        stamp = int(t)
        if not -300 <= self.clock() - stamp <= MAX_AGE:
            return None
        if not hmac.compare_digest(self._mac(ip, stamp, to), s):
            return None
        return to if safe_target(to) else None
