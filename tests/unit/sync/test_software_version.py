"""The software version a gateway runs (issue #15 item 5): ``hotspot --version``, the health
record's optional ``software_version``; an older gateway's record (without it) still passes,
a hostile one (markup, too long, not a string) does not."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from hotspot import __version__, version, wire
from hotspot_cli.main import main as hotspot
from sync import health
from tests.unit.collector.helpers import health_record


@pytest.fixture
def fresh_revision():
    version.revision.cache_clear()
    yield
    version.revision.cache_clear()


def test_the_cli_prints_the_release_and_the_revision(capsys):
    with pytest.raises(SystemExit) as done:
        hotspot(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"hotspot {__version__}")
    assert version.SOFTWARE_VERSION.match(out.split()[1]), out
    # this checkout is a Git worktree: the revision is known
    assert "+g" in out


def test_a_packaged_build_reads_its_revision_file(tmp_path, monkeypatch, fresh_revision):
    monkeypatch.setattr(version, "REVISION_FILE", tmp_path / "REVISION")
    (tmp_path / "REVISION").write_text("0123456789ab\n")
    assert version.software_version() == f"{__version__}+g0123456789ab"
    version.revision.cache_clear()
    (tmp_path / "REVISION").write_text("<script>")  # not a revision: ignored, Git asked
    monkeypatch.setattr(version, "_from_git", lambda: None)
    assert version.software_version() == __version__


def test_the_health_record_carries_it_and_an_older_gateways_record_still_passes(
    monkeypatch, cfg, db
):
    monkeypatch.setattr(health, "probe_uplink", lambda url: (True, 12.0))
    rec = health.sample(cfg, db, dt.datetime(2026, 11, 28, 3), cpu_interval=0)
    assert rec["software_version"] == version.software_version()
    checked = wire.validate_record(json.loads(wire.dump_record(rec)))
    assert checked["software_version"] == version.software_version()
    old = health_record()  # a gateway from before this field
    assert "software_version" not in old
    assert wire.validate_record(old)["software_version"] is None
    assert wire.validate_record({**old, "software_version": None})["software_version"] is None


@pytest.mark.parametrize("bad", ["<b>0.1</b>", "0.1.0 rc", "x" * 65, "", 7, ["0.1"]])
def test_a_malformed_version_is_refused(bad):
    with pytest.raises(wire.WireError, match="software_version"):
        wire.validate_record(health_record(software_version=bad))
