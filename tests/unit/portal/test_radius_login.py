"""A RADIUS login from the portal's side (portal/radius_login.py): accept, reject, silence,
and the offline cache — against loopback servers, no gateway."""

from __future__ import annotations

import datetime as dt

import pytest
from pyrad import packet as rp

from hotspot import config as config_mod
from hotspot.errors import ErrorCode, HotspotError, Refused
from hotspot.radius.packets import dictionary
from portal.radius_login import RadiusLogins
from tests.unit.conftest import device_overrides
from tests.unit.hotspot.radius.test_packets import SECRET, grant, serve

MAC, IP = "02:00:00:00:00:01", "10.10.0.11"


accept = grant("02-00-00-00-00-01", password="rahasia")


def reject(data):
    req = rp.AuthPacket(packet=data, secret=SECRET, dict=dictionary())
    reply = req.CreateReply()
    reply.code = rp.AccessReject
    reply.add_message_authenticator()
    return reply.ReplyPacket()


def logins(tmp_path, db, clock, replies, offline="cached"):
    port = serve(replies)
    cfg = config_mod.load(
        overrides={
            **device_overrides(tmp_path),
            "radius": {
                "enabled": True,
                "servers": [f"127.0.0.1:{port}"],
                "secret_file": str(tmp_path / "radius.secret"),
                "timeout_seconds": 0.3,
                "attempts": 1,
                "offline": offline,
            },
        }
    )
    return RadiusLogins(cfg, db, SECRET, b"c" * 32, clock=clock)


def test_accepted_then_let_in_again_from_the_cache_while_no_server_answers(tmp_path, db, clock):
    r = logins(tmp_path, db, clock, [accept, lambda d: None, lambda d: None, lambda d: None])
    first = r.login("budi", "rahasia", ip=IP, mac=MAC)
    assert first.offline is False and first.grant.down_kbps == 2000
    assert first.expires_at == clock() + dt.timedelta(hours=1)
    req = first.request(IP, "premium")
    assert (req.username, req.down_kbps, req.classes) == ("budi", 2000, "6b656c6173")
    clock.advance(minutes=20)
    again = r.login("budi", "rahasia", ip=IP, mac=MAC)
    assert again.offline is True and again.request(IP, "premium").offline == 1
    assert again.expires_at == first.expires_at  # what remained, no more
    assert again.grant.down_kbps == 2000 and again.grant.classes == (b"kelas",)
    with pytest.raises(HotspotError) as err:
        r.login("budi", "tebakan", ip=IP, mac=MAC)
    assert err.value.code is ErrorCode.RADIUS_UNAVAILABLE
    clock.advance(minutes=41)  # past the grant's end
    with pytest.raises(HotspotError):
        r.login("budi", "rahasia", ip=IP, mac=MAC)


def test_refuse_mode_caches_nothing(tmp_path, db, clock):
    r = logins(tmp_path, db, clock, [accept, lambda d: None], offline="refuse")
    r.login("budi", "rahasia", ip=IP, mac=MAC)
    with pytest.raises(HotspotError) as err:
        r.login("budi", "rahasia", ip=IP, mac=MAC)
    assert err.value.code is ErrorCode.RADIUS_UNAVAILABLE


def test_a_reject_is_refused(tmp_path, db, clock):
    r = logins(tmp_path, db, clock, [reject])
    with pytest.raises(Refused) as err:
        r.login("budi", "salah", ip=IP, mac=MAC)
    assert err.value.code is ErrorCode.RADIUS_REJECT
