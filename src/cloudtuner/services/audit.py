"""The audit log: every change, who made it, when, from where, and how it ended; hash-chained.

Key contracts:

- **Chain.** Entry ``seq`` stores ``prev_hash`` (the hash of entry ``seq - 1``) and
  ``hash = sha256(prev_hash + "\\n" + canonical JSON of its fields)`` (:func:`entry_hash`). Seqs are
  contiguous. Changing, removing or inserting an entry breaks the chain at that entry; removing
  the newest ones is caught by the state row's head, which is written with them.
- **One writer at a time.** Entries are appended under the lock of the ``audit_state`` row
  (``SELECT ... FOR UPDATE``; SQLite's write lock), so several server processes build one chain.
  :class:`AuditLog` groups the entries of concurrent requests into one transaction.
- **Retention** deletes a prefix of whole entries and, in the same transaction, moves the anchor
  (the seq and hash of the last deleted entry) and appends an ``audit_retention`` entry naming
  it. Verification starts at the anchor and checks that such an entry exists, so what is kept
  stays verifiable and a silent move of the anchor is caught.

A chain can still be rewritten whole by someone who can write to the database; keep the
``head_hash`` that :func:`verify_chain` reports somewhere else to detect that.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.clock import Clock
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import AuditEntryRow, AuditStateRow, Base
from cloudtuner.schemas.audit import AuditEntry, AuditListResponse, AuditVerifyResponse
from cloudtuner.services.group_commit import GroupCommit

if TYPE_CHECKING:
    from cloudtuner.services.context import ServiceContext

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry ever written."""
STATE_ID = 1
RETENTION_ACTION = "audit_retention"
VERIFY_PAGE = 1000
MAX_LIST_LIMIT = 500

AUDIT_LOG = Base.metadata.tables["audit_log"]
AUDIT_STATE = Base.metadata.tables["audit_state"]


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it gets its place (seq, time, hashes) in the chain.

    ``outcome`` is ``success``, ``denied`` (401/403), ``failed`` (another refusal) or ``error``
    (the server failed). ``detail`` holds JSON values only, and never a secret.
    """

    actor_id: str
    actor_name: str
    via: str
    action: str
    target: str
    outcome: str
    source_ip: str | None = None
    status: int | None = None
    detail: dict[str, Any] | None = None


def outcome_for(status: int) -> str:
    """Return the outcome word for an HTTP status."""
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "error"
    return "failed"


def _plain_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return ``value`` as it reads back from the store (plain JSON types), so hashes match."""
    if value is None:
        return None
    plain: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return plain


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """Return the hash of an entry: sha256 of ``prev_hash``, a newline and its canonical JSON.

    ``fields`` are the entry's columns except the two hashes; ``at`` is an aware datetime.
    """
    canonical = dict(fields)
    canonical["at"] = fields["at"].astimezone(UTC).isoformat(timespec="microseconds")
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


def _row_fields(row: AuditEntryRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor_id": row.actor_id,
        "actor_name": row.actor_name,
        "via": row.via,
        "action": row.action,
        "target": row.target,
        "source_ip": row.source_ip,
        "outcome": row.outcome,
        "status": row.status,
        "detail": row.detail,
    }


async def _lock_state(session: AsyncSession) -> AuditStateRow:
    state = await session.get(AuditStateRow, STATE_ID, with_for_update=True, populate_existing=True)
    if state is None:  # the migration inserts it; recreate it if someone removed it
        state = AuditStateRow(id=STATE_ID, head_seq=0, head_hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH)
        session.add(state)
        await session.flush()
    return state


async def _lock_head(session: AsyncSession) -> tuple[int, str]:
    """Lock the chain's state row (see :func:`_lock_state`) and return its head: (seq, hash).

    A plain SELECT ... FOR UPDATE: appending runs with every batch of changes, and loading the
    row as an object costs several times as much."""
    head = (
        await session.execute(
            select(AUDIT_STATE.c.head_seq, AUDIT_STATE.c.head_hash)
            .where(AUDIT_STATE.c.id == STATE_ID)
            .with_for_update()
        )
    ).first()
    if head is None:
        state = await _lock_state(session)  # recreates the row
        return state.head_seq, state.head_hash
    return int(head.head_seq), str(head.head_hash)


async def append_entries(session: AsyncSession, events: list[AuditEvent], now: datetime) -> list[int]:
    """Append ``events`` to the chain inside the caller's transaction; return their seqs."""
    if not events:
        return []
    seq, prev = await _lock_head(session)
    rows: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        fields = {
            "seq": seq,
            "at": now,
            "actor_id": event.actor_id[:64],
            "actor_name": event.actor_name[:255],
            "via": event.via[:16],
            "action": event.action[:128],
            "target": event.target[:1024],
            "source_ip": event.source_ip[:64] if event.source_ip else None,
            "outcome": event.outcome[:16],
            "status": event.status,
            "detail": _plain_json(event.detail),
        }
        digest = entry_hash(prev, fields)
        rows.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    await session.execute(insert(AUDIT_LOG), rows)
    await session.execute(update(AUDIT_STATE).where(AUDIT_STATE.c.id == STATE_ID).values(head_seq=seq, head_hash=prev))
    return [row["seq"] for row in rows]


class AuditLog:
    """Writes audit entries, grouping the entries of concurrent requests into one transaction.

    :meth:`record` returns once its entry is committed (``services.group_commit``).
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._writer: GroupCommit[AuditEvent, None] = GroupCommit(self._write, name="audit-writes")

    async def record(self, event: AuditEvent) -> None:
        """Append ``event`` to the chain; return once it is committed.

        Raises:
            SQLAlchemyError: the batch's transaction failed (its entries are then absent).
        """
        await self._writer.submit(event)

    async def _write(self, batch: list[AuditEvent]) -> list[Exception | None]:
        async with self.db.transaction() as session:
            await append_entries(session, batch, self.clock.now())
        return [None] * len(batch)


# --- reading ------------------------------------------------------------------------------------


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry.model_validate({**_row_fields(row), "prev_hash": row.prev_hash, "hash": row.hash})


async def list_entries(
    ctx: ServiceContext,
    *,
    limit: int = 100,
    before: int | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> AuditListResponse:
    """Return audit entries, newest first; ``before`` (a seq) continues a listing."""
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    query = select(AuditEntryRow).order_by(AuditEntryRow.seq.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(AuditEntryRow.seq < before)
    if actor:
        query = query.where(AuditEntryRow.actor_name == actor.strip().lower())
    if action:
        query = query.where(AuditEntryRow.action == action.strip())
    async with ctx.db.read() as session:
        rows = list((await session.scalars(query)).all())
    entries = [_entry(row) for row in rows[:limit]]
    next_before = rows[limit - 1].seq if len(rows) > limit else None
    return AuditListResponse(entries=entries, next_before=next_before)


async def verify_chain(ctx: ServiceContext) -> AuditVerifyResponse:
    """Recompute the chain from its anchor to its head and say whether it is intact.

    Never raises for a broken chain: the reply says where and why it breaks.
    """
    for _attempt in range(3):
        reply = await _verify_once(ctx.db)
        if reply is not None:
            return reply
    # Retention moved the anchor during each attempt: very unlikely; report the last state.
    return AuditVerifyResponse(valid=False, checked=0, problem="The audit log kept changing during verification.")


async def _verify_once(db: Database) -> AuditVerifyResponse | None:
    """Verify once; None if the anchor moved while reading (retention ran), to try again."""
    async with db.read() as session:
        state = await session.get(AuditStateRow, STATE_ID)
        if state is None:
            return AuditVerifyResponse(valid=False, checked=0, problem="The audit state row is missing.")
        anchor_seq, anchor_hash, head_seq, head_hash = (
            state.anchor_seq,
            state.anchor_hash,
            state.head_seq,
            state.head_hash,
        )
    base = {"anchor_seq": anchor_seq, "head_seq": head_seq, "head_hash": head_hash}
    expected_seq, prev = anchor_seq + 1, anchor_hash
    checked = 0
    anchor_named = anchor_seq == 0
    while expected_seq <= head_seq:
        async with db.read() as session:
            rows = (
                await session.scalars(
                    select(AuditEntryRow)
                    .where(AuditEntryRow.seq >= expected_seq, AuditEntryRow.seq <= head_seq)
                    .order_by(AuditEntryRow.seq)
                    .limit(VERIFY_PAGE)
                )
            ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                if checked == 0 and await _anchor_moved(db, anchor_seq):
                    return None
                return AuditVerifyResponse(
                    valid=False, checked=checked, broken_at=expected_seq, problem="An entry is missing.", **base
                )
            if row.prev_hash != prev or entry_hash(prev, _row_fields(row)) != row.hash:
                return AuditVerifyResponse(
                    valid=False,
                    checked=checked,
                    broken_at=row.seq,
                    problem="The entry does not match its hash: it or an earlier one was changed.",
                    **base,
                )
            detail = row.detail or {}
            if (
                row.action == RETENTION_ACTION
                and detail.get("anchor_seq") == anchor_seq
                and detail.get("anchor_hash") == anchor_hash
            ):
                anchor_named = True
            prev = row.hash
            expected_seq += 1
            checked += 1
    if expected_seq <= head_seq:
        if checked == 0 and await _anchor_moved(db, anchor_seq):
            return None
        return AuditVerifyResponse(
            valid=False,
            checked=checked,
            broken_at=expected_seq,
            problem="The newest entries are missing.",
            **base,
        )
    if prev != head_hash:
        return AuditVerifyResponse(
            valid=False, checked=checked, problem="The newest entry does not match the recorded head.", **base
        )
    if not anchor_named:
        return AuditVerifyResponse(
            valid=False,
            checked=checked,
            problem="The chain's starting point was moved without a retention entry naming it.",
            **base,
        )
    first = anchor_seq + 1 if checked else None
    return AuditVerifyResponse(valid=True, checked=checked, first_seq=first, **base)


async def _anchor_moved(db: Database, anchor_seq: int) -> bool:
    async with db.read() as session:
        state = await session.get(AuditStateRow, STATE_ID)
    return state is not None and state.anchor_seq != anchor_seq


# --- retention ----------------------------------------------------------------------------------


async def apply_retention(ctx: ServiceContext) -> int:
    """Delete entries older than ``audit_retention_days``, keeping the chain verifiable.

    Returns how many entries were deleted (0 when retention is off or nothing is old enough).
    """
    days = ctx.settings.audit_retention_days
    if days <= 0:
        return 0
    now = ctx.clock.now()
    cutoff = now - timedelta(days=days)
    async with ctx.db.transaction() as session:
        state = await _lock_state(session)
        last_old = await session.scalar(select(func.max(AuditEntryRow.seq)).where(AuditEntryRow.at < cutoff))
        if last_old is None or last_old <= state.anchor_seq:
            return 0
        anchor_hash = await session.scalar(select(AuditEntryRow.hash).where(AuditEntryRow.seq == last_old))
        if anchor_hash is None:
            return 0
        result = await session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq <= last_old))
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        state.anchor_seq, state.anchor_hash = last_old, anchor_hash
        event = AuditEvent(
            actor_id="system",
            actor_name="system",
            via="system",
            action=RETENTION_ACTION,
            target="/api/audit",
            outcome="success",
            detail={
                "deleted": deleted,
                "anchor_seq": last_old,
                "anchor_hash": anchor_hash,
                "older_than": cutoff.isoformat(),
            },
        )
        await append_entries(session, [event], now)
    log.info("audit retention: deleted %d entries older than %s", deleted, cutoff.isoformat())
    return deleted
