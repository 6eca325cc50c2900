"""Tables of the BUMDes operator console (``portal/operator``): accounts, their login
sessions and attempts, the append-only audit log, and who sold which voucher.

* ``operator``: an account, role ``admin``, ``kasir`` or ``agen`` (a warung that resells
  vouchers); the password as an argon2id hash.
  ``session_version`` grows when the password, role or status changes: every login session
  made before is then refused.
* ``operator_session``: a console login. The cookie carries a random token; only its
  SHA-256 is stored, so a copied database opens no session.
* ``login_attempt``: failed logins per source address (``ip:…``) and per account
  (``op:…``) in the current window — the brake on guessing passwords.
* ``audit_log``: every money- or access-affecting action (who, when, what, before/after).
  Append-only: triggers refuse UPDATE and DELETE, and every row carries the SHA-256 of the
  previous row's hash and its own content, so a removed or altered row shows
  (``hotspot.audit.verify``).
* ``voucher_sale``: a voucher marked sold by a kasir (cash in hand): when, by whom, for how
  much (the batch's price). See ``hotspot/vouchers/ledger.py`` for what counts as a sale.
* ``agent_batch``: a batch handed to an agent (``agen``) at the agent's price per voucher;
  a batch has one agent at most (the primary key), so a voucher has one too.
* ``agent_settlement``: money an agent paid the BUMDes, recorded by an admin, with the
  form's one-time token (a second submit records nothing). See ``hotspot/vouchers/agents.py``.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotspot.dbtypes import str_enum
from hotspot.model_base import Base
from hotspot.timeutil import utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, accounts and the ledger included
    KASIR = "kasir"  # sells vouchers and counts the cash
    AGEN = "agen"  # a warung reselling the batches assigned to it; sees only its own stock


ROLES = tuple(r.value for r in Role)


class Operator(Base):
    __tablename__ = "operator"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)  # lower-case login name
    full_name: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(str_enum(Role, length=8))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class OperatorSession(Base):
    __tablename__ = "operator_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the operator's session_version at login
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)  # absolute end
    ip: Mapped[str | None] = mapped_column(String(45))


class LoginAttempt(Base):
    __tablename__ = "login_attempt"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # ip:ADDR | op:NAME
    window_start: Mapped[dt.datetime] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: the log outlives
    actor: Mapped[str] = mapped_column(String(32))  # the name then ("cli:root", "system")
    role: Mapped[Role | None] = mapped_column(str_enum(Role, length=8))  # the role then
    ip: Mapped[str | None] = mapped_column(String(45))
    action: Mapped[str] = mapped_column(String(40))  # e.g. voucher.sell, package.update
    target: Mapped[str | None] = mapped_column(String(80))  # e.g. voucher:12, batch:3
    before: Mapped[str | None] = mapped_column(Text)  # JSON
    after: Mapped[str | None] = mapped_column(Text)  # JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class VoucherSale(Base):
    __tablename__ = "voucher_sale"
    __table_args__ = (Index("ix_voucher_sale_sold_at", "sold_at"),)

    voucher_id: Mapped[int] = mapped_column(ForeignKey("voucher.id"), primary_key=True)
    sold_at: Mapped[dt.datetime] = mapped_column(DateTime)
    operator_id: Mapped[int | None] = mapped_column(Integer, index=True)
    operator: Mapped[str] = mapped_column(String(32))  # the name then
    price: Mapped[int] = mapped_column(Integer)  # Rupiah, the batch's price


class QuickSale(Base):
    """One tap of a quick-sale button: the form's one-time token and the voucher it sold, so
    a second submit of the same form (a double tap, a reload) shows the same voucher instead
    of selling another one."""

    __tablename__ = "quick_sale"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("voucher.id"))
    operator_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AgentBatch(Base):
    """A batch assigned to an agent: the agent sells its vouchers and owes the BUMDes
    ``price`` (whole Rupiah, at most the batch's retail price) for each one sold."""

    __tablename__ = "agent_batch"

    batch_id: Mapped[int] = mapped_column(ForeignKey("voucher_batch.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    price: Mapped[int] = mapped_column(Integer)  # Rupiah per voucher, the agent's price
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    assigned_by: Mapped[str] = mapped_column(String(32))


class AgentSettlement(Base):
    """A payment from an agent to the BUMDes (cash handed to the admin)."""

    __tablename__ = "agent_settlement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)  # Rupiah, > 0
    note: Mapped[str | None] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the form's one-time token
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(32))
