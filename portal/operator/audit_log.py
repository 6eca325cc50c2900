"""The audit log (*Catatan audit*, admins): the entries, whether the chain is intact, CSV."""

from __future__ import annotations

from typing import Any

from flask import request

from hotspot import audit
from portal.operator.blueprint import admin_only, bp
from portal.operator.forms import int_or
from portal.operator.pages import csv_response, page
from portal.state import state


@bp.get("/audit")
@admin_only
def audit_page() -> Any:
    before = int_or(request.args.get("before"), 0) or None
    rows = audit.entries(state().db, limit=100, before_id=before)
    return page(
        "audit.html",
        rows=rows,
        broken=audit.verify(state().db),
        older=rows[-1].id if len(rows) == 100 else None,
    )


@bp.get("/audit.csv")
@admin_only
def audit_csv() -> Any:
    rows = audit.every_entry(state().db)
    return csv_response(
        "audit.csv",
        ["id", "at_utc", "actor", "role", "ip", "action", "target", "before", "after", "hash"],
        [
            (r.id, r.at, r.actor, r.role, r.ip, r.action, r.target, r.before, r.after, r.hash)
            for r in rows
        ],
    )
