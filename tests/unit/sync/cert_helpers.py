"""The collector's certificate endpoints through the Flask test client, as the sync agent's
transport and fetcher (shared by the unit and the netns certificate tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hotspot import config as config_mod
from tests.unit.sync.conftest import gateway_overrides

ZONE = "wifi.jambi.test"


class ClientLink:
    """``post`` (sync.agent.Transport) and ``get`` (sync.policy.Fetcher) on the test client.
    ``offline``: the uplink is down; ``tamper``: changes a 200 answer's body on the way;
    ``bodies``: every request body sent (the key must never be among them)."""

    def __init__(self, client: Any):
        self.client = client
        self.offline = False
        self.tamper: Callable[[bytes], bytes] | None = None
        self.answers: list[tuple[str, int]] = []
        self.bodies: list[bytes] = []

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.offline:
            raise OSError("collector unreachable: network is unreachable")
        self.bodies.append(body)
        r = self.client.post(path, data=body, headers=headers)
        self.answers.append(("POST", r.status_code))
        return r.status_code, r.get_json(silent=True) or {}

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.offline:
            raise OSError("collector unreachable: network is unreachable")
        r = self.client.get(path, headers=headers)
        self.answers.append(("GET", r.status_code))
        body = r.get_data()
        if self.tamper is not None and r.status_code == 200:
            body = self.tamper(body)
        return r.status_code, dict(r.headers), body


def gateway_config(tmp_path: Any, gateway_id: str, secret: str, **sync: Any) -> Any:
    overrides = gateway_overrides(
        tmp_path,
        gateway_id=gateway_id,
        secret=secret,
        cert_zone=ZONE,
        cert_dir=str(tmp_path / f"tls-{gateway_id}"),
        backoff_max_seconds=3600,
        **sync,
    )
    overrides["database"] = {"url": f"sqlite:///{tmp_path}/gw-{gateway_id}.db"}
    return config_mod.load(overrides=overrides)
