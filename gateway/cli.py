"""``hotspot gateway …`` and ``hotspot clients …``: the daemon, and what the control socket
lets an administrator do from the gateway's terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from hotspot import config as config_mod
from hotspot import protocol as proto
from hotspot.commandline import mac_arg, print_result
from hotspot.control import ControlClient
from hotspot.errors import ConfigError
from hotspot.logsetup import LEVELS, setup_logging
from hotspot.model import EndReason, Source
from hotspot.units import fmt_bytes


def _positive_minutes(value: str) -> int:
    try:
        minutes = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 0 <= minutes <= 525_600:
        raise argparse.ArgumentTypeError("must be between 0 and 525600 (0 = no time limit)")
    return minutes


def _label(value: str) -> str:
    label = value.strip()
    if not label or len(label) > proto.MAX_LABEL:
        raise argparse.ArgumentTypeError(f"1 to {proto.MAX_LABEL} characters, not {len(label)}")
    return label


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="the privileged gateway daemon")
    gws = gw.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    run = gws.add_parser("run", help="run the gateway in the foreground (as root)")
    run.add_argument("--log-level", default="INFO", choices=LEVELS)
    run.set_defaults(handler=_run)
    st = gws.add_parser("status", help="ask the running gateway how it is")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_status)
    td = gws.add_parser("teardown", help="remove the gateway's table and shaping (as root)")
    td.set_defaults(handler=_teardown)
    rc = gws.add_parser("reconcile", help="make the kernel match the database now")
    rc.add_argument("--json", action="store_true")
    rc.set_defaults(handler=_reconcile)
    po = gws.add_parser("policy", help="the province's policy in force (version, fields)")
    po.add_argument("--json", action="store_true")
    po.set_defaults(handler=_policy)
    dr = gws.add_parser(
        "dns-reload",
        help="restart dnsmasq on the resolvers' new files (hotspot-dns-reload.service, root)",
    )
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(handler=_dns_reload)

    cl = sub.add_parser("clients", help="see and manage client devices")
    cls = cl.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    ls = cls.add_parser("list", help="clients online now")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_list)
    show = cls.add_parser("show", help="one device: session, allowance, blocked")
    show.add_argument("who", help="MAC or IP address")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)
    allow = cls.add_parser("allow", help="authorize a device")
    allow.add_argument("mac", type=mac_arg)
    allow.add_argument("--ip", help="its address (default: looked up on the LAN)")
    allow.add_argument("--tier", default="free")
    allow.add_argument(
        "--minutes",
        type=_positive_minutes,
        help="session length (default: the tier's; 0 = no limit)",
    )
    allow.add_argument("--json", action="store_true")
    allow.set_defaults(handler=_allow)
    for name, helptext, handler in (
        ("kick", "end a device's session now", _kick),
        ("block", "block a device", _block),
        ("unblock", "unblock a device", _unblock),
    ):
        c = cls.add_parser(name, help=helptext)
        c.add_argument("mac", type=mac_arg)
        if name == "block":
            c.add_argument("--reason", default="")
        c.add_argument("--json", action="store_true")
        c.set_defaults(handler=handler)
    bl = cls.add_parser("blocked", help="blocked devices")
    bl.add_argument("--json", action="store_true")
    bl.set_defaults(handler=_blocked)

    tr = sub.add_parser("trusted", help="devices that never see the portal")
    trs = tr.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    add = trs.add_parser("add", help="trust a device (or change its label or tier)")
    add.add_argument("mac", type=mac_arg)
    add.add_argument("--label", required=True, type=_label, help="e.g. 'PC kantor desa'")
    add.add_argument("--tier", required=True, help="a tier of the configuration, or 'unlimited'")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=_trust)
    rm = trs.add_parser("remove", help="take a device off the list (its session ends)")
    rm.add_argument("mac", type=mac_arg)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(handler=_untrust)
    tl = trs.add_parser("list", help="the trusted devices")
    tl.add_argument("--json", action="store_true")
    tl.set_defaults(handler=_trusted)


# The daemon's threads hand the interpreter over every millisecond instead of every five:
# a thread back from the kernel (a netlink answer not yet queued, SQLite's every row) waits
# for a busy one's interval to end. bench.engine_db at 10,000 sessions: an authorize beside
# back-to-back ticks p99 12.7 → 8.8 ms, at most 58 → 32 (bench/README.md).
SWITCH_INTERVAL_S = 0.001


def _run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    setup_logging(args.log_level)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    from gateway.daemon import Gateway
    from hotspot.collector_time import clock_setter
    from hotspot.timeutil import wall_clock

    setter = clock_setter()  # the system's clock; a shift file in tests
    return Gateway(
        cfg, clock=wall_clock(), clock_synced=setter.synchronised, clock_setter=setter
    ).run()


def _dns_reload(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    setup_logging("INFO")
    if not cfg.dns_filter.conf_dir:
        raise ConfigError("dns_filter.conf_dir", "is empty: nothing is written live")
    from gateway.dnsapply import reload

    status = reload(cfg.dns_filter.conf_dir)
    print_result(status, args.json, lambda s: f"{s['result']}: generation {s['generation']}")
    return 0 if status["result"] in ("applied", "unchanged", "nothing") else 1


def _teardown(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    setup_logging("INFO")
    from gateway.daemon import teardown

    teardown(cfg)
    print(f"removed table inet {cfg.gateway.table} and the HTB trees")
    return 0


def _control(args: argparse.Namespace) -> ControlClient:
    return ControlClient(config_mod.load(args.config).control.socket)


def _send(args: argparse.Namespace, request: proto.Request[Any], human: Any) -> int:
    with _control(args) as ctl:
        print_result(ctl.send(request), args.json, human)
    return 0


def _fmt_sessions(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no clients online"
    head = (
        f"{'MAC':17}  {'IP':15}  {'TIER':10}  {'STARTED (UTC)':20}  {'LEFT':>7}  "
        f"{'DOWN':>9}  {'UP':>9}"
    )
    lines = [head]
    for r in rows:
        left = r.get("seconds_remaining")
        left_s = "-" if left is None else f"{left // 60}m"
        lines.append(
            f"{r['mac']:17}  {r['ip']:15}  {r['tier']:10}  {r['started_at'] or '':20}  "
            f"{left_s:>7}  {fmt_bytes(r['bytes_down']):>9}  {fmt_bytes(r['bytes_up']):>9}"
        )
    return "\n".join(lines)


def _fmt_session(r: dict[str, Any]) -> str:
    return "\n".join(f"{k:18} {v}" for k, v in r.items())


def _who(value: str) -> dict[str, str]:
    if value.count(".") == 3:
        return {"ip": value}
    return {"mac": mac_arg(value)}


def _status(args: argparse.Namespace) -> int:
    return _send(args, proto.StatusRequest(), _fmt_session)


def _reconcile(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.ReconcileRequest(),
        lambda r: r["changed"] or "kernel already matched the database",
    )


def _policy(args: argparse.Namespace) -> int:
    def human(r: dict[str, Any]) -> str:
        in_force = r.get("in_force")
        head = (
            f"policy version {in_force['version']} issued {in_force['issued_at']}, "
            f"key {r['key_id']}"
            if in_force
            else "no policy from the province: the local configuration applies"
        )
        lines = [head]
        fields = in_force["policy"] if in_force else {}
        sources = in_force["sources"] if in_force else {}
        for name, value in sorted(fields.items()):
            src = sources.get(name, "")
            lines.append(f"  {name:22} {json.dumps(value, ensure_ascii=False)}  ({src})")
        if r.get("last_refusal"):
            refusal = r["last_refusal"]
            lines.append(f"last refused: {refusal['code']}: {refusal['message']}")
        return "\n".join(lines)

    return _send(args, proto.PolicyRequest(), human)


def _list(args: argparse.Namespace) -> int:
    return _send(args, proto.ListRequest(), _fmt_sessions)


def _show(args: argparse.Namespace) -> int:
    who = _who(args.who)
    request = proto.ClientRequest(ip=who.get("ip"), mac=who.get("mac"))
    return _send(args, request, lambda r: json.dumps(r, indent=2))


def _allow(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.AuthorizeRequest(
            mac=args.mac, ip=args.ip, tier=args.tier, source=Source.ADMIN, minutes=args.minutes
        ),
        _fmt_session,
    )


def _kick(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.DeauthorizeRequest(mac=args.mac, reason=EndReason.KICK),
        lambda r: f"kicked {r['mac']} (session {r['id']})",
    )


def _block(args: argparse.Namespace) -> int:
    return _send(
        args, proto.BlockRequest(mac=args.mac, reason=args.reason), lambda r: f"blocked {r['mac']}"
    )


def _unblock(args: argparse.Namespace) -> int:
    return _send(args, proto.UnblockRequest(mac=args.mac), lambda r: f"unblocked {r['mac']}")


def _blocked(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.BlockedRequest(),
        lambda rows: (
            "\n".join(f"{r['mac']}  {r['blocked_at']}  {r['reason'] or ''}" for r in rows)
            or "no blocked devices"
        ),
    )


def _trust(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.TrustRequest(
            mac=args.mac, label=args.label, tier=args.tier, created_by=_operator_name()
        ),
        lambda r: (
            f"trusted {r['mac']} ({r['label']}) on {r['tier']}"
            + (f", online at {r['ip']}" if r["ip"] else "")
        ),
    )


def _operator_name() -> str:
    """Who trusted a device from the terminal: the login name, as the audit of the CLI."""
    try:
        return f"cli:{getpass.getuser()}"[: proto.MAX_OPERATOR_NAME]
    except (KeyError, OSError):  # no name for this uid
        return "cli"


def _untrust(args: argparse.Namespace) -> int:
    return _send(
        args,
        proto.UntrustRequest(mac=args.mac),
        lambda r: (
            f"untrusted {r['mac']}"
            + (f" (session {r['ended_session']} ended)" if r["ended_session"] else "")
        ),
    )


def _fmt_trusted(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no trusted devices"
    lines = [f"{'MAC':17}  {'TIER':10}  {'NOW':15}  LABEL"]
    for r in rows:
        now = "blocked" if r["blocked"] else (r["ip"] or "not seen")
        lines.append(f"{r['mac']:17}  {r['tier']:10}  {now:15}  {r['label']}")
    return "\n".join(lines)


def _trusted(args: argparse.Namespace) -> int:
    return _send(args, proto.TrustedRequest(), _fmt_trusted)
