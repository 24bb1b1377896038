"""Retries of reads, and create faults reconciled by find_job_by_reference without a second run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from cloudtuner.core.errors import ProviderRejectedError, ProviderUnavailableError
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.providers.base import NOTHING_CREATED, CloudJobStatus, RunRequest
from cloudtuner.providers.replicate import ReplicateProvider
from tests.fakes.replicate import TRAINER_VERSION, FakeReplicate
from tests.support.waiting import wait_until
from tests.unit.replicate.timing import FakeTime

from .conftest import ProviderFactory, run_request

CREATE = "/v1/predictions"


# --- reads are retried ----------------------------------------------------------------------------


async def test_429_with_retry_after_is_waited_for(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    clock = FakeTime(jitter=0.0)
    provider = make_provider(timing=clock.timing)
    info = await provider.run_job(run_request())
    when = format_datetime(clock.now() + timedelta(seconds=3), usegmt=True)
    fake.throttle_next(1, retry_after=1, method="GET", path="/v1/predictions/*")
    fake.throttle_next(1, retry_after=when, method="GET", path="/v1/predictions/*")
    status = await provider.get_job_status(info.provider_job_id)
    assert status.provider_job_id == info.provider_job_id
    assert clock.sleeps == pytest.approx([1.0, 2.0])  # 1 s; then until the date, 2 s later
    gets = fake.requests(method="GET", path=f"/v1/predictions/{info.provider_job_id}")
    assert [r["status"] for r in gets] == [429, 429, 200]


async def test_429_without_retry_after_backs_off(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.throttle_next(2, retry_after=None, method="GET", path="/v1/predictions")
    assert await provider.list_jobs() == []
    assert [r["status"] for r in fake.requests(method="GET", path="/v1/predictions")] == [429, 429, 200]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_reads_are_retried(provider: ReplicateProvider, fake: FakeReplicate, status: int) -> None:
    info = await provider.run_job(run_request())
    fake.fail_next(status, count=2, method="GET")
    assert "Starting SimpleTuner" in await wait_for_logs(provider, info.provider_job_id)
    assert [r["status"] for r in fake.requests(method="GET", path="/v1/predictions/*")][:3] == [status, status, 200]


async def test_retries_are_bounded(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.fail_next(503, count=None, method="GET")
    with pytest.raises(ProviderUnavailableError, match="503"):
        await provider.get_job_status("abc")
    assert len(fake.requests(method="GET")) == 4


async def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    provider: ReplicateProvider, fake: FakeReplicate
) -> None:
    fake.throttle_next(1, retry_after=60, method="GET")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="wait 60 s"):
        await provider.get_job_status("abc")
    assert time.monotonic() - started < 1.0


async def test_connection_errors_are_retried(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    info = await provider.run_job(run_request())
    fake.drop_reply_next(2, method="GET", path="/v1/predictions/*")
    assert (await provider.get_job_status(info.provider_job_id)).provider_job_id == info.provider_job_id
    assert len(fake.requests(method="GET", path="/v1/predictions/*")) == 3


async def test_cancel_is_retried(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.script_next(outcome="hang")
    info = await provider.run_job(run_request())
    fake.fail_next(503, method="POST", path="/v1/predictions/*/cancel")
    assert await provider.cancel_job(info.provider_job_id) is True
    assert len(fake.requests(method="POST", path="/v1/predictions/*/cancel")) == 2


async def wait_for_logs(provider: ReplicateProvider, prediction_id: str) -> str:
    return await wait_until(lambda: provider.get_job_logs(prediction_id), bool, timeout=10)


# --- the create call is never repeated ------------------------------------------------------------


async def assert_found_once(provider: ReplicateProvider, fake: FakeReplicate, request: RunRequest) -> None:
    found = await provider.find_job_by_reference(request.job_id)
    assert found is not None
    (run,) = fake.runs()
    assert found.provider_job_id == run["id"]
    assert found.reference == request.job_id
    assert found.status in (CloudJobStatus.STARTING, CloudJobStatus.RUNNING, CloudJobStatus.COMPLETED)
    assert len(fake.requests(method="POST", path=CREATE)) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_after_the_run_was_created(provider: ReplicateProvider, fake: FakeReplicate, status: int) -> None:
    fake.fail_next(status, method="POST", path=CREATE, process=True)
    request = run_request()
    with pytest.raises(ProviderUnavailableError):
        await provider.run_job(request)
    await assert_found_once(provider, fake, request)


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_before_any_run_was_created(provider: ReplicateProvider, fake: FakeReplicate, status: int) -> None:
    fake.fail_next(status, method="POST", path=CREATE)
    request = run_request()
    with pytest.raises(ProviderUnavailableError):
        await provider.run_job(request)
    assert await provider.find_job_by_reference(request.job_id) is None
    assert fake.count_runs() == 0
    assert len(fake.requests(method="POST", path=CREATE)) == 1
    # The scheduler may now send it again: exactly one run results.
    await provider.run_job(request)
    assert fake.count_runs() == 1


async def test_429_on_create_is_not_retried(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.throttle_next(1, retry_after=1, method="POST", path=CREATE)
    request = run_request()
    with pytest.raises(ProviderUnavailableError, match="rate limiting") as caught:
        await provider.run_job(request)
    assert caught.value.context["create_outcome"] == NOTHING_CREATED  # the scheduler requeues, uncounted
    assert len(fake.requests(method="POST", path=CREATE)) == 1
    assert await provider.find_job_by_reference(request.job_id) is None


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("7", 7.0), ("date+20", 20.0), ("3600", 60.0), (None, 0.5)],
    ids=["seconds", "http-date", "capped", "none"],
)
async def test_a_throttled_create_is_sent_again_only_after_retry_after(
    make_provider: ProviderFactory, fake: FakeReplicate, retry_after: str | None, expected_wait: float
) -> None:
    """The fake's 429 switch on the create call: nothing is created; after reconciling, the next
    create waits as long as Retry-After says (seconds or an HTTP date), at most 60 s by default;
    without the header, a short backoff."""
    clock = FakeTime(jitter=0.0)
    provider = make_provider(timing=clock.timing)
    if retry_after == "date+20":
        retry_after = format_datetime(clock.now() + timedelta(seconds=20), usegmt=True)
    fake.throttle_next(1, retry_after=retry_after, method="POST", path=CREATE)
    request = run_request()
    with pytest.raises(ProviderUnavailableError, match="Nothing was created") as caught:
        await provider.run_job(request)
    assert f"the next create call waits {expected_wait:g} s" in caught.value.message
    assert await provider.find_job_by_reference(request.job_id, request) is None
    assert clock.sleeps == []  # reads are not held back

    info = await provider.run_job(request)
    assert clock.sleeps == pytest.approx([expected_wait])
    assert [r["status"] for r in fake.requests(method="POST", path=CREATE)] == [429, 201]
    (run,) = fake.runs()
    assert info.provider_job_id == run["id"]


async def test_a_throttled_create_holds_back_the_next_job_too(
    make_provider: ProviderFactory, fake: FakeReplicate
) -> None:
    clock = FakeTime(jitter=1.0)
    provider = make_provider(timing=clock.timing)
    fake.throttle_next(1, retry_after=10, method="POST", path=CREATE)
    with pytest.raises(ProviderUnavailableError, match="rate limiting"):
        await provider.run_job(run_request())
    clock.advance(4.0)
    await provider.run_job(run_request())  # another job: Replicate's limit is per account
    assert clock.sleeps == pytest.approx([7.0])  # 10 s plus 10 % jitter, 4 s of which had passed
    await provider.run_job(run_request())
    assert clock.sleeps == pytest.approx([7.0])  # open again after an accepted create
    assert fake.count_runs() == 2


async def test_timeout_on_create(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.timeout_reply_next(hold_seconds=3)
    request = run_request()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="in time"):
        await provider.run_job(request)
    assert time.monotonic() - started < 2.0
    await assert_found_once(provider, fake, request)


async def test_dropped_reply_on_create(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.drop_reply_next()
    request = run_request()
    with pytest.raises(ProviderUnavailableError):
        await provider.run_job(request)
    await assert_found_once(provider, fake, request)


async def test_insufficient_credit(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.insufficient_credit()
    with pytest.raises(ProviderRejectedError) as caught:
        await provider.run_job(run_request())
    assert "insufficient credit" in caught.value.message
    assert "https://replicate.com/account/billing" in caught.value.message
    assert fake.count_runs() == 0


async def test_invalid_input_is_refused_with_replicates_detail(
    provider: ReplicateProvider, fake: FakeReplicate
) -> None:
    fake.configure(reject_unknown_input=True)
    fake.state.models["simpletuner/advanced-trainer"].versions[0].openapi_schema["components"]["schemas"]["Input"][
        "required"
    ] = ["config_json", "dataloader_json", "images"]
    with pytest.raises(ProviderRejectedError, match="images is required"):
        await provider.run_job(run_request())
    assert fake.count_runs() == 0


# --- find_job_by_reference without this process's memory ----------------------------------------


async def test_found_after_a_restart_by_run_name(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    fake.drop_reply_next()
    request = run_request(dispatched_at=datetime.now(UTC).replace(tzinfo=None))  # naive is taken as UTC
    with pytest.raises(ProviderUnavailableError):
        await make_provider().run_job(request)
    await assert_found_once(make_provider(), fake, request)


async def test_found_after_a_restart_across_pages(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    fake.configure(page_size_runs=2)
    provider = make_provider()
    fake.drop_reply_next()
    request = run_request()
    with pytest.raises(ProviderUnavailableError):
        await provider.run_job(request)
    for _ in range(5):
        await provider.run_job(run_request())
    found = await make_provider().find_job_by_reference(request.job_id)
    assert found is not None and found.reference == request.job_id
    assert fake.run(found.provider_job_id)["input"]["config_json"].endswith(f'"cloudtuner-{request.job_id}"}}')


async def test_none_after_a_restart_when_nothing_was_created(
    make_provider: ProviderFactory, fake: FakeReplicate
) -> None:
    earlier = run_request()
    await make_provider().run_job(earlier)
    fake.fail_next(503, method="POST", path=CREATE)
    request = run_request()
    with pytest.raises(ProviderUnavailableError):
        await make_provider().run_job(request)
    assert await make_provider().find_job_by_reference(request.job_id) is None
    # The job id's own time bounds the search: older runs are not even read.
    query = fake.requests(method="GET", path="/v1/predictions")[-1]["query"]
    assert query.startswith("created_after=")


async def test_user_named_run_is_found_by_its_text(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    provider = make_provider()
    request = run_request(tracker_run_name="api-test-run")
    twin = run_request(tracker_run_name="api-test-run", config=request.config)
    fake.drop_reply_next(2)
    for job in (request, twin):
        with pytest.raises(ProviderUnavailableError):
            await provider.run_job(job)
    first = await provider.find_job_by_reference(request.job_id)
    second = await provider.find_job_by_reference(twin.job_id)
    assert first is not None and second is not None
    assert first.provider_job_id != second.provider_job_id  # identical twins each get one
    assert fake.count_runs() == 2

    # After a restart, a user-named run cannot be told apart without the request ...
    restarted = make_provider()
    with pytest.raises(ProviderUnavailableError, match="cannot be matched"):
        await restarted.find_job_by_reference(new_sortable_id())
    # ... and is found with it.
    found = await restarted.find_job_by_reference(request.job_id, request)
    assert found is not None and found.reference == request.job_id


async def test_run_with_webhook_is_found_in_the_same_process(
    make_provider: ProviderFactory, fake: FakeReplicate
) -> None:
    # The fake does not show a prediction's webhook back (whether Replicate does is unconfirmed),
    # so a user-named run with a webhook is found by its text here; mapping tests cover the URL.
    request = run_request(tracker_run_name="named")
    hooked = RunRequest(
        job_id=request.job_id,
        config=request.config,
        dataloader_config=request.dataloader_config,
        tracker_run_name="named",
        webhook_url=f"http://127.0.0.1:9/api/webhooks/replicate?job_id={request.job_id}",
    )
    provider = make_provider()
    fake.drop_reply_next()
    with pytest.raises(ProviderUnavailableError):
        await provider.run_job(hooked)
    await assert_found_once(provider, fake, hooked)


async def test_find_when_replicate_cannot_be_asked(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    fake.fail_next(503, count=None, method="GET", path="/v1/predictions")
    with pytest.raises(ProviderUnavailableError):
        await make_provider().find_job_by_reference(new_sortable_id())


async def test_find_stops_when_the_list_is_too_long(make_provider: ProviderFactory, fake: FakeReplicate) -> None:
    fake.configure(page_size_runs=1)
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with httpx.AsyncClient(base_url=fake.base_url + "/", headers=headers, trust_env=False) as client:
        for index in range(25):
            reply = await client.post(
                "predictions",
                json={
                    "version": f"simpletuner/advanced-trainer:{TRAINER_VERSION}",
                    "input": {"config_json": f'{{"n": {index}}}', "dataloader_json": "[]"},
                },
            )
            assert reply.status_code == 201
    # An id that is not a cloudtuner id gives no time bound: 20 pages are read, then it gives up.
    with pytest.raises(ProviderUnavailableError, match="Could not read all"):
        await make_provider().find_job_by_reference("external-job")
