"""The collector's own configuration file (``/etc/hotspot/collector.toml``)::

    [collector]
    database_url = "postgresql+psycopg://hotspot@/hotspot?host=/run/postgresql"
    bind = "0.0.0.0:8000"

Found by ``hotspot --config FILE collector …``, else ``$HOTSPOT_COLLECTOR_CONFIG``, else the
default path if it exists, else the built-in defaults (a laptop trial on SQLite). Every key is
validated; a bad or unknown key raises :class:`ConfigError` naming it (exit 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector import alert_config
from collector.alert_config import AlertsConfig
from hotspot.config import Section, merge, read_toml
from hotspot.errors import ConfigError

ENV_CONFIG = "HOTSPOT_COLLECTOR_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/hotspot/collector.toml"

DEFAULTS: dict[str, Any] = {
    "collector": {
        "database_url": "sqlite:////var/lib/hotspot/collector.db",
        "bind": "127.0.0.1:8000",
        "workers": 2,  # gunicorn processes (each with `threads` threads)
        "threads": 4,
        # Seconds a request's headers may take, and the longest stall of a body upload.
        "read_timeout": 30,
        # Days on the dashboard are local days here (WIB, UTC+7, by default).
        "timezone": "Asia/Jakarta",
        # The dashboard's heading: "<title> — <region>" (no province is built in).
        "title": "Hotspot Desa",
        "region": "",
        "language": "id",  # dashboard default: id | en
        "replay_window_seconds": 300,
        "max_body_kb": 1024,  # a compressed request body (gateways send max_batch_kb)
        "max_inflated_kb": 16384,  # what a body may inflate to (gzip bombs stop here)
        "offline_after_minutes": 30,
        "page_size": 1000,  # API pages (a client may ask for up to 10 times this)
        "dashboard_public": False,  # False = the dashboard asks for an API token (Basic auth)
        # Warnings on the dashboard
        "warn_disk_pct": 90,
        "warn_temp_c": 75,
        "warn_mem_pct": 90,
        # GET /metrics for Prometheus (collector/metrics.py), answered only to these networks.
        "metrics": True,
        "metrics_networks": ["127.0.0.0/8", "::1/128"],
        # The Ed25519 key that signs the province's policy (issue #15; `policy keygen`).
        # Only `hotspot collector policy` reads it; the web server never does.
        "policy_key_file": "/etc/hotspot/policy.key",
        # The DNS blocklists `policy publish-list` keeps and GET /policy/v1/lists/<sha256> serves.
        "policy_lists_dir": "/var/lib/hotspot/blocklists-published",
        # Per-device rows (usage, health) are dropped after this many days, a month's
        # partition at a time; the villages' daily roll-ups and monthly sales after the
        # second (at least the first): collector.maintenance.
        "retention_days": 400,
        "rollup_retention_days": 3660,
    },
    "alerts": alert_config.DEFAULTS,
    # Certificates for the gateways through ACME with DNS-01 (issue #15, item 4;
    # collector/certs.py). Off while directory_url is "".
    "acme": {
        "directory_url": "",  # e.g. https://acme-v02.api.letsencrypt.org/directory
        "zone": "",  # the province's zone: gateways are named <gateway-id>.<zone>
        "dns_server": "",  # HOST:PORT of the zone's primary, taking RFC 2136 updates
        "tsig_key_name": "",
        "tsig_algorithm": "hmac-sha256",
        "tsig_secret_file": "/etc/hotspot/acme-tsig.secret",  # base64, as knot/bind print it
        "account_key_file": "/etc/hotspot/acme-account.key",  # made on first use
        "contact_email": "",
        "ca_bundle": "",  # a CA file for the ACME server's HTTPS ("" = the system's)
        "poll_seconds": 30,  # how often each worker looks for pending requests
        "propagation_timeout_seconds": 120,  # for the TXT record at dns_server
        "retry_max_seconds": 21600,  # back-off cap of a failing request
    },
}

_BIND = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class CollectorConfig:
    database_url: str
    bind: str
    workers: int
    threads: int
    read_timeout: int
    timezone: str
    language: str
    replay_window_seconds: int
    max_body_kb: int
    max_inflated_kb: int
    offline_after_minutes: int
    page_size: int
    dashboard_public: bool
    warn_disk_pct: int
    warn_temp_c: int
    warn_mem_pct: int
    policy_key_file: str = "/etc/hotspot/policy.key"
    policy_lists_dir: str = "/var/lib/hotspot/blocklists-published"
    retention_days: int = 400
    rollup_retention_days: int = 3660
    source: str = "defaults"
    title: str = "Hotspot Desa"
    region: str = ""
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    metrics: bool = True
    metrics_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    acme: AcmeConfig = field(default_factory=lambda: AcmeConfig())

    @property
    def metrics_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n) for n in self.metrics_networks]

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_kb * 1024

    @property
    def max_inflated_bytes(self) -> int:
        return self.max_inflated_kb * 1024


_TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")


@dataclass(frozen=True)
class AcmeConfig:
    """``[acme]``: see DEFAULTS. The TSIG secret and the account key stay on the collector."""

    directory_url: str = ""
    zone: str = ""
    dns_server: str = ""
    tsig_key_name: str = ""
    tsig_algorithm: str = "hmac-sha256"
    tsig_secret_file: str = "/etc/hotspot/acme-tsig.secret"
    account_key_file: str = "/etc/hotspot/acme-account.key"
    contact_email: str = ""
    ca_bundle: str = ""
    poll_seconds: int = 30
    propagation_timeout_seconds: int = 120
    retry_max_seconds: int = 21600

    @property
    def enabled(self) -> bool:
        return bool(self.directory_url)

    @property
    def dns_host_port(self) -> tuple[str, int]:
        host, _, port = self.dns_server.rpartition(":")
        return host.strip("[]"), int(port)


def _text(s: Section, name: str) -> str:
    value = s.data.get(name)
    if not isinstance(value, str) or len(value) > 500:
        raise ConfigError(s.key(name), "must be a string")
    return value.strip()


def _acme(raw: Mapping[str, Any]) -> AcmeConfig:
    Section(raw, "acme", set(DEFAULTS["acme"]))
    s = Section({**DEFAULTS["acme"], **raw}, "acme")
    url = _text(s, "directory_url")
    if not url:
        return AcmeConfig()
    if not url.startswith(("https://", "http://")):
        raise ConfigError(s.key("directory_url"), f"{url!r} is not an https:// URL")
    zone = _text(s, "zone").lower().rstrip(".")
    if not re.match(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*$", zone):
        raise ConfigError(s.key("zone"), f"{zone!r} is not a DNS zone like wifi.example.go.id")
    dns_server = check_bind(_text(s, "dns_server"), s.key("dns_server"))
    key_name = _text(s, "tsig_key_name")
    if not key_name:
        raise ConfigError(s.key("tsig_key_name"), "the TSIG key's name is needed for updates")
    algorithm = _text(s, "tsig_algorithm").lower()
    if algorithm not in _TSIG_ALGORITHMS:
        raise ConfigError(s.key("tsig_algorithm"), f"one of {', '.join(_TSIG_ALGORITHMS)}")
    paths = {}
    for name in ("tsig_secret_file", "account_key_file", "ca_bundle"):
        value = _text(s, name)
        if value and not os.path.isabs(value):
            raise ConfigError(s.key(name), "must be an absolute path")
        paths[name] = value
    if not paths["tsig_secret_file"] or not paths["account_key_file"]:
        raise ConfigError(s.key("tsig_secret_file"), "tsig_secret_file and account_key_file")
    return AcmeConfig(
        directory_url=url,
        zone=zone,
        dns_server=dns_server,
        tsig_key_name=key_name,
        tsig_algorithm=algorithm,
        tsig_secret_file=paths["tsig_secret_file"],
        account_key_file=paths["account_key_file"],
        contact_email=_text(s, "contact_email"),
        ca_bundle=paths["ca_bundle"],
        poll_seconds=s.int("poll_seconds", 1, 86400),
        propagation_timeout_seconds=s.int("propagation_timeout_seconds", 1, 3600),
        retry_max_seconds=s.int("retry_max_seconds", 10, 7 * 86400),
    )


def check_bind(value: str, key: str = "collector.bind") -> str:
    m = _BIND.match(value or "")
    if not m or not 1 <= int(m.group("port")) <= 65535:
        raise ConfigError(key, f"{value!r} is not HOST:PORT")
    return value


def validate(data: Mapping[str, Any], source: str = "defaults") -> CollectorConfig:
    for section in data:
        if section not in DEFAULTS:
            raise ConfigError(
                section, "unknown section (the collector's file has [collector], [alerts], [acme])"
            )
    raw = data.get("collector", {})
    Section(raw, "collector", set(DEFAULTS["collector"]))
    s = Section({**DEFAULTS["collector"], **raw}, "collector")
    url = s.str("database_url")
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ConfigError(s.key("database_url"), "must be a sqlite: or postgresql: URL")
    tz = s.str("timezone")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(s.key("timezone"), f"unknown time zone {tz!r}") from None
    lang = s.str("language")
    if lang not in ("id", "en"):
        raise ConfigError(s.key("language"), "must be id or en")
    public = s.data.get("dashboard_public")
    if not isinstance(public, bool):
        raise ConfigError(s.key("dashboard_public"), "must be true or false")
    max_body = s.int("max_body_kb", 1, 65536)
    inflated = s.int("max_inflated_kb", 1, 1 << 20)
    if inflated < max_body:
        raise ConfigError(s.key("max_inflated_kb"), "must be at least collector.max_body_kb")
    title = s.str("title")
    region = s.data.get("region")
    if not isinstance(region, str) or len(title) > 100 or len(region) > 100:
        raise ConfigError(s.key("region"), "title and region: strings of at most 100 characters")
    metrics = s.data.get("metrics")
    if not isinstance(metrics, bool):
        raise ConfigError(s.key("metrics"), "must be true or false")
    retention = s.int("retention_days", 31, 100_000)
    rollup_retention = s.int("rollup_retention_days", 31, 100_000)
    if rollup_retention < retention:
        raise ConfigError(
            s.key("rollup_retention_days"), "must be at least collector.retention_days"
        )
    return CollectorConfig(
        title=title,
        region=region,
        alerts=alert_config.validate(data.get("alerts", {})),
        acme=_acme(data.get("acme", {})),
        metrics=metrics,
        metrics_networks=_networks(s, "metrics_networks"),
        database_url=url,
        bind=check_bind(s.str("bind")),
        workers=s.int("workers", 1, 64),
        threads=s.int("threads", 1, 64),
        read_timeout=s.int("read_timeout", 1, 600),
        timezone=tz,
        language=lang,
        replay_window_seconds=s.int("replay_window_seconds", 10, 86400),
        max_body_kb=max_body,
        max_inflated_kb=inflated,
        offline_after_minutes=s.int("offline_after_minutes", 1, 100_000),
        page_size=s.int("page_size", 10, 100_000),
        dashboard_public=public,
        warn_disk_pct=s.int("warn_disk_pct", 1, 100),
        warn_temp_c=s.int("warn_temp_c", 20, 150),
        warn_mem_pct=s.int("warn_mem_pct", 1, 100),
        policy_key_file=_policy_key_file(s),
        policy_lists_dir=_policy_lists_dir(s),
        retention_days=retention,
        rollup_retention_days=rollup_retention,
        source=source,
    )


def _networks(s: Section, name: str) -> tuple[str, ...]:
    values = s.data.get(name)
    if not isinstance(values, list) or len(values) > 64:
        raise ConfigError(s.key(name), "must be a list of at most 64 networks")
    out = []
    for i, value in enumerate(values):
        try:
            out.append(str(ipaddress.ip_network(value)))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{s.key(name)}[{i}]", f'{value!r} is not a network like "10.0.0.0/8"'
            ) from None
    return tuple(out)


def _policy_lists_dir(s: Section) -> str:
    path = s.str("policy_lists_dir")
    if not os.path.isabs(path):
        raise ConfigError(s.key("policy_lists_dir"), "must be an absolute path")
    return path


def _policy_key_file(s: Section) -> str:
    path = s.str("policy_key_file")
    if not os.path.isabs(path):
        raise ConfigError(s.key("policy_key_file"), "must be an absolute path")
    return path


def load(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> CollectorConfig:
    """Defaults, then ``path`` (or $HOTSPOT_COLLECTOR_CONFIG, or the default file if it
    exists), then ``overrides`` (a mapping like the file's)."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is None:
        path = os.environ.get(ENV_CONFIG) or (
            DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None
        )
    if path is not None:
        data = read_toml(path)
        source = str(path)
    return validate(merge(data, overrides or {}), source=source)
