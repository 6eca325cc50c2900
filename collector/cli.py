"""``hotspot collector …``: run the collector, register gateways, issue API tokens.

The collector has its own configuration file (collector.config): ``hotspot --config
/etc/hotspot/collector.toml collector run`` (or ``$HOTSPOT_COLLECTOR_CONFIG``).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot.errors import UsageError
from hotspot.logsetup import LEVELS, setup_logging


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    co = sub.add_parser("collector", help="the provincial collector (its own config file)")
    co.set_defaults(handler=handle)
    cmds = co.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    run = cmds.add_parser("run", help="serve ingest, dashboard and API (gunicorn)")
    run.add_argument("--bind", metavar="HOST:PORT", help="default: [collector] bind")
    run.add_argument("--log-level", default="INFO", choices=LEVELS)
    cmds.add_parser("upgrade", help="create or migrate the collector's schema")
    mt = cmds.add_parser(
        "maintain", help="make the coming months' partitions, then purge (the daily job, now)"
    )
    mt.add_argument("--json", action="store_true", help="print what was done")
    pg = cmds.add_parser(
        "purge", help="drop per-device rows older than retention_days (whole months)"
    )
    pg.add_argument(
        "--retention-days",
        type=int,
        metavar="DAYS",
        help="keep this many days instead of [collector] retention_days (at least 31)",
    )
    pg.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    pg.add_argument("--json", action="store_true", help="print what was (or would be) removed")

    gw = cmds.add_parser("gateways", help="registered village gateways")
    gws = gw.add_subparsers(dest="action", required=True, parser_class=parser_class)
    _add_commands(
        gws,
        (
            ("add", "id", "register a gateway and print its secret", '{"id", "secret"}'),
            ("rotate", "id", "give a gateway a new secret (the old one stops working)", None),
            ("disable", "id", "refuse a gateway's reports (403)", None),
            ("enable", "id", "accept a gateway's reports again", None),
            ("list", None, "gateways, last seen, online", None),
        ),
    )

    tk = cmds.add_parser("tokens", help="bearer tokens of the pull API and the dashboard")
    tks = tk.add_subparsers(dest="action", required=True, parser_class=parser_class)
    _add_commands(
        tks,
        (
            ("create", "name", "create a token and print it (shown once)", '{"name", "token"}'),
            ("revoke", "name", "delete a token", None),
            ("list", None, "token names and when they were last used", None),
        ),
    )


def _add_commands(subs: Any, commands: tuple[tuple[str, str | None, str, str | None], ...]) -> None:
    """Commands ``(name, argument, help, prints)`` that each take ``argument`` (if any) and
    ``--json``, which prints ``prints`` (if said)."""
    for name, argument, helptext, prints in commands:
        c = subs.add_parser(name, help=helptext)
        if argument is not None:
            c.add_argument(argument)
        c.add_argument("--json", action="store_true", help=prints and f"print {prints}")


def _out(data: Any, as_json: bool, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else human)


def handle(args: argparse.Namespace) -> int:
    from collector import config as config_mod
    from collector import store
    from collector.db import open_database
    from collector.models import ApiToken, Gateway
    from hotspot.timeutil import utcnow

    cfg = config_mod.load(args.config)
    as_json = getattr(args, "json", False)
    if args.cmd == "run":
        bind = args.bind or cfg.bind
        config_mod.check_bind(bind, "--bind")
        setup_logging(args.log_level)
        from collector.server import serve

        return serve(cfg, bind, args.log_level)
    retention = getattr(args, "retention_days", None)
    if retention is not None and not 31 <= retention <= 100_000:
        raise UsageError(f"--retention-days: must be between 31 and 100000, not {retention}")
    setup_logging("WARNING")
    logging.getLogger("collector").setLevel(logging.WARNING)
    engine = open_database(cfg.database_url)
    if args.cmd == "upgrade":
        print(
            f"collector database is up to date ({engine.url.render_as_string(hide_password=True)})"
        )
        return 0
    if args.cmd in ("maintain", "purge"):
        return _maintenance(args, cfg, engine, as_json)
    with Session(engine) as s, s.begin():
        if args.cmd == "gateways":
            if args.action == "add":
                out = store.add_gateway(s, args.id)
                _out(
                    out,
                    as_json,
                    f"gateway {out['id']} registered; put this in its hotspot.toml:\n"
                    f'[sync]\ngateway_id = "{out["id"]}"\nsecret = "{out["secret"]}"',
                )
            elif args.action == "rotate":
                out = store.rotate_gateway(s, args.id)
                _out(out, as_json, f"new secret of {out['id']}: {out['secret']}")
            elif args.action in ("disable", "enable"):
                out = store.set_gateway_disabled(s, args.id, args.action == "disable")
                _out(out, as_json, f"gateway {args.id} {args.action}d")
            else:
                from collector.queries import online

                now = utcnow()
                rows = [
                    {
                        "id": g.id,
                        "village": g.village,
                        "last_seen": g.last_seen_at,
                        "disabled": g.disabled,
                        "version": g.version,
                        "online": online(cfg, g, now),
                    }
                    for g in s.scalars(select(Gateway).order_by(Gateway.id))
                ]
                _out(
                    rows,
                    as_json,
                    "\n".join(
                        f"{r['id']:24} {r['village'] or '-':30} "
                        f"{'online' if r['online'] else 'offline':8} {r['last_seen'] or 'never'}"
                        for r in rows
                    )
                    or "no gateways registered",
                )
        else:
            if args.action == "create":
                out = store.create_token(s, args.name)
                _out(out, as_json, out["token"])
            elif args.action == "revoke":
                out = store.revoke_token(s, args.name)
                _out(out, as_json, f"token {args.name!r} revoked")
            else:
                rows = [
                    {"name": t.name, "created_at": t.created_at, "last_used_at": t.last_used_at}
                    for t in s.scalars(select(ApiToken).order_by(ApiToken.name))
                ]
                _out(
                    rows,
                    as_json,
                    "\n".join(
                        f"{r['name']:32} created {r['created_at']:%Y-%m-%d}  "
                        f"last used {r['last_used_at'] or 'never'}"
                        for r in rows
                    )
                    or "no tokens",
                )
    return 0


def _maintenance(args: argparse.Namespace, cfg: Any, engine: Any, as_json: bool) -> int:
    from collector import maintenance

    if args.cmd == "maintain":
        out = maintenance.run(engine, cfg)
        made, purged = out["partitions"], out["purge"]
        _out(
            out,
            as_json,
            f"partitions created: {', '.join(made['created']) or 'none'}\n"
            f"partitions dropped: {', '.join(purged['dropped']) or 'none'}",
        )
        return 0
    report = maintenance.purge(
        engine, cfg, retention_days=args.retention_days, dry_run=args.dry_run
    )
    out = {**report.as_dict(), "dry_run": args.dry_run}
    verb = "would drop" if args.dry_run else "dropped"
    deleted = ", ".join(f"{k} {v}" for k, v in sorted(report.deleted_rows.items()) if v)
    _out(
        out,
        as_json,
        report.skipped
        or f"{verb}: {', '.join(report.dropped) or 'no partition'}; rows: {deleted or 'none'}",
    )
    return 0
