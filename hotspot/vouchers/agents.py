"""Agents (*agen*): warung owners who resell the BUMDes' vouchers (issue #13, item 4).

The admin assigns a whole batch to an agent at the agent's price per voucher (at most the
batch's retail price). The agent logs in to the console, sees only the stock of their own
batches, marks sales (the ordinary sale path: ``voucher_sale`` names the agent) and prints
their own cards. The admin records the agent's payments (settlements). Per agent:

* ``stock``: vouchers of their batches still to sell (not sold, not used, not withdrawn);
* ``sold``: vouchers of their batches sold — marked sold, or used though nobody marked them
  (the warung forgot: the villager has the card, so the warung had it) — and not withdrawn;
  ``sold_rupiah`` at the retail price printed on the card;
* ``due``: ``sold`` × the agent's price, what the agent collected for the BUMDes;
* ``commission``: ``sold_rupiah`` − ``due``, what the warung keeps;
* ``paid``: the sum of the settlements; ``owed`` = ``due`` − ``paid`` (negative: paid ahead).

A batch has one agent at most (``agent_batch.batch_id`` is the primary key), and only a batch
nobody sold from yet can be assigned, so a sale belongs to one seller. Kasirs' quick sale
and range sale leave agents' batches alone. Every assignment,
sale and settlement is in the audit log, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, case, func, insert, select
from sqlalchemy.engine import Connection

from hotspot.audit import Actor
from hotspot.audit import record as _audit
from hotspot.audit import write as _write
from hotspot.errors import ErrorCode, NotFound, UsageError
from hotspot.model import Voucher, VoucherBatch, VoucherState
from hotspot.model_operator import AgentBatch, AgentSettlement, Operator, QuickSale, Role
from hotspot.timeutil import utcnow
from hotspot.vouchers.sales import SaleError, _earlier_sale, _sell_in, _sellable

# The largest single payment the console or the CLI records: a mistyped extra zero or two
# is caught, a season's takings of a busy warung are not refused.
MAX_SETTLEMENT = 50_000_000
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def check_amount(value: Any, *, low: int = 1, high: int = MAX_SETTLEMENT) -> int:
    """A whole number of Rupiah between ``low`` and ``high``; ``UsageError`` otherwise."""
    text = str(value).strip().replace(".", "").replace(",", "").replace(" ", "")
    if text.lower().startswith("rp"):
        text = text[2:]
    if not re.fullmatch(r"-?\d{1,12}", text):
        raise UsageError(f"not a whole number of Rupiah: {str(value)[:20]!r}")
    n = int(text)
    if not low <= n <= high:
        raise UsageError(f"the amount must be between {low} and {high} Rupiah")
    return n


def _agent(conn: Connection, agent: int | str, *, or_was: bool = False) -> Any:
    """The account of an agent; with ``or_was`` also one that held a batch as an agent
    before its role changed (it may still pay what it owes)."""
    q = select(Operator.id, Operator.name, Operator.full_name, Operator.role, Operator.active)
    q = (
        q.where(Operator.id == agent)
        if isinstance(agent, int)
        else q.where(Operator.name == agent.strip().lower())
    )
    row = conn.execute(q).first()
    if row is not None and row.role != Role.AGEN and or_was:
        held = conn.execute(select(AgentBatch.batch_id).where(AgentBatch.agent_id == row.id))
        row = row if held.first() is not None else None
    elif row is not None and row.role != Role.AGEN:
        row = None
    if row is None:
        raise NotFound(f"no agent {agent!r}")
    return row


def batch_agent(engine: Engine, batch_id: int) -> Any:
    """(agent_id, name, price) of a batch's agent, or None."""
    with engine.connect() as conn:
        return conn.execute(
            select(AgentBatch.agent_id, Operator.name, AgentBatch.price)
            .join(Operator, Operator.id == AgentBatch.agent_id)
            .where(AgentBatch.batch_id == batch_id)
        ).first()


def assign(
    engine: Engine,
    batch_id: int,
    agent: int | str,
    price: int,
    *,
    actor: Actor,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Hand batch ``batch_id`` to an agent at ``price`` Rupiah per voucher. Refused when the
    batch has an agent already, or a voucher of it was sold or used (the sale has a seller
    already), or the price is above the retail price."""
    now = clock()
    with _write(engine) as conn:
        a = _agent(conn, agent)
        if not a.active:
            raise UsageError(f"the agent {a.name} is disabled")
        batch = conn.execute(
            select(VoucherBatch.id, VoucherBatch.price, VoucherBatch.package_name).where(
                VoucherBatch.id == batch_id
            )
        ).first()
        if batch is None:
            raise NotFound(f"no batch {batch_id}")
        price = check_amount(price, low=0, high=batch.price)
        held = conn.execute(
            select(Operator.name)
            .join(AgentBatch, AgentBatch.agent_id == Operator.id)
            .where(AgentBatch.batch_id == batch_id)
        ).scalar()
        if held is not None:
            raise UsageError(f"batch {batch_id} is assigned to {held} already")
        started = conn.execute(
            select(func.count(Voucher.id)).where(
                Voucher.batch_id == batch_id,
                Voucher.state != VoucherState.VOID.value,
                (Voucher.sold_at.is_not(None)) | (Voucher.state != VoucherState.NEW.value),
            )
        ).scalar()
        if started:
            raise UsageError(
                f"batch {batch_id} has {started} vouchers sold or used already: assign a new batch"
            )
        conn.execute(
            insert(AgentBatch).values(
                batch_id=batch_id,
                agent_id=a.id,
                price=price,
                assigned_at=now,
                assigned_by=actor.name[:32],
            )
        )
        _audit(
            conn,
            actor,
            "agent.assign",
            f"batch:{batch_id}",
            before={"agent": None},
            after={"agent": a.name, "agent_id": a.id, "price": price, "retail": batch.price},
            at=now,
        )
    return {
        "batch": batch_id,
        "agent": a.name,
        "price": price,
        "retail": batch.price,
        "package": batch.package_name,
    }


def settle(
    engine: Engine,
    agent: int | str,
    amount: int | str,
    token: str,
    *,
    actor: Actor,
    note: str = "",
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Record that an agent paid ``amount`` Rupiah. ``token`` is the form's one-time token:
    the same token again (a double tap, a reload) records nothing and returns the first
    record with ``repeat=True``."""
    if not isinstance(token, str) or not TOKEN.match(token):
        raise UsageError("the form's token is missing or malformed")
    amount = check_amount(amount)
    note = " ".join((note or "").split())[:200]
    now = clock()
    with _write(engine) as conn:
        a = _agent(conn, agent, or_was=True)
        done = conn.execute(select(AgentSettlement).where(AgentSettlement.token == token)).first()
        if done is not None:
            return {**_settlement(done, a.name), "repeat": True}
        res = conn.execute(
            insert(AgentSettlement).values(
                agent_id=a.id,
                amount=amount,
                note=note or None,
                token=token,
                recorded_at=now,
                recorded_by=actor.name[:32],
            )
        )
        sid = int(res.inserted_primary_key[0])  # type: ignore[index]  # one-row insert: a Row
        _audit(
            conn,
            actor,
            "agent.settle",
            f"operator:{a.id}",
            after={"settlement": sid, "agent": a.name, "amount": amount, "note": note or None},
            at=now,
        )
        row = conn.execute(select(AgentSettlement).where(AgentSettlement.id == sid)).one()
        return {**_settlement(row, a.name), "repeat": False}


def _settlement(row: Any, agent: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "agent": agent,
        "amount": row.amount,
        "note": row.note,
        "recorded_at": row.recorded_at,
        "recorded_by": row.recorded_by,
    }


def settlements(engine: Engine, agent_id: int | None = None) -> list[dict[str, Any]]:
    q = (
        select(AgentSettlement, Operator.name)
        .join(Operator, Operator.id == AgentSettlement.agent_id)
        .order_by(AgentSettlement.recorded_at.desc(), AgentSettlement.id.desc())
    )
    if agent_id is not None:
        q = q.where(AgentSettlement.agent_id == agent_id)
    with engine.connect() as conn:
        return [_settlement(r, r.name) for r in conn.execute(q)]


def _sold_expr() -> Any:
    return (Voucher.state != VoucherState.VOID.value) & (
        Voucher.sold_at.is_not(None) | Voucher.first_used_at.is_not(None)
    )


def _stock_expr() -> Any:
    return (
        (Voucher.state == VoucherState.NEW.value)
        & Voucher.sold_at.is_(None)
        & Voucher.first_used_at.is_(None)
    )


def agent_batches(engine: Engine, agent_id: int) -> list[dict[str, Any]]:
    """An agent's batches with their stock and sales (newest first)."""
    sold = func.sum(case((_sold_expr(), 1), else_=0))
    stock = func.sum(case((_stock_expr(), 1), else_=0))
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                VoucherBatch.id,
                VoucherBatch.package_name,
                VoucherBatch.price.label("retail"),
                VoucherBatch.count,
                VoucherBatch.hours,
                VoucherBatch.data_mb,
                VoucherBatch.valid_until,
                AgentBatch.price,
                AgentBatch.assigned_at,
                stock.label("stock"),
                sold.label("sold"),
            )
            .join(AgentBatch, AgentBatch.batch_id == VoucherBatch.id)
            .join(Voucher, Voucher.batch_id == VoucherBatch.id)
            .where(AgentBatch.agent_id == agent_id)
            .group_by(VoucherBatch.id, AgentBatch.price, AgentBatch.assigned_at)
            .order_by(VoucherBatch.id.desc())
        ).all()
    return [
        {**dict(r._mapping), "stock": int(r.stock or 0), "sold": int(r.sold or 0)} for r in rows
    ]


def ledger(engine: Engine) -> list[dict[str, Any]]:
    """Per agent (active or not, by name; and any account that held a batch or paid as an
    agent before its role changed): stock, sold (count and at the retail price), due at the
    agent's price, commission, paid, owed. See the module's docstring."""
    with engine.connect() as conn:
        agents = conn.execute(
            select(Operator.id, Operator.name, Operator.full_name, Operator.active)
            .where(
                # an account made kasir again still owes for the batches it held
                (Operator.role == Role.AGEN)
                | Operator.id.in_(select(AgentBatch.agent_id))
                | Operator.id.in_(select(AgentSettlement.agent_id))
            )
            .order_by(Operator.name)
        ).all()
        sold = _sold_expr()
        per_agent = {
            r.agent_id: r
            for r in conn.execute(
                select(
                    AgentBatch.agent_id,
                    func.sum(case((_stock_expr(), 1), else_=0)).label("stock"),
                    func.sum(case((sold, 1), else_=0)).label("sold"),
                    func.sum(case((sold, VoucherBatch.price), else_=0)).label("sold_rupiah"),
                    func.sum(case((sold, AgentBatch.price), else_=0)).label("due"),
                )
                .join(VoucherBatch, VoucherBatch.id == AgentBatch.batch_id)
                .join(Voucher, Voucher.batch_id == AgentBatch.batch_id)
                .group_by(AgentBatch.agent_id)
            )
        }
        paid = dict(
            conn.execute(
                select(AgentSettlement.agent_id, func.sum(AgentSettlement.amount)).group_by(
                    AgentSettlement.agent_id
                )
            ).all()
        )
    out = []
    for a in agents:
        t = per_agent.get(a.id)
        stock_n, sold_n, sold_rp, due = (
            (int(t.stock or 0), int(t.sold or 0), int(t.sold_rupiah or 0), int(t.due or 0))
            if t is not None
            else (0, 0, 0, 0)
        )
        got = int(paid.get(a.id) or 0)
        out.append(
            {
                "id": a.id,
                "agent": a.name,
                "full_name": a.full_name,
                "active": bool(a.active),
                "stock": stock_n,
                "sold": sold_n,
                "sold_rupiah": sold_rp,
                "due": due,
                "commission": sold_rp - due,
                "paid": got,
                "owed": due - got,
            }
        )
    return out


def agent_summary(engine: Engine, agent_id: int) -> dict[str, Any]:
    for row in ledger(engine):
        if row["id"] == agent_id:
            return row
    raise NotFound(f"no agent {agent_id}")


def owns_voucher(engine: Engine, agent_id: int, voucher_id: int) -> Any:
    """The voucher's (batch_id, serial, state, sold_at, first_used_at) when it is in one of
    this agent's batches, else None."""
    with engine.connect() as conn:
        return conn.execute(
            select(
                Voucher.batch_id,
                Voucher.serial,
                Voucher.state,
                Voucher.sold_at,
                Voucher.first_used_at,
            )
            .join(AgentBatch, AgentBatch.batch_id == Voucher.batch_id)
            .where(Voucher.id == voucher_id, AgentBatch.agent_id == agent_id)
        ).first()


def stock_vouchers(engine: Engine, agent_id: int, batch_id: int) -> list[int]:
    """Serials of an agent's batch still to sell; ``NotFound`` when it is not theirs."""
    with engine.connect() as conn:
        mine = conn.execute(
            select(AgentBatch.batch_id).where(
                AgentBatch.batch_id == batch_id, AgentBatch.agent_id == agent_id
            )
        ).first()
        if mine is None:
            raise NotFound(f"no batch {batch_id}")
        return [
            s
            for (s,) in conn.execute(
                select(Voucher.serial)
                .where(Voucher.batch_id == batch_id, _stock_expr())
                .order_by(Voucher.serial)
            )
        ]


def sell(
    engine: Engine,
    batch_id: int,
    token: str,
    *,
    actor: Actor,
    serial: int | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """The agent ``actor`` sells one voucher of their batch ``batch_id``: ``serial`` or, by
    default, the lowest one still in stock. ``token`` is the form's one-time token (as the
    kasir's quick sale: the same token again returns the first sale, ``repeat=True``). A
    batch or serial that is not the agent's is ``voucher-unknown``, the same as one that
    does not exist: nothing tells an agent what others hold."""
    if actor.id is None or not isinstance(token, str) or not TOKEN.match(token):
        raise UsageError("the form's token is missing or malformed")
    now = clock()
    with _write(engine) as conn:
        # Another agent's token is as unknown as another agent's batch.
        earlier = _earlier_sale(conn, token, actor, ErrorCode.VOUCHER_UNKNOWN)
        if earlier is not None:
            return earlier
        held = conn.execute(
            select(AgentBatch.price).where(
                AgentBatch.batch_id == batch_id, AgentBatch.agent_id == actor.id
            )
        ).first()
        if held is None:
            raise SaleError("no such voucher in your stock", code=ErrorCode.VOUCHER_UNKNOWN)
        q = select(Voucher.id).where(Voucher.batch_id == batch_id, *_sellable(now))
        if serial is not None:
            q = q.where(Voucher.serial == serial)
        vid = conn.execute(q.order_by(Voucher.serial).limit(1)).scalar()
        if vid is None:
            if serial is not None:
                raise SaleError("not in your stock any more", code=ErrorCode.VOUCHER_SOLD)
            raise SaleError("no voucher of this batch is left", code=ErrorCode.OUT_OF_STOCK)
        sale = _sell_in(conn, vid, actor=actor, now=now)
        conn.execute(
            insert(QuickSale).values(
                token=token, voucher_id=vid, operator_id=actor.id, created_at=now
            )
        )
        _audit(
            conn,
            actor,
            "agent.sale",
            f"voucher:{vid}",
            after={"batch": batch_id, "agent_price": held.price, "retail": sale["price"]},
            at=now,
        )
        return {**sale, "agent_price": held.price, "repeat": False}
