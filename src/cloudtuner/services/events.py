"""The live feed of job changes behind the web UI (``GET /api/cloud/events``).

Everything is read from the job store, never from one process's memory, so a browser connected to
one server process sees what any process sharing the database did:

* **State changes** are the rows of ``job_events``, read by id after a cursor that only grows
  (the feed's ``Last-Event-ID``), a primary-key range read however many jobs there are.
* **Progress, cost, logs, errors** of jobs that are uploading, starting or running (an index read of
  ``ix_jobs_status_id`` per state) are compared with what this feed last sent for them; a job is
  sent again only when something a person would see changed. The first poll only records how
  each job looks: a page loads its data when it opens the feed, and sending every active job
  again (hundreds, on a busy server) would only slow it down.
* A job that just ended is watched a little longer (:data:`FINISHED_WATCH_SECONDS`): its final
  cost and the end of its log arrive after its final state.

A :class:`JobFeed` belongs to one connection; :meth:`JobFeed.poll` is called every
:data:`POLL_SECONDS` by the route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobEventRow
from cloudtuner.schemas.events import JobStatusEvent, JobUpdateEvent
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.job_views import JOBS, SUMMARY_COLUMNS, summary_fields

POLL_SECONDS = 0.5
"""How often a feed reads the job store."""

EVENT_BATCH = 500
"""Most state changes read in one poll; a backlog is sent over several polls."""

ACTIVE_LIMIT = 1000
"""Most active jobs compared in one poll (the newest, if there are more)."""

FINISHED_WATCH_SECONDS = 90.0
"""How long a job that ended is still watched for its final cost and logs."""

ACTIVE_STATES = (JobStatus.UPLOADING.value, JobStatus.STARTING.value, JobStatus.RUNNING.value)

_EVENT = JobEventRow.__table__.c
_LOG_LENGTH_KEY = "_log_length"


@dataclass(frozen=True)
class FeedMessage:
    """One server-sent event: its name and its data (a wire model)."""

    event: str
    data: JobStatusEvent | JobUpdateEvent


async def latest_event_id(ctx: ServiceContext) -> int:
    """Return the id of the newest job event (0 when there is none)."""
    async with ctx.db.read() as session:
        newest = await session.scalar(select(func.max(_EVENT.id)))
    return int(newest or 0)


def _sees_all(principal: Principal) -> bool:
    return principal.can(Permission.JOB_VIEW_ALL)


def _visible(principal: Principal, owner_id: str) -> bool:
    return _sees_all(principal) or (owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN))


@dataclass
class JobFeed:
    """The changes one connection has not seen yet; see the module docstring."""

    ctx: ServiceContext
    principal: Principal
    cursor: int
    sent: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per job: what was last sent (see ``_fingerprint``)."""
    watch_until: dict[str, float] = field(default_factory=dict)
    """Finished jobs still watched, until this ``time.monotonic()`` value."""
    baseline_taken: bool = False
    """False until the first poll has recorded how every active job looks (and sent nothing)."""

    async def poll(self) -> list[FeedMessage]:
        """Return the changes since the last poll, state changes first, oldest first."""
        messages = await self._status_events()
        messages += await self._updates()
        return messages

    async def _status_events(self) -> list[FeedMessage]:
        query = (
            select(
                _EVENT.id,
                _EVENT.job_id,
                _EVENT.from_status,
                _EVENT.to_status,
                _EVENT.cause,
                _EVENT.detail,
                _EVENT.created_at,
            )
            .where(_EVENT.id > self.cursor)
            .order_by(_EVENT.id)
            .limit(EVENT_BATCH)
        )
        async with self.ctx.db.read() as session:
            events = (await session.execute(query)).all()
            if not events:
                return []
            job_ids = list({event.job_id for event in events})
            jobs = await self._summaries(session, job_ids)
        self.cursor = int(events[-1].id)
        messages: list[FeedMessage] = []
        now = time.monotonic()
        for event in events:
            job = jobs.get(event.job_id)
            if job is None:
                continue  # deleted since, or not the caller's
            if JobStatus(event.to_status).is_terminal:
                self.watch_until[event.job_id] = now + FINISHED_WATCH_SECONDS
            log_length = job.pop(_LOG_LENGTH_KEY, 0)
            self.sent[event.job_id] = _fingerprint(job, log_length)
            job[_LOG_LENGTH_KEY] = log_length
            messages.append(
                FeedMessage(
                    "status",
                    JobStatusEvent(
                        event_id=int(event.id),
                        job_id=event.job_id,
                        from_status=JobStatus(event.from_status) if event.from_status else None,
                        to_status=JobStatus(event.to_status),
                        cause=event.cause,
                        detail=event.detail,
                        created_at=event.created_at,
                        job={k: v for k, v in job.items() if k != _LOG_LENGTH_KEY},
                    ),
                )
            )
        return messages

    async def _updates(self) -> list[FeedMessage]:
        now = time.monotonic()
        self.watch_until = {job_id: until for job_id, until in self.watch_until.items() if until > now}
        filters: list[ColumnElement[bool]] = [JOBS.c.status.in_(ACTIVE_STATES)]
        if not _sees_all(self.principal):
            filters.append(JOBS.c.owner_id == self.principal.id)
        active = select(*SUMMARY_COLUMNS, JOBS.c.log_length).where(*filters).order_by(JOBS.c.id.desc())
        async with self.ctx.db.read() as session:
            rows = list((await session.execute(active.limit(ACTIVE_LIMIT))).all())
            seen = {row.id for row in rows}
            watched = [job_id for job_id in self.watch_until if job_id not in seen]
            if watched:
                more = select(*SUMMARY_COLUMNS, JOBS.c.log_length).where(JOBS.c.id.in_(watched))
                rows += (await session.execute(more)).all()
        wall = self.ctx.clock.now()
        messages: list[FeedMessage] = []
        for row in rows:
            values = tuple(row)
            if not _visible(self.principal, row.owner_id):
                continue
            job = summary_fields(values[:-1], wall)
            log_length = int(values[-1] or 0)
            fingerprint = _fingerprint(job, log_length)
            if self.sent.get(row.id) == fingerprint:
                continue
            self.sent[row.id] = fingerprint
            if not self.baseline_taken and row.id not in self.watch_until:
                continue
            messages.append(FeedMessage("update", JobUpdateEvent(job_id=row.id, log_length=log_length, job=job)))
        self.baseline_taken = True
        return messages

    async def _summaries(self, session: AsyncSession, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        query = select(*SUMMARY_COLUMNS, JOBS.c.log_length).where(JOBS.c.id.in_(job_ids))
        found: dict[str, dict[str, Any]] = {}
        wall = self.ctx.clock.now()
        for row in (await session.execute(query)).all():
            if not _visible(self.principal, row.owner_id):
                continue
            values = tuple(row)
            job = summary_fields(values[:-1], wall)
            job[_LOG_LENGTH_KEY] = int(values[-1] or 0)
            found[row.id] = job
        return found


def _fingerprint(job: dict[str, Any], log_length: int) -> tuple[Any, ...]:
    """Return what a person would see change in a job's row (not its clock-driven duration)."""
    progress = job.get("progress") or {}
    return (
        job["status"],
        tuple(sorted(progress.items())),
        job["cost_usd"],
        job["error"],
        job["cancel_requested"],
        job["hardware"],
        job["provider_job_id"],
        log_length,
    )
