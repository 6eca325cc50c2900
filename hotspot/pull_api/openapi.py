"""The OpenAPI 3.1 document of the pull APIs, and the columns of each kind of row.

The collector serves all of it (``/api/v1/openapi.json``); a gateway's own usage API serves
the usage part only, under its own title (``usage_only=True``).
"""

from __future__ import annotations

from typing import Any

from hotspot import __version__

USAGE_COLUMNS = [
    "gateway_id",
    "client",
    "period_start",
    "period_end",
    "seconds",
    "bytes_down",
    "bytes_up",
]
GATEWAY_COLUMNS = [
    "gateway_id",
    "village",
    "timezone",
    "version",
    "registered_at",
    "last_seen",
    "online",
    "disabled",
    "warnings",
    "health",
    "kabupaten",
    "kecamatan",
    "latitude",
    "longitude",
]
SALES_COLUMNS = ["gateway_id", "month", "package", "count", "rupiah"]
DAILY_COLUMNS = ["gateway_id", "day", "devices", "seconds", "bytes_down", "bytes_up"]


def _params(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    common = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1},
            "description": "rows per page (default: the server's page size; at most 10 times it)",
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string"},
            "description": "opaque; take it from `next`",
        },
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
    ]
    return list(extra) + common


_RANGE: list[dict[str, Any]] = [
    {
        "name": "from",
        "in": "query",
        "schema": {"type": "string"},
        "description": "inclusive: ISO 8601 time, or a date (midnight in the collector's time zone)",
    },
    {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "exclusive"},
    {
        "name": "gateway",
        "in": "query",
        "schema": {"type": "string"},
        "description": "one gateway id",
    },
]


def _page_schema(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "next": {"type": ["string", "null"], "description": "URL of the next page, or null"},
        },
    }


def _op(summary: str, item: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": params,
            "responses": {
                "200": {
                    "description": "one page",
                    "content": {
                        "application/json": {"schema": _page_schema(item)},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                    "headers": {
                        "Link": {
                            "schema": {"type": "string"},
                            "description": 'CSV only: <next page URL>; rel="next"',
                        }
                    },
                },
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
            },
        }
    }


def openapi_document(
    usage_only: bool = False, title: str = "Hotspot Desa provincial collector"
) -> dict[str, Any]:
    stamp = {"type": "string", "format": "date-time"}
    usage_schema = {
        "type": "object",
        "required": USAGE_COLUMNS,
        "properties": {
            "gateway_id": {"type": "string"},
            "client": {
                "type": "string",
                "description": "pseudonym of a device (16 hex digits), "
                "stable within one gateway, unlinkable across gateways",
            },
            "period_start": stamp,
            "period_end": stamp,
            "seconds": {"type": "integer", "description": "connected seconds in the hour"},
            "bytes_down": {"type": "integer", "description": "IP-layer bytes, headers included"},
            "bytes_up": {"type": "integer"},
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "Hourly usage per device (pseudonymous), gateways and monthly "
            "voucher sales. Times are UTC.",
        },
        "paths": {"/api/v1/usage": _op("Usage per device and hour", "Usage", _params(*_RANGE))},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "refused",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
            "schemas": {"Usage": usage_schema},
        },
    }
    if usage_only:
        return doc
    doc["paths"]["/api/v1/gateways"] = _op(
        "Gateways: last seen, online, health, warnings", "Gateway", _params()
    )
    doc["paths"]["/api/v1/sales"] = _op(
        "Voucher sales per gateway, month and package",
        "Sales",
        _params(
            *[
                dict(
                    p,
                    description=p["description"] + " (a month is included when it starts "
                    "within [from, to))",
                )
                if p["name"] in ("from", "to")
                else p
                for p in _RANGE
            ]
        ),
    )
    doc["components"]["schemas"]["Gateway"] = {
        "type": "object",
        "properties": {
            "gateway_id": {"type": "string"},
            "village": {"type": ["string", "null"]},
            "timezone": {"type": ["string", "null"]},
            "version": {"type": ["string", "null"]},
            "registered_at": stamp,
            "last_seen": {"type": ["string", "null"], "format": "date-time"},
            "online": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "warnings": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": ["never", "offline", "disk", "temp", "mem", "uplink", "clock"],
                },
            },
            "health": {"type": ["object", "null"]},
            # the place, as configured (`hotspot collector gateways set`): optional, a
            # client written before issue #14 does not see them
            "kabupaten": {"type": ["string", "null"]},
            "kecamatan": {"type": ["string", "null"]},
            "latitude": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
            "longitude": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
        },
    }
    doc["components"]["schemas"]["Sales"] = {
        "type": "object",
        "properties": {
            "gateway_id": {"type": "string"},
            "month": {"type": "string", "pattern": "^\\d{4}-\\d{2}$"},
            "package": {"type": "string"},
            "count": {"type": "integer"},
            "rupiah": {"type": "integer"},
        },
    }
    # The villages' daily roll-ups (issue #14: kept longer than the per-device rows).
    doc["paths"]["/api/v1/daily"] = _op(
        "Each village's local day: distinct devices, seconds online, bytes",
        "Daily",
        _params(
            *[
                dict(
                    p,
                    description=p["description"] + " (a day is included when it starts "
                    "within [from, to))",
                )
                if p["name"] in ("from", "to")
                else p
                for p in _RANGE
            ]
        ),
    )
    doc["components"]["schemas"]["Daily"] = {
        "type": "object",
        "required": DAILY_COLUMNS,
        "properties": {
            "gateway_id": {"type": "string"},
            "day": {"type": "string", "format": "date"},
            "devices": {"type": "integer", "description": "distinct devices online that day"},
            "seconds": {"type": "integer", "description": "their connected seconds, summed"},
            "bytes_down": {"type": "integer"},
            "bytes_up": {"type": "integer"},
        },
    }
    return doc
