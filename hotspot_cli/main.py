"""The ``hotspot`` command line: the composition root above every package.

Each package registers its own subcommands (``register(sub, parser_class)``, setting a
``handler(args) -> int``); this module only assembles them, dispatches, and turns errors into
exit codes: 0 done; 1 the gateway refused or failed (the message says why); 2 a bad argument
or configuration (one line naming it; nothing was applied).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from hotspot import config as config_mod
from hotspot.commandline import Handler, Parser
from hotspot.errors import ConfigError, HotspotError, UsageError

# The order is the order of ``hotspot --help``; each module with the groups it registers.
# A command imports only its own group's module (the gateway daemon does not carry Flask, the
# collector or the sync agent in its memory); ``--help`` and an unknown group import them all.
# tests/unit/hotspot_cli checks that the names here are the ones each module registers.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "provisioning.cli": ("provision",),
    "gateway.cli": ("gateway", "clients", "trusted"),
    "gateway.radius_cli": ("radius",),
    "hotspot_cli.core": ("db", "config"),
    "sync.cli": ("sync",),
    "sync.summary_cli": ("summary",),
    "collector.cli": ("collector",),
    "hotspot_cli.operator": ("operators", "vouchers", "sales"),
    "hotspot_cli.agents": ("agents",),
    "portal.cli": ("portal",),
    "demo.cli": ("demo",),
}


def requested_group(argv: Sequence[str]) -> str | None:
    """The command group ``argv`` names (its first word that is not an option), if any."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


class _PrintVersion(argparse.Action):
    """``hotspot --version``: the release and the build's revision (hotspot/version.py),
    looked up only when asked for (it may run git)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the software version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from hotspot.version import software_version

        print(f"hotspot {software_version()}")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only with the group it names (when that is a known one)."""
    p = Parser(prog="hotspot", description="Hotspot Desa village WiFi gateway")
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML configuration (default: ${config_mod.ENV_CONFIG}, else built-in defaults)",
    )
    p.add_argument("--version", action=_PrintVersion)
    sub = p.add_subparsers(dest="group", required=True, parser_class=Parser)
    group = requested_group(argv) if argv is not None else None
    known = group is not None and any(group in groups for groups in COMMAND_MODULES.values())
    for name, groups in COMMAND_MODULES.items():
        if not known or group in groups:
            importlib.import_module(name).register(sub, Parser)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"hotspot: config error: {exc.message}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"hotspot: error: {exc.message}", file=sys.stderr)
        return 2
    except HotspotError as exc:
        print(f"hotspot: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"hotspot: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hotspot: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
