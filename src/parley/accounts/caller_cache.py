"""Callers from memory: `authenticate` keeps the caller behind a token (an API key or an access
token) for `AUTH_CACHE_SECONDS`, so that a busy key's or token's calls make no database round trip
(and an access token no signature check) to be authenticated (bench/findings.md, "The gateway at
a Node gateway's cost").

A cached caller is never served after a change to the accounts it was read from:

- every committed change of a user or an API key in this process (an ORM change or an ORM-enabled
  `UPDATE`/`DELETE` of `users` or `api_keys`, through any session: a deactivation, a revoked key,
  a promotion, a new budget, a guest's upgrade) advances `ACCOUNT_CHANGES`, and each entry is only
  good for the generation it was read in, so this process refuses a revoked key or a deactivated
  user at once;
- with Redis, each such change is also published to every worker (`parley:accounts`), which
  advance theirs on receipt;
- anything else (another worker without Redis, the `parley` command line, a hand edit of the
  database) is seen within `AUTH_CACHE_SECONDS` (default 2), when the entry lapses.

An entry also ends at the key's or the access token's own expiry (a token is cached only once
verified: signature, type, expiry). Tokens are kept as BLAKE2 digests, not as text. The memory is
bounded: the cache is cleared when full.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from parley.accounts.models import ApiKey, User

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from parley.accounts.authentication import Caller

logger = logging.getLogger(__name__)
CHANNEL = "parley:accounts"
MAX_ENTRIES = 10_000
_ACCOUNT_TABLES = frozenset({User.__tablename__, ApiKey.__tablename__})
_CHANGED = "parley.accounts_changed"


class AccountChanges:
    """The process's count of committed account changes, and who to tell of each one."""

    def __init__(self) -> None:
        self.generation = 0
        self._listeners: list[Any] = []

    def advance(self, *, publish: bool = True) -> None:
        """Count one change: every cache entry read before it is stale."""
        self.generation += 1
        if publish:
            for listener in self._listeners:
                listener()

    def on_change(self, listener: Any) -> None:
        """Call `listener()` after each change committed in this process."""
        self._listeners.append(listener)

    def remove(self, listener: Any) -> None:
        """Stop calling `listener`."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)


ACCOUNT_CHANGES = AccountChanges()


def _mark_flush(session: Session, _context: UOWTransaction, _instances: object) -> None:
    for instance in itertools.chain(session.dirty, session.deleted):
        if isinstance(instance, User | ApiKey):
            session.info[_CHANGED] = True
            return


def _mark_statement(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in _ACCOUNT_TABLES:
            state.session.info[_CHANGED] = True


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        ACCOUNT_CHANGES.advance()


def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def watch_account_changes() -> None:
    """Count the account changes every session of this process commits (idempotent)."""
    if event.contains(Session, "after_commit", _after_commit):
        return
    event.listen(Session, "before_flush", _mark_flush)
    event.listen(Session, "do_orm_execute", _mark_statement)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: Caller
    generation: int
    fresh_until: float  # monotonic
    expires_at: datetime | None  # the API key's own expiry


class CallerCache:
    """Callers by token (an API key or an access token), for `seconds` (0: nothing is kept).

    Args:
        seconds: how long an entry serves.
        max_entries: the most entries (cleared when full).
    """

    def __init__(self, seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry] = {}

    @property
    def enabled(self) -> bool:
        """Whether entries are kept at all."""
        return self.seconds > 0

    @staticmethod
    def digest(token: str) -> bytes:
        """What a token is kept as."""
        return hashlib.blake2b(token.encode(), digest_size=20).digest()

    @staticmethod
    def generation() -> int:
        """The generation a read starting now belongs to."""
        return ACCOUNT_CHANGES.generation

    @staticmethod
    def _fresh(entry: _Entry, now: datetime) -> bool:
        if entry.generation != ACCOUNT_CHANGES.generation:
            return False
        if entry.fresh_until <= time.monotonic():
            return False
        return entry.expires_at is None or entry.expires_at > now

    def caller(self, digest: bytes, now: datetime) -> Caller | None:
        """The cached caller behind a token (by its digest), if still good at `now`."""
        entry = self._entries.get(digest)
        return entry.caller if entry is not None and self._fresh(entry, now) else None

    def keep(
        self, digest: bytes, caller: Caller, generation: int, expires_at: datetime | None
    ) -> None:
        """Keep the caller behind a token, read in `generation`, until `expires_at` at the
        latest (the key's or the access token's own expiry)."""
        if not self.enabled or generation != ACCOUNT_CHANGES.generation:
            return  # a change was committed while it was read: it may be stale already
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = _Entry(
            caller, generation, time.monotonic() + self.seconds, expires_at
        )

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


class AccountChangeRelay:
    """With Redis: publishes this worker's account changes on `parley:accounts`, and advances
    `ACCOUNT_CHANGES` when another worker publishes one."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._tasks: set[asyncio.Task[Any]] = set()

    def _publish(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        try:
            await self.redis.publish(CHANNEL, "changed")
        except Exception:
            logger.warning("could not publish an account change to Redis", exc_info=True)

    async def run(self) -> None:
        """Publish and listen until cancelled (reconnecting when Redis goes away)."""
        ACCOUNT_CHANGES.on_change(self._publish)
        try:
            while True:
                try:
                    async with self.redis.pubsub() as pubsub:
                        await pubsub.subscribe(CHANNEL)
                        # Whatever changed while this worker was not listening.
                        ACCOUNT_CHANGES.advance(publish=False)
                        async for message in pubsub.listen():
                            if message.get("type") == "message":
                                ACCOUNT_CHANGES.advance(publish=False)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning(
                        "the account change listener lost Redis; retrying", exc_info=True
                    )
                    await asyncio.sleep(1.0)
        finally:
            ACCOUNT_CHANGES.remove(self._publish)
