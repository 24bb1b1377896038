"""The submit route that skips FastAPI's request handling answers exactly as the FastAPI route does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from cloudtuner.api.routes import jobs as job_routes
from cloudtuner.services import users
from tests.integration.conftest import INLINE_JOB, RunningApp

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"
JSON = "application/json"

# (name, content type or None, body bytes, query)
CASES: list[tuple[str, str | None, bytes, str]] = [
    ("valid", JSON, json.dumps(INLINE_JOB).encode(), SUBMIT),
    ("json with charset", "application/json; charset=utf-8", json.dumps(INLINE_JOB).encode(), SUBMIT),
    ("json subtype", "application/vnd.cloudtuner+json", json.dumps(INLINE_JOB).encode(), SUBMIT),
    ("not json", JSON, b'{"config": {"--model_family": ', SUBMIT),
    ("empty", JSON, b"", SUBMIT),
    ("text/plain", "text/plain", json.dumps(INLINE_JOB).encode(), SUBMIT),
    ("no content type", None, json.dumps(INLINE_JOB).encode(), SUBMIT),
    ("a list", JSON, b"[]", SUBMIT),
    ("a string", JSON, b'"job"', SUBMIT),
    ("null", JSON, b"null", SUBMIT),
    ("NaN", JSON, b'{"budget_usd": NaN}', SUBMIT),
    ("unknown field", JSON, json.dumps({**INLINE_JOB, "nope": 1}).encode(), SUBMIT),
    ("wrong types", JSON, json.dumps({"config": 3, "dataloader_config": "x", "priority": "high"}).encode(), SUBMIT),
    ("priority out of range", JSON, json.dumps({**INLINE_JOB, "priority": 10**6}).encode(), SUBMIT),
    ("missing dataloader", JSON, json.dumps({"config": INLINE_JOB["config"]}).encode(), SUBMIT),
    ("unknown provider", JSON, json.dumps(INLINE_JOB).encode(), "/api/cloud/jobs/submit?provider=nope"),
    ("no provider (replicate)", JSON, json.dumps(INLINE_JOB).encode(), "/api/cloud/jobs/submit"),
    ("unknown config", JSON, b'{"config_name_to_load": "nothing-saved"}', SUBMIT),
]

VOLATILE = {"job_id", "id", "created_at", "updated_at", "queued_seconds", "at"}


def without_volatile(value: Any) -> Any:
    """Return a reply with ids and times taken out (they differ between two submissions)."""
    if isinstance(value, dict):
        return {key: without_volatile(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return value


def without_fast_route(app: Any) -> list[Any]:
    """Take the fast route out of the app's routes; return the routes as they were."""
    routes = list(app.router.routes)
    fast = [r for r in routes if isinstance(r, Route) and r.endpoint is job_routes._fast_submit]
    assert len(fast) == 1 and routes.index(fast[0]) < 5, "the fast route is installed once, ahead of the others"
    app.router.routes.remove(fast[0])
    return routes


async def send_all(app: RunningApp, headers: dict[str, str] | None = None) -> list[tuple[int, Any, str | None]]:
    replies = []
    for _name, content_type, body, url in CASES:
        sent = dict(headers or {})
        if content_type is not None:
            sent["content-type"] = content_type
        reply = await app.client.post(url, content=body, headers=sent)
        replies.append((reply.status_code, without_volatile(reply.json()), reply.headers.get("www-authenticate")))
    return replies


async def with_and_without_fast_route(app: RunningApp) -> tuple[list[Any], list[Any]]:
    """Send every case through the app as it is, then with the fast route taken out; return both."""
    fast = await send_all(app)
    routes = without_fast_route(app.app)
    try:
        reference = await send_all(app)
    finally:
        app.app.router.routes[:] = routes
    return fast, reference


async def test_fast_route_answers_as_the_fastapi_route(manual: RunningApp) -> None:
    fast, reference = await with_and_without_fast_route(manual)
    for (name, *_), got, expected in zip(CASES, fast, reference, strict=True):
        assert got == expected, name
    statuses = {name: got[0] for (name, *_), got in zip(CASES, fast, strict=True)}
    assert statuses["valid"] == statuses["json subtype"] == 202
    assert statuses["not json"] == 400 and statuses["empty"] == 422
    assert statuses["text/plain"] == statuses["no content type"] == 415
    no_content_type = fast[[name for name, *_ in CASES].index("no content type")][1]
    assert no_content_type["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in no_content_type["detail"], no_content_type


async def test_fast_route_answers_as_the_fastapi_route_to_anonymous_callers(manual: RunningApp) -> None:
    """Multi-user mode: a body that is not JSON is refused (400) before the missing sign-in (401)."""
    await users.create_user(manual.ctx, "admin", "correct horse battery staple", "admin")
    fast, reference = await with_and_without_fast_route(manual)
    assert fast == reference
    statuses = {name: got[0] for (name, *_), got in zip(CASES, fast, strict=True)}
    assert statuses["not json"] == 400
    assert statuses["valid"] == statuses["empty"] == 401


@pytest.mark.parametrize("fast_route", [True, False], ids=["fast route", "fastapi route"])
async def test_submissions_are_audited_under_the_routes_name(manual: RunningApp, fast_route: bool) -> None:
    if not fast_route:
        without_fast_route(manual.app)
    job_id = (await manual.client.post(SUBMIT, json=INLINE_JOB)).json()["job_id"]
    entries = (await manual.client.get("/api/audit")).json()["entries"]
    submitted = [e for e in entries if e["action"] == "submit_job"]
    assert len(submitted) == 1
    assert submitted[0]["detail"]["route"] == "/api/cloud/jobs/submit"
    assert submitted[0]["detail"]["job_id"] == job_id
    assert submitted[0]["outcome"] == "success" and submitted[0]["status"] == 202


# --- a new job's audit entry is written with the job --------------------------------------------


async def test_a_replay_and_a_refusal_are_audited_once_each(manual: RunningApp) -> None:
    body = {**INLINE_JOB, "idempotency_key": "nightly-1"}
    first = await manual.client.post(SUBMIT, json=body)
    replay = await manual.client.post(SUBMIT, json=body)
    refused = await manual.client.post(SUBMIT, json={**body, "tracker_run_name": "other"})
    assert (first.status_code, replay.status_code, refused.status_code) == (202, 200, 409)
    entries = (await manual.client.get("/api/audit")).json()["entries"]
    submitted = sorted((e for e in entries if e["action"] == "submit_job"), key=lambda e: e["seq"])
    assert [(e["status"], e["outcome"]) for e in submitted] == [(202, "success"), (200, "success"), (409, "failed")]
    assert submitted[0]["detail"]["job_id"] == submitted[1]["detail"]["job_id"] == first.json()["job_id"]


async def test_a_job_is_never_stored_without_its_entry(manual: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry is appended in the job's transaction: when appending fails, no job is stored."""
    from cloudtuner.services import job_inserts

    async def broken_chain(*args: Any) -> list[int]:
        raise RuntimeError("the audit chain cannot be appended to")

    monkeypatch.setattr(job_inserts, "append_entries", broken_chain)
    transport = httpx.ASGITransport(app=manual.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloudtuner.test") as client:
        reply = await client.post(SUBMIT, json=INLINE_JOB)
    assert reply.status_code == 500 and reply.json()["code"] == "internal_error"
    assert (await manual.client.get("/api/cloud/jobs")).json()["jobs"] == []
    entries = (await manual.client.get("/api/audit")).json()["entries"]
    assert [(e["action"], e["status"], e["outcome"]) for e in entries] == [("submit_job", 500, "error")]


async def test_submissions_and_other_changes_build_one_chain(manual: RunningApp) -> None:
    async def put_config(index: int) -> int:
        reply = await manual.client.put(
            f"/api/configs/cfg-{index}",
            json={"config": INLINE_JOB["config"], "dataloader_config": INLINE_JOB["dataloader_config"]},
        )
        return reply.status_code

    async def submit() -> int:
        return (await manual.client.post(SUBMIT, json=INLINE_JOB)).status_code

    statuses = await asyncio.gather(*(submit() for _ in range(30)), *(put_config(i) for i in range(10)))
    assert statuses.count(202) == 30 and len(statuses) == 40
    verified = (await manual.client.get("/api/audit/verify")).json()
    assert verified["valid"] and verified["checked"] == 40, verified
