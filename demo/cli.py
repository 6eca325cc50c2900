"""``hotspot demo``: the simulated village (demo/village.py)."""

from __future__ import annotations

import argparse
import re
from typing import Any


def _demo_seconds(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 20 <= n <= 86_400:
        raise argparse.ArgumentTypeError("must be between 20 and 86400 seconds")
    return n


def _demo_prefix(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9]{1,7}", value):
        raise argparse.ArgumentTypeError(
            "2-8 lower-case letters and digits, starting with a letter"
        )
    return value


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dm = sub.add_parser(
        "demo",
        help="a simulated village in network namespaces with the real "
        "gateway, portal, sync agent and collector (as root)",
    )
    dm.add_argument(
        "--duration",
        type=_demo_seconds,
        metavar="N",
        help="act for N seconds, then check every expectation and exit 0 only if "
        "all held (default: until Ctrl-C)",
    )
    dm.add_argument(
        "--phones",
        type=int,
        choices=range(4, 17),
        metavar="N",
        default=4,
        help="scripted phones, 4-16 (default 4: free, voucher, heavy, walled; "
        "more are free browsers)",
    )
    dm.add_argument(
        "--prefix",
        type=_demo_prefix,
        default="hsd",
        help="name prefix of its namespaces and work dir (default hsd)",
    )
    dm.add_argument(
        "--keep-artifacts",
        metavar="DIR",
        help="copy the logs, configuration and a summary.json here at the end",
    )
    dm.add_argument(
        "--plain",
        action="store_true",
        help="plain periodic lines even on a terminal (no live table)",
    )
    dm.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="do not apt-get the missing Debian packages; name them and exit 2",
    )
    dm.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from demo.village import Options, run  # builds its own village and configuration

    return run(
        Options(
            duration=args.duration,
            phones=args.phones,
            prefix=args.prefix,
            keep_artifacts=args.keep_artifacts,
            live=False if args.plain else None,
            install=args.install,
        )
    )
