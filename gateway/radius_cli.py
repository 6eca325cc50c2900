"""``hotspot radius …``: the technician's view of RADIUS (docs/radius.md).

* ``radius test NAME [--password P]`` — one Access-Request from this machine, as the portal
  sends it, and what the reply would set (the way ``radtest`` checks a NAS's setup);
* ``radius queue`` — the accounting records waiting for the server.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot.commandline import print_result
from hotspot.db import make_engine
from hotspot.errors import ConfigError, ErrorCode, HotspotError, Refused
from hotspot.model_radius import RadiusAccounting
from hotspot.radius.attributes import DataLimitAttribute, grant_from_attributes
from hotspot.radius.packets import ACCESS_ACCEPT, Nas, access_request, reply_attributes
from hotspot.radius.secret import read_secret
from hotspot.radius.transport import NoAnswer, Server, exchange
from hotspot.timeutil import iso, utcnow


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    rad = sub.add_parser("radius", help="RADIUS accounts and accounting (docs/radius.md)")
    rads = rad.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    test = rads.add_parser("test", help="ask the RADIUS server about an account, as the portal")
    test.add_argument("name")
    test.add_argument("--password", help="(default: the name, as for a printed code)")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_test)
    queue = rads.add_parser("queue", help="accounting records waiting for the server")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=_queue)


def _config(args: argparse.Namespace) -> config_mod.Config:
    cfg = config_mod.load(args.config)
    if not cfg.radius.enabled:
        raise ConfigError("radius.enabled", "RADIUS is off in this configuration")
    return cfg


def _test(args: argparse.Namespace) -> int:
    cfg = _config(args)
    r = cfg.radius
    request = access_request(
        read_secret(r.secret_file),
        Nas(r.nas_identifier, r.nas_ip_address),
        username=args.name,
        password=args.password if args.password is not None else args.name,
        calling_station="00-00-00-00-00-00",
        framed_ip=str(cfg.network.gateway_ip),
    )
    try:
        reply, server = exchange(
            request,
            [Server(s.host, s.port) for s in r.servers],
            timeout=r.timeout_seconds,
            attempts=r.attempts,
            require_message_authenticator=r.require_message_authenticator,
        )
    except NoAnswer as exc:
        raise HotspotError(
            f"no valid answer from {exc} (unreachable, another secret, or no "
            "Message-Authenticator in the reply)",
            code=ErrorCode.RADIUS_UNAVAILABLE,
        ) from None
    if reply.code != ACCESS_ACCEPT:
        raise Refused(f"{server.host} refused {args.name!r}", code=ErrorCode.RADIUS_REJECT)
    grant = grant_from_attributes(reply_attributes(reply), DataLimitAttribute(r.data_limit))
    out = {
        "server": f"{server.host}:{server.port}",
        "accepted": True,
        "session_seconds": grant.session_seconds,
        "idle_minutes": grant.idle_minutes,
        "down_kbps": grant.down_kbps,
        "up_kbps": grant.up_kbps,
        "bytes_limit": grant.bytes_limit,
        "interim_seconds": grant.interim_seconds,
        "classes": [c.hex() for c in grant.classes],
        "unusable": list(grant.problems),
    }

    def human(o: dict[str, Any]) -> str:
        tier = cfg.tiers[r.tier]
        lines = [f"accepted by {o['server']}"]
        for key, label, default in (
            ("session_seconds", "session (s)", tier.session_minutes * 60 or "no limit"),
            ("idle_minutes", "idle end (min)", tier.idle_minutes or "none"),
            ("down_kbps", "down (kbit/s)", tier.down_kbps),
            ("up_kbps", "up (kbit/s)", tier.up_kbps),
            ("bytes_limit", "data cap (bytes)", "none"),
        ):
            value = o[key] if o[key] is not None else f"{default} (tier {r.tier})"
            lines.append(f"  {label:17} {value}")
        if o["unusable"]:
            lines.append(f"  unusable: {', '.join(o['unusable'])}")
        return "\n".join(lines)

    print_result(out, args.json, human)
    return 0


def _queue(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    db = make_engine(cfg.database.url)
    with Session(db) as s:
        count, oldest, attempts = s.execute(
            select(
                func.count(RadiusAccounting.id),
                func.min(RadiusAccounting.created_at),
                func.max(RadiusAccounting.attempts),
            )
        ).one()
        last = s.scalar(
            select(RadiusAccounting.last_error)
            .where(RadiusAccounting.last_error.is_not(None))
            .order_by(RadiusAccounting.id)
            .limit(1)
        )
    db.dispose()
    out = {
        "waiting": int(count),
        "oldest": iso(oldest),
        "attempts": int(attempts or 0),
        "last_error": last,
    }

    def human(o: dict[str, Any]) -> str:
        if not o["waiting"]:
            return "nothing waiting: the server has every accounting record"
        age = utcnow() - (oldest or utcnow())
        return (
            f"{o['waiting']} accounting records waiting, the oldest since {o['oldest']} "
            f"({age // dt.timedelta(minutes=1)} min); {o['attempts']} tries; "
            f"last error: {o['last_error'] or '-'}"
        )

    print_result(out, args.json, human)
    return 0
