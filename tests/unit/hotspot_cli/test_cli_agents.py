"""``hotspot agents`` (issue #13.4): add, assign, settle, list and ledger, with ``--json``;
bad input is one line on stderr and exit 2, nothing recorded."""

from __future__ import annotations

import json

import pytest

from hotspot import operators
from hotspot.audit import entries
from hotspot.vouchers import agents
from tests.unit.hotspot_cli.test_cli_operator import run, toml  # noqa: F401 - the fixture

AGENT_PW = "warung-kopi-pagi-9"


@pytest.fixture
def setup(toml, db, monkeypatch, capsys):
    rc, out, _ = run(
        toml,
        "agents",
        "add",
        "Ina",
        "--full-name",
        "Warung Bu Ina",
        stdin=AGENT_PW + "\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert rc == 0 and "agent ina created" in out
    rc, out, _ = run(
        toml,
        "vouchers",
        "create",
        "--package",
        "harian",
        "--count",
        "4",
        "--json",
        capsys=capsys,
    )
    assert rc == 0
    return json.loads(out)["batch"]


def test_add_assign_settle_ledger(toml, db, tmp_path, capsys, setup):
    bid = setup
    assert operators.get(db, name="ina").role == "agen"
    rc, out, _ = run(
        toml, "agents", "assign", str(bid), "ina", "--price", "4.000", "--json", capsys=capsys
    )
    assert rc == 0 and json.loads(out) == {
        "batch": bid,
        "agent": "ina",
        "price": 4000,
        "retail": 5000,
        "package": "harian",
    }
    ina = operators.get(db, name="ina")
    from hotspot.audit import Actor

    agents.sell(db, bid, "t" * 32, actor=Actor("ina", ina.id, "agen"))
    rc, out, _ = run(toml, "agents", "settle", "ina", "3000", "--note", "Senin", capsys=capsys)
    assert rc == 0 and "Rp 3.000 from ina recorded" in out
    rc, out, _ = run(toml, "agents", "ledger", "--json", capsys=capsys)
    (row,) = json.loads(out)
    assert (row["stock"], row["sold"], row["sold_rupiah"], row["due"]) == (3, 1, 5000, 4000)
    assert (row["commission"], row["paid"], row["owed"]) == (1000, 3000, 1000)
    rc, out, _ = run(toml, "agents", "ledger", capsys=capsys)
    assert rc == 0 and "ina" in out and "Rp 1.000" in out
    rc, out, _ = run(toml, "agents", "list", "--json", capsys=capsys)
    assert [b["id"] for b in json.loads(out)[0]["batches"]] == [bid]
    acts = [e.action for e in entries(db)]
    assert "agent.assign" in acts and "agent.settle" in acts
    assert all(
        e.actor.startswith("cli:")
        for e in entries(db)
        if e.action in ("agent.assign", "agent.settle")
    )
    # the same command again is a second payment (the CLI has no form to submit twice)
    run(toml, "agents", "settle", "ina", "1000", capsys=capsys)
    assert [s["amount"] for s in agents.settlements(db)] == [1000, 3000]


@pytest.mark.parametrize(
    "args, says",
    [
        (("settle", "ina", "-5000"), "between 1 and"),
        (("settle", "ina", "0"), "between 1 and"),
        (("settle", "ina", "999999999999"), "between 1 and"),
        (("settle", "ina", "lima"), "not a whole number"),
        (("settle", "nobody", "5000"), "no agent"),
        (("assign", "1", "ina", "--price", "9000"), "between 0 and 5000"),
        (("assign", "1", "ina", "--price", "-1"), "between 0 and 5000"),
        (("assign", "99", "ina", "--price", "1000"), "no batch"),
        (("assign", "1", "budi", "--price", "1000"), "no agent"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(toml, db, capsys, setup, args, says):
    try:
        rc, _, err = run(toml, "agents", *args, capsys=capsys)
    except SystemExit as exc:  # argparse's own refusal
        rc, err = exc.code, capsys.readouterr().err
    assert rc in (1, 2) and says in err, err
    assert len(err.strip().splitlines()) == 1
    assert agents.settlements(db) == [] and agents.batch_agent(db, 1) is None


def test_a_batch_twice(toml, db, capsys, setup, monkeypatch):
    run(
        toml,
        "agents",
        "add",
        "ali",
        stdin="toko-sembako-77\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert run(toml, "agents", "assign", "1", "ina", "--price", "4000", capsys=capsys)[0] == 0
    rc, _, err = run(toml, "agents", "assign", "1", "ali", "--price", "3000", capsys=capsys)
    assert rc == 2 and "assigned to ina already" in err
