"""``hotspot operators``, ``hotspot vouchers`` and ``hotspot sales``."""

from __future__ import annotations

import io
import json

import pytest

from hotspot import operators
from hotspot.audit import entries
from hotspot.vouchers.batches import batch_codes
from hotspot.vouchers.keys import load_key
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.sales import mark_sold
from hotspot_cli import main as cli
from tests.unit.hotspot_cli.conftest import cli_config


@pytest.fixture
def toml(tmp_path, cfg):
    return cli_config(
        tmp_path,
        cfg,
        """\
[packages.harian]
title = "Harian"
price = 5000
tier = "premium"
hours = 24
""",
    )


def run(toml, *args, stdin=None, monkeypatch=None, capsys=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = cli.main(["--config", toml, *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_first_admin_from_stdin(toml, db, monkeypatch, capsys):
    def add(name, role, password):
        """``operators add``, the password typed on stdin."""
        return run(
            toml,
            "operators",
            "add",
            name,
            "--role",
            role,
            stdin=password + "\n",
            monkeypatch=monkeypatch,
            capsys=capsys,
        )

    rc, out, _ = add("Budi", "admin", "Sungai-Duren-77")
    assert rc == 0 and "operator budi (admin) created" in out
    row = operators.get(db, name="budi")
    assert row.role == "admin" and row.password_hash.startswith("$argon2id$")
    rc, _, err = add("siti", "kasir", "1234")
    assert rc == 2 and "at least 8 characters" in err
    rc, _, err = add("budi", "kasir", "Another-pw-42")
    assert rc == 2 and "exists" in err
    rc, out, _ = run(toml, "operators", "list", "--json", capsys=capsys)
    assert [o["name"] for o in json.loads(out)] == ["budi"]
    assert entries(db)[0].actor.startswith("cli:")


def test_vouchers_create_json_capped_and_reprinted(toml, db, tmp_path, capsys):
    rc, out, _ = run(
        toml, "vouchers", "create", "--package", "harian", "--count", "3", "--json", capsys=capsys
    )
    data = json.loads(out)
    assert rc == 0 and data["count"] == 3 and len(data["codes"]) == 3
    key = load_key(tmp_path / "voucher.key")
    assert [c for _, c in batch_codes(db, key, data["batch"])] == data["codes"]
    rc, _, err = run(
        toml, "vouchers", "create", "--package", "harian", "--count", "100000", capsys=capsys
    )
    assert rc == 2 and "from 1 to 1000" in err
    with pytest.raises(SystemExit) as exit_:
        run(toml, "vouchers", "create", "--package", "harian", "--count", "-1", capsys=capsys)
    assert exit_.value.code == 2 and "at least 1" in capsys.readouterr().err
    rc, out, _ = run(toml, "vouchers", "print", str(data["batch"]), capsys=capsys)
    assert all(c in out for c in data["codes"])
    rc, out, _ = run(
        toml,
        "vouchers",
        "void",
        "--code",
        data["codes"][0].lower(),
        "--reason",
        "lost",
        capsys=capsys,
    )
    assert rc == 0 and "withdrawn" in out
    rc, out, _ = run(toml, "vouchers", "batches", "--json", capsys=capsys)
    assert json.loads(out)[0]["states"] == {"new": 2, "sold": 0, "used": 0, "void": 1}


def test_sales_report(toml, db, tmp_path, capsys, clock):
    run(toml, "vouchers", "create", "--package", "harian", "--count", "2", capsys=capsys)
    key = load_key(tmp_path / "voucher.key")
    from hotspot.audit import Actor

    for _, code in batch_codes(db, key, 1):
        mark_sold(db, find_voucher(db, key, code), actor=Actor("siti", 2, "kasir"))
    import datetime as dt

    month = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).strftime("%Y-%m")
    rc, out, _ = run(toml, "sales", "report", "--month", month, "--json", capsys=capsys)
    rep = json.loads(out)
    assert rc == 0 and rep["count"] == 2 and rep["rupiah"] == 10000
    assert rep["by_kasir"] == [{"kasir": "siti", "count": 2, "rupiah": 10000}]
    rc, out, _ = run(toml, "sales", "report", "--month", month, capsys=capsys)
    assert "Rp 10.000" in out
    rc, _, err = run(toml, "sales", "report", "--month", "2026-13", capsys=capsys)
    assert rc == 2 and "not a month" in err
