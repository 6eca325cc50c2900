"""Device-hours written straight into a gateway's database, for tests of what the sync
agent and the collector make of them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from hotspot.model import Device, HourlyUsage


def add_device_hours(
    db: Engine,
    macs: list[str],
    hours: list[dt.datetime],
    *,
    seconds: int,
    bytes_down: int,
    bytes_up: int,
) -> None:
    """One usage row per device and hour; devices not yet known are added, first seen at
    the first hour."""
    with Session(db) as s, s.begin():
        known = set(s.scalars(select(Device.mac)))
        new = [m for m in macs if m not in known]
        if new:
            s.execute(
                insert(Device),
                [
                    {"mac": m, "first_seen": hours[0], "last_seen": hours[0], "blocked": False}
                    for m in new
                ],
            )
        s.execute(
            insert(HourlyUsage),
            [
                {
                    "mac": m,
                    "hour": h,
                    "seconds": seconds,
                    "bytes_down": bytes_down,
                    "bytes_up": bytes_up,
                }
                for m in macs
                for h in hours
            ],
        )
