"""``hotspot agents``: warung resellers from the gateway's terminal (issue #13, item 4;
docs/operator-console.md). Actions are audited as ``cli:<user>``.

    hotspot agents add NAME [--full-name TEXT]       # password prompted twice, or one line on stdin
    hotspot agents list | ledger [--json]
    hotspot agents assign BATCH AGENT --price P [--json]
    hotspot agents settle AGENT AMOUNT [--note TEXT] [--json]

A settlement from the CLI gets a fresh one-time token each run: running the command twice
records two payments (the console's form is the one protected against a double submit).
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from hotspot.commandline import whole_number
from hotspot.errors import UsageError
from hotspot_cli.operator import _out, _rp, add_account, console_database


def _batch(value: str) -> int:
    return whole_number(value, 1, 10**9)


def _rupiah(value: str) -> int:
    """Whole Rupiah as typed (``45000``, ``45.000``, ``Rp45.000``); the range is checked by
    the service, with its one-line message."""
    from hotspot.vouchers.agents import check_amount

    try:
        return check_amount(value, low=-(10**12), high=10**12)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def register(sub: Any, parser_class: type) -> None:
    ag = sub.add_parser("agents", help="agents (warung resellers): batches, payments, ledger")
    ag.set_defaults(handler=handle)
    ags = ag.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    a = ags.add_parser("add", help="make an agent's login (password prompted, or from stdin)")
    a.add_argument("name")
    a.add_argument("--full-name", default="")
    a.add_argument("--json", action="store_true")
    ls = ags.add_parser("list", help="the agents and their batches")
    ls.add_argument("--json", action="store_true")
    asg = ags.add_parser("assign", help="give a batch to an agent at the agent's price")
    asg.add_argument("batch", type=_batch)
    asg.add_argument("agent")
    asg.add_argument("--price", required=True, type=_rupiah, metavar="RUPIAH")
    asg.add_argument("--json", action="store_true")
    st = ags.add_parser("settle", help="record a payment from an agent")
    st.add_argument("agent")
    st.add_argument("amount", type=_rupiah, metavar="RUPIAH")
    st.add_argument("--note", default="")
    st.add_argument("--json", action="store_true")
    lg = ags.add_parser("ledger", help="per agent: stock, sold, due, commission, paid, owed")
    lg.add_argument("--json", action="store_true")


def handle(args: argparse.Namespace) -> int:
    from hotspot import config as config_mod

    return run(config_mod.load(args.config), args)


def run(cfg: Any, args: argparse.Namespace) -> int:
    from hotspot.vouchers import agents

    as_json = getattr(args, "json", False)
    with console_database(cfg) as (engine, actor):
        if args.cmd == "add":
            row = add_account(engine, args, "agen", actor)
            _out(row, as_json, f"agent {row['name']} created")
        elif args.cmd == "assign":
            got = agents.assign(engine, args.batch, args.agent, args.price, actor=actor)
            _out(
                got,
                as_json,
                f"batch {got['batch']} ({got['package']}) given to {got['agent']} at "
                f"{_rp(got['price'])} a card (buyers pay {_rp(got['retail'])})",
            )
        elif args.cmd == "settle":
            got = agents.settle(
                engine,
                args.agent,
                args.amount,
                secrets.token_urlsafe(24),
                actor=actor,
                note=args.note,
            )
            got.pop("repeat", None)
            _out(got, as_json, f"payment of {_rp(got['amount'])} from {got['agent']} recorded")
        elif args.cmd == "list":
            rows = [
                {**r, "batches": agents.agent_batches(engine, r["id"])}
                for r in agents.ledger(engine)
            ]
            _out(
                rows,
                as_json,
                "\n".join(
                    f"{r['agent']:16} {'active' if r['active'] else 'disabled':8} "
                    f"batches {', '.join('#' + str(b['id']) for b in r['batches']) or '-'}"
                    for r in rows
                )
                or "no agents yet: hotspot agents add NAME",
            )
        else:
            rows = agents.ledger(engine)
            head = (
                f"{'agent':16} {'stock':>5} {'sold':>5} {'sold (retail)':>14} {'due':>12} "
                f"{'commission':>12} {'paid':>12} {'owed':>12}"
            )
            _out(
                rows,
                as_json,
                "\n".join(
                    [head]
                    + [
                        f"{r['agent']:16} {r['stock']:>5} {r['sold']:>5} "
                        f"{_rp(r['sold_rupiah']):>14} {_rp(r['due']):>12} "
                        f"{_rp(r['commission']):>12} {_rp(r['paid']):>12} {_rp(r['owed']):>12}"
                        for r in rows
                    ]
                )
                if rows
                else "no agents yet: hotspot agents add NAME",
            )
    return 0
