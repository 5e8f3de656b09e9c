"""The events' tables: `outbox_events`, one row per CloudEvent, written in the transaction of
the change it tells of; and `handled_events`, which event each consumer has handled, written in
the transaction of the consumer's effect (so a redelivered event has one effect).

An event's `position` is given by the relay once the event's transaction has committed, one
batch at a time under a lock: positions increase in the order events become visible, which is
what lets a reader follow them with "everything after position N" and never skip one that
committed late.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin, utcnow

TYPE_MAX_CHARS = 100
SUBJECT_MAX_CHARS = 200
CONSUMER_MAX_CHARS = 100


class OutboxEvent(IdTimestampMixin, Base):
    """One CloudEvent: `id` is its id (UUIDv7), `type` e.g. `parley.task.completed.v1`,
    `subject` what it is about (e.g. `tasks/<id>`), `user_id` whose it is (`parleyuser`), `time`
    when the change happened, `data` its payload. `position` and `published_at` are set by the
    relay; `attempts` and `last_error` record failed deliveries."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The relay's pick: events not numbered yet, oldest first (ids are time-ordered).
        Index(
            "ix_outbox_events_pending",
            "id",
            postgresql_where=text("position IS NULL"),
            sqlite_where=text("position IS NULL"),
        ),
        # Positions, unique; and a user's feed, their events after a position. Both partial: a
        # new event has no position, so the INSERT in the change's transaction skips them (the
        # relay writes their entries when it numbers the event).
        Index(
            "ix_outbox_events_position",
            "position",
            unique=True,
            postgresql_where=text("position IS NOT NULL"),
            sqlite_where=text("position IS NOT NULL"),
        ),
        Index(
            "ix_outbox_events_user_position",
            "user_id",
            "position",
            postgresql_where=text("position IS NOT NULL"),
            sqlite_where=text("position IS NOT NULL"),
        ),
        # (The purge of old events needs no index of its own: ids are UUIDv7, ordered by time,
        # so "older than" is a range of the primary key.)
    )

    type: Mapped[str] = mapped_column(String(TYPE_MAX_CHARS))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX_CHARS))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    time: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    position: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class HandledEvent(Base):
    """That `consumer` has handled the event `event_id` (its effect committed with this row)."""

    __tablename__ = "handled_events"
    # The purge deletes the rows older than EVENTS_RETENTION_DAYS (a range of this index).
    __table_args__ = (Index("ix_handled_events_created_at", "created_at"),)

    consumer: Mapped[str] = mapped_column(String(CONSUMER_MAX_CHARS), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


ACTION_MAX_CHARS = 100


class AuditRecord(IdTimestampMixin, Base):
    """One line of the audit log, written by the audit consumer from the event it tells of
    (`event_id`, unique: a redelivered event adds no second line). `action` names what was done
    (`account.signed_in`, `api_key.created`, `tool.called`, ...), `user_id` by whom (null once
    the account is deleted), `subject` to what, `time` when, and `details` the rest (a tool
    call's surface, tool, arguments and result status)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        # A user's log, newest first; the admin's log is the primary key (UUIDv7, time-ordered).
        Index("ix_audit_records_user_id_id", "user_id", "id"),
        Index("ix_audit_records_action_id", "action", "id"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    action: Mapped[str] = mapped_column(String(ACTION_MAX_CHARS))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX_CHARS))
    time: Mapped[datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
