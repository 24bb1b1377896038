"""Listing: multi-status filters with cursors and owners, and the list view against its model."""

from __future__ import annotations

import itertools

from sqlalchemy import update

from cloudtuner.core.permissions import ALL_PERMISSIONS, Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.schemas.jobs import JobSummary, SubmitJobRequest
from cloudtuner.services import jobs as job_service
from cloudtuner.services import submissions
from tests.integration.conftest import INLINE_JOB, RunningApp

ALICE = Principal(id="alice", name="alice", permissions=ALL_PERMISSIONS - {Permission.JOB_VIEW_ALL})
BOB = Principal(id="bob", name="bob", permissions=ALL_PERMISSIONS - {Permission.JOB_VIEW_ALL})
ADMIN = Principal(id="admin", name="admin", permissions=ALL_PERMISSIONS)
STATUSES = ["queued", "running", "completed", "failed", "cancelled"]


async def seed(app: RunningApp, count: int) -> dict[str, tuple[str, str]]:
    """Submit ``count`` jobs for alice and bob in turn; give them statuses in a fixed cycle."""
    request = SubmitJobRequest.model_validate(INLINE_JOB)
    owners = itertools.cycle([ALICE, BOB])
    statuses = itertools.cycle(STATUSES)
    made: dict[str, tuple[str, str]] = {}
    for _ in range(count):
        owner, status = next(owners), next(statuses)
        result = await submissions.submit_job(app.ctx, owner, "scripted", request)
        made[result.job.job_id] = (owner.id, status)
    async with app.ctx.db.transaction() as session:
        for job_id, (_owner, status) in made.items():
            await session.execute(
                update(JobRow).where(JobRow.id == job_id).values(status=status, progress={"step": 3, "loss": 1})
            )
    return made


async def walk(app: RunningApp, principal: Principal, statuses: list[str], limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await job_service.list_jobs(
            app.ctx, principal, limit=limit, statuses=[JobStatus(s) for s in statuses], cursor=cursor
        )
        seen.extend(job["job_id"] for job in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            return seen


async def test_multi_status_pages_with_cursors_and_owners(manual: RunningApp) -> None:
    made = await seed(manual, 40)
    newest_first = sorted(made, reverse=True)
    for principal, statuses, limit in [
        (ADMIN, ["completed", "failed"], 3),
        (ALICE, ["completed", "failed"], 4),
        (BOB, ["queued", "running", "cancelled"], 5),
        (ALICE, ["running"], 2),
    ]:
        expected = [
            job_id for job_id in newest_first
            if made[job_id][1] in statuses and (principal is ADMIN or made[job_id][0] == principal.id)
        ]  # fmt: skip
        assert expected, "the seed covers every case"
        assert await walk(manual, principal, statuses, limit) == expected, (principal.id, statuses, limit)


async def test_the_list_view_matches_its_model(manual: RunningApp) -> None:
    await seed(manual, 10)
    page = await job_service.list_jobs(manual.ctx, ADMIN, limit=50)
    assert len(page.jobs) == 10
    for job in page.jobs:
        validated = JobSummary.model_validate(job)
        assert validated.model_dump(mode="json") == JobSummary.model_validate(validated.model_dump()).model_dump(
            mode="json"
        )
        assert set(job) == set(JobSummary.model_fields), "the list sends exactly the model's fields"
        assert validated.progress is not None and validated.progress.loss == 1.0
    reply = (await manual.client.get("/api/cloud/jobs?limit=50")).json()
    for job in reply["jobs"]:
        assert JobSummary.model_validate(job).job_id == job["job_id"]
