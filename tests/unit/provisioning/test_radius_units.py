"""With [radius] on, the hardened units let the gateway and the portal reach the RADIUS
servers by IP, and nothing else besides what they reached before (docs/radius.md)."""

from __future__ import annotations

from hotspot import config
from provisioning import render


def ip_lines(unit: str, cfg: config.Config) -> list[str]:
    text = render.render_unit(unit, cfg, "/usr/bin/hotspot").decode()
    return [line for line in text.splitlines() if line.startswith("IPAddress")]


def test_radius_off_changes_nothing():
    cfg = config.load()
    assert ip_lines("hotspot-gateway", cfg) == ["IPAddressDeny=any"]
    assert ip_lines("hotspot-portal", cfg) == [
        "IPAddressAllow=localhost 10.10.0.0/22",
        "IPAddressDeny=any",
    ]


def test_radius_servers_are_allowed():
    cfg = config.load(
        overrides={
            "radius": {
                "enabled": True,
                "servers": ["10.20.0.6:11812", "10.20.0.5"],
                "secret_file": "/etc/hotspot/radius.secret",
            }
        }
    )
    assert ip_lines("hotspot-gateway", cfg) == [
        "IPAddressAllow=10.20.0.5 10.20.0.6",
        "IPAddressDeny=any",
    ]
    assert ip_lines("hotspot-portal-tls", cfg) == [
        "IPAddressAllow=localhost 10.10.0.0/22 10.20.0.5 10.20.0.6",
        "IPAddressDeny=any",
    ]
