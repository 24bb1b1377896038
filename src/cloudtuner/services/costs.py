"""A job's cost: accrued while it runs, final when its provider says so, capped by its own budget.

These functions change a locked job row and nothing else: they run inside the scheduler's and the
webhooks' write transactions (``services.observations.apply_observation``, the ``JobUpdates`` group
commit), so they do no I/O and never await.

How a cost is worked out from one provider report (``CloudJobInfo``):

1. **Billed seconds.** A provider that reports money at a price it publishes (Replicate:
   ``metrics.predict_time`` × its hardware price, or the seconds since the run started while no
   figure is in yet) is read back into seconds: reported cost ÷ the provider's own price.
2. **Cost.** Those seconds × the job's price (``jobs.price_per_second``, fixed at submission from
   the price table, where the provider settings may override the provider's price). A provider
   whose prices are unknown is taken at its word (its ``cost_usd``). A provider that reports no
   cost at all is charged by wall time: from the run's start to its end (or now) × the job's price.
3. **Final.** A report of a finished run that carries a figure makes the cost final: later,
   older reports (a late webhook) no longer change it.

The estimate reserved at submission (``jobs.cost_reserved_usd``) counts against spending limits
while the job is unfinished, as far as it is above the cost so far; :func:`release_reservation`
drops it when the job ends (called by ``transitions.transition_job``), so from then on the job
counts with its real cost only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.providers.base import CloudJobInfo

BUDGET_CAUSE = "budget cap reached"
"""The cause recorded on the event of a job cancelled by its own budget cap."""


def format_usd(value: float) -> str:
    """Return a dollar amount for a sentence: in cents, but with up to four decimals below $10 when
    cents would change it (a $0.005 budget is not "$0.01", and a $2.6713 limit is not "$2.67")."""
    if abs(value) >= 10 or round(value, 2) == round(value, 4):
        return f"${value:,.2f}"
    return f"${value:.4f}".rstrip("0")


def _wall_seconds(job: JobRow, info: CloudJobInfo | None, now: datetime) -> float | None:
    started = (info.started_at if info is not None else None) or job.started_at
    if started is None:
        return None
    ended = None
    if info is not None and info.status.as_job_status().is_terminal:
        ended = info.finished_at
    if ended is None and JobStatus(job.status).is_terminal:
        ended = job.finished_at
    return max(0.0, ((ended or now) - started).total_seconds())


def accrue(job: JobRow, info: CloudJobInfo, now: datetime, provider_price: float | None) -> None:
    """Bring a locked job's cost and billed seconds in line with a provider report (see module docstring).

    ``provider_price`` is the provider's own price per second of the job's hardware, or None when
    the provider publishes none.
    """
    final_report = info.cost_usd is not None and info.status.as_job_status().is_terminal
    if job.cost_final and not final_report:
        return
    seconds: float | None = None
    cost: float | None = None
    if info.cost_usd is not None and provider_price:
        seconds = info.cost_usd / provider_price
    if seconds is not None and job.price_per_second is not None:
        cost = seconds * job.price_per_second
    elif info.cost_usd is not None:
        cost = info.cost_usd
    if seconds is None:
        seconds = _wall_seconds(job, info, now)
        if cost is None and seconds is not None and job.price_per_second is not None:
            cost = seconds * job.price_per_second
    if seconds is not None:
        job.run_seconds = round(seconds, 6)
    if cost is not None:
        job.cost_usd = round(max(0.0, cost), 9)
    if final_report:
        job.cost_final = True


def over_budget(job: JobRow) -> bool:
    """Return True if the job has a budget cap and its cost has reached it."""
    return job.budget_usd is not None and job.cost_usd >= job.budget_usd


def budget_reached_at(job: JobRow, now: datetime) -> datetime | None:
    """Return when a running job's cost reaches its budget cap at its price, if it has both.

    For the scheduler to read the job then rather than at its usual interval: between two reads a
    job runs on unchecked, so a cap reached just after one read is otherwise noticed only at the
    next (at $3.51 an hour, five seconds late is half a cent; an hour late would be $3.51).
    ``now`` for a job already at its cap; None for a job with no cap, no price, or not running.
    """
    if job.budget_usd is None or not job.price_per_second or job.status != JobStatus.RUNNING.value:
        return None
    remaining = job.budget_usd - job.cost_usd
    if remaining <= 0:
        return now
    return now + timedelta(seconds=remaining / job.price_per_second)


def enforce_budget(job: JobRow, now: datetime) -> bool:
    """Ask for a running job to be cancelled once its cost reaches its budget cap; return True if asked now.

    The request is recorded like a user's cancel (``cancel_requested_at``) and the job is made due
    for a sync at once: the next sync stops the run at the provider and records the cancellation
    with the cause :data:`BUDGET_CAUSE`. Nothing happens for a finished job or one already being
    cancelled.
    """
    if not over_budget(job) or job.cancel_requested_at is not None or JobStatus(job.status).is_terminal:
        return False
    job.cancel_requested_at = now
    job.updated_at = now
    job.next_sync_at = now
    return True


def budget_message(job: JobRow) -> str:
    """Return the sentence recorded on a job cancelled by its budget cap."""
    return (
        f"Cancelled by its budget cap: the job had cost {format_usd(job.cost_usd)} of its "
        f"{format_usd(job.budget_usd or 0.0)} budget (budget_usd)."
    )


def release_reservation(job: JobRow) -> None:
    """Drop a finished job's reserved estimate: from now on it counts against limits with its cost only."""
    job.cost_reserved_usd = 0.0


def committed(job: JobRow) -> float:
    """Return what a job counts for against spending limits: its cost, or its reservation while unfinished."""
    if JobStatus(job.status).is_terminal:
        return job.cost_usd
    return max(job.cost_usd, job.cost_reserved_usd)
