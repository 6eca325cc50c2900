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


def test_the_splash_shows_the_free_tier_the_policy_set(app, tmp_path):
    """A villager reads the free tier's terms the gateway runs: the portal lays the last good
    policy over its configuration when the file changes (a file that does not verify is not
    believed)."""
    from hotspot import policy
    from tests.unit.portal.conftest import Phone

    st = state(app)
    local = config_mod.load(
        overrides={
            **st.config.raw,
            "sync": {**st.config.raw.get("sync", {}), "gateway_id": GW},
            "policy": {"public_key": PUB, "state_file": str(tmp_path / "policy.json")},
        }
    )
    st.config = local
    phone = Phone(app)
    assert "Kecepatan sampai 1 Mbps" in text(phone.get("/"))
    policy.store(local.policy.state_file, envelope(1))  # down_kbps 768, daily_mb 200
    st._policy_seen = (-1e9, None)  # (the next request looks at once: no wait in a test)
    page = text(phone.get("/"))
    assert "Kecepatan sampai 768 kbps" in page and "200 MB data per hari" in page, page
    # Edited on the disk: not believed, the file's own terms again.
    path = tmp_path / "policy.json"
    path.write_text(path.read_text().replace("768", "9999"))
    st._policy_seen = (-1e9, None)
    assert "Kecepatan sampai 1 Mbps" in text(phone.get("/"))


def test_the_splash_shows_the_provinces_announcements_while_they_run(app, clock, tmp_path):
    """The policy's announcements join the BUMDes's on the splash (hotspot/announcements.py):
    from the last good file only, each in its own window."""
    import datetime as dt

    from hotspot import policy
    from tests.unit.portal.conftest import Phone

    st = state(app)
    local = config_mod.load(
        overrides={
            **st.config.raw,
            "sync": {**st.config.raw.get("sync", {}), "gateway_id": GW},
            "policy": {"public_key": PUB, "state_file": str(tmp_path / "policy.json")},
        }
    )
    st.config = local
    phone = Phone(app)
    notice = "Hari vaksinasi di puskesmas, Sabtu 5 Desember"
    clock.now = dt.datetime(2026, 12, 1, 3, 0)  # in the notice's window (GOOD's)
    assert notice not in text(phone.get("/"))  # no policy yet
    policy.store(local.policy.state_file, envelope(1))
    st._policy_seen = (-1e9, None)
    assert notice in text(phone.get("/"))
    clock.now = dt.datetime(2026, 12, 6, 0, 0)  # its end
    assert notice not in text(phone.get("/"))
    # A file edited on the disk does not verify: no province notice at all.
    clock.now = dt.datetime(2026, 12, 1, 3, 0)
    path = tmp_path / "policy.json"
    path.write_text(path.read_text().replace("puskesmas", "PUSKESMAS"))
    st._policy_seen = (-1e9, None)
    page = text(phone.get("/"))
    assert notice not in page and "PUSKESMAS" not in page
