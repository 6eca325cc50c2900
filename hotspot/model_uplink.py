"""The uplink's outages as the gateway saw them (issue #11, item 3; ``gateway/uplink.py``).

One row per outage: when it started, when it ended (None while it lasts) and its cause —
the WAN link itself was down, or the link was up but nothing answered the probes (a dead
backhaul, a provider black-holing the traffic). The portal reads the open row to tell
villagers the village's internet is down; the sync agent reports every row to the
collector as a window. Times are UTC, as the gateway's clock had them.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import DateTime, Integer
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.dbtypes import str_enum
from hotspot.model_base import Base


class OutageCause(enum.StrEnum):
    LINK = "link"  # the WAN interface reported no carrier / operstate down
    UNREACHABLE = "unreachable"  # link up, but no probe target answered


class UplinkOutage(Base):
    __tablename__ = "uplink_outage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cause: Mapped[OutageCause] = mapped_column(str_enum(OutageCause, length=16))
