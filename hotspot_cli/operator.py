"""``hotspot operators``, ``hotspot vouchers`` and ``hotspot sales``: the console's work from
the gateway's terminal (docs/operator-console.md). Actions are audited as ``cli:<user>``.

    hotspot operators add NAME --role admin|kasir|agen  # password prompted twice, or on stdin
    hotspot operators list | passwd NAME | disable NAME | enable NAME | unlock NAME
    hotspot vouchers packages
    hotspot vouchers package-add NAME --price RP --tier T (--hours H | --online-minutes M --valid-days D)
    hotspot vouchers create --package NAME --count N [--note TEXT] [--json]
    hotspot vouchers batches | print BATCH | void --batch N|--code CODE --reason TEXT | expire
    hotspot sales report --month 2026-11 [--json]
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hotspot.errors import UsageError
from hotspot.timeutil import iso


def _whole_from(value: str, low: int, too_low: str) -> int:
    """A whole number of at least ``low``, with no upper bound (unlike ``whole_number``)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(too_low)
    return n


def _count(value: str) -> int:
    return _whole_from(value, 1, "must be at least 1")


def _whole(value: str) -> int:
    return _whole_from(value, 0, "must not be negative")


def register(sub: Any, parser_class: type) -> None:
    op = sub.add_parser("operators", help="accounts of the operator console")
    op.set_defaults(handler=handle)
    ops = op.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    a = ops.add_parser("add", help="make an account (password prompted, or read from stdin)")
    a.add_argument("name")
    a.add_argument("--role", choices=["admin", "kasir", "agen"], required=True)
    a.add_argument("--full-name", default="")
    a.add_argument("--json", action="store_true")
    ls = ops.add_parser("list", help="the accounts")
    ls.add_argument("--json", action="store_true")
    for name, text in (
        ("passwd", "set a new password (ends its logins)"),
        ("disable", "stop an account (ends its logins)"),
        ("enable", "allow a stopped account again"),
        ("unlock", "lift the lock after too many wrong passwords"),
    ):
        c = ops.add_parser(name, help=text)
        c.add_argument("name")

    vo = sub.add_parser("vouchers", help="voucher packages, batches and codes")
    vo.set_defaults(handler=handle)
    vos = vo.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    pk = vos.add_parser("packages", help="the packages")
    pk.add_argument("--json", action="store_true")
    pa = vos.add_parser(
        "package-add", help="make a package, as the console does: hours, or online time"
    )
    pa.add_argument("name")
    pa.add_argument("--title", default="")
    pa.add_argument("--price", required=True, type=_whole, metavar="RUPIAH")
    pa.add_argument("--tier", required=True)
    how_long = pa.add_mutually_exclusive_group(required=True)
    how_long.add_argument("--hours", type=_count, help="from first use, on the wall clock")
    how_long.add_argument(
        "--online-minutes", type=_count, metavar="M", help="counted only while online"
    )
    pa.add_argument("--valid-days", type=_count, metavar="D", help="with --online-minutes")
    pa.add_argument("--data-mb", type=_whole, default=0)
    pa.add_argument("--devices", type=_count, default=1)
    pa.add_argument("--shelf-days", type=_whole, default=0)
    pa.add_argument("--json", action="store_true")
    cr = vos.add_parser("create", help="generate a batch of vouchers and print their codes")
    cr.add_argument("--package", required=True, metavar="NAME")
    cr.add_argument("--count", required=True, type=_count, metavar="N")
    cr.add_argument("--note", default="")
    cr.add_argument("--json", action="store_true")
    bl = vos.add_parser("batches", help="the batches and their stock")
    bl.add_argument("--json", action="store_true")
    pr = vos.add_parser("print", help="the unused codes of a batch again")
    pr.add_argument("batch", type=_count)
    pr.add_argument("--json", action="store_true")
    vd = vos.add_parser("void", help="withdraw a voucher or a batch's unsold vouchers")
    who = vd.add_mutually_exclusive_group(required=True)
    who.add_argument("--batch", type=_count)
    who.add_argument("--code")
    vd.add_argument("--reason", required=True)
    vd.add_argument(
        "--include-sold", action="store_true", help="with --batch: sold and running vouchers too"
    )
    vd.add_argument("--json", action="store_true")
    ex = vos.add_parser("expire", help="withdraw unsold vouchers past their shelf life")
    ex.add_argument("--json", action="store_true")

    sa = sub.add_parser("sales", help="the BUMDes' sales ledger")
    sa.set_defaults(handler=handle)
    sas = sa.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    rp = sas.add_parser("report", help="a month's sales: total, per package, kasir and day")
    rp.add_argument("--month", required=True, metavar="YYYY-MM")
    rp.add_argument("--json", action="store_true")


def _out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text)


def _read_password(name: str) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise UsageError("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def _time_terms(r: dict[str, Any]) -> str:
    if r.get("online_minutes"):
        return f"{r['online_minutes']} min online/{r['valid_days']} d"
    return f"{r['hours']} h"


def _package_row(p: Any) -> dict[str, Any]:
    """A package as ``vouchers packages`` and ``package-add`` print it (the listing adds
    ``auto_resume``; package-add's answer has always left it out)."""
    return {
        "id": p.id,
        "name": p.name,
        "title": p.title,
        "price": p.price,
        "tier": p.tier,
        "hours": p.hours,
        "online_minutes": p.online_minutes,
        "valid_days": p.valid_days,
        "data_mb": p.data_mb,
        "devices": p.devices,
        "shelf_days": p.shelf_days,
        "active": p.active,
        "source": p.source,
    }


def _package_add(cfg: Any, engine: Any, args: argparse.Namespace, actor: Any, as_json: bool) -> int:
    from hotspot.vouchers.packages import get_package, save_package

    if args.online_minutes is not None and args.valid_days is None:
        raise UsageError("--valid-days: needed with --online-minutes (the validity window)")
    if args.hours is not None and args.valid_days is not None:
        raise UsageError("--valid-days: only with --online-minutes (an hours package has none)")
    values = {
        "name": args.name,
        "title": args.title or args.name,
        "price": args.price,
        "tier": args.tier,
        "hours": args.hours,
        "online_minutes": args.online_minutes,
        "valid_days": args.valid_days,
        "data_mb": args.data_mb,
        "devices": args.devices,
        "shelf_days": args.shelf_days,
        "active": True,
    }
    pid = save_package(engine, values, tiers=list(cfg.tiers), actor=actor)
    p = get_package(engine, pid)
    row = _package_row(p)
    _out(row, as_json, f"package {p.name} made: {_time_terms(row)}, {_rp(p.price)}")
    return 0


def _rp(n: int) -> str:
    return "Rp " + f"{n:,}".replace(",", ".")


def handle(args: argparse.Namespace) -> int:
    from hotspot import config as config_mod

    return run(config_mod.load(args.config), args)


@contextmanager
def console_database(cfg: Any) -> Iterator[tuple[Any, Any]]:
    """The database and the ``cli:<user>`` actor for one console command (``operators``,
    ``vouchers``, ``sales``, ``agents``); the database is closed when the command ends."""
    from hotspot import audit
    from hotspot.db import open_database

    engine = open_database(cfg.database.url, synchronous="FULL")
    try:
        yield engine, audit.cli_actor()
    finally:
        engine.dispose()


def add_account(engine: Any, args: argparse.Namespace, role: str, actor: Any) -> dict[str, Any]:
    """A console login named ``args.name``: the name checked before the password is asked
    for (twice at a terminal, one line from a pipe)."""
    from hotspot import operators

    name = operators.check_name(args.name)
    password = _read_password(name)
    return operators.add(engine, name, role, password, actor=actor, full_name=args.full_name)


def run(cfg: Any, args: argparse.Namespace) -> int:
    from hotspot import operators

    as_json = getattr(args, "json", False)
    with console_database(cfg) as (engine, actor):
        if args.group == "operators":
            return _operators(engine, args, actor, as_json, operators)
        if args.group == "vouchers":
            return _vouchers(cfg, engine, args, actor, as_json)
        return _sales(cfg, engine, args, as_json)


def _operators(
    engine: Any, args: argparse.Namespace, actor: Any, as_json: bool, operators: Any
) -> int:
    if args.cmd == "add":
        row = add_account(engine, args, args.role, actor)
        _out(row, as_json, f"operator {row['name']} ({row['role']}) created")
    elif args.cmd == "list":
        rows = operators.listing(engine)
        _out(
            rows,
            as_json,
            "\n".join(
                f"{r['name']:16} {r['role']:6} {'active' if r['active'] else 'disabled':8} "
                f"{r['full_name'] or ''}"
                for r in rows
            )
            or "no operators yet: hotspot operators add NAME --role admin",
        )
    else:
        row = operators.get(engine, name=args.name)
        if args.cmd == "passwd":
            operators.change(engine, row.id, actor=actor, password=_read_password(row.name))
            print(f"password of {row.name} changed; its logins ended")
        elif args.cmd in ("disable", "enable"):
            operators.change(engine, row.id, actor=actor, active=args.cmd == "enable")
            print(f"{row.name} {args.cmd}d")
        elif args.cmd == "unlock":
            operators.unlock(engine, row.name)
            print(f"{row.name} may try to log in again")
    return 0


def _vouchers(cfg: Any, engine: Any, args: argparse.Namespace, actor: Any, as_json: bool) -> int:
    from hotspot.vouchers.batches import batch_codes, create_batch_audited, list_batches
    from hotspot.vouchers.keys import load_key
    from hotspot.vouchers.lookup import find_voucher
    from hotspot.vouchers.packages import all_packages, sync_packages
    from hotspot.vouchers.withdrawal import expire_unsold, void_batch, void_one

    sync_packages(engine, cfg.packages.values(), retire_missing=True)
    if args.cmd == "packages":
        rows = [{**_package_row(p), "auto_resume": p.auto_resume} for p in all_packages(engine)]
        _out(
            rows,
            as_json,
            "\n".join(
                f"{r['name']:16} {_rp(r['price']):>12}  {r['tier']:10} {_time_terms(r):>18}  "
                f"{(str(r['data_mb']) + ' MB') if r['data_mb'] else 'no quota':>10}  "
                f"{r['devices']} dev  {r['source']}{'' if r['active'] else '  (not on sale)'}"
                for r in rows
            )
            or "no packages",
        )
        return 0
    if args.cmd == "package-add":
        return _package_add(cfg, engine, args, actor, as_json)
    if args.cmd == "expire":
        n = expire_unsold(engine, actor=actor)
        _out({"expired": n}, as_json, f"{n} unsold vouchers past their shelf life withdrawn")
        return 0
    if args.cmd == "batches":
        rows = list_batches(engine)
        _out(
            rows,
            as_json,
            "\n".join(
                f"#{b['id']:<4} {b['package']:12} {b['count']:>5} × {_rp(b['price']):>10}  "
                f"unsold {b['states']['new']:>4}  sold {b['states']['sold']:>4}  "
                f"used {b['states']['used']:>4}  void {b['states']['void']:>4}  {b['created_at']:%Y-%m-%d}"
                for b in rows
            )
            or "no batches yet",
        )
        return 0
    if args.cmd == "void" and args.batch:
        r = void_batch(
            engine, args.batch, actor=actor, reason=args.reason, include_sold=args.include_sold
        )
        _kick(cfg, r["devices"])
        _out(
            r,
            as_json,
            f"batch {args.batch}: {r['voided']} vouchers withdrawn, {r['kept']} "
            "kept (sold or running; --include-sold withdraws them too)",
        )
        return 0
    key = load_key(
        cfg.portal.voucher_key_file, create=args.cmd == "create", group=cfg.control.group
    )
    if args.cmd == "create":
        batch = create_batch_audited(
            engine,
            key,
            args.package,
            args.count,
            actor=actor,
            note=args.note or None,
            max_count=cfg.operator.max_batch,
        )
        data = {
            "batch": batch.id,
            "package": batch.package,
            "count": batch.count,
            "codes": batch.codes,
            "valid_until": iso(batch.valid_until, exact=True),
        }
        _out(
            data,
            as_json,
            f"batch {batch.id}: {batch.count} × {batch.package}\n"
            + "\n".join(f"{i:>5}  {c}" for i, c in enumerate(batch.codes, 1)),
        )
    elif args.cmd == "print":
        codes = batch_codes(engine, key, args.batch)
        _out(
            [{"serial": s, "code": c} for s, c in codes],
            as_json,
            "\n".join(f"{s:>5}  {c}" for s, c in codes) or "no unused vouchers in this batch",
        )
    elif args.cmd == "void":
        vid = find_voucher(engine, key, args.code)
        if vid is None:
            raise UsageError("no voucher has this code")
        r = void_one(engine, vid, actor=actor, reason=args.reason)
        _kick(cfg, r["devices"])
        _out(r, as_json, f"voucher {vid} withdrawn (it was {r['state_before']})")
    return 0


def _kick(cfg: Any, macs: list[str]) -> None:
    """Devices on a withdrawn voucher lose their session now (best effort)."""
    if not macs:
        return
    from hotspot.control import ControlClient
    from hotspot.errors import HotspotError
    from hotspot.model import EndReason
    from hotspot.protocol import DeauthorizeRequest

    try:
        with ControlClient(cfg.control.socket, timeout=5) as ctl:
            for mac in macs:
                try:
                    ctl.send(DeauthorizeRequest(mac=mac, reason=EndReason.KICK))
                except HotspotError:
                    pass
    except HotspotError as exc:
        print(f"note: could not disconnect its devices now ({exc.message})", file=sys.stderr)


def _sales(cfg: Any, engine: Any, args: argparse.Namespace, as_json: bool) -> int:
    from hotspot.vouchers import ledger

    try:
        report = ledger.month_report(engine, cfg, args.month)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lines = [
        f"{cfg.village.name}: sales in {report['month']} "
        f"(counted at {'first use' if report['sold_at'] == 'first-use' else 'sale by a kasir, else first use'})",
        f"total: {report['count']} vouchers, {_rp(report['rupiah'])}",
        "",
        "per package:",
    ]
    lines += [
        f"  {r['package']:16} {r['count']:>5}  {_rp(r['rupiah']):>14}" for r in report["by_package"]
    ]
    lines += ["", "per kasir:"]
    lines += [
        f"  {(r['kasir'] or '(not recorded)'):16} {r['count']:>5}  {_rp(r['rupiah']):>14}"
        for r in report["by_kasir"]
    ]
    lines += ["", "per day:"]
    lines += [f"  {r['day']}  {r['count']:>5}  {_rp(r['rupiah']):>14}" for r in report["by_day"]]
    _out(report, as_json, "\n".join(lines))
    return 0
