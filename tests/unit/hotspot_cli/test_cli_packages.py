"""``hotspot vouchers package-add`` and ``packages``: hours or online-time packages from the
gateway's terminal (issue #13, item 1)."""

from __future__ import annotations

import json

import pytest

from hotspot.audit import entries
from hotspot.vouchers.packages import all_packages
from hotspot_cli import main as cli
from tests.unit.hotspot_cli.conftest import cli_config


@pytest.fixture
def toml(tmp_path, cfg):
    return cli_config(
        tmp_path,
        cfg,
        """\
[packages.jam]
title = "1 Jam"
price = 2000
tier = "premium"
online_minutes = 60
valid_days = 7
""",
    )


def run(toml, capsys, *args):
    """(exit code, stdout, stderr); argparse's own refusals exit 2 by SystemExit."""
    try:
        rc = cli.main(["--config", toml, *args])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_package_add_online_time_json(toml, db, capsys):
    rc, out, err = run(
        toml,
        capsys,
        "vouchers",
        "package-add",
        "malam",
        "--title",
        "Malam 3 Jam",
        "--price",
        "5000",
        "--tier",
        "premium",
        "--online-minutes",
        "180",
        "--valid-days",
        "2",
        "--data-mb",
        "2000",
        "--json",
    )
    assert rc == 0, err
    row = json.loads(out)
    assert (row["online_minutes"], row["valid_days"], row["hours"]) == (180, 2, 48)
    assert row["source"] == "console" and row["data_mb"] == 2000
    assert [e for e in entries(db) if e.action == "package.create"][0].actor.startswith("cli:")
    rc, out, _ = run(toml, capsys, "vouchers", "packages", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["jam"]["online_minutes"] == 60 and rows["jam"]["valid_days"] == 7  # the file's
    assert rows["malam"]["online_minutes"] == 180
    rc, out, _ = run(toml, capsys, "vouchers", "packages")
    assert "180 min online/2 d" in out and "60 min online/7 d" in out


def test_package_add_hours_text(toml, db, capsys):
    rc, out, err = run(
        toml,
        capsys,
        "vouchers",
        "package-add",
        "harian",
        "--price",
        "5000",
        "--tier",
        "premium",
        "--hours",
        "24",
    )
    assert rc == 0, err
    assert out.strip() == "package harian made: 24 h, Rp 5.000"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--online-minutes", "60"], "--valid-days"),
        (["--hours", "5", "--valid-days", "2"], "--valid-days"),
        (["--hours", "5", "--online-minutes", "60", "--valid-days", "2"], "not allowed with"),
        (["--online-minutes", "0", "--valid-days", "2"], "at least 1"),
        (["--online-minutes", "sejam", "--valid-days", "2"], "not a whole number"),
        (["--online-minutes", "600000", "--valid-days", "2"], "online_minutes"),
        (["--online-minutes", "60", "--valid-days", "999"], "valid_days"),
        (["--hours", "5", "--tier", "emas"], "no such tier"),
    ],
)
def test_bad_package_add_is_one_line_and_exit_2(toml, db, capsys, args, says):
    run(toml, capsys, "vouchers", "packages")  # the file's package written
    before = len(all_packages(db))
    rc, out, err = run(
        toml,
        capsys,
        "vouchers",
        "package-add",
        "x1",
        "--price",
        "100",
        "--tier",
        "premium",
        *args,
    )
    assert rc == 2 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert len(all_packages(db)) == before
