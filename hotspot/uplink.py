"""What the gateway knows about its uplink's outages (``gateway/uplink.py`` writes them):
read by the portal's pages, the console's overview and the sync agent."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hotspot.model_uplink import OutageCause, UplinkOutage

log = logging.getLogger(__name__)


def open_outage(db: Engine) -> tuple[dt.datetime, OutageCause] | None:
    """(since, cause) of the outage going on now; None when the uplink is up — or unknown
    (a database that cannot be read shows no warning rather than a broken page)."""
    try:
        with Session(db) as s:
            row = s.execute(
                select(UplinkOutage.started_at, UplinkOutage.cause)
                .where(UplinkOutage.ended_at.is_(None))
                .order_by(UplinkOutage.id.desc())
                .limit(1)
            ).first()
    except SQLAlchemyError as exc:
        log.warning("uplink state unavailable: %s", str(exc).splitlines()[0])
        return None
    return (row[0], row[1]) if row is not None else None
