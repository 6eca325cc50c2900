"""``hotspot db …`` and ``hotspot config …``: the shared core's own commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hotspot import config as config_mod
from hotspot.commandline import print_result
from hotspot.errors import UsageError


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dbp = sub.add_parser("db", help="the database")
    dbs = dbp.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    up = dbs.add_parser(
        "upgrade", help="create or migrate the schema (a backup is made first when it has data)"
    )
    up.add_argument("--json", action="store_true")
    up.set_defaults(handler=_upgrade)
    bk = dbs.add_parser("backup", help="a consistent copy of the database, also while it runs")
    bk.add_argument("--to", metavar="FILE", help="where (default: backups/ beside the database)")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(handler=_backup)
    rs = dbs.add_parser(
        "restore", help="copy a backup back over the database (stop the services first)"
    )
    rs.add_argument("file", metavar="FILE", help="a backup made by `hotspot db backup` or upgrade")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(handler=_restore)

    cf = sub.add_parser("config", help="the configuration")
    cfs = cf.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    chk = cfs.add_parser("check", help="validate and print the effective configuration")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(handler=_check)


def _sqlite_file(args: argparse.Namespace) -> Path:
    cfg = config_mod.load(args.config)
    path = config_mod.database_path(cfg.database.url)
    if path is None:
        raise UsageError("database.url is not a SQLite file: back it up with its own tools")
    return path


def _upgrade(args: argparse.Namespace) -> int:
    from hotspot.db import current_revision, make_engine, migrate

    cfg = config_mod.load(args.config)
    engine = make_engine(cfg.database.url)
    before = current_revision(engine)
    backup = migrate(engine)
    result = {
        "database": cfg.database.url,
        "from": before,
        "to": current_revision(engine),
        "backup": str(backup) if backup else None,
    }
    engine.dispose()
    print_result(
        result,
        args.json,
        lambda r: (
            f"database at {r['database']} is up to date"
            + (f" (was {r['from']}, now {r['to']}; backup {r['backup']})" if r["backup"] else "")
        ),
    )
    return 0


def _backup(args: argparse.Namespace) -> int:
    from hotspot import backup

    path = _sqlite_file(args)
    made = backup.make_backup(path, Path(args.to) if args.to else None)
    result = {
        "backup": str(made),
        "revision": backup.revision_of(made),
        "bytes": made.stat().st_size,
    }
    print_result(
        result, args.json, lambda r: f"backed up to {r['backup']} (revision {r['revision']})"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from hotspot import backup

    path = _sqlite_file(args)
    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"no backup file at {source}")
    revision = backup.check_backup(source)
    kept = backup.restore(source, path)
    result = {
        "restored": str(source),
        "revision": revision,
        "previous": str(kept) if kept else None,
    }
    print_result(
        result,
        args.json,
        lambda r: (
            f"restored {r['restored']} (revision {r['revision']}); "
            f"the database as it was is kept in {r['previous']}"
        ),
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    print_result(cfg.raw, args.json, lambda d: json.dumps(d, indent=2, sort_keys=True))
    return 0
