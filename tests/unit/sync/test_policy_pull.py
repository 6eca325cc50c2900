"""The province's policy end to end in one process: published on the collector (SQLite, Flask
test client), pulled by the sync agent's puller with conditional requests, handed to the
gateway's keeper, which verifies and keeps it; and the abuse cases on the way: a byte changed
on the link, a replayed older envelope, a gateway offline while three versions pass, a bad
signature on the request."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from collector import policy as cpolicy
from collector.models import Gateway
from gateway.policy import PolicyKeeper
from hotspot import config as config_mod
from hotspot import policy
from hotspot.errors import ErrorCode
from hotspot.policy import PolicyRefused
from sync.outbox import Outbox
from sync.policy import ETAG_STATE, PolicyPuller
from tests.unit.collector.helpers import GATEWAY_ID, post
from tests.unit.hotspot.test_policy import KEY, PUB
from tests.unit.sync.conftest import gateway_overrides

NOW = dt.datetime(2026, 11, 30, 3, 0)


class ClientFetcher:
    """The collector through the Flask test client; ``offline`` = the uplink is down;
    ``tamper`` changes the answer's body on the way."""

    def __init__(self, client: Any):
        self.client = client
        self.offline = False
        self.tamper = None
        self.answers: list[int] = []
        self.sent: list[dict[str, str]] = []

    def get(self, path, headers):
        if self.offline:
            raise OSError("collector unreachable: network is unreachable")
        self.sent.append(headers)
        r = self.client.get(path, headers=headers)
        self.answers.append(r.status_code)
        body = r.get_data()
        if self.tamper is not None and r.status_code == 200:
            body = self.tamper(body)
        return r.status_code, dict(r.headers), body


@pytest.fixture
def gwcfg(tmp_path):
    overrides = gateway_overrides(tmp_path)
    overrides["policy"] = {"public_key": PUB, "state_file": str(tmp_path / "policy.json")}
    return config_mod.load(overrides=overrides)


@pytest.fixture
def keeper(gwcfg):
    k = PolicyKeeper(gwcfg)
    k.load()
    return k


@pytest.fixture
def fetcher(client):
    return ClientFetcher(client)


@pytest.fixture
def puller(gwcfg, gwdb, fetcher, keeper):
    return PolicyPuller(gwcfg, Outbox(gwcfg, gwdb), fetcher, hand=keeper.offer)


def publish(app, scope, fields, **kw):
    with Session(app.extensions["collector_db"]) as s, s.begin():
        return cpolicy.publish(s, scope, fields, KEY, NOW, **kw)


def test_published_pulled_applied_then_not_modified(app, puller, fetcher, keeper):
    assert puller.pull() == "none"  # nothing published yet: 404, nothing changes
    out = publish(app, "province", {"free_tier": {"down_kbps": 768}})
    assert out["gateways"] == [GATEWAY_ID]
    assert puller.pull() == "handed"
    assert keeper.version == out["version"]
    assert keeper.effective.tiers["free"].down_kbps == 768
    assert puller.pull() == "unchanged"
    assert fetcher.answers[-1] == 304 and "If-None-Match" in fetcher.sent[-1]
    # The ETag is kept in the agent's database: a restarted agent does not fetch it again.
    assert puller.outbox.get_state(ETAG_STATE)


def test_a_gateway_offline_while_three_versions_pass_ends_on_the_newest(
    app, puller, fetcher, keeper
):
    publish(app, "province", {"free_tier": {"down_kbps": 768}})
    assert puller.pull() == "handed"
    first = dict(keeper.policy.envelope)
    fetcher.offline = True
    versions = [
        publish(app, "province", {"free_tier": {"down_kbps": 640}})["version"],
        publish(app, "gateway:" + GATEWAY_ID, {"walled_garden_domains": ["belajar.id"]})["version"],
        publish(app, "province", {"free_tier": {"down_kbps": 512}})["version"],
    ]
    assert puller.pull() == "unreachable" and keeper.version < versions[0]
    fetcher.offline = False
    assert puller.pull() == "handed"
    assert keeper.version == versions[-1]
    eff = keeper.effective
    assert eff.tiers["free"].down_kbps == 512
    assert eff.network.walled_garden_domains == ("belajar.id",)
    # Never backwards: the first version, replayed (by the link, or by anyone in the group
    # of the control socket), is refused, and the newest stays.
    with pytest.raises(PolicyRefused) as exc:
        keeper.offer(first)
    assert exc.value.code is ErrorCode.POLICY_REPLAY
    assert keeper.version == versions[-1]


def test_a_byte_changed_on_the_link_is_refused_and_the_real_one_comes_next(
    app, puller, fetcher, keeper
):
    publish(app, "province", {"free_tier": {"down_kbps": 768}})

    def flip(body: bytes) -> bytes:
        return body.replace(b'\\"down_kbps\\":768', b'\\"down_kbps\\":9000')

    fetcher.tamper = flip
    assert puller.pull() == "refused"
    assert keeper.version == 0 and keeper.last_refusal["code"] == "policy-signature"
    # The tampered answer's ETag was not kept: the next cycle fetches the real document.
    fetcher.tamper = None
    assert puller.pull() == "handed" and keeper.effective.tiers["free"].down_kbps == 768


def test_an_answer_that_is_not_an_envelope_is_refused(app, puller, fetcher, keeper):
    publish(app, "province", {"ntp_servers": ["ntp.jambiprov.go.id"]})
    fetcher.tamper = lambda body: b"<html>captive portal of the hotel</html>"
    assert puller.pull() == "refused" and keeper.version == 0


def test_a_request_with_a_bad_signature_gets_nothing(app, client, gwcfg, gwdb, keeper):
    publish(app, "province", {"ntp_servers": ["ntp.jambiprov.go.id"]})
    forged = config_mod.validate({**gwcfg.raw, "sync": {**gwcfg.raw["sync"], "secret": "w" * 40}})
    fetcher = ClientFetcher(client)
    assert PolicyPuller(forged, Outbox(forged, gwdb), fetcher, keeper.offer).pull() == "failed"
    assert fetcher.answers == [401]
    stranger = config_mod.validate(
        {**gwcfg.raw, "sync": {**gwcfg.raw["sync"], "gateway_id": "desa-asing"}}
    )
    r = client.get(policy.POLICY_PATH, headers=PolicyPuller(stranger, None, None)._headers(None))
    assert r.status_code == 401 and r.get_json()["error"] == "bad-signature"


def test_scopes_reach_the_right_gateways(app):
    from tests.unit.collector.helpers import register

    register(app, "desa-dua", "d" * 40)
    with Session(app.extensions["collector_db"]) as s, s.begin():
        cpolicy.place(s, GATEWAY_ID, "sekernan", KEY, NOW)
    publish(app, "province", {"free_tier": {"down_kbps": 1024, "daily_mb": 300}})
    out = publish(app, "kecamatan:sekernan", {"free_tier": {"daily_mb": 150}})
    assert out["gateways"] == [GATEWAY_ID]
    with Session(app.extensions["collector_db"]) as s:
        ours = cpolicy.document_of(s, GATEWAY_ID)
        theirs = cpolicy.document_of(s, "desa-dua")
    assert ours["policy"]["free_tier"] == {"down_kbps": 1024, "daily_mb": 150}
    assert ours["sources"]["free_tier"] == "province+kecamatan:sekernan"
    assert theirs["policy"]["free_tier"] == {"down_kbps": 1024, "daily_mb": 300}
    assert ours["version"] > theirs["version"]


def test_an_invalid_policy_is_not_published(app):
    with pytest.raises(PolicyRefused):
        publish(app, "province", {"walled_garden_domains": ["not a domain"]})
    with Session(app.extensions["collector_db"]) as s:
        assert cpolicy.show(s)["scopes"] == []


def test_the_version_a_gateway_runs_is_reported_and_shown(app, client):
    publish(app, "province", {"ntp_servers": ["ntp.jambiprov.go.id"]})
    sample = {
        "kind": "health",
        "sampled_at": "2026-11-30T03:00:00Z",
        "cpu_pct": 1.0,
        "load1": 0.1,
        "load5": 0.1,
        "load15": 0.1,
        "mem_pct": 10.0,
        "disk_pct": 10.0,
        "disk_free_mb": 1000,
        "temp_c": None,
        "uptime_s": 100,
        "uplink_ok": True,
        "uplink_ms": 10.0,
        "clients_online": 3,
        "backlog": 0,
    }
    # An older gateway's sample, without the field, still ingests.
    assert post(client, [sample]).status_code == 200
    newer = {**sample, "sampled_at": "2026-11-30T03:05:00Z", "policy_version": 1}
    assert post(client, [newer]).status_code == 200
    with Session(app.extensions["collector_db"]) as s:
        assert s.get(Gateway, GATEWAY_ID).policy_version == 1
        shown = cpolicy.show(s)
    assert shown["gateways"][0] == {
        "id": GATEWAY_ID,
        "kecamatan": None,
        "published": 1,
        "running": 1,
    }
    page = client.get("/village/" + GATEWAY_ID).get_data(as_text=True)
    assert "ntp.jambiprov.go.id" in page and "Versi berjalan" in page
    overview = client.get("/").get_data(as_text=True)
    assert "Kebijakan per desa" in overview and "belum diterapkan" not in overview
    publish(app, "province", {"ntp_servers": ["ntp2.jambiprov.go.id"]})
    assert "belum diterapkan" in client.get("/").get_data(as_text=True)


def test_the_health_sample_carries_the_version_the_gateway_runs(gwcfg, gwdb, keeper):
    from sync import health

    rec = health.sample(gwcfg, gwdb, NOW, cpu_interval=None)
    assert "policy_version" not in rec  # none yet: the key is left out (older collectors)
    doc = policy.make_document(GATEWAY_ID, 4, {"ntp_servers": ["a.id"]}, {}, NOW)
    keeper.offer(policy.sign(KEY, doc))
    assert health.sample(gwcfg, gwdb, NOW, cpu_interval=None)["policy_version"] == 4


def test_through_the_inbox_as_in_production(app, gwcfg, gwdb, fetcher, keeper):
    """The agent is not in the control socket's group: it leaves the envelope in the state
    folder and the gateway's tick takes it."""
    agent = PolicyPuller(gwcfg, Outbox(gwcfg, gwdb), fetcher)
    v1 = publish(app, "province", {"free_tier": {"down_kbps": 768}})["version"]
    assert agent.pull() == "handed" and keeper.version == 0
    assert policy.inbox_path(gwcfg.policy.state_file).exists()
    assert keeper.check_inbox() and keeper.version == v1
    assert not policy.inbox_path(gwcfg.policy.state_file).exists()
    assert agent.pull() == "unchanged" and fetcher.answers[-1] == 304

    # A byte flipped on the link: the gateway refuses it from the inbox, and since its file
    # does not have the version handed, the next fetch is unconditional and brings the real one.
    v2 = publish(app, "province", {"free_tier": {"down_kbps": 640}})["version"]
    fetcher.tamper = lambda body: body.replace(b"640", b"9999")
    assert agent.pull() == "handed"
    assert not keeper.check_inbox() and keeper.last_refusal["code"] == "policy-signature"
    fetcher.tamper = None
    assert agent.pull() == "handed" and "If-None-Match" not in fetcher.sent[-1]
    assert keeper.check_inbox() and keeper.version == v2


def test_the_inbox_is_no_way_to_make_the_gateway_read_another_file(gwcfg, keeper, tmp_path):
    inbox = policy.inbox_path(gwcfg.policy.state_file)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    inbox.symlink_to(secret)
    assert not keeper.check_inbox()
    assert keeper.last_refusal["code"] == "policy-invalid" and not inbox.exists()
    assert "secret" not in keeper.last_refusal["message"]
    inbox.write_bytes(b"{" + b" " * policy.MAX_ENVELOPE_BYTES + b"}")
    assert not keeper.check_inbox() and "over" in keeper.last_refusal["message"]
    assert not inbox.exists() and keeper.version == 0
