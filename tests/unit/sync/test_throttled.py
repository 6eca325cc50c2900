"""A Raspberry Pi's get_throttled bits in the health record: parsed from the firmware's sysfs
file or ``vcgencmd``'s answer (fixtures recorded from both), None on other boards; and the
record's new fields optional, so an older gateway's batches still ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotspot import wire
from sync import health
from tests.unit.collector.helpers import health_record

FIXTURES = Path(__file__).parent / "fixtures" / "throttled"


@pytest.mark.parametrize(
    "name, bits",
    [
        ("sysfs-undervoltage", 0x50005),
        ("sysfs-ok", 0),
        ("vcgencmd-undervoltage", 0x50005),
        ("vcgencmd-ok", 0),
        ("vcgencmd-unknown", None),
    ],
)
def test_parse_fixtures(name, bits):
    assert health.parse_throttled((FIXTURES / name).read_text()) == bits


def test_parse_refuses_what_is_not_an_answer():
    for text in ("", "throttled=", "0x123456789", "12 34", "-1", "throttled=0xZZ"):
        assert health.parse_throttled(text) is None, text


def test_read_from_the_file_then_vcgencmd_then_nothing(monkeypatch, tmp_path):
    assert health.throttled(str(FIXTURES / "sysfs-undervoltage")) == 0x50005
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert health.throttled(str(FIXTURES / "sysfs-garbage")) is None  # not ASCII: no crash
    # No file: vcgencmd where it is installed (a fake one here), else None.
    fake = tmp_path / "vcgencmd"
    fake.write_text(f"#!/bin/sh\nexec /bin/cat {FIXTURES / 'vcgencmd-undervoltage'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert health.throttled(str(tmp_path / "missing")) == 0x50005
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert health.throttled(str(tmp_path / "missing")) is None


def test_health_record_optional_fields():
    old = health_record()
    assert "throttled" not in old and "software_version" not in old
    got = wire.validate_record(old)  # an older gateway's record
    assert got["throttled"] is None and got["software_version"] is None
    new = wire.validate_record(health_record(throttled=0x50005, software_version="0.2.0+g1a2b"))
    assert new["throttled"] == 0x50005 and new["software_version"] == "0.2.0+g1a2b"
    for bad in (
        {"throttled": -1},
        {"throttled": 1 << 32},
        {"throttled": True},
        {"throttled": "5"},
        {"software_version": "<b>1</b>"},
        {"software_version": "x" * 65},
    ):
        with pytest.raises(wire.WireError):
            wire.validate_record(health_record(**bad))
