"""The delivery ledger: one row per (incident, idempotency key, channel, recipient) so a retried
notification activity never sends twice through an API that has no idempotency of its own
(Slack, Twilio, SendGrid/SMTP).

Protocol, and why: an attempt first *claims* the row (state ``pending``) in its own transaction,
then sends, then marks it ``sent`` with the vendor's reference. A retry that finds ``sent`` returns
the stored result without sending. A retry that finds ``pending`` knows an earlier attempt got as
far as sending and then failed ambiguously (timeout, dropped connection, 5xx, or a worker crash
between the send and the ledger write): it reconciles with the vendor where the vendor can be asked
(Slack ``conversations.history`` by message metadata, Twilio's message list) and otherwise resends.
Resending on an unresolvable ambiguity is deliberate: for incident response a duplicate
notification is cheaper than a missed one. Failures the vendor answered definitively (4xx, 429)
release the claim, so the next attempt sends without doubt. Recipients are stored hashed: the
ledger needs identity, not phone numbers or addresses.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from records.store import engine

ClaimState = Literal["new", "pending", "sent"]


class Delivery(SQLModel, table=True):
    """One notification to one recipient for one playbook step (attempt-independent)."""

    __tablename__ = "delivery_ledger"
    __table_args__ = (
        UniqueConstraint("incident_id", "idempotency_key", "channel", "recipient_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(index=True)
    idempotency_key: str
    channel: str
    recipient_hash: str
    state: str = "pending"  # pending | sent
    vendor_ref: str = ""
    attempts: int = 1
    claimed_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """What the current attempt found: ``new`` (send), ``pending`` (ambiguous), ``sent`` (skip)."""

    id: int
    state: ClaimState
    vendor_ref: str
    claimed_at: datetime


_ready: set[str] = set()


def _engine() -> Engine:
    eng = engine()
    url = str(eng.url)
    if url not in _ready:  # the shared engine may predate this module's import
        SQLModel.metadata.create_all(eng, tables=[Delivery.__table__])  # type: ignore[attr-defined]
        _ready.add(url)
    return eng


def recipient_hash(recipient: str) -> str:
    return hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:32]


def _claim(incident_id: str, key: str, channel: str, recipient: str) -> Claim:
    now = datetime.now(UTC)
    row = Delivery(
        incident_id=incident_id,
        idempotency_key=key,
        channel=channel,
        recipient_hash=recipient_hash(recipient),
        claimed_at=now,
    )
    with Session(_engine()) as session:
        try:
            session.add(row)
            session.commit()
            session.refresh(row)
            return Claim(row.id or 0, "new", "", now)
        except IntegrityError:
            session.rollback()
        found = session.exec(
            select(Delivery).where(
                Delivery.incident_id == incident_id,
                Delivery.idempotency_key == key,
                Delivery.channel == channel,
                Delivery.recipient_hash == row.recipient_hash,
            )
        ).one()
        if found.state != "sent":
            found.attempts += 1
            session.add(found)
            session.commit()
            session.refresh(found)
        claimed = found.claimed_at.replace(tzinfo=found.claimed_at.tzinfo or UTC)
        state: ClaimState = "sent" if found.state == "sent" else "pending"
        return Claim(found.id or 0, state, found.vendor_ref, claimed)


def _mark_sent(claim_id: int, vendor_ref: str) -> None:
    with Session(_engine()) as session:
        row = session.get(Delivery, claim_id)
        if row is None:
            return
        row.state, row.vendor_ref, row.sent_at = "sent", vendor_ref, datetime.now(UTC)
        session.add(row)
        session.commit()


def _release(claim_id: int) -> None:
    with Session(_engine()) as session:
        row = session.get(Delivery, claim_id)
        if row is not None and row.state != "sent":
            session.delete(row)
            session.commit()


async def claim(incident_id: str, key: str, channel: str, recipient: str) -> Claim:
    """Claim the delivery before sending (database work runs off the event loop)."""
    return await asyncio.to_thread(_claim, incident_id, key, channel, recipient)


async def mark_sent(claim: Claim, vendor_ref: str) -> None:
    await asyncio.to_thread(_mark_sent, claim.id, vendor_ref)


async def release(claim: Claim) -> None:
    """Forget a claim whose send the vendor definitely did not process."""
    await asyncio.to_thread(_release, claim.id)


def deliveries(incident_id: str) -> list[Delivery]:
    """The ledger rows of one incident (tests, the demo, audits)."""
    with Session(_engine()) as session:
        return list(session.exec(select(Delivery).where(Delivery.incident_id == incident_id)))
