"""The collector's ``[alerts]`` table: when a village's condition becomes an alert, who is
told and how, and when the province does not want to be woken (collector.alerts uses it)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from collector.models import AlertKind
from hotspot.config import Section
from hotspot.errors import ConfigError

# Critical by default: a village whose villagers are cut off, or whose board may corrupt its
# storage right now. Everything else waits for the end of quiet hours.
DEFAULT_CRITICAL = ("not_reporting", "uplink_down", "undervoltage")

DEFAULTS: dict[str, Any] = {
    "interval_seconds": 60,  # one evaluation this often (in the server, or `alerts run --loop`)
    "evaluate_in_server": True,  # each `collector run` worker evaluates (False: a job does)
    "not_reporting_minutes": 30,
    "raise_after_minutes": 10,  # a condition must last this long to raise (no flapping)
    "clear_after_minutes": 15,  # ... and be gone this long to clear
    "disk_pct": 90,
    "temp_c": 80,
    "uplink_window_minutes": 60,
    "uplink_loss_pct": 20,  # share of failed uplink probes in the window
    "uplink_slow_ms": 3000,  # median connect time in the window
    "critical": list(DEFAULT_CRITICAL),
    "quiet_hours": "",  # e.g. "22:00-06:00", in [collector] timezone; "" = never quiet
    "smtp_host": "",  # "" = no e-mail
    "smtp_port": 25,
    "smtp_starttls": False,
    "smtp_user": "",
    "smtp_password": "",
    "mail_from": "hotspot-collector@localhost",
    "mail_to": [],
    "webhook_url": "",  # "" = no webhook
    "webhook_secret": "",
    "timeout_seconds": 10,  # one SMTP or webhook attempt
}

_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_MAIL = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")


@dataclass(frozen=True)
class AlertsConfig:
    interval_seconds: int = 60
    evaluate_in_server: bool = True
    not_reporting_minutes: int = 30
    raise_after_minutes: int = 10
    clear_after_minutes: int = 15
    disk_pct: int = 90
    temp_c: int = 80
    uplink_window_minutes: int = 60
    uplink_loss_pct: int = 20
    uplink_slow_ms: int = 3000
    critical: frozenset[AlertKind] = frozenset(AlertKind(k) for k in DEFAULT_CRITICAL)
    quiet_start: dt.time | None = None
    quiet_end: dt.time | None = None
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    mail_from: str = "hotspot-collector@localhost"
    mail_to: tuple[str, ...] = ()
    webhook_url: str = ""
    webhook_secret: str = ""
    timeout_seconds: int = 10

    @property
    def email(self) -> bool:
        return bool(self.smtp_host and self.mail_to)

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_url)


def _bool(s: Section, name: str) -> bool:
    value = s.data.get(name)
    if not isinstance(value, bool):
        raise ConfigError(s.key(name), "must be true or false")
    return value


def _text(s: Section, name: str) -> str:
    value = s.data.get(name)
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        raise ConfigError(s.key(name), "must be a string on one line")
    return value


def validate(raw: Mapping[str, Any]) -> AlertsConfig:
    Section(raw, "alerts", set(DEFAULTS))
    s = Section({**DEFAULTS, **raw}, "alerts")
    critical = s.list("critical")
    kinds = {k.value for k in AlertKind}
    for kind in critical:
        if kind not in kinds:
            raise ConfigError(s.key("critical"), f"{kind!r} is not one of {', '.join(kinds)}")
    quiet = _text(s, "quiet_hours")
    start = end = None
    if quiet:
        m = _QUIET.match(quiet)
        if not m or m.group(1, 2) == m.group(3, 4):
            raise ConfigError(s.key("quiet_hours"), f"{quiet!r} is not HH:MM-HH:MM")
        start = dt.time(int(m.group(1)), int(m.group(2)))
        end = dt.time(int(m.group(3)), int(m.group(4)))
    mail_to = s.list("mail_to")
    for addr in mail_to:
        if not isinstance(addr, str) or not _MAIL.match(addr):
            raise ConfigError(s.key("mail_to"), f"{addr!r} is not an e-mail address")
    mail_from = _text(s, "mail_from")
    if not _MAIL.match(mail_from):
        raise ConfigError(s.key("mail_from"), f"{mail_from!r} is not an e-mail address")
    url = _text(s, "webhook_url")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(s.key("webhook_url"), "must be an http:// or https:// URL")
    secret = _text(s, "webhook_secret")
    if url and len(secret) < 16:
        raise ConfigError(s.key("webhook_secret"), "at least 16 characters with webhook_url")
    return AlertsConfig(
        interval_seconds=s.int("interval_seconds", 1, 86_400),
        evaluate_in_server=_bool(s, "evaluate_in_server"),
        not_reporting_minutes=s.int("not_reporting_minutes", 1, 100_000),
        raise_after_minutes=s.int("raise_after_minutes", 0, 1440),
        clear_after_minutes=s.int("clear_after_minutes", 0, 1440),
        disk_pct=s.int("disk_pct", 1, 100),
        temp_c=s.int("temp_c", 20, 150),
        uplink_window_minutes=s.int("uplink_window_minutes", 5, 1440),
        uplink_loss_pct=s.int("uplink_loss_pct", 1, 100),
        uplink_slow_ms=s.int("uplink_slow_ms", 1, 600_000),
        critical=frozenset(AlertKind(k) for k in critical),
        quiet_start=start,
        quiet_end=end,
        smtp_host=_text(s, "smtp_host"),
        smtp_port=s.int("smtp_port", 1, 65535),
        smtp_starttls=_bool(s, "smtp_starttls"),
        smtp_user=_text(s, "smtp_user"),
        smtp_password=_text(s, "smtp_password"),
        mail_from=mail_from,
        mail_to=tuple(mail_to),
        webhook_url=url,
        webhook_secret=secret,
        timeout_seconds=s.int("timeout_seconds", 1, 300),
    )
