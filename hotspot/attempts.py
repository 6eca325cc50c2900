"""Purging the rows the brakes on guessing leave behind: wrong voucher codes (per device,
and one row per wrong code for the per-address and gateway-wide windows) and the console's
login attempts. The gateway daemon calls :func:`purge_attempts` once a minute, beside the
unsold-stock expiry; a row is kept while it can still brake anyone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, or_

from hotspot.model import RedeemAttempt, RedeemFailure
from hotspot.model_operator import LoginAttempt
from hotspot.timeutil import utcnow

# Longer than any window or cool-down the configuration allows (a day at most), so a purge
# never lifts a brake early.
ATTEMPT_RETENTION = dt.timedelta(days=2)


@dataclass(frozen=True)
class Purged:
    redeem_failures: int
    redeem_attempts: int
    login_attempts: int

    @property
    def total(self) -> int:
        return self.redeem_failures + self.redeem_attempts + self.login_attempts


def purge_attempts(
    engine: Engine,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    retention: dt.timedelta = ATTEMPT_RETENTION,
) -> Purged:
    """Delete attempt rows older than ``retention`` whose cool-down (if any) is over."""
    now = clock()
    cutoff = now - retention
    with engine.begin() as conn:
        failures = conn.execute(delete(RedeemFailure).where(RedeemFailure.at < cutoff)).rowcount
        redeem = conn.execute(
            delete(RedeemAttempt).where(
                RedeemAttempt.window_start < cutoff,
                or_(RedeemAttempt.blocked_until.is_(None), RedeemAttempt.blocked_until < now),
            )
        ).rowcount
        logins = conn.execute(
            delete(LoginAttempt).where(
                LoginAttempt.window_start < cutoff,
                or_(LoginAttempt.blocked_until.is_(None), LoginAttempt.blocked_until < now),
            )
        ).rowcount
    return Purged(failures, redeem, logins)
