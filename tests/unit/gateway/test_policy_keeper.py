"""The gateway's side of the province's policy (gateway/policy.py): verify, keep, apply;
refusals logged with their code and the last good policy kept, also across a restart; a
power cut between keeping and applying; the control socket's two requests."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.control_server import Dispatcher
from gateway.policy import PolicyKeeper
from hotspot import config as config_mod
from hotspot import policy
from hotspot import protocol as proto
from hotspot.errors import ErrorCode
from hotspot.policy import PolicyRefused
from tests.unit.hotspot.test_policy import GW, KEY, PUB, envelope


@pytest.fixture
def local(tmp_path):
    return config_mod.load(
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/gw.db"},
            "sync": {"gateway_id": GW},
            "policy": {"public_key": PUB, "state_file": str(tmp_path / "policy.json")},
        }
    )


def keeper(local, applied=None):
    k = PolicyKeeper(local)
    k.load()
    if applied is not None:
        k.apply = lambda old, new: applied.append((old, new))
    return k


def test_a_policy_is_verified_kept_and_applied(local):
    applied = []
    k = keeper(local, applied)
    out = k.offer(envelope(1))
    assert out["in_force"]["version"] == 1 and out["key_id"] == policy.key_id(PUB)
    ((old, new),) = applied
    assert old is local and new.tiers["free"].down_kbps == 768
    assert new.network.walled_garden_domains == ("belajar.id", "kemkes.go.id")
    assert policy.stored_version(local.policy.state_file) == 1


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (lambda: {**envelope(2), "signature": ""}, ErrorCode.POLICY_SIGNATURE),
        (lambda: envelope(2, key=policy.new_private_key()), ErrorCode.POLICY_SIGNATURE),
        (
            lambda: {**envelope(2), "document": envelope(2)["document"].replace("768", "769")},
            ErrorCode.POLICY_SIGNATURE,
        ),
        (lambda: envelope(1), ErrorCode.POLICY_REPLAY),
        (lambda: envelope(2, fields={"free_tier": {"down_kbps": 1}}), ErrorCode.POLICY_INVALID),
    ],
    ids=["unsigned", "other-key", "tampered", "replayed", "invalid"],
)
def test_a_refused_policy_changes_nothing_and_is_logged(local, bad, code, caplog):
    applied = []
    k = keeper(local, applied)
    k.offer(envelope(1))
    before = open(local.policy.state_file, "rb").read()
    with caplog.at_level(logging.WARNING, logger="gateway.policy"):
        with pytest.raises(PolicyRefused) as exc:
            k.offer(bad())
    assert exc.value.code is code
    assert f"refused ({code})" in caplog.text
    assert k.version == 1 and len(applied) == 1
    assert open(local.policy.state_file, "rb").read() == before
    assert k.status()["last_refusal"]["code"] == str(code)
    # And after a restart, the last good one is what runs.
    again = PolicyKeeper(local)
    assert again.load().tiers["free"].down_kbps == 768 and again.version == 1


def test_the_last_good_policy_runs_after_a_restart_with_the_uplink_down(local):
    keeper(local).offer(envelope(7))
    restarted = PolicyKeeper(local)
    eff = restarted.load()  # nothing fetched: the file alone
    assert restarted.version == 7 and eff.tiers["free"].daily_mb == 200
    # An older one replayed to the restarted gateway is still refused.
    with pytest.raises(PolicyRefused) as exc:
        restarted.offer(envelope(6))
    assert exc.value.code is ErrorCode.POLICY_REPLAY


def test_a_power_cut_between_keeping_and_applying_runs_the_new_policy_at_start(local):
    def cut(old, new):
        raise SystemExit("power cut")  # the daemon dies mid-apply

    k = keeper(local)
    k.offer(envelope(1))
    k.apply = cut
    with pytest.raises(SystemExit):
        k.offer(envelope(2, fields={"free_tier": {"down_kbps": 512}}))
    restarted = PolicyKeeper(local)
    assert restarted.load().tiers["free"].down_kbps == 512 and restarted.version == 2


def test_a_kept_file_changed_on_the_disk_is_not_run(local, caplog):
    keeper(local).offer(envelope(3))
    path = local.policy.state_file
    env = json.loads(open(path).read())
    env["document"] = env["document"].replace('"down_kbps":768', '"down_kbps":99999')
    open(path, "w").write(json.dumps(env))
    with caplog.at_level(logging.WARNING, logger="gateway.policy"):
        k = PolicyKeeper(local)
        assert k.load() is local and k.version == 0
    assert "policy-signature" in caplog.text


def test_without_a_pinned_key_no_policy_is_taken(tmp_path):
    local = config_mod.load(overrides={"sync": {"gateway_id": GW}})
    k = PolicyKeeper(local)
    assert k.load() is local
    with pytest.raises(PolicyRefused) as exc:
        k.offer(envelope(1))
    assert exc.value.code is ErrorCode.POLICY_SIGNATURE


def test_the_control_socket_hands_envelopes_to_the_keeper(local):
    k = keeper(local, [])
    d = Dispatcher(engine=None, status=lambda: {}, policy=k)  # type: ignore[arg-type]
    env = envelope(5)
    req = proto.PolicyApplyRequest(document=env["document"], signature=env["signature"])
    reply = json.loads(d.answer(proto.encode(req.to_wire())))
    assert reply["ok"] and reply["result"]["in_force"]["version"] == 5
    reply = json.loads(d.answer(proto.encode(req.to_wire())))
    assert reply["error"]["code"] == "policy-replay"
    reply = json.loads(d.answer(proto.encode(proto.PolicyRequest().to_wire())))
    assert reply["result"]["in_force"]["policy"]["free_tier"]["down_kbps"] == 768
    assert [a["id"] for a in reply["result"]["in_force"]["policy"]["announcements"]] == [
        "vaksin-2026-12"
    ]
    assert KEY  # the private key stays in the test (the collector's)


def test_hotspot_gateway_policy_shows_it(local, tmp_path, capsys):
    from gateway.control_server import ControlServer
    from tests.unit.commands import hotspot_in_process

    k = keeper(local, [])
    sock = str(tmp_path / "control.sock")
    srv = ControlServer(sock, Dispatcher(engine=None, status=lambda: {}, policy=k), group=None)  # type: ignore[arg-type]
    srv.start()
    try:
        config = tmp_path / "hotspot.toml"
        config.write_text(f'[control]\nsocket = "{sock}"\n')
        none = hotspot_in_process(capsys, config, "gateway", "policy")
        assert none.returncode == 0 and "no policy from the province" in none.stdout
        k.offer(envelope(9))
        shown = hotspot_in_process(capsys, config, "gateway", "policy")
        assert "policy version 9" in shown.stdout and "walled_garden_domains" in shown.stdout
        data = json.loads(hotspot_in_process(capsys, config, "gateway", "policy", "--json").stdout)
        assert data["in_force"]["version"] == 9
    finally:
        srv.stop()
