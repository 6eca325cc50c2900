"""The daily summary against a real HTTP server speaking the Bot API's ``sendMessage`` on
loopback (tests/unit/sync/botapi.py), with the real client (urllib) and, where a process
matters, the real ``hotspot summary`` command:

* the uplink is down for three days (nothing listens): three summaries queue up; the
  server comes back: all three are delivered, in order, once;
* a wrong token (401): kept with its error in ``hotspot summary queue``, not retried in a
  loop; malformed CLI input is one line and exit 2;
* kill -9 of the sending process while Telegram holds the request: the message arrives at
  most once more (the documented at-least-once window), then never again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot.db import open_database
from hotspot.model_summary import DailySummary, SummaryState
from sync.summary import Sender
from tests.unit.commands import ROOT, hotspot_in_process, hotspot_process
from tests.unit.sync.botapi import CHAT, TOKEN, BotApi, free_port
from tests.unit.sync.test_summary import MACHINE, SEND_UTC, Clock, summary_config

WRONG_TOKEN = "123456789:ZZZabcdefghijklmnopqrstuvwxyz9999"


@pytest.fixture
def bot():
    api = BotApi()
    yield api
    api.stop()


def _rows(db):
    with Session(db) as s:
        return list(s.scalars(select(DailySummary).order_by(DailySummary.id)))


def test_three_days_offline_then_all_delivered_in_order_once(tmp_path, bot, caplog):
    caplog.set_level("DEBUG")
    cfg = summary_config(tmp_path, api_base=bot.base)
    db = open_database(cfg.database.url)
    clock = Clock(SEND_UTC)
    naps: list[float] = []
    sender = Sender(cfg, db, clock=clock, rng=lambda: 0.5, sleep=naps.append, machine=MACHINE)
    # nothing listens on the port: the uplink is down for three evenings
    for day in range(3):
        clock.now = SEND_UTC + dt.timedelta(days=day)
        result = sender.tick()
        assert result["made"] is not None and result["retry"] == 1, result
    assert [r.state for r in _rows(db)] == [SummaryState.PENDING] * 3
    assert bot.received == []
    assert "Connection refused" in (_rows(db)[0].last_error or "")
    # the day's outage is in the third summary (the probe saw the uplink go on day 1)
    assert "Internet putus: 1 kali" in _rows(db)[2].text
    # the uplink returns
    bot.start()
    clock.now += dt.timedelta(hours=1)
    result = sender.tick()
    assert result["sent"] == 3, result
    assert naps == [1.0, 1.0]  # one message a second to one chat
    assert [t.splitlines()[1] for t in bot.delivered] == [
        "Senin, 30 November 2026 (WIB)",
        "Selasa, 1 Desember 2026 (WIB)",
        "Rabu, 2 Desember 2026 (WIB)",
    ]
    assert all(m["chat_id"] == CHAT and m["token"] == TOKEN for m in bot.received)
    assert [r.message_id for r in _rows(db)] == [1, 2, 3]
    # later rounds send nothing again
    for minutes in (1, 60, 120):
        clock.now += dt.timedelta(minutes=minutes)
        sender.tick()
    assert len(bot.received) == 3 and len(bot.delivered) == 3
    assert "not sent" in caplog.text and "sent" in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text  # the token is in the URL, never in a log
    db.dispose()


def _config_file(tmp_path, bot, token=TOKEN):
    # No scheduled summary may get in the way of these tests. A summary is due once the
    # village's time of day reaches send_at, so "twelve hours from now" was due whenever the
    # tests ran in the afternoon (WIB): send_at is the day's last minute instead, due only
    # if a test runs across 23:59 WIB.
    wib = "23:59"
    path = tmp_path / "hotspot.toml"
    path.write_text(
        f"""
[village]
name = "Desa Sungai Duren"
timezone = "Asia/Jakarta"
[database]
url = "sqlite:///{tmp_path}/gw.db"
[control]
socket = "{tmp_path}/control.sock"
[summary]
enabled = true
telegram_bot_token = "{token}"
telegram_chat_id = "{CHAT}"
send_at = "{wib}"
api_base = "{bot.base}"
"""
    )
    return path


def test_wrong_token_is_surfaced_and_not_retried_in_a_loop(tmp_path, bot, capsys):
    bot.start()
    conf = _config_file(tmp_path, bot, token=WRONG_TOKEN)
    sent = hotspot_process(conf, "summary", "send-now", "--json")
    assert sent.returncode == 1, sent
    assert json.loads(sent.stdout)["failed"] == 1
    assert WRONG_TOKEN not in sent.stdout + sent.stderr
    assert WRONG_TOKEN.split(":")[1] not in sent.stderr
    # The rest in this process: the same commands without a Python start each (93 s under
    # load as processes).
    for _ in range(2):  # the service's next rounds: no new request
        again = hotspot_in_process(capsys, conf, "summary", "once", "--json")
        assert again.returncode == 0, again
    assert len(bot.received) == 1
    queue = hotspot_in_process(capsys, conf, "summary", "queue", "--json")
    data = json.loads(queue.stdout)
    assert data["settings"]["token"] == "123456789:••••9999"
    (row,) = data["summaries"]
    assert row["state"] == "failed" and row["last_error"] == "Telegram answered 401: Unauthorized"
    human = hotspot_in_process(capsys, conf, "summary", "queue")
    assert "failed" in human.stdout and "401: Unauthorized" in human.stdout
    assert WRONG_TOKEN.split(":")[1] not in human.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("summary", "show", "--date", "30-11-2026"),
        ("summary", "show", "--date", "0001-01-01"),
        ("summary", "show", "--date", "9999-12-31"),
        ("summary", "retry", "abc"),
        ("summary", "retry", "0"),
        ("summary", "frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, bot, capsys, args):
    done = hotspot_in_process(capsys, _config_file(tmp_path, bot), *args)
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_send_now_when_off_is_a_config_error(tmp_path, bot, capsys):
    conf = _config_file(tmp_path, bot)
    conf.write_text(conf.read_text().replace("enabled = true", "enabled = false"))
    done = hotspot_in_process(capsys, conf, "summary", "send-now")
    assert done.returncode == 2 and "summary.enabled" in done.stderr
    shown = hotspot_in_process(capsys, conf, "summary", "show")  # show works with the summary off
    assert shown.returncode == 0 and shown.stdout.startswith("Ringkasan WiFi Desa Sungai Duren")


def test_kill_9_mid_send_sends_at_most_once_more(tmp_path, bot, capsys):
    bot.start()
    bot.hold.set()  # Telegram receives the message and does not answer (yet)
    conf = _config_file(tmp_path, bot)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotspot_cli", "--config", str(conf), "summary", "send-now"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bot.wait_received(1, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    db = open_database(f"sqlite:///{tmp_path}/gw.db")
    (row,) = _rows(db)
    assert row.state is SummaryState.SENDING  # the mark made before the request survived
    bot.release.set()  # Telegram answers the dead connection: the message *was* delivered
    bot.hold.clear()
    deadline = time.monotonic() + 10
    while len(bot.delivered) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # the restarted sender sends it again: the one duplicate the window allows
    again = hotspot_process(conf, "summary", "once")
    assert again.returncode == 0, again
    assert len(bot.received) == 2
    (row,) = _rows(db)
    assert (row.state, row.attempts) == (SummaryState.SENT, 2)
    # and never again
    for _ in range(2):
        assert hotspot_in_process(capsys, conf, "summary", "once").returncode == 0
    assert len(bot.received) == 2
    assert bot.received[0]["text"] == bot.received[1]["text"]
    db.dispose()


def test_form_encoded_body_is_understood_by_the_test_server(bot):
    """The test server speaks both bodies the Bot API takes (JSON, form): check the form."""
    import urllib.parse
    import urllib.request

    bot.start()
    body = urllib.parse.urlencode({"chat_id": CHAT, "text": "halo"}).encode()
    with urllib.request.urlopen(f"{bot.base}/bot{TOKEN}/sendMessage", data=body) as resp:
        answer = json.loads(resp.read())
    assert answer["ok"] is True and answer["result"]["text"] == "halo"
    assert free_port() != bot.port
