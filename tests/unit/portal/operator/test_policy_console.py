"""The console's page of the province's policy (issue #15, item 1): admin only, the version
in force with its fields and where each came from, a refused policy said as such."""

from __future__ import annotations

import pytest

from gateway.control_server import Dispatcher
from gateway.policy import PolicyKeeper
from hotspot import config as config_mod
from hotspot.policy import PolicyRefused
from portal.state import state
from tests.unit.hotspot.test_policy import GW, PUB, envelope
from tests.unit.portal.operator.conftest import text


@pytest.fixture
def keeper(app, tmp_path):
    local = config_mod.load(
        overrides={
            "sync": {"gateway_id": GW},
            "policy": {"public_key": PUB, "state_file": str(tmp_path / "policy.json")},
        }
    )
    k = PolicyKeeper(local)
    k.load()
    gw = state(app).gateway
    gw.dispatcher = Dispatcher(
        gw.engine, lambda: {"ok": True, "policy_version": k.version or None}, policy=k
    )
    return k


def test_admin_sees_the_policy_in_force_and_a_refusal(admin, keeper):
    body = text(admin.get("/operator/policy"))
    assert "Kebijakan provinsi" in body and "belum ada" in body
    keeper.offer(envelope(3))
    r = admin.get("/operator/policy")
    assert r.status_code == 200
    body = text(r)
    assert "Versi yang berlaku" in body and "belajar.id" in body and "province" in body
    assert "ntp.jambiprov.go.id" in body and "Harga dan paket tetap milik BUMDes" in body
    with pytest.raises(PolicyRefused):
        keeper.offer(envelope(2))  # replayed
    body = text(admin.get("/operator/policy"))
    assert "ditolak dan tidak diterapkan" in body and "policy-replay" in body
    home = admin.get("/operator/").get_data(as_text=True)
    assert 'href="/operator/policy"' in home and "versi 3" in home


def test_a_kasir_gets_the_403_page(kasir, keeper):
    assert kasir.get("/operator/policy").status_code == 403
    assert 'href="/operator/policy"' not in kasir.get("/operator/").get_data(as_text=True)
