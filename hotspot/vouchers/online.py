"""Online time of vouchers (issue #13, item 1): what the gateway reads each tick and writes
at each flush.

An online-time voucher has ``online_seconds_total`` (set at first use: its package's minutes,
plus what a top-up brought along) and ``online_seconds_used``. The gateway's engine counts
the seconds from the monotonic clock while a session of the voucher runs, keeps them in
memory and adds them here at each flush (``gateway.flush_seconds``): a power cut loses at
most one flush interval of counting, in the villager's favour. Time is per voucher: when
several devices of one voucher are online at once, the voucher's clock runs once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.engine import Connection

from hotspot.model import Voucher


@dataclass(frozen=True)
class OnlineTerms:
    total: int  # seconds it may be online
    used: int  # seconds used, as last written


def online_terms(conn: Connection, voucher_ids: Iterable[int]) -> dict[int, OnlineTerms]:
    """The online-time vouchers among ``voucher_ids`` (hours vouchers are left out)."""
    ids = sorted(set(voucher_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(Voucher.id, Voucher.online_seconds_total, Voucher.online_seconds_used).where(
            Voucher.id.in_(ids), Voucher.online_seconds_total.is_not(None)
        )
    )
    return {
        int(r.id): OnlineTerms(int(r.online_seconds_total), int(r.online_seconds_used or 0))
        for r in rows
    }


def add_online_seconds(conn: Connection, seconds: Mapping[int, int]) -> None:
    """Add whole seconds to each voucher's use (a negative amount gives back time charged
    while a device sat idle until its session ended); the use never goes below 0."""
    for voucher_id, n in seconds.items():
        if not n:
            continue
        new = Voucher.online_seconds_used + n
        conn.execute(
            update(Voucher)
            .where(Voucher.id == voucher_id)
            .values(online_seconds_used=case((new < 0, 0), else_=new))
        )
