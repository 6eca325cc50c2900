"""``hotspot collector …``: run the collector, register gateways, issue API tokens.

The collector has its own configuration file (collector.config): ``hotspot --config
/etc/hotspot/collector.toml collector run`` (or ``$HOTSPOT_COLLECTOR_CONFIG``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    place = gws.add_parser("set", help="where a village is: kabupaten, kecamatan, coordinates")
    place.add_argument("id")
    place.add_argument("--kabupaten", help="'' clears it")
    place.add_argument("--kecamatan", help="'' clears it")
    place.add_argument("--lat", type=float, help="latitude, -90 to 90 (with --lon)")
    place.add_argument("--lon", type=float, help="longitude, -180 to 180 (with --lat)")
    place.add_argument("--json", action="store_true")

    al = cmds.add_parser("alerts", help="evaluate and send alerts; list them")
    als = al.add_subparsers(dest="action", required=True, parser_class=parser_class)
    arun = als.add_parser("run", help="evaluate every village once and send what is due")
    arun.add_argument(
        "--loop", action="store_true", help="again every [alerts] interval_seconds, until stopped"
    )
    arun.add_argument("--json", action="store_true")
    alist = als.add_parser("list", help="open alerts (with --all: the last 200 of any state)")
    alist.add_argument("--all", action="store_true")
    alist.add_argument("--json", action="store_true")

    po = cmds.add_parser("policy", help="the province's signed policy for the gateways")
    pos = po.add_subparsers(dest="action", required=True, parser_class=parser_class)
    kg = pos.add_parser("keygen", help="make the signing key; print the public key to pin")
    kg.add_argument("--force", action="store_true", help="replace an existing key")
    pub = pos.add_parser("publish", help="publish a scope's policy (a JSON file, - for stdin)")
    pub.add_argument("scope", help="province, kecamatan:NAME or gateway:ID")
    pub.add_argument("file")
    bl = pos.add_parser(
        "publish-list",
        help="keep a DNS blocklist (TRUST+ Positif format) for the gateways to fetch; print "
        "the dns_blocklist field that names it",
    )
    bl.add_argument("file")
    bl.add_argument("--name", required=True, help="the list's name, e.g. positif-2026-11-30")
    pl = pos.add_parser("place", help="put a gateway in a kecamatan ('' = none)")
    pl.add_argument("id")
    pl.add_argument("kecamatan")
    sh = pos.add_parser("show", help="scopes, and each gateway's published and running version")
    sh.add_argument("--gateway", metavar="ID", help="that gateway's merged document")
    for c in (kg, pub, bl, pl, sh):
        c.add_argument("--json", action="store_true")

    ac = cmds.add_parser("acme", help="the gateways' certificates (ACME with DNS-01, [acme])")
    acs = ac.add_subparsers(dest="action", required=True, parser_class=parser_class)
    _add_commands(
        acs,
        (
            ("issue", None, "run the pending certificate requests' orders now", None),
            ("status", None, "each gateway's certificate: name, state, expiry, last error", None),
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


def _acme(args: argparse.Namespace, cfg: Any, engine: Any, as_json: bool) -> int:
    from collector import certs

    if args.action == "status":
        with Session(engine) as s:
            rows = certs.status(s)
        lines = [
            f"{r['gateway']:20} {r['name']:40} {r['state']:8} {r['not_after'] or '-'}"
            + (f"  ({r['error']})" if r["error"] else "")
            for r in rows
        ]
        _out(rows, as_json, "\n".join(lines) or "no certificate requested")
        return 0
    if not cfg.acme.enabled:
        raise UsageError("acme: [acme] directory_url is not set in the collector's file")
    logging.getLogger("collector.certs").setLevel(logging.INFO)
    report = certs.issue_pending(engine, cfg.acme)
    _out(
        report,
        as_json,
        report["skipped"] or f"issued {len(report['issued'])}, failed {len(report['failed'])}",
    )
    return 1 if report["failed"] else 0


def _policy_fields(path: str) -> Any:
    import sys

    from hotspot.errors import UsageError

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise UsageError(f"file: {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"file: {path} is not JSON ({exc})") from None


def _policy(args: argparse.Namespace, cfg: Any, engine: Any, as_json: bool) -> int:
    from collector import policy as cpolicy
    from hotspot.errors import UsageError
    from hotspot.policy import PolicyRefused
    from hotspot.timeutil import utcnow

    with Session(engine) as s, s.begin():
        if args.action == "show":
            if args.gateway:
                doc = cpolicy.document_of(s, args.gateway)
                _out(doc, as_json, json.dumps(doc, indent=2, default=str, ensure_ascii=False))
                return 0 if doc is not None else 1
            out = cpolicy.show(s)
            lines = [f"{r['scope']:40} version {r['version']}" for r in out["scopes"]]
            lines += [
                f"{g['id']:24} {g['kecamatan'] or '-':20} published {g['published'] or '-'}"
                f"  running {g['running'] or '-'}"
                for g in out["gateways"]
            ]
            _out(out, as_json, "\n".join(lines) or "no policy published")
            return 0
        if args.action == "publish-list":
            try:
                out = cpolicy.publish_list(cfg.policy_lists_dir, args.file, args.name)
            except (OSError, ValueError) as exc:
                raise UsageError(f"publish-list: {exc}") from None
            _out(
                out,
                as_json,
                f"{out['names']} names ({out['invalid']} invalid lines skipped); put this in "
                f'the policy:\n"dns_blocklist": {json.dumps(out["dns_blocklist"])}',
            )
            return 0
        key = cpolicy.read_key(cfg.policy_key_file)
        if args.action == "place":
            out = cpolicy.place(s, args.id, args.kecamatan, key, utcnow())
            _out(out, as_json, f"{out['id']} in kecamatan {out['kecamatan'] or '-'}")
            return 0
        fields = _policy_fields(args.file)
        try:
            out = cpolicy.publish(s, args.scope, fields, key, utcnow())
        except ValueError as exc:
            raise UsageError(f"scope: {exc}") from None
        except PolicyRefused as exc:
            raise UsageError(f"policy: {exc.message}") from None
        _out(
            out,
            as_json,
            f"{out['scope']} version {out['version']} published to "
            f"{len(out['gateways'])} gateway(s)",
        )
    return 0


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
    if args.cmd == "policy" and args.action == "keygen":
        from collector.policy import keygen

        out = keygen(cfg.policy_key_file, force=args.force)
        _out(
            out,
            as_json,
            f"signing key written to {out['key_file']} (keep it on this machine only)\n"
            f"pin it on every gateway, in hotspot.toml:\n"
            f'[policy]\npublic_key = "{out["public_key"]}"',
        )
        return 0
    engine = open_database(cfg.database_url)
    if args.cmd == "policy":
        return _policy(args, cfg, engine, as_json)
    if args.cmd == "acme":
        return _acme(args, cfg, engine, as_json)
    if args.cmd == "upgrade":
        print(
            f"collector database is up to date ({engine.url.render_as_string(hide_password=True)})"
        )
        return 0
    if args.cmd == "alerts":
        return _alerts(args, cfg, engine, as_json)
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
            elif args.action == "set":
                out = store.set_gateway_place(
                    s,
                    args.id,
                    kabupaten=args.kabupaten,
                    kecamatan=args.kecamatan,
                    latitude=args.lat,
                    longitude=args.lon,
                )
                if args.kecamatan is not None and os.path.exists(cfg.policy_key_file):
                    # The kecamatan is also the village's policy scope: sign its document
                    # again, as `policy place` does.
                    from collector import policy as cpolicy
                    from collector.models import Gateway
                    from hotspot.timeutil import utcnow

                    gw = s.get(Gateway, args.id)
                    assert gw is not None  # set_gateway_place found it
                    key = cpolicy.read_key(cfg.policy_key_file)
                    version = cpolicy.resign(s, gw, key, utcnow())
                    out["policy_version"] = "" if version is None else str(version)
                _out(
                    out,
                    as_json,
                    f"gateway {args.id}: "
                    + ", ".join(
                        f"{k} {v if v not in (None, '') else '-'}"
                        for k, v in out.items()
                        if k != "id"
                    ),
                )
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


def _alerts(args: argparse.Namespace, cfg: Any, engine: Any, as_json: bool) -> int:
    import time

    from collector import alerts
    from collector.models import Alert, Gateway
    from hotspot.timeutil import utcnow

    if args.action == "run":
        setup_logging("INFO" if args.loop else "WARNING")
        while True:
            started = time.monotonic()
            result = alerts.run_once(engine, cfg, utcnow())
            _out(
                result,
                as_json,
                "skipped: another collector is evaluating"
                if result["skipped"]
                else f"{result['villages']} villages: {result['raised']} raised, "
                f"{result['cleared']} cleared; {result['sent']} notifications sent, "
                f"{result['failed']} to retry",
            )
            if not args.loop:
                return 0
            time.sleep(max(1.0, cfg.alerts.interval_seconds - (time.monotonic() - started)))
    with Session(engine) as s:
        if args.all:
            rows = list(
                s.scalars(
                    select(Alert)
                    .where(Alert.raised_at.is_not(None))
                    .order_by(Alert.raised_at.desc())
                    .limit(200)
                )
            )
        else:
            rows = alerts.open_alerts(s)
        villages = {g.id: g.village for g in s.scalars(select(Gateway))}
        items = [
            {
                "id": a.id,
                "gateway_id": a.gateway_id,
                "village": villages.get(a.gateway_id),
                "kind": a.kind.value,
                "critical": a.critical,
                "raised_at": a.raised_at,
                "cleared_at": a.cleared_at,
                "detail": a.detail,
            }
            for a in rows
        ]
    _out(
        items,
        as_json,
        "\n".join(
            f"{r['raised_at']:%Y-%m-%d %H:%M} {'!' if r['critical'] else ' '} "
            f"{r['gateway_id']:24} {r['kind']:14} {r['detail']}"
            + (f" (cleared {r['cleared_at']:%Y-%m-%d %H:%M})" if r["cleared_at"] else "")
            for r in items
        )
        or "no alerts",
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
