"""The scripted villagers of ``hotspot demo``: real HTTP clients, each run inside its
phone's network namespace (``ip netns exec <phone> python -m demo.villagers ROLE``).

Standard library only. Every villager prints JSON lines on stdout, which the demo reads:

* ``{"step": "…"}``        what it is doing now (the live table's last column)
* ``{"check": NAME, "ok": bool, "detail": "…"}``   one scripted expectation, held or not
* ``{"metric": NAME, "value": …}``  a measurement (for example the iperf3 rate)

Roles:

``free``     probe http://<upstream>/ → the captive redirect → the splash → "Terima &
             Sambungkan" (POST /accept with the CSRF token) → the upstream page; then light
             browsing.
``voucher``  the same probe, then the voucher form (field ``code``) → premium; then an
             iperf3 download measures the premium rate.
``heavy``    accepts the free terms, then downloads a big file until the gateway ends the
             session (the free tier's daily allowance); then checks it is walled again and
             that the portal shows the "allowance used up" page.
``walled``   never logs in; keeps trying HTTPS, iperf3 and plain HTTP to the upstream host;
             nothing may get through.
``browser``  an extra free villager (``--phones`` above 4): accepts, then browses lightly.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

PORTAL = "10.10.0.1:8080"
MARKER = "demo-upstream-page"  # in the upstream host's index.html
UA = "Mozilla/5.0 (Linux; Android 11; Redmi 9A) hotspot-demo-villager"

_stop = False


def _on_term(*_: Any) -> None:
    global _stop
    _stop = True


def emit(**data: Any) -> None:
    data["t"] = round(time.time(), 3)
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def step(text: str) -> None:
    emit(step=text)


def check(name: str, ok: bool, detail: str = "") -> bool:
    emit(check=name, ok=bool(ok), detail=detail)
    return bool(ok)


def sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while not _stop and time.monotonic() < end:
        time.sleep(min(0.2, end - time.monotonic()))


# -- a tiny browser ------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


class Forms(HTMLParser):
    """Every <form>: its action and its inputs (name → value)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""

    def form(self, action: str) -> dict[str, str] | None:
        for f in self.forms:
            if f["action"] == action or f["action"].endswith(action):
                return dict(f["fields"])
        return None


class Browser:
    """HTTP/1.1 with a cookie jar per host; one connection per request (as a captive
    sheet after ``Connection: close``)."""

    def __init__(self, lang: str = "id-ID,id;q=0.9", timeout: float = 5.0):
        self.cookies: dict[str, SimpleCookie] = {}
        self.lang = lang
        self.timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        parts = urlsplit(url)
        host = parts.netloc
        assert parts.hostname is not None, url  # the demo's own http:// URLs
        conn = http.client.HTTPConnection(
            parts.hostname, parts.port or 80, timeout=timeout or self.timeout
        )
        hdrs = {
            "Host": host,
            "User-Agent": UA,
            "Accept-Language": self.lang,
            "Accept": "text/html,*/*",
        }
        jar = self.cookies.get(host)
        if jar:
            hdrs["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in jar.items())
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs.update(headers or {})
        path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            for value in resp.headers.get_all("Set-Cookie") or []:
                self.cookies.setdefault(host, SimpleCookie()).load(value)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, fields: dict[str, str], **kw: Any) -> Response:
        return self.request("POST", url, body=urlencode(fields).encode(), **kw)


def short(url: str) -> str:
    """A redirect target without its (long, signed) query."""
    return url.split("?", 1)[0] + ("?…" if "?" in url else "")


def portal_url(path: str) -> str:
    return f"http://{PORTAL}{path}"


def probe(b: Browser, upstream: str) -> Response | None:
    """What a phone's browser does first: a plain-HTTP page somewhere. Walled: 302 to the
    portal; the splash is fetched from there."""
    url = f"http://{upstream}/"
    step(f"opens {url}")
    try:
        r = b.get(url)
    except OSError as exc:
        check("redirect", False, f"GET {url}: {exc}")
        return None
    portal = f"http://{PORTAL}/"
    if not check(
        "redirect",
        r.status == 302 and r.location.startswith(portal),
        f"GET {url} → {r.status} {short(r.location)}",
    ):
        return None
    step("sees the portal splash")
    splash = b.get(r.location)
    if splash.status != 200:
        check("splash", False, f"GET {r.location[:60]} → {splash.status}")
        return None
    return splash


def forms_of(r: Response) -> Forms:
    f = Forms()
    f.feed(r.text)
    return f


def accept_terms(b: Browser, splash: Response) -> bool:
    fields = forms_of(splash).form("/accept")
    if fields is None or "csrf_token" not in fields:
        return check("accept", False, "the splash has no /accept form with a CSRF token")
    step("taps “Terima & Sambungkan”")
    r = b.post(portal_url("/accept"), fields)
    if r.status != 303 or "/ok" not in r.location:
        return check("accept", False, f"POST /accept → {r.status} {short(r.location)}")
    ok = b.get(portal_url(urlsplit(r.location).path + "?" + urlsplit(r.location).query))
    return check(
        "accept",
        ok.status == 200 and "Anda sudah tersambung" in ok.text,
        f"POST /accept → 303 /ok → {ok.status}",
    )


def reach_upstream(b: Browser, upstream: str, name: str = "online") -> bool:
    url = f"http://{upstream}/"
    step(f"opens {url} again")
    for _ in range(10):  # the first packets may meet a rule change in flight
        try:
            r = b.get(url)
        except OSError as exc:
            r = None
            err = str(exc)
        if r is not None and r.status == 200 and MARKER in r.text:
            return check(name, True, f"GET {url} → 200, the upstream page")
        err = f"{r.status} {short(r.location)}" if r is not None else err
        sleep(0.3)
    return check(name, False, f"GET {url} → {err}")


def browse(b: Browser, upstream: str, seconds_between: float, budget_bytes: int) -> None:
    """Light browsing until told to stop (or the budget is spent)."""
    used = 0
    pages = ["/", "/berita.html", "/harga-sawit.html"]
    i = 0
    while not _stop and used < budget_bytes:
        path = pages[i % len(pages)]
        i += 1
        try:
            r = b.get(f"http://{upstream}{path}")
            used += len(r.body)
            step(f"reads {path} ({r.status})")
        except OSError as exc:
            step(f"reads {path}: {exc}")
        sleep(seconds_between)
    if not _stop:
        step("puts the phone away")


# -- roles ------------------------------------------------------------------------------------


def free_tier_online(a: argparse.Namespace) -> Browser | None:
    """A phone that has accepted the terms and reached the upstream; None if it could not."""
    b = Browser()
    splash = probe(b, a.upstream)
    if splash is None or not accept_terms(b, splash):
        return None
    if not reach_upstream(b, a.upstream):
        return None
    return b


def role_free(a: argparse.Namespace) -> int:
    b = free_tier_online(a)
    if b is None:
        return 1
    browse(b, a.upstream, 3.0, 600_000)
    return 0


role_browser = role_free


def role_voucher(a: argparse.Namespace) -> int:
    b = Browser()
    splash = probe(b, a.upstream)
    if splash is None:
        return 1
    fields = forms_of(splash).form("/voucher")
    if fields is None:
        check("redeem", False, "the splash has no voucher form")
        return 1
    fields["code"] = a.code.lower().replace("-", " ")  # as a villager types it
    step(f"types voucher {a.code}")
    r = b.post(portal_url("/voucher"), fields)
    if r.status != 303 or "/ok" not in r.location:
        check("redeem", False, f"POST /voucher → {r.status} {short(r.location)}")
        return 1
    ok = b.get(portal_url(urlsplit(r.location).path + "?" + urlsplit(r.location).query))
    check(
        "redeem",
        ok.status == 200 and "Voucher Harian Anda aktif sampai" in ok.text,
        f"POST /voucher → 303 /ok → {ok.status}",
    )
    if not reach_upstream(b, a.upstream):
        return 1
    step(f"iperf3 download for {a.seconds} s")
    proc = subprocess.run(
        [
            "iperf3",
            "-c",
            a.upstream,
            "-R",
            "-t",
            str(a.seconds),
            "-O",
            "1",
            "-J",
            "--connect-timeout",
            "3000",
        ],
        capture_output=True,
        text=True,
        timeout=a.seconds + 20,
    )
    try:
        rep = json.loads(proc.stdout)
        bps = rep["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError):
        check("rate", False, f"iperf3 failed: {(proc.stderr or proc.stdout).strip()[-200:]}")
        return 1
    emit(metric="iperf3_down_bps", value=bps)
    step(f"iperf3: {bps / 1e6:.2f} Mbit/s")
    browse(b, a.upstream, 4.0, 600_000)
    return 0


def role_heavy(a: argparse.Namespace) -> int:
    b = free_tier_online(a)
    if b is None:
        return 1
    got = 0
    started = time.monotonic()
    last_progress = started
    end = "?"
    step("streams a video…")
    while not _stop:
        try:
            conn = http.client.HTTPConnection(a.upstream, 80, timeout=3)
            conn.request("GET", "/video.bin", headers={"User-Agent": UA})
            resp = conn.getresponse()
            if resp.status != 200:
                end = f"HTTP {resp.status} (walled)"
                break
            while not _stop:
                chunk = resp.read(65536)
                if not chunk:
                    break
                got += len(chunk)
                now = time.monotonic()
                if now - last_progress >= 1:
                    last_progress = now
                    step(f"streams a video: {got / 1e6:.1f} MB")
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            end = (
                "timed out"
                if isinstance(exc, (socket.timeout, TimeoutError))
                else errno.errorcode.get(getattr(exc, "errno", 0) or 0, type(exc).__name__)
            )
            break
    elapsed = time.monotonic() - started
    if _stop:
        return 1
    emit(metric="heavy_bytes", value=got)
    emit(metric="heavy_seconds", value=round(elapsed, 2))
    step(f"video stopped after {got / 1e6:.1f} MB ({end})")
    # Walled again: the probe is redirected to the portal, the portal says why.
    sleep(0.5)
    try:
        r = b.get(f"http://{a.upstream}/")
        walled = r.status == 302 and r.location.startswith(f"http://{PORTAL}/")
        detail = f"GET http://{a.upstream}/ → {r.status} {short(r.location)}"
    except OSError as exc:
        walled, detail = False, f"GET http://{a.upstream}/: {exc}"
    check("walled", walled, detail)
    step("opens the portal")
    page = b.get(portal_url("/"))
    used_up = "Jatah gratis hari ini sudah habis" in page.text
    again = None
    fields = forms_of(page).form("/voucher") or {}
    if "csrf_token" in fields:
        fields.pop("code", None)
        again = b.post(portal_url("/accept"), fields)
    check(
        "page",
        page.status == 200
        and used_up
        and again is not None
        and again.status == 403
        and "Jatah gratis hari ini sudah habis" in again.text,
        f"GET / → {page.status} “Jatah gratis hari ini sudah habis”: {used_up}; "
        f"POST /accept → {again.status if again is not None else '-'}",
    )
    step("reads the “allowance used up” page")
    while not _stop:
        sleep(1)
    return 0


def role_walled(a: argparse.Namespace) -> int:
    """Never logs in. Every attempt must fail: HTTPS (TCP 443) and iperf3 (TCP 5201) are
    refused by the gateway, plain HTTP gets the portal, never the upstream page, and the
    upstream host never answers a ping."""
    tries = leaks = 0
    details: list[str] = []
    ping = shutil.which("ping")
    step("has not logged in")
    while not _stop:
        tries += 1
        for port in (443, 5201):
            s = socket.socket()
            s.settimeout(1.0)
            try:
                s.connect((a.upstream, port))
                leaks += 1
                details.append(f"TCP {port} connected")
            except OSError:
                pass
            finally:
                s.close()
        try:
            r = Browser(timeout=2).get(f"http://{a.upstream}/")
            if MARKER in r.text or r.status == 200:
                leaks += 1
                details.append(f"HTTP got {r.status} from upstream")
        except OSError:
            pass
        if ping:
            echo = subprocess.run(
                [ping, "-n", "-q", "-c", "1", "-W", "1", a.upstream], capture_output=True, timeout=5
            )
            if echo.returncode == 0:
                leaks += 1
                details.append("ping answered")
        # Reported after every round; the demo keeps the last word.
        check(
            "never",
            leaks == 0,
            f"{tries} rounds of HTTPS :443, iperf3 :5201, HTTP"
            + (" and ping" if ping else "")
            + ": "
            + ("; ".join(details[:3]) if leaks else "all refused or sent to the portal"),
        )
        step(f"tries the internet: {tries} rounds, {leaks} got through")
        sleep(2.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.villagers")
    p.add_argument("role", choices=["free", "voucher", "heavy", "walled", "browser"])
    p.add_argument("--upstream", default="198.51.100.10")
    p.add_argument("--code", default="")
    p.add_argument("--seconds", type=int, default=6)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        return globals()[f"role_{a.role}"](a)
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        emit(error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
