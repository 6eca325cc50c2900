"""The province's policy in force on this gateway (*Kebijakan provinsi*, issue #15 item 1):
its version, when it was issued and applied, which scope each field came from, the fields
themselves, and the last refusal if the latest one received was refused. Read only — the
province publishes it, the gateway verifies it (gateway/policy.py) — and admin only."""

from __future__ import annotations

import json
from typing import Any

from hotspot.errors import HotspotError
from portal.operator.blueprint import admin_only, bp
from portal.operator.pages import gateway_call, page


@bp.get("/policy")
@admin_only
def policy_page() -> Any:
    try:
        status: dict[str, Any] | None = gateway_call("policy")
    except HotspotError:
        status = None
    in_force: dict[str, Any] = (status or {}).get("in_force") or {}
    sources: dict[str, str] = in_force.get("sources", {})
    fields = [
        (name, json.dumps(value, ensure_ascii=False), sources.get(name, ""))
        for name, value in sorted(in_force.get("policy", {}).items())
    ]
    return page("policy.html", gw_policy=status, in_force=in_force or None, fields=fields)
