"""Finding jobs by text: run name, config name, job id or the provider's run id.

Used by the web UI's search box. Results come newest first, a page at a time, with the same
keyset cursor as the job list (``services.jobs.encode_cursor``). Each request looks through a
window of at most :data:`SCAN_ROWS` jobs, so its cost is bounded however many jobs there are and
however rare the term is; the cursor goes on from where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.job_views import JOBS, SUMMARY_COLUMNS, summary_fields
from cloudtuner.services.jobs import MAX_PAGE_SIZE, JobPage, decode_cursor, encode_cursor


def _like_pattern(text: str) -> str:
    """Return a LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


SCAN_ROWS = 10_000
"""Most jobs one request looks through; the reply's cursor goes on from where it stopped."""


@dataclass(frozen=True)
class SearchPage(JobPage):
    """A page of matches; ``window_ended`` when fewer than a page matched in the jobs looked through."""

    window_ended: bool = False


async def search_jobs(
    ctx: ServiceContext,
    principal: Principal,
    text: str,
    *,
    limit: int = 50,
    statuses: list[JobStatus] | None = None,
    provider: str | None = None,
    cursor: str | None = None,
) -> SearchPage:
    """Return a page of the caller's visible jobs whose run name, config name or ids contain ``text``.

    Case-insensitive; newest first. One request looks through at most :data:`SCAN_ROWS` jobs
    (newest first from the cursor); when that window holds less than a page of matches and older
    jobs remain, the reply has ``window_ended`` and a cursor that goes on after the window.

    Raises:
        InvalidCursorError: the cursor is not one this server made.
    """
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    before = decode_cursor(cursor) if cursor else None
    scope: list[ColumnElement[bool]] = []
    if before is not None:
        scope.append(JOBS.c.id < before)
    if not principal.can(Permission.JOB_VIEW_ALL):
        scope.append(JOBS.c.owner_id == principal.id)
    if statuses:
        scope.append(JOBS.c.status.in_([status.value for status in statuses]))
    if provider:
        scope.append(JOBS.c.provider == provider)
    window = select(JOBS.c.id).where(*scope).order_by(JOBS.c.id.desc()).limit(SCAN_ROWS).subquery()
    pattern: BindParameter[str] = bindparam("pattern", _like_pattern(text.strip()))
    escape = "\\"
    matches = or_(
        JOBS.c.tracker_run_name.ilike(pattern, escape=escape),
        JOBS.c.config_name.ilike(pattern, escape=escape),
        JOBS.c.id.ilike(pattern, escape=escape),
        JOBS.c.provider_job_id.ilike(pattern, escape=escape),
    )
    query = (
        select(*SUMMARY_COLUMNS)
        .where(JOBS.c.id.in_(select(window.c.id)), matches)
        .order_by(JOBS.c.id.desc())
        .limit(limit + 1)
    )
    async with ctx.db.read() as session:
        rows = (await session.execute(query)).all()
        edge = None
        if len(rows) <= limit:
            oldest, scanned = (await session.execute(select(func.min(window.c.id), func.count()))).one()
            edge = oldest if scanned >= SCAN_ROWS else None
    now = ctx.clock.now()
    page = [summary_fields(row, now) for row in rows[:limit]]
    if len(rows) > limit:
        return SearchPage(jobs=page, next_cursor=encode_cursor(rows[limit - 1][0]))
    return SearchPage(jobs=page, next_cursor=encode_cursor(edge) if edge else None, window_ended=edge is not None)
