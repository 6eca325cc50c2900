"""Packages (what is sold): the configuration file's written into the database, the
console's checked and saved (audited), and the listings (the portal's price list, the
console's list)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hotspot.audit import Actor
from hotspot.audit import record as _audit
from hotspot.audit import write as _write
from hotspot.config import PackageConfig
from hotspot.errors import NotFound, UsageError
from hotspot.model import Package, VoucherBatch
from hotspot.timeutil import utcnow

PACKAGE_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
PACKAGE_LIMITS = {
    "price": (0, 100_000_000),
    "hours": (1, 8784),
    "data_mb": (0, 10_000_000),
    "devices": (1, 16),
    "shelf_days": (0, 3650),
}
# An online-time package: minutes online (at most a year's) within a window of days.
ONLINE_LIMITS = {"online_minutes": (1, 527_040), "valid_days": (1, 366)}
PACKAGE_FIELDS = (
    "name",
    "title",
    "price",
    "tier",
    "hours",
    "online_minutes",
    "valid_days",
    "data_mb",
    "devices",
    "shelf_days",
    "active",
    "auto_resume",
)


class PackageError(UsageError):
    """A package field with a bad value; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def sync_packages(
    engine: Engine,
    packages: Iterable[PackageConfig],
    clock: Callable[[], dt.datetime] = utcnow,
    *,
    retire_missing: bool = False,
) -> int:
    """Write the packages of the config file into the database (insert or update by name);
    packages made in the console are left alone. With ``retire_missing``, packages that came
    from the file but are no longer in it are taken off sale (batches still refer to them,
    so they stay). Returns how many were written."""
    n = 0
    now = clock()
    packages = list(packages)
    if retire_missing:
        with engine.begin() as conn:
            res = conn.execute(
                update(Package)
                .where(
                    Package.source == "config",
                    Package.active.is_(True),
                    Package.name.not_in([p.name for p in packages]),
                )
                .values(active=False, updated_at=now)
            )
            n += res.rowcount or 0
    for pkg in packages:
        values = dict(
            title=pkg.title,
            price=pkg.price,
            tier=pkg.tier,
            hours=pkg.hours,
            online_minutes=pkg.online_minutes or None,
            valid_days=pkg.valid_days or None,
            data_mb=pkg.data_mb or None,
            devices=pkg.devices,
            shelf_days=pkg.shelf_days or None,
            auto_resume=pkg.auto_resume,
            active=True,
            source="config",
            updated_at=now,
        )
        for _ in range(2):
            with engine.begin() as conn:
                row = conn.execute(select(Package).where(Package.name == pkg.name)).first()
                if row is not None:
                    same = all(getattr(row, k) == v for k, v in values.items() if k != "updated_at")
                    if not same:
                        conn.execute(
                            update(Package).where(Package.name == pkg.name).values(**values)
                        )
                        n += 1
                    break
                try:
                    conn.execute(insert(Package).values(name=pkg.name, created_at=now, **values))
                    n += 1
                    break
                except IntegrityError:  # another worker inserted it: update instead
                    conn.rollback()
    return n


@dataclass(frozen=True)
class PackageInfo:
    id: int
    name: str
    title: str
    price: int
    tier: str
    hours: int
    data_mb: int | None
    devices: int
    online_minutes: int | None = None  # an online-time package (hours = its valid days × 24)
    valid_days: int | None = None


def list_packages(engine: Engine) -> list[PackageInfo]:
    """Packages for sale, cheapest first (the portal's price list)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Package).where(Package.active.is_(True)).order_by(Package.price, Package.name)
        ).all()
    return [
        PackageInfo(
            r.id,
            r.name,
            r.title,
            r.price,
            r.tier,
            r.hours,
            r.data_mb,
            r.devices,
            r.online_minutes,
            r.valid_days,
        )
        for r in rows
    ]


def check_package(values: dict[str, Any], tiers: Iterable[str]) -> dict[str, Any]:
    """The clean values of a package (console or CLI); raises :class:`PackageError`."""
    import re

    out: dict[str, Any] = {}
    name = values.get("name")
    if not isinstance(name, str) or not re.match(PACKAGE_NAME, name):
        raise PackageError("name", "lower-case letters, digits, - and _ (at most 32)")
    out["name"] = name
    title = values.get("title") or name
    if (
        not isinstance(title, str)
        or not title.strip()
        or len(title.strip()) > 40
        or any(ord(ch) < 32 for ch in title)
    ):
        raise PackageError("title", "1 to 40 characters")
    out["title"] = title.strip()
    # Either hours from first use, or online minutes within valid days (hours = the window).
    online = values.get("online_minutes") not in (None, 0)
    for key, (lo, hi) in ONLINE_LIMITS.items() if online else ():
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise PackageError(key, f"a whole number from {lo} to {hi}")
        out[key] = v
    if online:
        values = dict(values, hours=out["valid_days"] * 24)
    else:
        out["online_minutes"] = out["valid_days"] = None
    for key, (lo, hi) in PACKAGE_LIMITS.items():
        v = values.get(key, 0 if key in ("data_mb", "shelf_days") else None)
        if key == "devices" and v is None:
            v = 1
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise PackageError(key, f"a whole number from {lo} to {hi}")
        out[key] = v
    tier = values.get("tier")
    if tier not in set(tiers):
        raise PackageError("tier", f"no such tier {tier!r}")
    out["tier"] = tier
    out["active"] = bool(values.get("active", True))
    out["auto_resume"] = bool(values.get("auto_resume", True))
    return out


def _package_dict(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in PACKAGE_FIELDS + ("source",)}


def save_package(
    engine: Engine,
    values: dict[str, Any],
    *,
    tiers: Iterable[str],
    actor: Actor,
    package_id: int | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> int:
    """Create (``package_id`` None) or change a package made in the console. Packages of
    the configuration file are changed in the file only. Returns the package's id."""
    clean = check_package(values, tiers)
    now = clock()
    stored = dict(clean, data_mb=clean["data_mb"] or None, shelf_days=clean["shelf_days"] or None)
    with _write(engine) as conn:
        clash = conn.execute(select(Package).where(Package.name == clean["name"])).first()
        if package_id is None:
            if clash is not None:
                raise PackageError("name", f"a package named {clean['name']!r} exists")
            res = conn.execute(
                insert(Package).values(**stored, source="console", created_at=now, updated_at=now)
            )
            pid = int(res.inserted_primary_key[0])  # type: ignore[index]  # one-row insert: a Row
            _audit(conn, actor, "package.create", f"package:{pid}", after=clean, at=now)
            return pid
        row = conn.execute(select(Package).where(Package.id == package_id)).first()
        if row is None:
            raise NotFound(f"no package {package_id}")
        if row.source == "config":
            raise PackageError(
                "name", "this package comes from the configuration file; change it there"
            )
        if clash is not None and clash.id != package_id:
            raise PackageError("name", f"a package named {clean['name']!r} exists")
        before = _package_dict(row)
        conn.execute(
            update(Package).where(Package.id == package_id).values(**stored, updated_at=now)
        )
        after = dict(before, **stored)
        if after != before:
            _audit(
                conn,
                actor,
                "package.update",
                f"package:{package_id}",
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
                at=now,
            )
        return package_id


def all_packages(engine: Engine) -> list[Any]:
    """Every package, on sale or not (the console's list)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(Package).order_by(Package.active.desc(), Package.price, Package.name)
            )
        )


def get_package(engine: Engine, package_id: int) -> Any:
    with engine.connect() as conn:
        row = conn.execute(select(Package).where(Package.id == package_id)).first()
    if row is None:
        raise NotFound(f"no package {package_id}")
    return row


def get_package_title(engine: Engine, batch_id: int) -> str | None:
    """The title of a batch's package (what the price list calls it)."""
    with engine.connect() as conn:
        return conn.execute(
            select(Package.title)
            .join(VoucherBatch, VoucherBatch.package_id == Package.id)
            .where(VoucherBatch.id == batch_id)
        ).scalar()
