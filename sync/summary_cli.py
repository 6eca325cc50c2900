"""``hotspot summary …``: the daily summary to the BUMDes head (issue #13, item 7)."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading
from typing import Any

from hotspot import config as config_mod
from hotspot.commandline import print_result, whole_number
from hotspot.logsetup import LEVELS, setup_logging

LOCK_WAIT = 60.0  # `send-now` waits this long for the service's round to finish


FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 30)  # the ledger's range


def _date(value: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date like 2026-11-30: {value!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return day


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    sm = sub.add_parser("summary", help="the daily summary to the BUMDes head (Telegram)")
    sm.set_defaults(handler=handle)
    cmds = sm.add_subparsers(dest="cmd", required=True, parser_class=parser_class)
    show = cmds.add_parser("show", help="print the message a day's summary would be")
    show.add_argument("--date", type=_date, help="village day (default: today)")
    show.add_argument("--json", action="store_true")
    now = cmds.add_parser("send-now", help="queue a summary of today so far and send the queue now")
    now.add_argument("--json", action="store_true")
    q = cmds.add_parser("queue", help="summaries waiting, sent and refused")
    q.add_argument("--json", action="store_true")
    rt = cmds.add_parser("retry", help="queue refused summaries again (after fixing the token)")
    rt.add_argument("id", nargs="?", type=lambda v: whole_number(v, 1, 2**31), default=None)
    rt.add_argument("--json", action="store_true")
    once = cmds.add_parser("once", help="one round: make a due summary, send the queue")
    once.add_argument("--json", action="store_true")
    once.add_argument("--log-level", default="WARNING", choices=LEVELS)
    run = cmds.add_parser("run", help="the summary service in the foreground")
    run.add_argument("--log-level", default="INFO", choices=LEVELS)


def _queue_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no summaries yet"
    lines = []
    for r in rows:
        what = "daily " if r["scheduled"] else "manual"
        line = f"#{r['id']:<4} {r['day']}  {what}  {r['state']:<8} attempts {r['attempts']}"
        if r["state"] == "sent":
            line += f"  sent {r['sent_at']}"
        elif r["next_attempt_at"]:
            line += f"  next try {r['next_attempt_at']}"
        if r["last_error"] and r["state"] != "sent":
            line += f"  error: {r['last_error']}"
        lines.append(line)
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from hotspot import summary as summary_mod
    from hotspot.db import open_database
    from sync.summary import Sender, SenderLock, require_enabled

    cfg = config_mod.load(args.config)
    cmd = args.cmd
    as_json = getattr(args, "json", False)
    if cmd in ("run", "once"):
        setup_logging(args.log_level)
    else:
        setup_logging("WARNING")
    # FULL: the "sending" and "sent" marks survive a power cut (the at-least-once window).
    db = open_database(cfg.database.url, synchronous="FULL")
    sender = Sender(cfg, db)
    if cmd == "show":
        day = args.date or summary_mod.today(cfg, sender.clock())
        text = sender.compose(day)
        print_result({"day": day.isoformat(), "text": text}, as_json, lambda d: d["text"])
        return 0
    if cmd == "queue":
        rows = summary_mod.queue(db)
        data = {"settings": summary_mod.settings(cfg.summary), "summaries": rows}
        print_result(data, as_json, lambda d: _queue_text(d["summaries"]))
        return 0
    if cmd == "retry":
        with SenderLock(cfg, wait=LOCK_WAIT):
            n = sender.retry_failed(args.id)
        print_result({"queued": n}, as_json, lambda d: f"{d['queued']} summaries queued again")
        return 0
    require_enabled(cfg)
    if cmd == "run":
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        return sender.run(stop)
    with SenderLock(cfg, wait=LOCK_WAIT if cmd == "send-now" else 0.0):
        if cmd == "send-now":
            made = sender.queue_summary(summary_mod.today(cfg, sender.clock()), scheduled=False)
            result: dict[str, Any] = {"made": made, **sender.drain()}
        else:
            result = sender.tick()
    rows = summary_mod.queue(db)
    left = sum(1 for r in rows if r["state"] in ("pending", "sending"))
    result["waiting"] = left
    print_result(
        result,
        as_json,
        lambda d: f"sent {d['sent']}, refused {d['failed']}, waiting {d['waiting']}",
    )
    return 0 if not result["failed"] and not left else 1
