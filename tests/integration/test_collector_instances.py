"""Two collector instances (two gunicorn masters, two workers each) against one PostgreSQL,
started at the same moment on an empty database: they serve the same data, and gateways
posting to both at once — the same batch to both instances simultaneously, the same signed
request to both, batches out of order and replayed later — are counted exactly once
(issue #14 item 3). Each instance's own counters (its /metrics) add up to what the database
holds."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from collector.store import add_gateway, create_token
from hotspot import wire
from tests.integration.conftest import ROOT, hotspot_cmd
from tests.unit.collector.helpers import body_of, health_record, signed_headers, usage
from testsupport.loopback import free_port
from testsupport.testbed import write_toml

pytestmark = pytest.mark.postgres

GATEWAYS = [f"desa-{i}" for i in range(4)]
BATCHES = 6  # per gateway, each carrying the same device-hours with growing totals
CLIENTS = [f"{i:016x}" for i in range(8)]
HOURS = ["2026-11-28T03:00:00Z", "2026-11-28T04:00:00Z"]


def down_of(batch: int, client: int, hour: int) -> int:
    return 1000 * (batch + 1) + 10 * client + hour


def batch_records(batch: int) -> list[dict[str, Any]]:
    records = [
        usage(client=c, hour=h, seconds=60 * (batch + 1), down=down_of(batch, i, j), up=batch + 1)
        for i, c in enumerate(CLIENTS)
        for j, h in enumerate(HOURS)
    ]
    records.append(health_record(sampled_at=f"2026-11-28T03:{batch:02d}:05Z"))
    return records


class Instance:
    def __init__(self, config: Path, port: int, log: Path):
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            hotspot_cmd(config, "collector", "run", "--bind", f"127.0.0.1:{port}"),
            cwd=ROOT,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"collector on {self.port} not up:\n{self.log.read_text()[-3000:]}")

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            self.base + wire.INGEST_PATH, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str, token: str | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text_ = self.get("/metrics").decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text_)
            for s in fam.samples
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def at_once(calls: list[Any]) -> list[Any]:
    """Run the callables in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def test_two_instances_ingest_concurrently_and_count_once(pg_url, tmp_path):
    config = write_toml(
        tmp_path / "collector.toml",
        {"collector": {"database_url": pg_url, "workers": 2, "threads": 4}},
    )
    # Both started at once on the empty database: the migrations take turns
    # (collector/migrations/env.py's advisory lock).
    instances = [Instance(config, free_port(), tmp_path / f"collector-{n}.log") for n in ("a", "b")]
    try:
        for inst in instances:
            inst.wait()
        engine = create_engine(pg_url)
        secrets_of: dict[str, str] = {}
        with Session(engine) as s, s.begin():
            for gid in GATEWAYS:
                secrets_of[gid] = add_gateway(s, gid)["secret"]
            token = create_token(s, "diskominfo")["token"]

        rng = random.Random(14)
        prepared = []
        for gid in GATEWAYS:
            order = list(range(BATCHES))
            rng.shuffle(order)  # out of order: a later batch's larger totals may come first
            for b in order:
                body, key = body_of(batch_records(b), gateway=gid)
                prepared.append((gid, b, body, key))

        def send(inst: Instance, gid: str, body: bytes, key: str, headers=None):
            h = headers or signed_headers(body, key, gateway=gid, secret=secrets_of[gid])
            return inst.post(body, h)

        jobs = []
        for n, (gid, _b, body, key) in enumerate(prepared):
            a, b = instances
            if n % 3 == 0:
                # the same signed request to both instances at once: a replay of itself
                same = signed_headers(body, key, gateway=gid, secret=secrets_of[gid])
                jobs.append(
                    lambda a=a, b=b, g=gid, x=body, k=key, h=same: at_once(
                        [lambda: send(a, g, x, k, h), lambda: send(b, g, x, k, h)]
                    )
                )
            else:
                # the agent's retry after a lost answer: the same batch, signed anew, to both
                jobs.append(
                    lambda a=a, b=b, g=gid, x=body, k=key: at_once(
                        [lambda: send(a, g, x, k), lambda: send(b, g, x, k)]
                    )
                )
        # several gateways posting at the same time, each pair itself simultaneous
        answers: list[tuple[int, dict[str, Any]]] = []
        lock = threading.Lock()

        def worker(mine: list[Any]) -> None:
            for job in mine:
                got = job()
                with lock:
                    answers.extend(got)

        threads = [threading.Thread(target=worker, args=(jobs[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        # and every batch replayed once more, later, to either instance
        for gid, _b, body, key in prepared:
            answers.append(send(rng.choice(instances), gid, body, key))

        statuses = Counter(status for status, _ in answers)
        assert set(statuses) <= {200, 409}, answers
        applied = [a for s, a in answers if s == 200 and not a["duplicate"]]
        duplicates = [a for s, a in answers if s == 200 and a["duplicate"]]
        replays = [a for s, a in answers if s == 409]
        assert len(applied) == len(prepared)  # each batch applied exactly once
        # every pair's loser and every later replay: acknowledged, not applied (or refused)
        assert len(duplicates) + len(replays) == len(answers) - len(prepared)
        assert all(a["error"] == "replay" for a in replays)
        identical_pairs = len(range(0, len(prepared), 3))
        assert len(replays) <= identical_pairs

        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ingest_batch")).scalar() == len(prepared)
            hourly = conn.execute(
                text(
                    "SELECT gateway_id, count(*), sum(bytes_down), sum(seconds) "
                    "FROM usage_hourly GROUP BY gateway_id ORDER BY gateway_id"
                )
            ).all()
            daily = dict(
                conn.execute(
                    text("SELECT gateway_id, sum(bytes_down) FROM usage_daily GROUP BY gateway_id")
                ).all()
            )
            samples = conn.execute(text("SELECT count(*) FROM health_sample")).scalar()
        last = BATCHES - 1
        want_down = sum(down_of(last, i, j) for i in range(len(CLIENTS)) for j in range(len(HOURS)))
        want_rows = len(CLIENTS) * len(HOURS)
        assert [tuple(r) for r in hourly] == [
            (gid, want_rows, want_down, want_rows * 60 * BATCHES) for gid in sorted(GATEWAYS)
        ]
        assert daily == dict.fromkeys(GATEWAYS, want_down)  # the roll-up moved by the differences
        assert samples == len(GATEWAYS) * BATCHES

        # The same data from either instance: the pull API and the village gauges.
        a, b = instances
        path = "/api/v1/usage?from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z"
        assert json.loads(a.get(path, token)) == json.loads(b.get(path, token))
        ma, mb = a.metrics(), b.metrics()

        def villages(m):
            return {
                k: v
                for k, v in m.items()
                if k[0].startswith("hotspot_collector_village_") and "age_seconds" not in k[0]
            }

        assert villages(ma) == villages(mb) and villages(ma)
        # … and each instance's own counters (its two workers summed) add up to the answers
        key_applied = ("hotspot_collector_ingest_batches_total", (("result", "applied"),))
        key_dup = ("hotspot_collector_ingest_batches_total", (("result", "duplicate"),))
        key_replay = ("hotspot_collector_ingest_refusals_total", (("code", "replay"),))
        assert ma[key_applied] + mb[key_applied] == len(prepared)
        assert ma[key_dup] + mb[key_dup] == len(duplicates)
        assert ma[key_replay] + mb[key_replay] == len(replays)
        engine.dispose()
    finally:
        for inst in instances:
            inst.stop()
    logs = "".join(inst.log.read_text() for inst in instances)
    assert "Traceback" not in logs, logs[-3000:]
