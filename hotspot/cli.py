"""The ``hotspot`` command line.

Exit codes: 0 done; 1 the gateway refused or failed (the message says why); 2 a bad argument
or configuration (one line naming it; nothing was applied).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, NoReturn, Sequence

from sqlalchemy.exc import SQLAlchemyError

from hotspot import __version__, config as config_mod
from hotspot import protocol as proto
from hotspot.control import ControlClient
from hotspot.errors import ConfigError, HotspotError, UsageError
from hotspot.model import EndReason, Source, normalize_mac
from hotspot.units import fmt_bytes

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_minutes(value: str) -> int:
    try:
        minutes = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 0 <= minutes <= 525_600:
        raise argparse.ArgumentTypeError("must be between 0 and 525600 (0 = no time limit)")
    return minutes


def _mac(value: str) -> str:
    try:
        return normalize_mac(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def setup_logging(level: str = "INFO") -> None:
    """Entry points only: plain lines on stderr (journald adds time and unit)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt,
                        stream=sys.stderr)
    # Libraries' debug output (every netlink message) drowns ours.
    for noisy in ("alembic", "pyroute2", "scapy", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _print(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(human(data))


def _fmt_sessions(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no clients online"
    head = f"{'MAC':17}  {'IP':15}  {'TIER':10}  {'STARTED (UTC)':20}  {'LEFT':>7}  {'DOWN':>9}  {'UP':>9}"
    lines = [head]
    for r in rows:
        left = r.get("seconds_remaining")
        left_s = "-" if left is None else f"{left // 60}m"
        lines.append(f"{r['mac']:17}  {r['ip']:15}  {r['tier']:10}  {r['started_at'] or '':20}  "
                     f"{left_s:>7}  {fmt_bytes(r['bytes_down']):>9}  {fmt_bytes(r['bytes_up']):>9}")
    return "\n".join(lines)


def _fmt_session(r: dict[str, Any]) -> str:
    return "\n".join(f"{k:18} {v}" for k, v in r.items())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hotspot", description="Hotspot Desa village WiFi gateway")
    p.add_argument("--config", metavar="FILE",
                   help=f"TOML configuration (default: ${config_mod.ENV_CONFIG}, "
                        "else built-in defaults)")
    p.add_argument("--version", action="version", version=f"hotspot {__version__}")
    sub = p.add_subparsers(dest="group", required=True, parser_class=_Parser)

    # -- provisioning (issue 6): provisioning/install.py -----------------------------------
    pv = sub.add_parser("provision", help="install and start a village gateway from one file "
                                          "(as root)")
    pv.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                    help="the village's TOML file (default: the installed "
                         f"{config_mod.DEFAULT_CONFIG_PATH})")
    pv.add_argument("--root", metavar="DIR",
                    help="write the files under DIR (a staging tree); touch nothing else")
    pv.add_argument("--dry-run", action="store_true",
                    help="print the differences and the steps; change nothing")

    gw = sub.add_parser("gateway", help="the privileged gateway daemon")
    gws = gw.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    run = gws.add_parser("run", help="run the gateway in the foreground (as root)")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    st = gws.add_parser("status", help="ask the running gateway how it is")
    st.add_argument("--json", action="store_true")
    gws.add_parser("teardown", help="remove the gateway's table and shaping (as root)")
    rc = gws.add_parser("reconcile", help="make the kernel match the database now")
    rc.add_argument("--json", action="store_true")

    cl = sub.add_parser("clients", help="see and manage client devices")
    cls = cl.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    ls = cls.add_parser("list", help="clients online now")
    ls.add_argument("--json", action="store_true")
    show = cls.add_parser("show", help="one device: session, allowance, blocked")
    show.add_argument("who", help="MAC or IP address")
    show.add_argument("--json", action="store_true")
    allow = cls.add_parser("allow", help="authorize a device")
    allow.add_argument("mac", type=_mac)
    allow.add_argument("--ip", help="its address (default: looked up on the LAN)")
    allow.add_argument("--tier", default="free")
    allow.add_argument("--minutes", type=_positive_minutes,
                       help="session length (default: the tier's; 0 = no limit)")
    allow.add_argument("--json", action="store_true")
    for name, helptext in (("kick", "end a device's session now"), ("block", "block a device"),
                           ("unblock", "unblock a device")):
        c = cls.add_parser(name, help=helptext)
        c.add_argument("mac", type=_mac)
        if name == "block":
            c.add_argument("--reason", default="")
        c.add_argument("--json", action="store_true")
    bl = cls.add_parser("blocked", help="blocked devices")
    bl.add_argument("--json", action="store_true")

    dbp = sub.add_parser("db", help="the database")
    dbs = dbp.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    dbs.add_parser("upgrade", help="create or migrate the schema")

    # -- sync agent and provincial collector (issue 5): sync/cli.py, collector/cli.py --------
    try:
        from collector.cli import add_parser as add_collector_parser
        from sync.cli import add_parser as add_sync_parser
    except ModuleNotFoundError as exc:  # an install whose setup.cfg predates these packages
        if exc.name not in ("sync", "collector"):
            raise
    else:
        add_sync_parser(sub, _Parser)
        add_collector_parser(sub, _Parser)

    # -- operator console (issue 4): hotspot/cli_operator.py -------------------------------
    from hotspot.cli_operator import add_parser as add_operator_parser

    add_operator_parser(sub, _Parser)

    cf = sub.add_parser("config", help="the configuration")
    cfs = cf.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    chk = cfs.add_parser("check", help="validate and print the effective configuration")
    chk.add_argument("--json", action="store_true")

    # -- portal (captive portal, issue 3) ----------------------------------------------------
    po = sub.add_parser("portal", help="the captive portal (unprivileged web app)")
    pos = po.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    prun = pos.add_parser("run", help="serve the portal with gunicorn (drops to portal.user)")
    prun.add_argument("--bind", metavar="HOST:PORT",
                      help="listen here (default: the LAN address and network.portal_port)")
    prun.add_argument("--workers", type=int, choices=range(1, 17), metavar="N",
                      help="worker processes (default: portal.workers, else from the cores)")
    prun.add_argument("--tls", action="store_true",
                      help="the HTTPS listener for portal.hostname on portal.https_port")
    prun.add_argument("--log-level", default="INFO",
                      choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    purls = pos.add_parser("urls", help="where the portal is; what DHCP option 114 announces")
    purls.add_argument("--json", action="store_true")

    # -- the demo village (issue 6): hotspot/demo/ -------------------------------------------
    dm = sub.add_parser("demo", help="a simulated village in network namespaces with the real "
                                     "gateway, portal, sync agent and collector (as root)")
    dm.add_argument("--duration", type=_demo_seconds, metavar="N",
                    help="act for N seconds, then check every expectation and exit 0 only if "
                         "all held (default: until Ctrl-C)")
    dm.add_argument("--phones", type=int, choices=range(4, 17), metavar="N", default=4,
                    help="scripted phones, 4-16 (default 4: free, voucher, heavy, walled; "
                         "more are free browsers)")
    dm.add_argument("--prefix", type=_demo_prefix, default="hsd",
                    help="name prefix of its namespaces and work dir (default hsd)")
    dm.add_argument("--keep-artifacts", metavar="DIR",
                    help="copy the logs, configuration and a summary.json here at the end")
    dm.add_argument("--plain", action="store_true",
                    help="plain periodic lines even on a terminal (no live table)")
    return p


def _demo_seconds(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 20 <= n <= 86_400:
        raise argparse.ArgumentTypeError("must be between 20 and 86400 seconds")
    return n


def _demo_prefix(value: str) -> str:
    import re

    if not re.fullmatch(r"[a-z][a-z0-9]{1,7}", value):
        raise argparse.ArgumentTypeError("2-8 lower-case letters and digits, starting with a "
                                         "letter")
    return value


def _client(cfg: config_mod.Config) -> ControlClient:
    return ControlClient(cfg.control.socket)


def _who(value: str) -> dict[str, str]:
    if value.count(".") == 3:
        return {"ip": value}
    return {"mac": _mac(value)}


def run(args: argparse.Namespace) -> int:
    if args.group == "provision":  # reads (and installs) the file itself
        from provisioning.install import main as provision

        return provision(args)
    if args.group == "demo":  # builds its own village and configuration (hotspot/demo/)
        from hotspot.demo import main as demo

        return demo(args)
    if args.group == "collector":  # the collector reads its own file (collector/config.py)
        from collector.cli import run as run_collector

        return run_collector(args)
    cfg = config_mod.load(args.config)
    group, cmd = args.group, args.cmd
    as_json = getattr(args, "json", False)

    if group in ("operators", "vouchers", "sales"):
        from hotspot.cli_operator import run as run_operator

        return run_operator(cfg, args)
    if group == "sync":
        from sync.cli import run as run_sync

        return run_sync(cfg, args)
    if group == "gateway" and cmd == "run":
        setup_logging(args.log_level)
        from gateway.daemon import Gateway

        return Gateway(cfg).run()
    if group == "gateway" and cmd == "teardown":
        setup_logging("INFO")
        from gateway.daemon import teardown

        teardown(cfg)
        print(f"removed table inet {cfg.gateway.table} and the HTB trees")
        return 0
    if group == "db":
        from hotspot.db import open_database

        open_database(cfg.database.url)
        print(f"database at {cfg.database.url} is up to date")
        return 0
    if group == "config":
        _print(cfg.raw, as_json, lambda d: json.dumps(d, indent=2, sort_keys=True))
        return 0
    if group == "portal":  # the captive portal: kernel-free, no control-socket client here
        from portal.urls import PortalUrls

        if cmd == "urls":
            urls = PortalUrls.from_config(cfg)
            data = {"captive_redirect": urls.captive_base + "/", "user_portal_url":
                    urls.user_portal_url, "captive_api_url": urls.api_url,
                    "venue_info_url": urls.venue_info_url,
                    "dnsmasq": f'dhcp-option=114,"{urls.api_url}"'}
            _print(data, as_json, lambda d: "\n".join(f"{k:17} {v}" for k, v in d.items()))
            return 0
        setup_logging(args.log_level)
        from portal.server import run as run_portal

        return run_portal(cfg, tls=args.tls, bind=args.bind, workers=args.workers,
                          log_level=args.log_level)

    with _client(cfg) as ctl:
        if group == "gateway" and cmd == "status":
            _print(ctl.send(proto.StatusRequest()), as_json, _fmt_session)
        elif group == "gateway" and cmd == "reconcile":
            _print(ctl.send(proto.ReconcileRequest()), as_json,
                   lambda r: r["changed"] or "kernel already matched the database")
        elif cmd == "list":
            _print(ctl.send(proto.ListRequest()), as_json, _fmt_sessions)
        elif cmd == "show":
            _print(ctl.send(proto.ClientRequest(**_who(args.who))), as_json,
                   lambda r: json.dumps(r, indent=2))
        elif cmd == "allow":
            _print(ctl.send(proto.AuthorizeRequest(mac=args.mac, ip=args.ip, tier=args.tier,
                                                   source=Source.ADMIN, minutes=args.minutes)),
                   as_json, _fmt_session)
        elif cmd == "kick":
            _print(ctl.send(proto.DeauthorizeRequest(mac=args.mac, reason=EndReason.KICK)), as_json,
                   lambda r: f"kicked {r['mac']} (session {r['id']})")
        elif cmd == "block":
            _print(ctl.send(proto.BlockRequest(mac=args.mac, reason=args.reason)), as_json,
                   lambda r: f"blocked {r['mac']}")
        elif cmd == "unblock":
            _print(ctl.send(proto.UnblockRequest(mac=args.mac)), as_json,
                   lambda r: f"unblocked {r['mac']}")
        elif cmd == "blocked":
            _print(ctl.send(proto.BlockedRequest()), as_json,
                   lambda rows: "\n".join(f"{r['mac']}  {r['blocked_at']}  {r['reason'] or ''}"
                                          for r in rows) or "no blocked devices")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
