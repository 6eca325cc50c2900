"""Layered configuration: defaults in code, then the TOML file, then overrides.

Every key is validated at load; the first bad key raises :class:`ConfigError`
naming it, and nothing has been applied anywhere yet.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotspot.errors import ConfigError

ENV_CONFIG = "HOTSPOT_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/hotspot/hotspot.toml"

DEFAULTS: dict[str, Any] = {
    "village": {
        "name": "Desa Sungai Duren",
        "timezone": "Asia/Jakarta",
    },
    "network": {
        "lan_interface": "br-lan",
        "wan_interface": "eth0",
        "lan_address": "10.10.0.1/22",
        "portal_port": 8080,
        "uplink_down_kbps": 20000,
        "uplink_up_kbps": 5000,
        # Traffic between clients and the gateway itself never crosses the backhaul.
        "lan_local_kbps": 1000000,
        "lan_tcp_ports": [],
        "walled_garden": [],
        # New connections per second an unauthorized client may open to the portal.
        "portal_conn_rate": 20,
        # Open connections one client (walled or logged in) may hold to the portal ports.
        "portal_conn_limit": 10,
    },
    "database": {
        "url": "sqlite:////var/lib/hotspot/hotspot.db",
        # The console and the health report warn when the database's filesystem is this full.
        "disk_warning_pct": 90,
    },
    "control": {
        "socket": "/run/hotspot/control.sock",
        "group": "hotspot",
    },
    "gateway": {
        "table": "hotspot",
        "tick_seconds": 2.0,
        "flush_seconds": 60,
        "leaf_qdisc": "auto",
        # A tick reads its sessions' classes; every class (the idle pool's too) this often.
        "full_look_seconds": 60,
        # Time without a real-time clock (issue #11): a wall-clock step larger than this
        # moves running sessions with it (docs/reliability.md).
        "clock_step_seconds": 30,
        # Freed memory back to the system (malloc_trim) this often, monotonic (hotspot/memory.py).
        "trim_seconds": 3600,
        # Resident memory (after a trim) above which the gateway restarts itself, its
        # sessions kept: the bound on whatever grows over months (hotspot/memory.py). 0 = off.
        "restart_above_mb": 256,
        # NTP for systemd-timesyncd (provisioning): the province's servers first, then the
        # public pool as the fallback.
        "ntp_servers": [],
        "fallback_ntp_servers": ["0.id.pool.ntp.org", "1.id.pool.ntp.org", "2.pool.ntp.org"],
        # While the kernel says the clock is not synchronised (no NTP), a clock this many
        # seconds behind the collector's (learnt from its signed answers) is stepped to it;
        # 0 = never (hotspot/collector_time.py, docs/reliability.md).
        "collector_time_step_seconds": 60,
        # Prometheus metrics (issue #14): "ADDRESS:PORT" of their own listener, on loopback
        # or the management network only, never the villagers' LAN; "" = off.
        "metrics_listen": "",
    },
    "tiers": {
        "free": {
            "down_kbps": 1024,
            "up_kbps": 512,
            "session_minutes": 60,
            "idle_minutes": 10,
            "daily_minutes": 120,
            "daily_mb": 300,
        },
        "premium": {
            "down_kbps": 5120,
            "up_kbps": 2048,
            "session_minutes": 0,
            "idle_minutes": 30,
            "daily_minutes": 0,
            "daily_mb": 0,
        },
    },
    "portal": {
        # A DNS name for the portal, resolved to the gateway by the local DNS ("" = none: the
        # portal is reached at the LAN address). Needed for HTTPS and RFC 8910 announcements.
        "hostname": "",
        "https_port": 443,
        "tls_cert": "",
        "tls_key": "",
        "contact": "Kios BUMDes di balai desa",
        "terms": "",
        "venue_info_url": "",
        "user": "hotspot",
        "workers": 0,
        "threads": 16,
        # Seconds a request's headers may take from their first byte (slow clients are cut).
        "read_timeout": 10,
        "secret_key_file": "/var/lib/hotspot/portal.secret",
        "voucher_key_file": "/etc/hotspot/voucher.key",
        "max_body_bytes": 16384,
        "voucher_attempts": 5,
        "voucher_window_seconds": 60,
        "voucher_cooldown_seconds": 300,
        "voucher_address_attempts": 20,
        "voucher_address_window_seconds": 600,
        "voucher_gateway_attempts": 60,
        "voucher_gateway_window_seconds": 60,
        "voucher_takeover_hours": 12,
        "free_devices_per_address": 3,
        "device_cookie_days": 400,
        # "day": a device that accepted the free tier's terms today is let out again without
        # them for the rest of the day's allowance; "never": the terms at every connection.
        "free_remember_acceptance": "day",
    },
    "packages": {},
}

PORTAL_KEYS = tuple(DEFAULTS["portal"])
PACKAGE_KEYS = (
    "title",
    "price",
    "tier",
    "hours",
    "data_mb",
    "devices",
    "shelf_days",
    "online_minutes",
    "valid_days",
    "auto_resume",
)
TIER_KEYS = ("down_kbps", "up_kbps", "session_minutes", "idle_minutes", "daily_minutes", "daily_mb")
# [tiers.NAME] schedule = [{ from = "22:00", to = "05:00", down_kbps = …, up_kbps = … }, …]
SPEED_WINDOW_KEYS = ("from", "to", "down_kbps", "up_kbps")
MAX_SPEED_WINDOWS = 24
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_FREE_REMEMBER = re.compile(r"^(day|never)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# [sync] and [privacy]: the sync agent and the provincial report (docs/sync-and-collector.md).
DEFAULTS["sync"] = {
    "upstream_url": "",  # the provincial collector, e.g. https://hotspot.jambiprov.go.id ("" = off)
    "gateway_id": "",  # as registered there (hotspot collector gateways add ID)
    "secret": "",  # printed by that command; signs every request
    "interval_seconds": 300,
    "max_batch_kb": 64,  # largest request body (gzip-compressed) sent at once
    "timeout_seconds": 60,
    "backoff_max_seconds": 900,
    "health_seconds": 300,
    "api_token": "",  # bearer token of this gateway's own /api/v1/usage ("" = off)
    # The province's zone for this gateway's HTTPS name <gateway_id>.<cert_zone>, its
    # certificate obtained through the collector (issue #15, item 4; "" = none).
    "cert_zone": "",
    "cert_dir": "/var/lib/hotspot/tls",  # key.pem (never leaves the device) and cert.pem
    # Resident memory (after a trim) above which the agent restarts itself: it keeps nothing
    # in memory its database does not (hotspot/memory.py). 0 = off.
    "restart_above_mb": 192,
}
DEFAULTS["privacy"] = {
    "retention_days": 90,
    "pseudonym_key": "",  # "" = a random key generated once and kept in the database
    # A new random key every local calendar period (the village's time zone): a device is
    # linkable within one period only ("month", "week", "day"; hotspot/pseudonym.py).
    "pseudonym_period": "month",
}
_GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces

# [wifi], [dhcp] and two [network] keys: read by `hotspot provision` (docs/provisioning.md).
# Domains whose addresses dnsmasq puts into the gateway's walled_garden_dns set (nftset=);
# a domain includes its subdomains.
DEFAULTS["network"]["walled_garden_domains"] = []
# Wired ports bridged into lan_interface: the Ethernet side, where access points plug in.
DEFAULTS["network"]["lan_ports"] = []
# The data path before login (docs/security.md, "The data path"). A device that is not
# logged in resolves only the portal's name, these hosts and walled_garden_domains (each with
# its subdomains), through a second dnsmasq listening on walled_dns_port: the operating
# systems' captive-portal probes, which must resolve to their real addresses so that the
# port-80 redirect shows the portal (and, after login, the real answer passes).
DEFAULTS["network"]["captive_probe_hosts"] = [
    "connectivitycheck.gstatic.com",  # Android (and Samsung, Oppo, Vivo on Google's ROMs)
    "connectivitycheck.android.com",
    "www.google.com",  # Android's fallback probes, Chrome OS
    "clients3.google.com",
    "connectivity.samsung.com.cn",  # Samsung
    "connectivitycheck.platform.hicloud.com",  # Huawei
    "connect.rom.miui.com",  # Xiaomi, Redmi, POCO (MIUI, HyperOS)
    "captive.apple.com",  # iOS, macOS
    "www.apple.com",
    "www.msftconnecttest.com",  # Windows 10/11 (the DNS check resolves dns.msftncsi.com)
    "dns.msftncsi.com",
    "www.msftncsi.com",  # older Windows
    "detectportal.firefox.com",  # Firefox
    "nmcheck.gnome.org",  # Linux desktops (NetworkManager)
]
DEFAULTS["network"]["walled_dns_port"] = 5300
# DNS packets per second one device that is not logged in may send to the gateway (burst
# twice that); more are dropped.
DEFAULTS["network"]["walled_dns_rate"] = 20
# TCP ports of the gateway open from the uplink (e.g. [22] for SSH); nothing else answers there.
DEFAULTS["network"]["wan_tcp_ports"] = []
DEFAULTS["wifi"] = {
    "enabled": True,  # onboard WiFi as an access point (a Pi 4 serves only about 8 phones)
    "interface": "wlan0",
    "ssid": "WiFi Desa Gratis",
    "channel": 6,
    "country": "ID",
}
DEFAULTS["dhcp"] = {
    "range_start": "",  # "" = host 10 of the LAN (the hosts below it stay for access points)
    "range_end": "",  # "" = the last host of the LAN
    "lease_minutes": 120,
    "upstream_dns": [],  # [] = the uplink's resolvers, from /etc/resolv.conf
    "captive_api_url": "",  # "" = derived from [portal] (RFC 8910 DHCP option 114)
}
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# [management]: the operators' own network (#10.12), apart from the villagers' open WiFi: a
# WPA2 SSID as a second BSS on the onboard radio and/or a wired port taken out of the LAN
# bridge, in one subnet of their own; the console answers there over plain HTTP.
DEFAULTS["management"] = {
    "address": "",  # the gateway's address and prefix in it, e.g. "192.168.88.1/24"; "" = none
    "ssid": "",  # the operator SSID ("" = none), WPA2-PSK on [wifi] interface
    "passphrase": "",  # its WPA2 passphrase, 8-63 characters
    "wifi_interface": "wlan0op",  # the operator BSS's own interface
    "wired_port": "",  # a LAN port for a wired management laptop ("" = none)
}

# [operator]: the BUMDes operator console, /operator/ on the portal (docs/operator-console.md).
DEFAULTS["operator"] = {
    "enabled": True,
    # When a voucher counts as sold: "kasir" = when a kasir marks it sold (cash in hand; a
    # voucher used before that counts at its first use), "first-use" = at its first use.
    "sold_at": "kasir",
    # Besides the LAN (allow_lan), the console answers only addresses in these networks
    # (e.g. a management interface's subnet or a VPN; [management] address is one already);
    # loopback always.
    "management_networks": [],
    "allow_lan": True,
    # The console over plain HTTP to the LAN: off, because the villagers' WiFi is open and
    # anyone nearby reads the password, the session cookie and voucher codes (#10.12). The
    # LAN gets the console over HTTPS ([portal] tls_cert) or not at all.
    "lan_plain_http": False,
    "leases_file": "/var/lib/misc/dnsmasq.leases",  # hostnames of devices ("" = none)
    "session_hours": 12,  # a login lasts at most this long
    "idle_minutes": 60,  # and ends after this long without a request
    # The login brake (hotspot/operators.py): wrong passwords for one account from one address
    # before each further one doubles a wait (15 s, 30 s, … up to login_lockout_seconds).
    "login_attempts": 5,
    "login_ip_attempts": 20,  # wrong passwords from one address within the window
    "login_window_seconds": 900,
    "login_lockout_seconds": 900,  # the longest wait
    # Wrong passwords gateway-wide within the window, from untrusted places, before untrusted
    # logins wait for the window's end (a known device and the management network still may).
    "login_ceiling": 100,
    "max_batch": 1000,  # vouchers in one batch made in the console or the CLI
}
# [radius]: accounts and accounting against a RADIUS server (issue #16, docs/radius.md).
# [printer]: direct ESC/POS printing of receipts to a USB receipt printer on the gateway
# (docs/configuration.md). Off by default: kasir print from the phone's browser instead.
DEFAULTS["printer"] = {
    "enabled": False,
    "device": "/dev/usb/lp0",  # the printer's character device (the portal's user in group lp)
    "width_mm": 58,  # paper width: 58 or 80
}

# [summary]: the daily message to the BUMDes head through a Telegram bot (issue #13, item 7;
# docs/configuration.md). Off by default; `hotspot summary run` (its own service) sends it.
DEFAULTS["summary"] = {
    "enabled": False,
    "telegram_bot_token": "",  # from @BotFather, e.g. 123456789:AA... (never logged)
    "telegram_chat_id": "",  # the head's chat: a number (-100... for a group) or @channel
    "send_at": "20:00",  # village time, once a day
    "api_base": "https://api.telegram.org",  # overridable for tests (a local Bot API)
}

DEFAULTS["radius"] = {
    "enabled": False,
    "servers": [],  # "host" or "host:port" (auth port; accounting is acct_port), tried in order
    "acct_port": 1813,
    "secret_file": "/etc/hotspot/radius.secret",  # one line, mode 0600 or 0640
    "timeout_seconds": 3,  # per attempt
    "attempts": 2,  # per server
    "nas_identifier": "",  # "" = the village's name
    "nas_ip_address": "",  # "" = not sent
    "tier": "premium",  # the tier whose speeds a login gets when the reply names none
    "data_limit": "chillispot",  # or "mikrotik": which vendor attribute carries the data cap
    "interim_seconds": 300,  # Interim-Update interval (the server's Acct-Interim-Interval wins)
    # With no server answering: "refuse" new logins with a clear page, or "cached": accept a
    # name and password that logged in successfully here lately, for what remains of it.
    "offline": "refuse",
    "cache_hours": 24,  # how long a successful login may be reused offline ("cached")
    "calling_station_id": "mac",  # or "pseudonym" (hotspot/pseudonym.py): what the server sees
    "coa_port": 3799,  # CoA and Disconnect-Requests from the servers (0 = not listening)
    "coa_listen": "",  # the address to listen on ("" = every address)
    "coa_window_seconds": 300,  # Event-Timestamp at most this far off (replay protection)
    "require_message_authenticator": True,
}
# [uplink]: how the gateway tells that the village's internet is down (issue #11, item 3;
# docs/configuration.md). The WAN link's state, and a TCP connect to each probe target.
DEFAULTS["uplink"] = {
    "probe_targets": [],  # "host:port"; [] = the collector's (sync.upstream_url), if any
    "probe_seconds": 20.0,  # one round of probes this often
    "probe_timeout_seconds": 3.0,  # per connect
    "down_after": 3,  # rounds in a row without an answer before it is an outage
    "up_after": 2,  # rounds in a row with an answer before it is over
    # While it is down, the walled resolver answers the captive probes' names itself from a
    # hosts file the gateway writes here (dnsmasq hostsdir=); "" = never.
    "walled_hosts_dir": "/run/hotspot-dns",
}

# [policy]: the province's signed policy (issue #15, hotspot/policy.py; docs/configuration.md).
DEFAULTS["policy"] = {
    # The collector's Ed25519 public key (base64), pinned at provisioning from
    # `hotspot collector policy keygen`; "" = no policy is taken (the local file rules).
    "public_key": "",
    "state_file": "/var/lib/hotspot/policy.json",  # the last good policy (signed, as received)
}

# [dns_filter]: DNS filtering for logged-in devices (issue #15, hotspot/dnsfilter.py); the
# province's policy (dns_blocklist) sets enabled and the list, the rest is the device's.
DEFAULTS["dns_filter"] = {
    "enabled": False,
    # The blocklist in force: its SHA-256 (hex), size in bytes and name count; "" = none.
    "list_sha256": "",
    "list_size": 0,
    "list_count": 0,
    # Where the sync agent keeps the lists it fetched (named by their SHA-256).
    "list_dir": "/var/lib/hotspot/blocklists",
    # Where the gateway writes the resolvers' files live (walled garden by name, the filter,
    # NTP servers) for hotspot-dns-reload.path; "" = only `hotspot provision` writes them.
    "conf_dir": "/var/lib/hotspot-dns",
    # Refuse HTTPS/QUIC to the well-known DoH resolvers' addresses (hotspot/dnsfilter.py).
    "refuse_doh_addresses": True,
}

_DATA_LIMITS = ("chillispot", "mikrotik")
_OFFLINE = ("refuse", "cached")
_CALLING_STATION = ("mac", "pseudonym")

# 2.4 GHz, and the 5 GHz channels without radar detection (DFS), which a Pi's onboard
# WiFi cannot do as an access point.
WIFI_CHANNELS = tuple(range(1, 14)) + (36, 40, 44, 48, 149, 153, 157, 161, 165)


@dataclass(frozen=True)
class SpeedWindow:
    """A time of day at which a tier runs at other rates (hotspot/speed_schedule.py), in
    minutes after the village's local midnight; ``end`` before ``start`` crosses midnight."""

    start: int
    end: int
    down_kbps: int
    up_kbps: int

    def covers(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    @property
    def label(self) -> str:
        """``22:00–05:00``"""
        return (
            f"{self.start // 60:02d}:{self.start % 60:02d}–{self.end // 60:02d}:{self.end % 60:02d}"
        )


@dataclass(frozen=True)
class Tier:
    name: str
    down_kbps: int
    up_kbps: int
    session_minutes: int  # 0 = no hard timeout
    idle_minutes: int  # 0 = never idle out
    daily_minutes: int  # 0 = no daily time allowance
    daily_mb: int  # 0 = no daily data allowance
    schedule: tuple[SpeedWindow, ...] = ()  # other rates at times of day; never overlapping


@dataclass(frozen=True)
class VillageConfig:
    name: str
    timezone: str

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class NetworkConfig:
    lan_interface: str
    wan_interface: str
    lan_address: str
    portal_port: int
    uplink_down_kbps: int
    uplink_up_kbps: int
    lan_local_kbps: int
    lan_tcp_ports: tuple[int, ...]
    walled_garden: tuple[str, ...]
    portal_conn_rate: int
    portal_conn_limit: int
    walled_garden_domains: tuple[str, ...] = ()  # filled into walled_garden_dns by dnsmasq
    lan_ports: tuple[str, ...] = ()  # wired ports of the LAN bridge
    captive_probe_hosts: tuple[str, ...] = ()  # resolvable before login (DEFAULTS has the list)
    walled_dns_port: int = 5300  # the resolver of devices not logged in (nft redirects to it)
    walled_dns_rate: int = 20  # DNS packets per second per device not logged in
    wan_tcp_ports: tuple[int, ...] = ()  # gateway ports open from the uplink

    @property
    def lan_iface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.lan_address)

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        return self.lan_iface.ip

    @property
    def lan_network(self) -> ipaddress.IPv4Network:
        return self.lan_iface.network


@dataclass(frozen=True)
class DatabaseConfig:
    url: str
    disk_warning_pct: int = 90  # percent of the database's filesystem used


@dataclass(frozen=True)
class WifiConfig:
    enabled: bool
    interface: str
    ssid: str
    channel: int
    country: str

    @property
    def band(self) -> str:
        return "g" if self.channel <= 14 else "a"  # hostapd's hw_mode


@dataclass(frozen=True)
class ManagementConfig:
    address: str = ""  # "" = no management network; else "192.168.88.1/24"
    ssid: str = ""
    passphrase: str = field(default="", repr=False)
    wifi_interface: str = "wlan0op"
    wired_port: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.address)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    @property
    def gateway_ip(self) -> str:
        return str(self.interface.ip)


@dataclass(frozen=True)
class DhcpConfig:
    range_start: str  # resolved: never "" after validation
    range_end: str
    lease_minutes: int
    upstream_dns: tuple[str, ...]  # () = /etc/resolv.conf
    captive_api_url: str  # "" = derived from [portal] by the provisioner

    @property
    def size(self) -> int:
        return (
            int(ipaddress.IPv4Address(self.range_end))
            - int(ipaddress.IPv4Address(self.range_start))
            + 1
        )


@dataclass(frozen=True)
class ControlConfig:
    socket: str
    group: str


@dataclass(frozen=True)
class GatewayConfig:
    table: str
    tick_seconds: float
    flush_seconds: int
    leaf_qdisc: str  # auto | fq_codel | pfifo
    full_look_seconds: float = 60.0  # a tick's read of every class (the idle pool's too)
    clock_step_seconds: float = 30.0  # a bigger wall-clock step moves running sessions
    ntp_servers: tuple[str, ...] = ()  # the province's, for systemd-timesyncd
    fallback_ntp_servers: tuple[str, ...] = ()
    collector_time_step_seconds: float = 60.0  # 0 = never step to the collector's time
    metrics_listen: str = ""  # "ADDRESS:PORT" of the Prometheus listener; "" = off
    trim_seconds: float = 3600.0  # malloc_trim(0) this often (hotspot/memory.py)
    restart_above_mb: int = 256  # resident memory that restarts the daemon; 0 = never


@dataclass(frozen=True)
class PortalConfig:
    hostname: str  # "" = none
    https_port: int
    tls_cert: str  # "" = no HTTPS listener
    tls_key: str
    contact: str
    terms: str
    venue_info_url: str  # "" = the portal's own /info page
    user: str  # "" = stay the user that started it
    workers: int  # 0 = sized from the CPU count
    threads: int
    read_timeout: int
    secret_key_file: str
    voucher_key_file: str
    max_body_bytes: int
    voucher_attempts: int
    voucher_window_seconds: int
    voucher_cooldown_seconds: int
    voucher_address_attempts: int  # wrong codes per address within its window (any MAC)
    voucher_address_window_seconds: int
    voucher_gateway_attempts: int  # wrong codes of all addresses together within its window
    voucher_gateway_window_seconds: int
    voucher_takeover_hours: int  # a code in use moves to another device after this absence
    free_devices_per_address: int  # new free-tier device identities per address per day
    device_cookie_days: int  # the device cookie's Max-Age
    free_remember_acceptance: str  # day | never: the free tier's terms once a day, or always

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


@dataclass(frozen=True)
class PackageConfig:
    """A voucher package defined in the file (``[packages.NAME]``)."""

    name: str
    title: str
    price: int  # Rupiah
    tier: str
    hours: int  # counted from first use
    data_mb: int  # 0 = no data quota (only the tier's)
    devices: int  # devices that may use one voucher at once
    shelf_days: int  # days a voucher may wait for its first use (0 = no limit)
    # An online-time package: minutes online within valid_days from first use (hours is
    # then valid_days × 24). 0 = an hours package.
    online_minutes: int = 0
    valid_days: int = 0
    auto_resume: bool = True  # a returning device is let out again without the portal


@dataclass(frozen=True)
class OperatorConfig:
    enabled: bool
    sold_at: str  # kasir | first-use
    management_networks: tuple[str, ...]
    allow_lan: bool
    lan_plain_http: bool
    leases_file: str  # "" = no hostnames
    session_hours: int
    idle_minutes: int
    login_attempts: int
    login_ip_attempts: int
    login_window_seconds: int
    login_lockout_seconds: int
    login_ceiling: int
    max_batch: int


@dataclass(frozen=True)
class SyncConfig:
    upstream_url: str  # "" = not reporting
    gateway_id: str
    secret: str
    interval_seconds: int
    max_batch_kb: int
    timeout_seconds: int
    backoff_max_seconds: int
    health_seconds: int
    api_token: str  # "" = the gateway's own pull API is off
    cert_zone: str = ""  # "" = no certificate through the collector
    cert_dir: str = "/var/lib/hotspot/tls"
    restart_above_mb: int = 192  # resident memory that restarts the agent; 0 = never

    @property
    def enabled(self) -> bool:
        return bool(self.upstream_url)

    @property
    def cert_name(self) -> str:
        """``<gateway_id>.<cert_zone>``, the portal's HTTPS name ("" = none)."""
        return f"{self.gateway_id}.{self.cert_zone}" if self.cert_zone else ""


@dataclass(frozen=True)
class PrivacyConfig:
    retention_days: int
    pseudonym_key: str  # "" = generated once, kept in the database
    pseudonym_period: str = "month"  # "month", "week" or "day": the key is renewed each


@dataclass(frozen=True)
class RadiusServer:
    host: str
    port: int


@dataclass(frozen=True)
class RadiusConfig:
    enabled: bool = False
    servers: tuple[RadiusServer, ...] = ()
    acct_port: int = 1813
    secret_file: str = ""
    timeout_seconds: float = 3.0
    attempts: int = 2
    nas_identifier: str = ""
    nas_ip_address: str = ""
    tier: str = "premium"
    data_limit: str = "chillispot"
    interim_seconds: int = 300
    offline: str = "refuse"
    cache_hours: int = 24
    calling_station_id: str = "mac"
    coa_port: int = 3799
    coa_listen: str = ""
    coa_window_seconds: int = 300
    require_message_authenticator: bool = True


@dataclass(frozen=True)
class PrinterConfig:
    enabled: bool = False
    device: str = "/dev/usb/lp0"
    width_mm: int = 58  # 58 or 80


@dataclass(frozen=True)
class SummaryConfig:
    enabled: bool = False
    telegram_bot_token: str = ""
    telegram_chat_id: str = ""
    send_at: dt.time = dt.time(20, 0)
    api_base: str = "https://api.telegram.org"

    def __repr__(self) -> str:  # the token never reaches a log line through a repr
        return (
            f"SummaryConfig(enabled={self.enabled}, telegram_chat_id={self.telegram_chat_id!r}, "
            f"send_at={self.send_at:%H:%M}, api_base={self.api_base!r})"
        )


@dataclass(frozen=True)
class UplinkConfig:
    probe_targets: tuple[tuple[str, int], ...] = ()  # () = the link's state only
    probe_seconds: float = 20.0
    probe_timeout_seconds: float = 3.0
    down_after: int = 3
    up_after: int = 2
    walled_hosts_dir: str = "/run/hotspot-dns"  # "" = off


@dataclass(frozen=True)
class PolicyConfig:
    public_key: str = ""  # "" = no policy taken
    state_file: str = "/var/lib/hotspot/policy.json"


@dataclass(frozen=True)
class DnsFilterConfig:
    enabled: bool = False
    list_sha256: str = ""
    list_size: int = 0
    list_count: int = 0
    list_dir: str = "/var/lib/hotspot/blocklists"
    conf_dir: str = "/var/lib/hotspot-dns"
    refuse_doh_addresses: bool = True


@dataclass(frozen=True)
class Config:
    """The whole configuration. Every section is always there (:func:`validate` fills what
    the file leaves out with the defaults), so none of them is optional."""

    village: VillageConfig
    network: NetworkConfig
    database: DatabaseConfig
    control: ControlConfig
    gateway: GatewayConfig
    tiers: Mapping[str, Tier]
    portal: PortalConfig
    packages: Mapping[str, PackageConfig]
    sync: SyncConfig
    privacy: PrivacyConfig
    operator: OperatorConfig
    wifi: WifiConfig
    dhcp: DhcpConfig
    management: ManagementConfig = field(default_factory=ManagementConfig)
    radius: RadiusConfig = field(default_factory=RadiusConfig)
    printer: PrinterConfig = field(default_factory=lambda: PrinterConfig())
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    dns_filter: DnsFilterConfig = field(default_factory=DnsFilterConfig)
    source: str = "defaults"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise ConfigError(f"tiers.{name}", "no such tier") from None


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (tables merge, values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Load defaults, then ``path`` (or $HOTSPOT_CONFIG, if set), then ``overrides``."""
    data = copy.deepcopy(DEFAULTS)
    source = "defaults"
    if path is None:
        path = os.environ.get(ENV_CONFIG) or None
    if path is not None:
        data = merge(data, read_toml(path))
        source = str(path)
    if overrides:
        data = merge(data, overrides)
    return with_certificate(validate(data, source=source))


def with_certificate(cfg: Config, now: dt.datetime | None = None) -> Config:
    """With ``[sync] cert_zone`` and a certificate in force for ``<gateway_id>.<cert_zone>``
    (complete, not expired; hotspot/certs.py) and no ``[portal] tls_cert`` of the file's
    own: the portal's hostname and TLS pair are that name and pair, so dnsmasq answers the
    name, option 114 says ``https://<name>/api/captive`` and the portal and console serve
    HTTPS (issue #15, item 4). Without one: the configuration as written (plain HTTP)."""
    s = cfg.sync
    if not s.cert_zone or cfg.portal.tls_cert:
        return cfg
    from dataclasses import replace

    from hotspot import certs

    folder = Path(s.cert_dir)
    when = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if certs.usable(folder, s.cert_name, when) is None:
        return cfg
    portal = replace(
        cfg.portal,
        hostname=s.cert_name,
        tls_cert=str(folder / certs.CERT_FILE),
        tls_key=str(folder / certs.KEY_FILE),
    )
    return replace(cfg, portal=portal)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except PermissionError:
        raise ConfigError("config", f"permission denied: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML ({exc})") from None


class Section:
    """Typed access to one table of a raw TOML file, naming the key in every error (the
    collector reads its own file with it too)."""

    def __init__(self, data: Mapping[str, Any], prefix: str, known: set[str] | None = None):
        if not isinstance(data, Mapping):
            raise ConfigError(prefix, "must be a table")
        self.data = data
        self.prefix = prefix
        if known is not None:
            for key in data:
                if key not in known:
                    raise ConfigError(f"{prefix}.{key}", "unknown key")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def str(self, name: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(self.key(name), "must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(self.key(name), f"{value!r} is not a valid {what}")
        return value

    # Below, the method str() shadows the type in annotations: hence builtins.str.
    def int(self, name: builtins.str, lo: int, hi: int) -> int:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.key(name), f"must be between {lo} and {hi}, got {value}")
        return value

    def float(self, name: builtins.str, lo: float, hi: float) -> float:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), f"must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.key(name), f"must be between {lo} and {hi}, got {value}")
        return float(value)

    def list(self, name: builtins.str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise ConfigError(self.key(name), "must be a list")
        return value


_NTP_SERVER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$")


def _restart_above(section: Section) -> int:
    """``[gateway]`` or ``[sync] restart_above_mb``: 0 (never), or at least 32 MB: a smaller
    figure is a mistake of units. (A figure below the daemon's own size, 70-100 MB, restarts
    it at every turn, each time with a line that names both figures: docs/configuration.md.)"""
    value = section.int("restart_above_mb", 0, 16384)
    if 0 < value < 32:
        raise ConfigError(
            section.key("restart_above_mb"), f"must be 0 (off) or at least 32, got {value}"
        )
    return value


def _collector_time_step(gw: Section) -> float:
    """``[gateway] collector_time_step_seconds``: 0 (off), or at least ``clock_step_seconds``
    so that the gateway sees the step it makes as a step, not as time passing."""
    step = gw.float("collector_time_step_seconds", 0.0, 86400.0)
    if step and step < gw.float("clock_step_seconds", 1.0, 86400.0):
        raise ConfigError(
            gw.key("collector_time_step_seconds"),
            "must be 0 (off) or at least clock_step_seconds",
        )
    return step


def _ntp_servers(s: Section, name: str) -> tuple[str, ...]:
    """Host names or addresses, written into timesyncd.conf as they are: nothing that could
    break out of its line."""
    servers = s.list(name)
    for server in servers:
        if not isinstance(server, str) or not _NTP_SERVER.match(server):
            raise ConfigError(s.key(name), f"{server!r} is not a host name or address")
    return tuple(servers)


def _village(raw: Mapping[str, Any]) -> VillageConfig:
    s = Section(raw, "village", {"name", "timezone"})
    name = s.str("name")
    tz = s.str("timezone")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(s.key("timezone"), f"unknown time zone {tz!r}") from None
    return VillageConfig(name=name, timezone=tz)


def _network(raw: Mapping[str, Any]) -> NetworkConfig:
    s = Section(raw, "network", set(DEFAULTS["network"]))
    lan = s.str("lan_interface", _IFNAME, "interface name")
    wan = s.str("wan_interface", _IFNAME, "interface name")
    if lan == wan:
        raise ConfigError(s.key("wan_interface"), "must differ from network.lan_interface")
    address = s.str("lan_address")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ConfigError(
            s.key("lan_address"), f"{address!r} is not an IPv4 address/prefix"
        ) from None
    # Client classids are 1:<host index>, and 0xfffe/0xffff are the gateway's own classes.
    # The shaper gives each host address two qdisc handles below the kernel's automatic
    # range (docs/architecture.md, Shaping): a /18 is the largest LAN that fits.
    if not 18 <= iface.network.prefixlen <= 30:
        raise ConfigError(s.key("lan_address"), "prefix length must be between /18 and /30")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ConfigError(
            s.key("lan_address"), "gateway address must be a host address of the subnet"
        )
    ports = []
    for i, port in enumerate(s.list("lan_tcp_ports")):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{s.key('lan_tcp_ports')}[{i}]", f"{port!r} is not a TCP port")
        ports.append(port)
    garden = []
    for i, entry in enumerate(s.list("walled_garden")):
        try:
            garden.append(str(ipaddress.IPv4Network(entry, strict=False)))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{s.key('walled_garden')}[{i}]", f"{entry!r} is not an IPv4 address or network"
            ) from None
    return NetworkConfig(
        lan_interface=lan,
        wan_interface=wan,
        lan_address=str(iface),
        portal_port=s.int("portal_port", 1, 65535),
        uplink_down_kbps=s.int("uplink_down_kbps", 64, 10_000_000),
        uplink_up_kbps=s.int("uplink_up_kbps", 64, 10_000_000),
        lan_local_kbps=s.int("lan_local_kbps", 1000, 100_000_000),
        lan_tcp_ports=tuple(ports),
        walled_garden=tuple(garden),
        portal_conn_rate=s.int("portal_conn_rate", 1, 10000),
        portal_conn_limit=s.int("portal_conn_limit", 2, 1000),
        walled_garden_domains=_garden_domains(s),
        lan_ports=_lan_ports(s, lan, wan),
        captive_probe_hosts=_probe_hosts(s),
        walled_dns_port=_walled_dns_port(s),
        walled_dns_rate=_with_default(s).int("walled_dns_rate", 1, 10000),
        wan_tcp_ports=_wan_tcp_ports(s),
    )


def _tiers(raw: Mapping[str, Any]) -> dict[str, Tier]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("tiers", "at least one tier must be defined")
    tiers: dict[str, Tier] = {}
    for name, table in raw.items():
        if not _NAME.match(name):
            raise ConfigError(f"tiers.{name}", "tier names are lower-case letters, digits, - and _")
        s = Section(table, f"tiers.{name}", {*TIER_KEYS, "schedule"})
        for key in TIER_KEYS:
            if key not in table:
                raise ConfigError(s.key(key), "missing")
        tiers[name] = Tier(
            name=name,
            down_kbps=s.int("down_kbps", 8, 10_000_000),
            up_kbps=s.int("up_kbps", 8, 10_000_000),
            session_minutes=s.int("session_minutes", 0, 525_600),
            idle_minutes=s.int("idle_minutes", 0, 525_600),
            daily_minutes=s.int("daily_minutes", 0, 1440),
            daily_mb=s.int("daily_mb", 0, 10_000_000),
            schedule=_speed_windows(s) if "schedule" in table else (),
        )
    return tiers


def _clock_minute(s: Section, name: str) -> int:
    """``"22:00"`` → minutes after midnight (a string: ``config check --json`` prints the
    raw file, and JSON has no times)."""
    value = s.data.get(name)
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(s.key(name), f'must be a time of day such as "22:00", got {value!r}')
    return int(match[1]) * 60 + int(match[2])


def _speed_windows(tier: Section) -> tuple[SpeedWindow, ...]:
    raw = tier.list("schedule")
    if len(raw) > MAX_SPEED_WINDOWS:
        raise ConfigError(tier.key("schedule"), f"at most {MAX_SPEED_WINDOWS} windows")
    windows: list[SpeedWindow] = []
    for i, table in enumerate(raw):
        s = Section(table, f"{tier.key('schedule')}[{i}]", set(SPEED_WINDOW_KEYS))
        for key in SPEED_WINDOW_KEYS:
            if key not in table:
                raise ConfigError(s.key(key), "missing")
        window = SpeedWindow(
            start=_clock_minute(s, "from"),
            end=_clock_minute(s, "to"),
            down_kbps=s.int("down_kbps", 8, 10_000_000),
            up_kbps=s.int("up_kbps", 8, 10_000_000),
        )
        if window.start == window.end:
            raise ConfigError(
                s.key("to"), "must differ from 'from' (for the whole day, change the tier's rates)"
            )
        for j, other in enumerate(windows):
            # Two windows overlap when one of them starts inside the other.
            if other.covers(window.start) or window.covers(other.start):
                raise ConfigError(s.prefix, f"{window.label} overlaps schedule[{j}] {other.label}")
        windows.append(window)
    return tuple(windows)


def _opt_str(s: Section, name: str, max_len: int) -> str:
    """A string that may be empty (the key must still be present and a string)."""
    value = s.data.get(name)
    if not isinstance(value, str):
        raise ConfigError(s.key(name), f"must be a string, got {value!r}")
    if len(value) > max_len:
        raise ConfigError(s.key(name), f"must be at most {max_len} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ConfigError(s.key(name), "must not contain control characters")
    return value.strip()


def _abs_path(s: Section, name: str, optional: bool = False) -> str:
    value = _opt_str(s, name, 4096)
    if optional and not value:
        return ""
    if not os.path.isabs(value):
        raise ConfigError(s.key(name), "must be an absolute path")
    return value


def _portal(raw: Mapping[str, Any]) -> PortalConfig:
    s = Section(raw, "portal", set(PORTAL_KEYS))
    hostname = _opt_str(s, "hostname", 253).lower().rstrip(".")
    if hostname:
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            pass
        else:
            raise ConfigError(
                s.key("hostname"),
                "must be a DNS name, not an address (leave it empty to use the LAN address)",
            )
        if not _HOSTNAME.match(hostname):
            raise ConfigError(s.key("hostname"), f"{hostname!r} is not a valid DNS name")
    cert = _abs_path(s, "tls_cert", optional=True)
    key = _abs_path(s, "tls_key", optional=True)
    if bool(cert) != bool(key):
        raise ConfigError(
            s.key("tls_key" if cert else "tls_cert"), "tls_cert and tls_key are set together"
        )
    if cert and not hostname:
        raise ConfigError(s.key("hostname"), "HTTPS needs a hostname the certificate is for")
    venue = _opt_str(s, "venue_info_url", 255)
    if venue and not re.match(r"^https?://[^\s/?#]+[^\s]*$", venue):
        raise ConfigError(s.key("venue_info_url"), "must be an http:// or https:// URL")
    user = _opt_str(s, "user", 32)
    if user and not _USER.match(user):
        raise ConfigError(s.key("user"), f"{user!r} is not a valid user name")
    return PortalConfig(
        hostname=hostname,
        https_port=s.int("https_port", 1, 65535),
        tls_cert=cert,
        tls_key=key,
        contact=_opt_str(s, "contact", 200),
        terms=_opt_str(s, "terms", 2000),
        venue_info_url=venue,
        user=user,
        workers=s.int("workers", 0, 16),
        threads=s.int("threads", 1, 32),
        read_timeout=s.int("read_timeout", 1, 300),
        secret_key_file=_abs_path(s, "secret_key_file"),
        voucher_key_file=_abs_path(s, "voucher_key_file"),
        max_body_bytes=s.int("max_body_bytes", 1024, 1 << 20),
        voucher_attempts=s.int("voucher_attempts", 1, 100),
        voucher_window_seconds=s.int("voucher_window_seconds", 1, 3600),
        voucher_cooldown_seconds=s.int("voucher_cooldown_seconds", 1, 86400),
        voucher_address_attempts=s.int("voucher_address_attempts", 1, 1000),
        voucher_address_window_seconds=s.int("voucher_address_window_seconds", 1, 86400),
        voucher_gateway_attempts=s.int("voucher_gateway_attempts", 1, 100000),
        voucher_gateway_window_seconds=s.int("voucher_gateway_window_seconds", 1, 600),
        voucher_takeover_hours=s.int("voucher_takeover_hours", 1, 720),
        free_devices_per_address=s.int("free_devices_per_address", 1, 100),
        device_cookie_days=s.int("device_cookie_days", 1, 400),
        free_remember_acceptance=s.str("free_remember_acceptance", _FREE_REMEMBER, "day or never"),
    )


def _packages(raw: Mapping[str, Any], tiers: Mapping[str, Tier]) -> dict[str, PackageConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError("packages", "must be a table of [packages.NAME] tables")
    packages: dict[str, PackageConfig] = {}
    for name, table in raw.items():
        if not _NAME.match(name):
            raise ConfigError(
                f"packages.{name}", "package names are lower-case letters, digits, - and _"
            )
        s = Section(table, f"packages.{name}", set(PACKAGE_KEYS))
        for key in ("price", "tier"):
            if key not in table:
                raise ConfigError(s.key(key), "missing")
        online = "online_minutes" in table or "valid_days" in table
        if online and "hours" in table:
            raise ConfigError(s.key("hours"), "give hours, or online_minutes and valid_days")
        for key in ("online_minutes", "valid_days") if online else ("hours",):
            if key not in table:
                raise ConfigError(s.key(key), "missing")
        full = {
            "title": name,
            "data_mb": 0,
            "devices": 1,
            "shelf_days": 0,
            "auto_resume": True,
            **table,
        }
        s = Section(full, f"packages.{name}")
        tier = s.str("tier")
        if tier not in tiers:
            raise ConfigError(
                s.key("tier"), f"no such tier {tier!r} (known: {', '.join(sorted(tiers))})"
            )
        title = _opt_str(s, "title", 40)
        if not title:
            raise ConfigError(s.key("title"), "must be a non-empty string")
        packages[name] = PackageConfig(
            name=name,
            title=title,
            price=s.int("price", 0, 100_000_000),
            tier=tier,
            hours=s.int("valid_days", 1, 366) * 24 if online else s.int("hours", 1, 8784),
            data_mb=s.int("data_mb", 0, 10_000_000),
            devices=s.int("devices", 1, 16),
            shelf_days=s.int("shelf_days", 0, 3650),
            online_minutes=s.int("online_minutes", 1, 527_040) if online else 0,
            valid_days=s.int("valid_days", 1, 366) if online else 0,
            auto_resume=_bool(s, "auto_resume"),
        )
    return packages


def _bool(s: Section, name: str) -> bool:
    value = s.data[name]
    if not isinstance(value, bool):
        raise ConfigError(s.key(name), "must be true or false")
    return value


def _flag(full: Section, name: str) -> bool:
    """A true/false key of a section read with its defaults; the error shows what was given
    (unlike a package's flags, checked by ``_bool``)."""
    value = full.data[name]
    if not isinstance(value, bool):
        raise ConfigError(full.key(name), f"must be true or false, got {value!r}")
    return value


def _plain_http_url(url: str) -> bool:
    """An http:// or https:// URL to a host, with no query, fragment, user, password or space:
    what the sync agent and the summary sender may be pointed at."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and not parts.username
        and not parts.password
        and " " not in url
    )


def _sync(raw: Mapping[str, Any]) -> SyncConfig:
    s = Section(raw, "sync", set(DEFAULTS["sync"]))
    full = Section({**DEFAULTS["sync"], **raw}, "sync")
    url = _opt_str(full, "upstream_url", 500).rstrip("/")
    if url:
        if not _plain_http_url(url):
            raise ConfigError(
                s.key("upstream_url"),
                f"{url!r} is not an http:// or https:// URL without query or user",
            )
        from urllib.parse import urlsplit

        try:
            _ = urlsplit(url).port  # urllib checks the port only when asked
        except ValueError:
            raise ConfigError(s.key("upstream_url"), f"{url!r} has a bad port") from None
    gateway_id = _opt_str(full, "gateway_id", 63)
    if gateway_id and not _GATEWAY_ID.match(gateway_id):
        raise ConfigError(
            s.key("gateway_id"),
            f"{gateway_id!r} is not a valid gateway id (2-63 of a-z, 0-9, '.', '_', '-')",
        )
    secret = _opt_str(full, "secret", 256)
    if secret and (len(secret) < 32 or not _TOKEN.match(secret)):
        raise ConfigError(s.key("secret"), "must be at least 32 printable characters, no spaces")
    token = _opt_str(full, "api_token", 256)
    if token and (len(token) < 16 or not _TOKEN.match(token)):
        raise ConfigError(s.key("api_token"), "must be at least 16 printable characters, no spaces")
    if url:
        for name, value in (("gateway_id", gateway_id), ("secret", secret)):
            if not value:
                raise ConfigError(s.key(name), "must be set when sync.upstream_url is")
    cert_zone = _opt_str(full, "cert_zone", 200).lower().rstrip(".")
    if cert_zone:
        if not url:
            raise ConfigError(s.key("cert_zone"), "needs sync.upstream_url (the collector)")
        if not _HOSTNAME.match(cert_zone) or "." not in cert_zone:
            raise ConfigError(s.key("cert_zone"), f"{cert_zone!r} is not a DNS zone")
        if not re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", gateway_id):
            raise ConfigError(
                s.key("gateway_id"),
                f"{gateway_id!r} cannot be a DNS name (a-z, 0-9, '-' only) for sync.cert_zone",
            )
    cert_dir = _opt_str(full, "cert_dir", 500)
    if not os.path.isabs(cert_dir):
        raise ConfigError(s.key("cert_dir"), "must be an absolute path")
    return SyncConfig(
        upstream_url=url,
        gateway_id=gateway_id,
        secret=secret,
        interval_seconds=full.int("interval_seconds", 1, 86400),
        max_batch_kb=full.int("max_batch_kb", 1, 1024),
        timeout_seconds=full.int("timeout_seconds", 1, 600),
        backoff_max_seconds=full.int("backoff_max_seconds", 1, 86400),
        health_seconds=full.int("health_seconds", 1, 86400),
        cert_zone=cert_zone,
        cert_dir=cert_dir,
        api_token=token,
        restart_above_mb=_restart_above(full),
    )


def _operator(raw: Mapping[str, Any]) -> OperatorConfig:
    s = Section(raw, "operator", set(DEFAULTS["operator"]))
    full = Section({**DEFAULTS["operator"], **raw}, "operator")
    flags = {name: _flag(full, name) for name in ("enabled", "allow_lan", "lan_plain_http")}
    sold_at = full.data["sold_at"]
    if sold_at not in ("kasir", "first-use"):
        raise ConfigError(s.key("sold_at"), f'must be "kasir" or "first-use", got {sold_at!r}')
    nets = []
    for i, entry in enumerate(full.list("management_networks")):
        try:
            nets.append(str(ipaddress.ip_network(entry, strict=False)))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{s.key('management_networks')}[{i}]",
                f'{entry!r} is not an IP network like "192.168.88.0/24"',
            ) from None
    leases = _abs_path(full, "leases_file", optional=True)
    return OperatorConfig(
        enabled=flags["enabled"],
        sold_at=sold_at,
        management_networks=tuple(nets),
        allow_lan=flags["allow_lan"],
        lan_plain_http=flags["lan_plain_http"],
        leases_file=leases,
        session_hours=full.int("session_hours", 1, 720),
        idle_minutes=full.int("idle_minutes", 1, 1440),
        login_attempts=full.int("login_attempts", 1, 100),
        login_ip_attempts=full.int("login_ip_attempts", 1, 1000),
        login_window_seconds=full.int("login_window_seconds", 10, 86400),
        login_lockout_seconds=full.int("login_lockout_seconds", 10, 86400),
        login_ceiling=full.int("login_ceiling", 1, 100000),
        max_batch=full.int("max_batch", 1, 5000),
    )


def _privacy(raw: Mapping[str, Any]) -> PrivacyConfig:
    s = Section(raw, "privacy", set(DEFAULTS["privacy"]))
    full = Section({**DEFAULTS["privacy"], **raw}, "privacy")
    key = _opt_str(full, "pseudonym_key", 256)
    if key and (len(key) < 32 or not _TOKEN.match(key)):
        raise ConfigError(
            s.key("pseudonym_key"), "must be at least 32 printable characters, no spaces (or empty)"
        )
    period = full.str("pseudonym_period")
    if period not in PSEUDONYM_PERIODS:
        raise ConfigError(
            s.key("pseudonym_period"), f"must be one of {', '.join(PSEUDONYM_PERIODS)}"
        )
    return PrivacyConfig(
        retention_days=full.int("retention_days", 1, 3650),
        pseudonym_key=key,
        pseudonym_period=period,
    )


PSEUDONYM_PERIODS = ("month", "week", "day")


def _printer(raw: Mapping[str, Any]) -> PrinterConfig:
    s = Section(raw, "printer", set(DEFAULTS["printer"]))
    full = Section({**DEFAULTS["printer"], **raw}, "printer")
    enabled = _flag(full, "enabled")
    width = full.data["width_mm"]
    if width not in (58, 80) or isinstance(width, bool):
        raise ConfigError(s.key("width_mm"), f"must be 58 or 80, got {width!r}")
    device = full.str("device")
    if not device.startswith("/"):
        raise ConfigError(s.key("device"), f"must be an absolute path, got {device!r}")
    return PrinterConfig(enabled=enabled, device=device, width_mm=width)


_BOT_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,100}$")
_CHAT_ID = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _summary(raw: Mapping[str, Any]) -> SummaryConfig:
    s = Section(raw, "summary", set(DEFAULTS["summary"]))
    full = Section({**DEFAULTS["summary"], **raw}, "summary")
    enabled = _flag(full, "enabled")
    # The token is a password: no error message repeats it.
    token = full.data["telegram_bot_token"]
    if not isinstance(token, str) or (token and not _BOT_TOKEN.match(token)):
        raise ConfigError(
            s.key("telegram_bot_token"),
            "is not a bot token as @BotFather gives it (digits, a colon, 20-100 letters)",
        )
    chat = full.data["telegram_chat_id"]
    if isinstance(chat, int) and not isinstance(chat, bool):
        chat = str(chat)
    if not isinstance(chat, str) or (chat and not _CHAT_ID.match(chat)):
        raise ConfigError(
            s.key("telegram_chat_id"),
            f"{chat!r} is not a chat id (a number such as 123456789 or -1001234567890, "
            "or @channelname)",
        )
    send_at = full.data["send_at"]
    if not isinstance(send_at, str) or not _HHMM.match(send_at):
        raise ConfigError(s.key("send_at"), f'must be a time like "20:00", got {send_at!r}')
    api_base = full.str("api_base").rstrip("/")
    if not _plain_http_url(api_base):
        raise ConfigError(
            s.key("api_base"), f"{api_base!r} is not an http:// or https:// URL without query"
        )
    if enabled:
        for name, value in (("telegram_bot_token", token), ("telegram_chat_id", chat)):
            if not value:
                raise ConfigError(s.key(name), "must be set when summary.enabled is true")
    hour, minute = (int(x) for x in send_at.split(":"))
    return SummaryConfig(
        enabled=enabled,
        telegram_bot_token=token,
        telegram_chat_id=chat,
        send_at=dt.time(hour, minute),
        api_base=api_base,
    )


def _uplink(raw: Mapping[str, Any], sync_raw: Mapping[str, Any]) -> UplinkConfig:
    s = Section(raw, "uplink", set(DEFAULTS["uplink"]))
    full = Section({**DEFAULTS["uplink"], **raw}, "uplink")
    targets: list[tuple[str, int]] = []
    for i, item in enumerate(full.list("probe_targets")):
        host, _, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or len(host) > 253:
            raise ConfigError(
                f"{s.key('probe_targets')}[{i}]", f'{item!r} is not HOST:PORT (e.g. "1.1.1.1:53")'
            )
        targets.append((host, int(port)))
    if not targets:
        url = sync_raw.get("upstream_url") if isinstance(sync_raw, Mapping) else None
        if isinstance(url, str) and url:
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            try:
                url_port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:  # _sync names the bad URL
                url_port = 0
            if parts.hostname and url_port:
                targets.append((parts.hostname, url_port))
    return UplinkConfig(
        probe_targets=tuple(targets),
        probe_seconds=full.float("probe_seconds", 0.05, 3600.0),
        probe_timeout_seconds=full.float("probe_timeout_seconds", 0.05, 60.0),
        down_after=full.int("down_after", 1, 1000),
        up_after=full.int("up_after", 1, 1000),
        walled_hosts_dir=_abs_path(full, "walled_hosts_dir", optional=True),
    )


def _radius(
    raw: Mapping[str, Any], tiers: Mapping[str, Tier], village: VillageConfig
) -> RadiusConfig:
    s = Section(raw, "radius", set(DEFAULTS["radius"]))
    full = Section({**DEFAULTS["radius"], **raw}, "radius")
    flags = {name: _flag(full, name) for name in ("enabled", "require_message_authenticator")}
    servers = []
    for i, entry in enumerate(full.list("servers")):
        host, sep, port = (entry if isinstance(entry, str) else "").partition(":")
        try:
            address = str(ipaddress.IPv4Address(host))
            number = int(port) if sep else 1812
            if not 1 <= number <= 65535:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"{s.key('servers')}[{i}]",
                f'{entry!r} is not an IPv4 address with an optional port, like "10.0.0.5:1812"',
            ) from None
        servers.append(RadiusServer(address, number))
    if flags["enabled"] and not servers:
        raise ConfigError(s.key("servers"), "give at least one server when radius is enabled")
    choices = {}
    for name, allowed in (
        ("data_limit", _DATA_LIMITS),
        ("offline", _OFFLINE),
        ("calling_station_id", _CALLING_STATION),
    ):
        value = full.data[name]
        if value not in allowed:
            raise ConfigError(
                s.key(name), f"must be {' or '.join(repr(a) for a in allowed)}, got {value!r}"
            )
        choices[name] = value
    tier = full.str("tier")
    if flags["enabled"] and tier not in tiers:
        raise ConfigError(s.key("tier"), f"no such tier {tier!r} (known: {', '.join(tiers)})")
    nas_ip = _opt_str(full, "nas_ip_address", 15)
    listen = _opt_str(full, "coa_listen", 15)
    for name, value in (("nas_ip_address", nas_ip), ("coa_listen", listen)):
        if value:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ConfigError(s.key(name), f"{value!r} is not an IPv4 address") from None
    secret_file = _abs_path(full, "secret_file", optional=not flags["enabled"])
    return RadiusConfig(
        enabled=flags["enabled"],
        servers=tuple(servers),
        acct_port=full.int("acct_port", 1, 65535),
        secret_file=secret_file,
        timeout_seconds=full.float("timeout_seconds", 0.2, 30.0),
        attempts=full.int("attempts", 1, 10),
        nas_identifier=_opt_str(full, "nas_identifier", 64) or village.name[:64],
        nas_ip_address=nas_ip,
        tier=tier,
        data_limit=choices["data_limit"],
        interim_seconds=full.int("interim_seconds", 10, 86400),
        offline=choices["offline"],
        cache_hours=full.int("cache_hours", 1, 720),
        calling_station_id=choices["calling_station_id"],
        coa_port=full.int("coa_port", 0, 65535),
        coa_listen=listen,
        coa_window_seconds=full.int("coa_window_seconds", 10, 3600),
        require_message_authenticator=flags["require_message_authenticator"],
    )


def validate(data: Mapping[str, Any], source: str = "defaults") -> Config:
    known = set(DEFAULTS) | {
        "packages",
        "portal",
        "sync",
        "privacy",
        "collector",
        "wifi",
        "dhcp",
        "operator",
        "management",
        "demo",
        "radius",
        "printer",
        "summary",
        "uplink",
        "policy",
    }
    for key in data:
        if key not in known:
            raise ConfigError(key, "unknown section")
    db = Section(data["database"], "database", set(DEFAULTS["database"]))
    url = db.str("url")
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ConfigError(db.key("url"), "must be a sqlite: or postgresql: URL")
    ctl = Section(data["control"], "control", {"socket", "group"})
    sock = ctl.str("socket")
    if not os.path.isabs(sock):
        raise ConfigError(ctl.key("socket"), "must be an absolute path")
    gw = Section(data["gateway"], "gateway", set(DEFAULTS["gateway"]))
    leaf = gw.str("leaf_qdisc")
    if leaf not in ("auto", "fq_codel", "pfifo"):
        raise ConfigError(gw.key("leaf_qdisc"), "must be one of auto, fq_codel, pfifo")
    tiers = _tiers(data["tiers"])
    network = _network(data["network"])
    portal = _portal(data.get("portal", DEFAULTS["portal"]))
    if network.portal_conn_limit >= portal.threads:
        # One client's slow sockets must never hold every thread of a portal worker.
        raise ConfigError(
            "network.portal_conn_limit",
            f"must be below portal.threads ({portal.threads}): one phone must not be able "
            "to hold every thread of a portal worker",
        )
    return Config(
        village=_village(data["village"]),
        network=network,
        database=DatabaseConfig(url=url, disk_warning_pct=db.int("disk_warning_pct", 1, 100)),
        control=ControlConfig(socket=sock, group=ctl.str("group")),
        gateway=GatewayConfig(
            table=gw.str("table", re.compile(r"^[a-z][a-z0-9_]{0,31}$"), "table name"),
            tick_seconds=gw.float("tick_seconds", 0.2, 60.0),
            flush_seconds=gw.int("flush_seconds", 1, 3600),
            leaf_qdisc=leaf,
            full_look_seconds=gw.float("full_look_seconds", 0.0, 3600.0),
            clock_step_seconds=gw.float("clock_step_seconds", 1.0, 86400.0),
            ntp_servers=_ntp_servers(gw, "ntp_servers"),
            fallback_ntp_servers=_ntp_servers(gw, "fallback_ntp_servers"),
            collector_time_step_seconds=_collector_time_step(gw),
            metrics_listen=_metrics_listen(gw, network, portal),
            trim_seconds=gw.float("trim_seconds", 10.0, 86400.0),
            restart_above_mb=_restart_above(gw),
        ),
        tiers=tiers,
        portal=portal,
        packages=_packages(data.get("packages", {}), tiers),
        sync=_sync(data.get("sync", DEFAULTS["sync"])),
        privacy=_privacy(data.get("privacy", DEFAULTS["privacy"])),
        operator=_operator(data.get("operator", DEFAULTS["operator"])),
        wifi=_wifi(data.get("wifi", DEFAULTS["wifi"]), _network(data["network"])),
        dhcp=_dhcp(data.get("dhcp", DEFAULTS["dhcp"]), _network(data["network"])),
        management=_management(
            data.get("management", DEFAULTS["management"]),
            _network(data["network"]),
            _wifi(data.get("wifi", DEFAULTS["wifi"]), _network(data["network"])),
        ),
        radius=_radius(data.get("radius", DEFAULTS["radius"]), tiers, _village(data["village"])),
        printer=_printer(data.get("printer", DEFAULTS["printer"])),
        summary=_summary(data.get("summary", DEFAULTS["summary"])),
        uplink=_uplink(data.get("uplink", DEFAULTS["uplink"]), data.get("sync", {})),
        policy=_policy(data.get("policy", DEFAULTS["policy"])),
        dns_filter=_dns_filter(data.get("dns_filter", {})),
        source=source,
        raw=data,
    )


def _policy(raw: Mapping[str, Any]) -> PolicyConfig:
    Section(raw, "policy", set(DEFAULTS["policy"]))
    full = Section({**DEFAULTS["policy"], **raw}, "policy")
    key = full.data["public_key"]
    if not isinstance(key, str):
        raise ConfigError(full.key("public_key"), "must be text")
    if key:
        import base64
        import binascii

        try:
            raw_key = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw_key = b""
        if len(raw_key) != 32:
            raise ConfigError(
                full.key("public_key"),
                "is not an Ed25519 public key (base64 of 32 bytes, as printed by "
                "`hotspot collector policy keygen`)",
            )
    return PolicyConfig(public_key=key.strip(), state_file=_abs_path(full, "state_file"))


def _dns_filter(raw: Mapping[str, Any]) -> DnsFilterConfig:
    Section(raw, "dns_filter", set(DEFAULTS["dns_filter"]))
    full = Section({**DEFAULTS["dns_filter"], **raw}, "dns_filter")
    sha = full.data["list_sha256"]
    if not isinstance(sha, str) or (sha and not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise ConfigError(full.key("list_sha256"), 'must be "" or 64 lower-case hex digits')
    return DnsFilterConfig(
        enabled=_bool(full, "enabled"),
        list_sha256=sha,
        list_size=full.int("list_size", 0, 1 << 40),
        list_count=full.int("list_count", 0, 100_000_000),
        list_dir=_abs_path(full, "list_dir"),
        conf_dir=_abs_path(full, "conf_dir", optional=True),
        refuse_doh_addresses=_bool(full, "refuse_doh_addresses"),
    )


def _garden_domains(s: Section) -> tuple[str, ...]:
    name = "walled_garden_domains"
    values = s.data.get(name, [])
    if not isinstance(values, list):
        raise ConfigError(s.key(name), "must be a list")
    if len(values) > 256:
        raise ConfigError(s.key(name), "at most 256 domains")
    out: list[str] = []
    for i, entry in enumerate(values):
        key = f"{s.key(name)}[{i}]"
        if not isinstance(entry, str):
            raise ConfigError(key, f"{entry!r} is not a domain name")
        domain = entry.strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(domain)
        except ValueError:
            pass
        else:
            raise ConfigError(key, f"{entry!r} is an address: put it in network.walled_garden")
        if not _HOSTNAME.match(domain) or "." not in domain:
            raise ConfigError(key, f'{entry!r} is not a domain name like "belajar.id"')
        if domain in out:
            raise ConfigError(key, f"{domain!r} is listed twice")
        out.append(domain)
    return tuple(out)


def _with_default(s: Section) -> Section:
    """[network] with the data-path keys a hand-made table may lack filled in."""
    return Section({**DEFAULTS["network"], **s.data}, s.prefix)


def _probe_hosts(s: Section) -> tuple[str, ...]:
    name = "captive_probe_hosts"
    values = _with_default(s).data[name]
    if not isinstance(values, list):
        raise ConfigError(s.key(name), "must be a list")
    if len(values) > 64:
        raise ConfigError(s.key(name), "at most 64 host names")
    out: list[str] = []
    for i, entry in enumerate(values):
        key = f"{s.key(name)}[{i}]"
        host = entry.strip().lower().rstrip(".") if isinstance(entry, str) else ""
        if not _HOSTNAME.match(host) or "." not in host:
            raise ConfigError(key, f'{entry!r} is not a host name like "captive.apple.com"')
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            raise ConfigError(key, f"{entry!r} is an address, not a host name")
        if host not in out:
            out.append(host)
    return tuple(out)


def _walled_dns_port(s: Section) -> int:
    # Above 1023: the walled resolver runs without CAP_NET_BIND_SERVICE.
    port = _with_default(s).int("walled_dns_port", 1024, 65535)
    if port == s.data.get("portal_port"):
        raise ConfigError(s.key("walled_dns_port"), f"{port} is network.portal_port")
    return port


def _wan_tcp_ports(s: Section) -> tuple[int, ...]:
    ports: list[int] = []
    for i, port in enumerate(_with_default(s).list("wan_tcp_ports")):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{s.key('wan_tcp_ports')}[{i}]", f"{port!r} is not a TCP port")
        if port not in ports:
            ports.append(port)
    return tuple(ports)


def _lan_ports(s: Section, lan: str, wan: str) -> tuple[str, ...]:
    name = "lan_ports"
    values = s.data.get(name, [])
    if not isinstance(values, list):
        raise ConfigError(s.key(name), "must be a list")
    out: list[str] = []
    for i, port in enumerate(values):
        key = f"{s.key(name)}[{i}]"
        if not isinstance(port, str) or not _IFNAME.match(port):
            raise ConfigError(key, f"{port!r} is not a valid interface name")
        if port == wan:
            raise ConfigError(
                key, f"{port!r} is network.wan_interface: the uplink cannot be a LAN port"
            )
        if port == lan or port in out:
            raise ConfigError(key, f"{port!r} is listed twice or is the bridge itself")
        out.append(port)
    return tuple(out)


def _wifi(raw: Mapping[str, Any], network: NetworkConfig) -> WifiConfig:
    s = Section(raw, "wifi", set(DEFAULTS["wifi"]))
    full = Section({**DEFAULTS["wifi"], **raw}, "wifi")
    enabled = _flag(full, "enabled")
    iface = full.str("interface", _IFNAME, "interface name")
    if iface in (network.lan_interface, network.wan_interface) or iface in network.lan_ports:
        raise ConfigError(
            s.key("interface"),
            f"{iface!r} is already network.lan_interface, wan_interface or one of lan_ports",
        )
    ssid = full.data["ssid"]
    if not isinstance(ssid, str) or not ssid.strip():
        raise ConfigError(s.key("ssid"), "must be a non-empty string")
    if len(ssid.encode()) > 32:
        raise ConfigError(s.key("ssid"), f"must be at most 32 bytes, got {len(ssid.encode())}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in ssid):
        raise ConfigError(s.key("ssid"), "must not contain control characters")
    channel = full.int("channel", 1, 165)
    if channel not in WIFI_CHANNELS:
        raise ConfigError(
            s.key("channel"),
            f"{channel} is not a WiFi channel used here (1-13; 5 GHz: 36-48, 149-165)",
        )
    country = full.str("country").strip().upper()
    if not _COUNTRY.match(country):
        raise ConfigError(
            s.key("country"), f'{full.data["country"]!r} is not a two-letter country code like "ID"'
        )
    return WifiConfig(enabled=enabled, interface=iface, ssid=ssid, channel=channel, country=country)


def _management(
    raw: Mapping[str, Any], network: NetworkConfig, wifi: WifiConfig
) -> ManagementConfig:
    s = Section(raw, "management", set(DEFAULTS["management"]))
    full = Section({**DEFAULTS["management"], **raw}, "management")
    address = _opt_str(full, "address", 64)
    ssid, passphrase = _opt_str(full, "ssid", 64), _opt_str(full, "passphrase", 63)
    wired = _opt_str(full, "wired_port", 15)
    op_iface = full.str("wifi_interface", _IFNAME, "interface name")
    if not address:
        if ssid or wired:
            raise ConfigError(s.key("address"), "the operator SSID and port need an address")
        return ManagementConfig()
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ConfigError(
            s.key("address"), f'{address!r} is not an address with prefix like "192.168.88.1/24"'
        ) from None
    if iface.network.prefixlen > 29 or iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise ConfigError(s.key("address"), f"{address!r}: a host address in a /29 or larger")
    if iface.network.overlaps(network.lan_network):
        raise ConfigError(s.key("address"), f"{address!r} overlaps the LAN {network.lan_network}")
    if ssid:
        if len(ssid.encode()) > 32 or any(ord(ch) < 32 or ord(ch) == 127 for ch in ssid):
            raise ConfigError(s.key("ssid"), "must be at most 32 bytes, no control characters")
        if ssid == wifi.ssid:
            raise ConfigError(s.key("ssid"), "must differ from the villagers' wifi.ssid")
        if not 8 <= len(passphrase) <= 63 or any(not 32 <= ord(ch) < 127 for ch in passphrase):
            raise ConfigError(
                s.key("passphrase"), "a WPA2 passphrase is 8 to 63 printable ASCII characters"
            )
        if not wifi.enabled:
            raise ConfigError(s.key("ssid"), "the operator SSID needs wifi.enabled = true")
        taken = (network.lan_interface, network.wan_interface, wifi.interface, *network.lan_ports)
        if op_iface in taken:
            raise ConfigError(s.key("wifi_interface"), f"{op_iface!r} is already in use")
    if wired:
        if not _IFNAME.match(wired):
            raise ConfigError(s.key("wired_port"), f"{wired!r} is not a valid interface name")
        if wired in (network.lan_interface, network.wan_interface, wifi.interface):
            raise ConfigError(s.key("wired_port"), f"{wired!r} is the LAN, the WAN or the WiFi")
    return ManagementConfig(
        address=str(iface),
        ssid=ssid,
        passphrase=passphrase,
        wifi_interface=op_iface,
        wired_port=wired,
    )


_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d{1,5})$")


def _metrics_listen(gw: Section, network: NetworkConfig, portal: PortalConfig) -> str:
    """``[gateway] metrics_listen``: "" (off) or an address literal and port. The metrics
    name sessions, logins and refusals: a villager must never reach them, so neither a
    wildcard nor a LAN address, and not a port the LAN's input chain lets in (a packet from
    the LAN to any of the gateway's addresses meets that chain: docs/security.md)."""
    value = _opt_str(Section({**DEFAULTS["gateway"], **gw.data}, "gateway"), "metrics_listen", 64)
    if not value:
        return ""
    key = gw.key("metrics_listen")
    m = _LISTEN.match(value)
    try:
        ip = ipaddress.ip_address((m.group("v6") or m.group("v4")) if m else "")
    except ValueError:
        ip = None
    if m is None or ip is None or not 1 <= int(m.group("port")) <= 65535:
        raise ConfigError(key, f'{value!r} is not ADDRESS:PORT like "127.0.0.1:9105"')
    port = int(m.group("port"))
    if ip.is_unspecified:
        raise ConfigError(key, f"{value!r} listens on every address, the LAN's too")
    if ip == network.gateway_ip or ip in network.lan_network:
        raise ConfigError(key, f"{value!r} is on the villagers' LAN {network.lan_network}")
    lan_open = {53, 67, network.walled_dns_port, network.portal_port, portal.https_port}
    if port in lan_open or port in network.lan_tcp_ports:
        raise ConfigError(
            key, f"port {port} is open to the LAN (portal, DNS, DHCP or lan_tcp_ports)"
        )
    return value


def _dhcp_address(
    s: Section, name: str, net: ipaddress.IPv4Network
) -> ipaddress.IPv4Address | None:
    value = _opt_str(s, name, 15)
    if not value:
        return None
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(s.key(name), f"{value!r} is not an IPv4 address") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise ConfigError(
            s.key(name), f"{value} is not a host address of the LAN {net} (network.lan_address)"
        )
    return addr


def _auto_range(
    net: ipaddress.IPv4Network, gw: ipaddress.IPv4Address
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The larger block of hosts beside the gateway; above it, hosts below 10 stay free."""
    first, last = net.network_address + 1, net.broadcast_address - 1
    if int(last) - int(gw) >= int(gw) - int(first):
        start, end = gw + 1, last
        if int(end) - int(net.network_address + 10) >= 16:
            start = max(start, net.network_address + 10)
        return start, end
    return first, gw - 1


def _dhcp(raw: Mapping[str, Any], network: NetworkConfig) -> DhcpConfig:
    s = Section(raw, "dhcp", set(DEFAULTS["dhcp"]))
    full = Section({**DEFAULTS["dhcp"], **raw}, "dhcp")
    net, gw = network.lan_network, network.gateway_ip
    start = _dhcp_address(full, "range_start", net)
    end = _dhcp_address(full, "range_end", net)
    auto_start, auto_end = _auto_range(net, gw)
    start, end = start or auto_start, end or auto_end
    if start > end:
        raise ConfigError(s.key("range_end"), f"{end} is below dhcp.range_start {start}")
    if start <= gw <= end:
        raise ConfigError(
            s.key("range_start"), f"the range {start}-{end} contains the gateway's own address {gw}"
        )
    servers = []
    for i, entry in enumerate(full.list("upstream_dns")):
        try:
            servers.append(str(ipaddress.ip_address(entry)))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{s.key('upstream_dns')}[{i}]", f"{entry!r} is not an IP address"
            ) from None
    url = _opt_str(full, "captive_api_url", 255)
    if url:
        # DHCP option 114 holds at most 255 octets; dnsmasq quotes it.
        if (
            not re.match(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[\x21-\x7e]*)?$", url)
            or '"' in url
            or "\\" in url
        ):
            raise ConfigError(
                s.key("captive_api_url"),
                "must be an http:// or https:// URL without spaces or quotes",
            )
    return DhcpConfig(
        range_start=str(start),
        range_end=str(end),
        lease_minutes=full.int("lease_minutes", 2, 10080),
        upstream_dns=tuple(servers),
        captive_api_url=url,
    )


def database_path(url: str) -> Path | None:
    """The file behind a sqlite URL (None for memory or non-sqlite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return Path(path) if path and path != ":memory:" else None
