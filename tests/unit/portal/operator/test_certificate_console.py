"""The console's home says which HTTPS certificate is in force (issue #15, item 4), or that
there is none and the portal is on plain HTTP only."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hotspot import certs
from portal.state import state
from tests.unit.sync.test_certs import LocalCA


def with_zone(app, tmp_path):
    st = state(app)
    sync = dataclasses.replace(
        st.config.sync, gateway_id="desa-a", cert_zone="wifi.jambi.test", cert_dir=str(tmp_path)
    )
    st.config = dataclasses.replace(st.config, sync=sync)
    return st.config


def test_the_console_says_none_then_valid_until(admin, app, tmp_path):
    assert 'id="certificate"' not in admin.get("/operator/").get_data(as_text=True)  # off
    cfg = with_zone(app, tmp_path)
    home = admin.get("/operator/").get_data(as_text=True)
    assert "Sertifikat HTTPS" in home and "belum ada: hanya HTTP biasa" in home
    key = certs.new_key()
    chain = LocalCA().issue(certs.make_csr(key, cfg.sync.cert_name)).encode()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    certs.install(
        tmp_path, certs.key_pem(key), certs.check_chain(chain, key, cfg.sync.cert_name, now)
    )
    home = admin.get("/operator/").get_data(as_text=True)
    assert "desa-a.wifi.jambi.test" in home and "berlaku sampai" in home
