"""The blocklist a policy names, fetched by the sync agent (sync/policy.py ``pull_list``):
kept only when its bytes are the ones the signed policy names (SHA-256 and size); a tampered
or truncated list is thrown away and the one in force stays; a list already here is never
fetched again."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy.orm import Session

from collector import policy as cpolicy
from hotspot import config as config_mod
from hotspot import dnsfilter
from hotspot import policy as policy_mod
from sync.outbox import Outbox
from sync.policy import LIST_PATH, PolicyPuller
from tests.unit.hotspot.test_policy import KEY, PUB
from tests.unit.sync.conftest import gateway_overrides
from tests.unit.sync.test_policy_pull import NOW, ClientFetcher, keeper  # noqa: F401 - fixture

LIST = b"# TRUST+ Positif\njudi.example\nsitus-terlarang.example\n"
SHA = hashlib.sha256(LIST).hexdigest()


@pytest.fixture
def gwcfg(tmp_path):
    overrides = gateway_overrides(tmp_path)
    overrides["policy"] = {"public_key": PUB, "state_file": str(tmp_path / "policy.json")}
    overrides["dns_filter"] = {"list_dir": str(tmp_path / "lists")}
    return config_mod.load(overrides=overrides)


class ListServer:
    def __init__(self, body: bytes):
        self.body = body
        self.asked: list[str] = []

    def get(self, path, headers):
        return 304, {}, b""

    def download(self, path, headers, dest, size):
        self.asked.append(path)
        dest.write_bytes(self.body[: size + 1])
        return 200


def name_the_list(keeper, gwcfg, version=1):
    fields = {
        "dns_blocklist": {
            "enabled": True,
            "list": "positif-2026-11-30",
            "sha256": SHA,
            "size": len(LIST),
            "count": 2,
        }
    }
    doc = policy_mod.make_document(gwcfg.sync.gateway_id, version, fields, {}, NOW)
    keeper.offer(policy_mod.sign(KEY, doc, PUB))


@pytest.mark.parametrize(
    ("body", "result"),
    [
        (LIST, "fetched"),
        (LIST.replace(b"judi", b"jodi"), "refused"),  # tampered on the way, same size
        (LIST[:-10], "refused"),  # cut short
        (LIST + b"extra.example\n", "refused"),  # padded
    ],
)
def test_only_the_named_list_is_kept(gwcfg, gwdb, keeper, body, result):
    name_the_list(keeper, gwcfg)
    server = ListServer(body)
    puller = PolicyPuller(gwcfg, Outbox(gwcfg, gwdb), server, hand=keeper.offer)
    assert puller.pull_list() == result
    assert server.asked == [f"{LIST_PATH}/{SHA}"]
    kept = dnsfilter.list_path(gwcfg.dns_filter.list_dir, SHA)
    assert kept.exists() == (result == "fetched")
    if kept.exists():
        assert kept.read_bytes() == LIST
    # Nothing half-written is left beside it.
    assert [p.name for p in kept.parent.iterdir() if p.name.startswith(".")] == []
    # Here already: never asked again.
    if result == "fetched":
        assert puller.pull_list() == "none" and len(server.asked) == 1


def test_nothing_to_fetch_without_a_policy_naming_a_list(gwcfg, gwdb, keeper):
    server = ListServer(LIST)
    puller = PolicyPuller(gwcfg, Outbox(gwcfg, gwdb), server, hand=keeper.offer)
    assert puller.pull_list() == "none" and server.asked == []


class CollectorLists(ClientFetcher):
    """The collector through the Flask test client, lists included."""

    def download(self, path, headers, dest, size):
        r = self.client.get(path, headers=headers)
        dest.write_bytes(r.get_data()[: size + 1])
        return r.status_code


def test_published_on_the_collector_fetched_by_the_agent(
    app, client, gwcfg, gwdb, keeper, tmp_path
):
    import dataclasses

    app.config["COLLECTOR"] = dataclasses.replace(
        app.config["COLLECTOR"], policy_lists_dir=str(tmp_path / "published")
    )
    source = tmp_path / "positif.txt"
    source.write_bytes(LIST + b"not a name!\n")
    out = cpolicy.publish_list(str(tmp_path / "published"), str(source), "positif-2026-11-30")
    assert out["names"] == 2 and out["invalid"] == 1
    field = out["dns_blocklist"]
    with Session(app.extensions["collector_db"]) as s, s.begin():
        cpolicy.publish(s, "province", {"dns_blocklist": field}, KEY, NOW)
    puller = PolicyPuller(gwcfg, Outbox(gwcfg, gwdb), CollectorLists(client), hand=keeper.offer)
    assert puller.pull() == "handed"  # the policy, then the list it names
    kept = dnsfilter.list_path(gwcfg.dns_filter.list_dir, field["sha256"])
    assert kept.read_bytes() == source.read_bytes()
    # Not for anyone who asks: an unsigned request gets nothing.
    assert client.get(f"{LIST_PATH}/{field['sha256']}").status_code == 401
