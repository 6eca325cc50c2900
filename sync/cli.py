"""``hotspot sync …``: the command group of the sync agent."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

from hotspot import config as config_mod
from hotspot.logsetup import LEVELS, setup_logging


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    sy = sub.add_parser("sync", help="report usage, health and sales to the province")
    sy.set_defaults(handler=handle)
    cmds = sy.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    run = cmds.add_parser("run", help="run the sync agent in the foreground")
    run.add_argument("--log-level", default="INFO", choices=LEVELS)
    once = cmds.add_parser(
        "once",
        help="collect and deliver everything once (cron, timers); exit 1 when something is left",
    )
    once.add_argument("--json", action="store_true")
    once.add_argument("--log-level", default="ERROR", choices=LEVELS)
    st = cmds.add_parser("status", help="what is waiting to be sent, last success, last error")
    st.add_argument("--json", action="store_true")
    pu = cmds.add_parser("purge", help="delete what is older than [privacy] retention_days now")
    pu.add_argument("--json", action="store_true")
    ps = cmds.add_parser("pseudonym", help="the pseudonym that stands for a device in reports")
    ps.add_argument("mac")
    ps.add_argument("--json", action="store_true")


def _out(data: Any, as_json: bool, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else human)


def _status_text(st: dict[str, Any]) -> str:
    lines = [
        f"pending records   {st['pending']}"
        + (
            f" ({', '.join(f'{k} {v}' for k, v in sorted(st['pending_by_kind'].items()))})"
            if st["pending_by_kind"]
            else ""
        ),
        f"oldest pending    {st['oldest_pending'] or '-'}",
        f"last success      {st['last_success_at'] or 'never'}",
        f"last error        {st['last_error'] or '-'}"
        + (f" at {st['last_error_at']}" if st["last_error"] else ""),
        f"delivered         {st['delivered_records']} records in {st['delivered_batches']} batches",
    ]
    c = st.get("certificate") or {}
    if c.get("state") and c["state"] != "off":
        lines.append(
            f"certificate       {c.get('name', '')}: "
            + (
                f"{c['state']} until {c['expires_at']}"
                if "expires_at" in c
                else "none (plain HTTP only)"
            )
            + (f" [{c['last']}]" if c.get("last") else "")
        )
    b = st["batch_in_flight"]
    if b:
        lines.append(
            f"batch in flight   {b['key']}: {b['records']} records, {b['bytes']} bytes, "
            f"{b['attempts']} attempts"
        )
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from hotspot.db import open_database
    from sync.agent import Agent, AgentLock, require_configured

    cfg = config_mod.load(args.config)
    cmd = args.cmd
    as_json = getattr(args, "json", False)
    if cmd == "pseudonym":
        from hotspot.mac import normalize_mac
        from hotspot.pseudonym import load_key, pseudonym

        mac = normalize_mac(args.mac)
        p = pseudonym(load_key(cfg, open_database(cfg.database.url)), mac)
        _out({"mac": mac, "pseudonym": p}, as_json, p)
        return 0
    if cmd == "purge":
        from sync.purge import purge

        setup_logging("WARNING")
        result = purge(cfg, open_database(cfg.database.url))
        _out(result, as_json, "\n".join(f"{k:15} {v}" for k, v in result.items()))
        return 0
    if cmd == "status":
        from sync.certs import LAST_STATE
        from sync.certs import status as cert_status
        from sync.outbox import Outbox

        outbox = Outbox(cfg, open_database(cfg.database.url))
        st = outbox.stats()
        st["certificate"] = {**cert_status(cfg), "last": outbox.get_state(LAST_STATE) or ""}
        _out(st, as_json, _status_text(st))
        return 0
    require_configured(cfg)
    setup_logging(args.log_level)
    # A batch is stored before it is sent: that commit must be on the disk before the
    # collector has the batch, or a power cut sends its records again in a batch of another
    # key, a period reported twice (docs/reliability.md, power cuts). A few commits a round.
    db = open_database(cfg.database.url, synchronous="FULL")
    with AgentLock(cfg):
        from hotspot.collector_time import clock_setter
        from hotspot.timeutil import wall_clock

        # the kernel's "synchronised" (in tests: the shift file's, hotspot/collector_time.py);
        # the wall clock the gateway and the portal read (in tests: shifted, bench.soak)
        agent = Agent(cfg, db, clock=wall_clock(), synced=clock_setter().synchronised)
        if cmd == "once":
            st = agent.once()
            _out(
                st,
                as_json,
                f"delivered; {st['delivered_records']} records in "
                f"{st['delivered_batches']} batches so far",
            )
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        return agent.run(stop)
