"""``hotspot db …`` and ``hotspot config …``: the shared core's own commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hotspot import config as config_mod
from hotspot.commandline import print_result


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dbp = sub.add_parser("db", help="the database")
    dbs = dbp.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    dbs.add_parser("upgrade", help="create or migrate the schema").set_defaults(handler=_upgrade)

    cf = sub.add_parser("config", help="the configuration")
    cfs = cf.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    chk = cfs.add_parser("check", help="validate and print the effective configuration")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(handler=_check)


def _upgrade(args: argparse.Namespace) -> int:
    from hotspot.db import open_database

    cfg = config_mod.load(args.config)
    open_database(cfg.database.url)
    print(f"database at {cfg.database.url} is up to date")
    return 0


def _check(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    print_result(cfg.raw, args.json, lambda d: json.dumps(d, indent=2, sort_keys=True))
    return 0
