"""The province's signed policy end to end (issue #15, item 1), with the real collector
(PostgreSQL) in the province's namespace, the real sync agent and gateway in the village's,
and phones (root only).

``hotspot collector policy keygen`` makes the key, the gateway pins its public half; a
province-wide policy published with ``policy publish`` reaches the gateway on the agent's next
cycle (a conditional GET; ``304`` after), and a phone that never logged in reaches the
address the policy put in the walled garden, while a running free session and a new one run
at the policy's free-tier rate (their HTB classes). The gateway reports the version it runs
and the collector stores it. Then the abuse cases: a policy that fails validation is not
published (exit 2); the village's uplink black-holed while three versions are published: the
gateway keeps the one it has, restarts with the uplink still down and runs it again from its
last good file, and when the link is back ends on the newest, never on one in between; an
older envelope replayed over the control socket is refused. Time is accelerated by
configuration (the agent's cycle is one second), not waited for.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from collector import db as collector_db
from collector import policy as cpolicy
from collector import store as collector_store
from hotspot.errors import HotspotError
from hotspot.timeutil import utcnow
from tests.integration.village import (
    COLLECTOR_PORT,
    PROV_IP,
    Proc,
    add_province,
    blackhole,
    collector_toml,
    hotspot,
    wait_for,
)
from tests.netns.conftest import GatewayProcess
from tests.netns.helpers import (
    authorize,
    client_minor,
    curl,
    iperf3,
    mtu_sized_frames,
    tc_classes,
)
from testsupport import testbed as tb
from testsupport.testbed import UPSTREAM_IP

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

GATEWAY_ID = "desa-kebijakan"


def ceil_kbps(bed, ip: str) -> tuple[int, int]:
    minor = client_minor(ip)
    return (
        tc_classes(bed, "br-lan")[minor].ceil_bps // 1000,
        tc_classes(bed, "eth0")[minor].ceil_bps // 1000,
    )


def test_a_signed_policy_steers_the_village(postgres, tmp_path):
    dbname = postgres.create_db()
    pg = create_engine(postgres.url(dbname))
    tb.remove_stale_testbeds("hsq")
    bed = tb.Testbed(prefix=tb.run_prefix("hsq"), clients=3)
    bed.build()
    procs: list[Proc] = []
    gw: GatewayProcess | None = None
    try:
        prov = add_province(bed, rate_kbit=20000, loss_pct=0)
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "index.html").write_text("upstream ok")
        bed.start_upstream(tmp_path / "www")  # with iperf3's server
        mtu_sized_frames(bed)
        ccfg = collector_toml(
            tmp_path / "collector.toml",
            postgres.url(dbname),
            policy_key_file=str(tmp_path / "keys" / "policy.key"),
        )

        def collector_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                hotspot(ccfg, "collector", *args), capture_output=True, text=True, timeout=60
            )
            assert not check or done.returncode == 0, done.stderr
            return done

        cengine = collector_db.open_database(postgres.url(dbname))  # migrated here
        with Session(cengine) as cs, cs.begin():
            secret = collector_store.add_gateway(cs, GATEWAY_ID)["secret"]
        cengine.dispose()
        public_key = json.loads(collector_cli("policy", "keygen", "--json").stdout)["public_key"]
        signing_key = cpolicy.read_key(str(tmp_path / "keys" / "policy.key"))

        def publish(fields: dict) -> int:
            """As ``policy publish`` does (the command itself ran above; a process start
            per version would only cost time here)."""
            with Session(pg) as s, s.begin():
                return cpolicy.publish(s, "province", fields, signing_key, utcnow())["version"]

        procs.append(
            Proc(bed, prov, hotspot(ccfg, "collector", "run"), tmp_path / "collector.log").start()
        )
        bed.wait_port(prov, PROV_IP, COLLECTOR_PORT, timeout=30)

        gw = GatewayProcess(
            bed,
            tmp_path,
            {
                "sync": {
                    "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
                    "gateway_id": GATEWAY_ID,
                    "secret": secret,
                    "interval_seconds": 1,
                    "health_seconds": 1,
                    "backoff_max_seconds": 1,
                    "timeout_seconds": 2,
                },
                # What provisioning pins: the collector's public key.
                "policy": {
                    "public_key": public_key,
                    "state_file": str(tmp_path / "state" / "policy.json"),
                },
            },
        ).start()
        agent = Proc(
            bed, bed.gw, gw.hotspot("sync", "run", "--log-level", "INFO"), tmp_path / "sync.log"
        ).start()
        procs.append(agent)
        walled, running, later = bed.phones

        def upstream_page(phone) -> str:
            return curl(bed, phone.ns, f"http://{UPSTREAM_IP}/", timeout=2).body

        def in_force() -> int:
            got = gw.call("policy")["in_force"]
            return got["version"] if got else 0

        # Before any policy: the upstream is outside the walled garden, free runs at 1024.
        assert upstream_page(walled) != "upstream ok"
        authorize(gw, running, "free")
        assert ceil_kbps(bed, running.ip) == (1024, 512)

        policy_file = tmp_path / "province.json"
        policy_file.write_text(
            json.dumps(
                {
                    "walled_garden": [UPSTREAM_IP],
                    "free_tier": {"down_kbps": 700, "up_kbps": 300},
                    "announcements": [
                        {
                            "id": "vaksin",
                            "text_id": "Hari vaksinasi di puskesmas",
                            "starts": "2026-01-01T00:00:00Z",
                            "ends": "2027-01-01T00:00:00Z",
                        }
                    ],
                }
            )
        )
        first = json.loads(
            collector_cli("policy", "publish", "province", str(policy_file), "--json").stdout
        )["version"]
        wait_for(lambda: in_force() == first, 30, "the policy on the gateway")
        # The walled garden opened for a phone that never logged in, in one transaction;
        # the running free session and a new one at the policy's rate.
        wait_for(lambda: upstream_page(walled) == "upstream ok", 10, "the garden open")
        assert ceil_kbps(bed, running.ip) == (700, 300)
        # …and the phone sees it: a download at the policy's rate (±20 %, on the wire).
        seen_kbps = iperf3(bed, running.ns, reverse=True, seconds=4).wire_bps / 1000
        print(f"\nPOLICY free tier seen by the phone: {seen_kbps:.0f} kbit/s on the wire (700)")
        assert 0.8 * 700 <= seen_kbps <= 1.2 * 700, seen_kbps
        authorize(gw, later, "free")
        assert ceil_kbps(bed, later.ip) == (700, 300)
        # The gateway reports the version it runs; the collector stores it.
        with pg.connect() as c:
            wait_for(
                lambda: (
                    c.execute(
                        text("select policy_version from gateway where id = :g"), {"g": GATEWAY_ID}
                    ).scalar()
                    == first
                ),
                30,
                "the version reported",
            )
        assert "policy version" in agent.text() or "handed to the gateway" in agent.text()

        # A policy that fails validation is not published at all (exit 2: the CLI's own
        # tests go through the other cases).
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"free_tier": {"down_kbps": 5}}))
        refused = collector_cli("policy", "publish", "province", str(bad), check=False)
        assert refused.returncode == 2 and "down_kbps" in refused.stderr

        # The uplink cut while three versions pass; a restart with it still cut.
        old_envelope = json.loads((tmp_path / "state" / "policy.json").read_text())
        bed.run(bed.gw, "nft", "-f", "-", input=blackhole(output=True))
        versions = []
        for rate in (650, 600, 550):
            versions.append(
                publish({"walled_garden": [UPSTREAM_IP], "free_tier": {"down_kbps": rate}})
            )
        gw.stop()
        gw.start()
        assert in_force() == first  # from the last good file, with no uplink
        assert upstream_page(walled) != "upstream ok"  # (the uplink is cut: nothing passes)
        bed.run(bed.gw, "nft", "delete", "table", "inet", "blackhole")
        seen = set()

        def newest() -> bool:
            seen.add(in_force())
            return versions[-1] in seen

        wait_for(newest, 30, "the newest version after the outage")
        assert seen <= {first, versions[-1]}, seen  # none in between, never backwards
        assert upstream_page(walled) == "upstream ok"  # the garden kept over the restart
        authorize(gw, walled, "free")
        assert ceil_kbps(bed, walled.ip)[0] == 550
        # Replayed over the control socket (anyone in its group can): refused, logged.
        with pytest.raises(HotspotError) as exc:
            gw.call("policy-apply", **old_envelope)
        assert exc.value.code == "policy-replay"
        assert in_force() == versions[-1]
        assert "refused (policy-replay)" in gw.log.read_text()
        for name in ("gateway.log", "sync.log", "collector.log"):
            assert "Traceback" not in (tmp_path / name).read_text(), name
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL, timeout=5)
        if gw is not None:
            gw.stop()
        bed.destroy()
        pg.dispose()
        postgres.drop_db(dbname)
