"""Layered configuration: defaults in code, then the TOML file, then overrides.

Every key is validated at load; the first bad key raises :class:`ConfigError`
naming it, and nothing has been applied anywhere yet.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    },
    "database": {
        "url": "sqlite:////var/lib/hotspot/hotspot.db",
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
}

TIER_KEYS = ("down_kbps", "up_kbps", "session_minutes", "idle_minutes", "daily_minutes", "daily_mb")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Tier:
    name: str
    down_kbps: int
    up_kbps: int
    session_minutes: int  # 0 = no hard timeout
    idle_minutes: int  # 0 = never idle out
    daily_minutes: int  # 0 = no daily time allowance
    daily_mb: int  # 0 = no daily data allowance


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


@dataclass(frozen=True)
class Config:
    village: VillageConfig
    network: NetworkConfig
    database: DatabaseConfig
    control: ControlConfig
    gateway: GatewayConfig
    tiers: Mapping[str, Tier]
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


def load(path: str | os.PathLike[str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
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
    return validate(data, source=source)


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


class _Section:
    """Typed access to one table of the raw config, naming the key in every error."""

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

    def int(self, name: str, lo: int, hi: int) -> int:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.key(name), f"must be between {lo} and {hi}, got {value}")
        return value

    def float(self, name: str, lo: float, hi: float) -> float:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), f"must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.key(name), f"must be between {lo} and {hi}, got {value}")
        return float(value)

    def list(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise ConfigError(self.key(name), "must be a list")
        return value


def _village(raw: Mapping[str, Any]) -> VillageConfig:
    s = _Section(raw, "village", {"name", "timezone"})
    name = s.str("name")
    tz = s.str("timezone")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(s.key("timezone"), f"unknown time zone {tz!r}") from None
    return VillageConfig(name=name, timezone=tz)


def _network(raw: Mapping[str, Any]) -> NetworkConfig:
    s = _Section(raw, "network", set(DEFAULTS["network"]))
    lan = s.str("lan_interface", _IFNAME, "interface name")
    wan = s.str("wan_interface", _IFNAME, "interface name")
    if lan == wan:
        raise ConfigError(s.key("wan_interface"), "must differ from network.lan_interface")
    address = s.str("lan_address")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ConfigError(s.key("lan_address"), f"{address!r} is not an IPv4 address/prefix") from None
    # Client classids are 1:<host index>, and 0xfffe/0xffff are the gateway's own classes.
    if not 17 <= iface.network.prefixlen <= 30:
        raise ConfigError(s.key("lan_address"), "prefix length must be between /17 and /30")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ConfigError(s.key("lan_address"), "gateway address must be a host address of the subnet")
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
            raise ConfigError(f"{s.key('walled_garden')}[{i}]",
                              f"{entry!r} is not an IPv4 address or network") from None
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
    )


def _tiers(raw: Mapping[str, Any]) -> dict[str, Tier]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("tiers", "at least one tier must be defined")
    tiers: dict[str, Tier] = {}
    for name, table in raw.items():
        if not _NAME.match(name):
            raise ConfigError(f"tiers.{name}", "tier names are lower-case letters, digits, - and _")
        s = _Section(table, f"tiers.{name}", set(TIER_KEYS))
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
        )
    return tiers


def validate(data: Mapping[str, Any], source: str = "defaults") -> Config:
    known = set(DEFAULTS) | {"packages", "portal", "sync", "privacy", "collector", "wifi", "dhcp",
                             "operator", "demo"}
    for key in data:
        if key not in known:
            raise ConfigError(key, "unknown section")
    db = _Section(data["database"], "database", {"url"})
    url = db.str("url")
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ConfigError(db.key("url"), "must be a sqlite: or postgresql: URL")
    ctl = _Section(data["control"], "control", {"socket", "group"})
    sock = ctl.str("socket")
    if not os.path.isabs(sock):
        raise ConfigError(ctl.key("socket"), "must be an absolute path")
    gw = _Section(data["gateway"], "gateway", set(DEFAULTS["gateway"]))
    leaf = gw.str("leaf_qdisc")
    if leaf not in ("auto", "fq_codel", "pfifo"):
        raise ConfigError(gw.key("leaf_qdisc"), "must be one of auto, fq_codel, pfifo")
    return Config(
        village=_village(data["village"]),
        network=_network(data["network"]),
        database=DatabaseConfig(url=url),
        control=ControlConfig(socket=sock, group=ctl.str("group")),
        gateway=GatewayConfig(
            table=gw.str("table", re.compile(r"^[a-z][a-z0-9_]{0,31}$"), "table name"),
            tick_seconds=gw.float("tick_seconds", 0.2, 60.0),
            flush_seconds=gw.int("flush_seconds", 1, 3600),
            leaf_qdisc=leaf,
        ),
        tiers=_tiers(data["tiers"]),
        source=source,
        raw=data,
    )


def database_path(url: str) -> Path | None:
    """The file behind a sqlite URL (None for memory or non-sqlite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None
