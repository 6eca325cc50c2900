"""DNS filtering for logged-in devices (issue #15, item 2; docs/security.md, "DNS filtering").

Three parts live here, all pure (no root, no network):

* :func:`parse_blocklist`: the list Indonesian ISPs receive (Kominfo's TRUST+ Positif: plain
  domain names, one a line) into the sorted, de-duplicated names the resolver blocks.
  Comments, blank lines, case, trailing dots, ``*.`` wildcards, hosts-file lines and URLs are
  handled; IDN names become their ASCII (``xn--``) form; what is not a name (an address, one
  label, bad characters) is counted and skipped, never fatal: a list of a million lines with
  a few broken ones still blocks the rest. A name whose parent is listed is dropped (the
  parent blocks its subdomains already), which keeps the resolver's table smaller.
* :func:`render`: the resolver files of one *generation* (the gateway's dnsmasq, the walled
  resolver, timesyncd) from the effective configuration and the names.
* :func:`install_generation` / :func:`switch_to`: written to a new folder, fsynced, and made
  current by renaming one symlink: dnsmasq never reads a half-written set of files, and a
  power cut leaves the old generation or the new one.

The blocklist itself travels beside the signed policy, not inside it: the policy names it by
SHA-256, size and count (:func:`verify_list`), so a list changed on the way, or cut short, is
refused and the last good one stays.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# DNS-over-HTTPS endpoints a phone or browser may use instead of the gateway's resolver: their
# names answer NXDOMAIN while the filter is on (browsers then fall back to the system's
# resolver). ``use-application-dns.net`` is Firefox's canary: NXDOMAIN switches its default
# DoH off. Public lists (curl's wiki, the browsers' built-in providers) name hundreds more;
# these are the ones phones and browsers in Indonesia ship with.
DOH_HOSTS: tuple[str, ...] = (
    "use-application-dns.net",
    "dns.google",
    "dns.google.com",
    "dns64.dns.google",
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "chrome.cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "security.cloudflare-dns.com",
    "family.cloudflare-dns.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "doh.familyshield.opendns.com",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "dns-unfiltered.adguard.com",
    "family.adguard-dns.com",
    "doh.cleanbrowsing.org",
    "dns.nextdns.io",
    "doh.mullvad.net",
    "dns.mullvad.net",
    "doh.dns.sb",
    "dns.alidns.com",
    "doh.pub",
    "dns.controld.com",
    "freedns.controld.com",
    "doh.xfinity.com",
    "ordns.he.net",
    "dns.twnic.tw",
    "dns.switch.ch",
    "doh.libredns.gr",
)
# Their well-known addresses: HTTPS (and QUIC) to them is refused for filtered devices, so a
# browser with the address configured (DoH "by IP") fails rather than goes round the filter.
DOH_ADDRESSES: tuple[str, ...] = (
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
    "1.1.1.2",
    "1.0.0.2",
    "1.1.1.3",
    "1.0.0.3",
    "9.9.9.9",
    "149.112.112.112",
    "9.9.9.10",
    "9.9.9.11",
    "208.67.222.222",
    "208.67.220.220",
    "94.140.14.14",
    "94.140.15.15",
    "185.228.168.168",
    "185.228.169.168",
    "45.90.28.0",
    "45.90.30.0",
    "194.242.2.2",
    "223.5.5.5",
    "223.6.6.6",
)

MAX_NAME = 253
MAX_LINE = 2048  # longer lines are counted invalid without being looked at
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_HOSTS_ADDRESS = re.compile(r"^(0\.0\.0\.0|127\.0\.0\.1|::1?|::)$")

# Where the walled resolver asks (the gateway's dnsmasq on lo; provisioning.render MAIN_RESOLVER).
MAIN_RESOLVER = "127.0.0.1"
MAIN_FILE = "main.conf"
WALLED_FILE = "walled.conf"
TIMESYNCD_FILE = "timesyncd.conf"
BLOCKED_FILE = "blocked.conf"
CURRENT = "current"
REQUEST = "reload-request"
STATUS = "reload-status.json"
# What the portal's HTTPS listener (hotspot-portal-tls) should be doing with this generation:
# read by the reload unit, which starts, restarts or stops it (issue #15, item 4).
PORTAL_FILE = "portal-tls"


@dataclass
class Parsed:
    """What :func:`parse_blocklist` made of a list."""

    names: list[str] = field(default_factory=list)
    lines: int = 0
    invalid: int = 0
    duplicates: int = 0
    covered: int = 0  # dropped because a parent name is listed
    first_invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, text)

    def summary(self) -> dict[str, object]:
        return {
            "names": len(self.names),
            "lines": self.lines,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "covered_by_parent": self.covered,
            "first_invalid": [list(x) for x in self.first_invalid],
        }


def normalise_name(text: str) -> str | None:
    """One line's name, lower-case ASCII without a trailing dot; None when the line is not a
    name (an address, one label, bad characters, too long)."""
    s = text.strip()
    if not s or len(s) > MAX_LINE:
        return None
    if "://" in s:  # a URL: its host
        s = s.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        s = s.rsplit("@", 1)[-1].split(":", 1)[0]
    s = s.rstrip(".").lower()
    if s.startswith("*."):
        s = s[2:]
    if not s.isascii():
        try:
            s = s.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not s or len(s) > MAX_NAME:
        return None
    try:
        ipaddress.ip_address(s)
        return None  # an address is not a name: nothing for a resolver to block
    except ValueError:
        pass
    labels = s.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None  # one label would block a whole top-level domain
    if labels[-1].isdigit():
        return None
    return s


def parse_blocklist(lines: Iterable[str | bytes], keep_examples: int = 5) -> Parsed:
    """The names of a blocklist (see the module's text for the rules)."""
    out = Parsed()
    seen: set[str] = set()
    for number, raw in enumerate(lines, 1):
        out.lines += 1
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.lstrip("\ufeff").strip()
        if not line or line[0] in "#;!":
            continue
        line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        fields = line.split()
        if len(fields) == 2 and _HOSTS_ADDRESS.match(fields[0]):
            fields = fields[1:]  # a hosts-file line: "0.0.0.0 name"
        name = normalise_name(fields[0]) if len(fields) == 1 else None
        if name is None:
            out.invalid += 1
            if len(out.first_invalid) < keep_examples:
                out.first_invalid.append((number, line[:80]))
            continue
        if name in seen:
            out.duplicates += 1
            continue
        seen.add(name)
    kept = []
    for name in seen:
        labels = name.split(".")
        if any(".".join(labels[i:]) in seen for i in range(1, len(labels) - 1)):
            out.covered += 1
        else:
            kept.append(name)
    kept.sort()
    out.names = kept
    return out


def parse_file(path: str | os.PathLike[str]) -> Parsed:
    with open(path, "rb") as f:
        return parse_blocklist(f)


# -- the artifact ------------------------------------------------------------------------------


class ListRefused(ValueError):
    """A blocklist file that is not the one the policy names."""


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file, read in blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def verify_list(path: str | os.PathLike[str], sha256: str, size: int | None) -> None:
    """:class:`ListRefused` unless the file's bytes are the ones the policy names."""
    digest, actual = file_digest(path)
    if size is not None and actual != size:
        raise ListRefused(f"{actual} bytes, the policy names {size} (cut short or padded)")
    if digest != sha256:
        raise ListRefused(f"SHA-256 {digest[:16]}…, the policy names {sha256[:16]}…")


def list_path(folder: str | os.PathLike[str], sha256: str) -> Path:
    """Where the sync agent keeps a list: named by its hash, so a new list never overwrites
    the one in force."""
    return Path(folder) / f"{sha256}.txt"


# -- the resolver's files -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What the generated files depend on (from the effective configuration)."""

    enabled: bool
    portal_ip: str
    garden_domains: tuple[str, ...]
    nft_set_ref: str
    main_resolver: str  # where the walled resolver asks (the gateway's dnsmasq)
    ntp_servers: tuple[str, ...]
    fallback_ntp_servers: tuple[str, ...]
    doh_hosts: tuple[str, ...] = DOH_HOSTS
    list_sha256: str = ""
    # The portal's name (host-record), the RFC 8910 option 114 URL and whether the portal
    # serves HTTPS on that name: from the certificate in force (gateway/dnsapply.py).
    portal_hostname: str = ""
    captive_api_url: str = ""
    portal_tls: bool = False


HEADER = "# Written by the gateway (hotspot/dnsfilter.py) from the policy in force; do not edit.\n"


def render_blocked(names: Sequence[str], portal_ip: str) -> str:
    """``address=`` lines: a blocked name and its subdomains answer the portal's address,
    whose plain-HTTP page explains the block."""
    return "".join(f"address=/{n}/{portal_ip}\n" for n in names)


def render(settings: Settings, blocked: Sequence[str]) -> dict[str, str]:
    """file name → text of one generation."""
    main = [HEADER]
    walled = [HEADER]
    if settings.garden_domains:
        main.append("# The walled garden by name: answers fill the gateway's nftables set.\n")
        walled.append("# The walled garden by name, asked of the gateway's own dnsmasq.\n")
        for d in settings.garden_domains:
            main.append(f"nftset=/{d}/4#{settings.nft_set_ref}\n")
            walled.append(f"server=/{d}/{settings.main_resolver}\n")
            walled.append(f"nftset=/{d}/4#{settings.nft_set_ref}\n")
    if settings.portal_hostname:
        main.append("# The portal's name resolves to the gateway itself.\n")
        main.append(f"host-record={settings.portal_hostname},{settings.portal_ip}\n")
        walled.append("# The portal's name, before login too.\n")
        walled.append(f"host-record={settings.portal_hostname},{settings.portal_ip}\n")
    if settings.captive_api_url:
        main.append("# RFC 8910: the captive-portal API (RFC 8908) in DHCPv4 option 114.\n")
        main.append(f'dhcp-option=114,"{settings.captive_api_url}"\n')
    files = {MAIN_FILE: "", WALLED_FILE: "".join(walled)}
    # The name only, never the certificate: a renewal for the same name is the same
    # generation (nothing restarts; the TLS portal reads the new pair per connection).
    files[PORTAL_FILE] = f"on {settings.portal_hostname}\n" if settings.portal_tls else "off\n"
    if settings.enabled:
        garden = set(settings.garden_domains)
        main.append("# DNS filtering is on: DNS-over-HTTPS endpoints resolve to nothing.\n")
        main.extend(f"address=/{h}/\n" for h in settings.doh_hosts if h not in garden)
        main.append(f"conf-file={BLOCKED_FILE}\n")  # replaced by the real path in install
        files[BLOCKED_FILE] = HEADER + render_blocked(
            [n for n in blocked if n not in garden], settings.portal_ip
        )
    files[MAIN_FILE] = "".join(main)
    ntp = " ".join(settings.ntp_servers)
    files[TIMESYNCD_FILE] = (
        HEADER
        + "[Time]\n"
        + f"NTP={ntp}\n"
        + f"FallbackNTP={' '.join(settings.fallback_ntp_servers)}\n"
    )
    return files


def generation_id(files: Mapping[str, str]) -> str:
    """The content's name: the same files give the same generation (nothing restarts)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_generation(folder: str | os.PathLike[str]) -> str | None:
    """The generation the current symlink names, None when there is none."""
    try:
        target = os.readlink(Path(folder) / CURRENT)
    except OSError:
        return None
    name = Path(target).name
    return name[4:] if name.startswith("gen-") else None


def install_generation(folder: str | os.PathLike[str], files: Mapping[str, str]) -> str:
    """Write ``files`` as a generation folder ``gen-<id>`` (each file fsynced, then the
    folder), without making it current; its id. An existing complete generation is reused."""
    base = Path(folder)
    gen = generation_id(files)
    target = base / f"gen-{gen}"
    if (target / ".complete").exists():
        return gen
    tmp = base / f".gen-{gen}.{os.getpid()}.tmp"
    if tmp.exists():
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    tmp.mkdir(parents=True)
    for name, text in files.items():
        if name == MAIN_FILE and BLOCKED_FILE in files:
            text = text.replace(
                f"conf-file={BLOCKED_FILE}\n", f"conf-file={target / BLOCKED_FILE}\n"
            )
        p = tmp / name
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        p.chmod(0o644)
    (tmp / ".complete").write_text(gen + "\n")
    tmp.chmod(0o755)
    _fsync_dir(tmp)
    if target.exists():  # a generation left incomplete by a power cut
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
    os.rename(tmp, target)
    _fsync_dir(base)
    return gen


def switch_to(folder: str | os.PathLike[str], gen: str) -> str | None:
    """Make generation ``gen`` current (one rename of a symlink); the previous one's id."""
    base = Path(folder)
    previous = current_generation(base)
    link = base / f".{CURRENT}.{os.getpid()}.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(f"gen-{gen}", link)
    os.rename(link, base / CURRENT)
    _fsync_dir(base)
    return previous


def request_reload(folder: str | os.PathLike[str], gen: str, previous: str | None) -> None:
    """Leave the request the reload unit (``hotspot-dns-reload.path``) acts on."""
    base = Path(folder)
    tmp = base / f".{REQUEST}.tmp"
    tmp.write_text(json.dumps({"generation": gen, "previous": previous}) + "\n")
    os.rename(tmp, base / REQUEST)


def prune(folder: str | os.PathLike[str], keep: Iterable[str | None]) -> None:
    """Remove the generations not in ``keep`` (the current one and the one before)."""
    wanted = {f"gen-{g}" for g in keep if g}
    for p in Path(folder).glob("gen-*"):
        if p.name not in wanted and p.is_dir():
            for f in p.iterdir():
                f.unlink()
            p.rmdir()


def read_status(folder: str | os.PathLike[str]) -> dict[str, object] | None:
    try:
        data = json.loads((Path(folder) / STATUS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_status(folder: str | os.PathLike[str], status: Mapping[str, object]) -> None:
    base = Path(folder)
    tmp = base / f".{STATUS}.tmp"
    tmp.write_text(json.dumps(dict(status), sort_keys=True) + "\n")
    os.rename(tmp, base / STATUS)
