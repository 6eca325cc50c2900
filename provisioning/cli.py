"""``hotspot provision``: turn a Debian box into a village gateway from one file."""

from __future__ import annotations

import argparse
from typing import Any

from hotspot import config as config_mod


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    pv = sub.add_parser(
        "provision", help="install and start a village gateway from one file (as root)"
    )
    pv.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"the village's TOML file (default: the installed {config_mod.DEFAULT_CONFIG_PATH})",
    )
    pv.add_argument(
        "--root",
        metavar="DIR",
        help="write the files under DIR (a staging tree); touch nothing else",
    )
    pv.add_argument(
        "--dry-run", action="store_true", help="print the differences and the steps; change nothing"
    )
    pv.set_defaults(handler=_provision)


def _provision(args: argparse.Namespace) -> int:
    from provisioning.install import main  # reads (and installs) the file itself

    return main(args)
