"""``/v1`` routes other than runs: account, files, models, versions, hardware, webhook secret.

Plus unauthenticated routes outside ``/v1``: ``/_fake/deliveries/{run}/{name}`` (the bytes behind
output URLs such as ``output.weights``), ``/p/{id}`` (the ``urls.web`` page) and
``/api/v1/summary`` (the status page summary).
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .state import FakeState
from .util import NOT_FOUND, json_response, paginate, problem, validation_problem

FILE_NOT_FOUND = {"detail": "File not found", "status": 404}
TOO_LARGE_DETAIL = "Files must be less than 100MB in size"


def state_of(request: Request) -> FakeState:
    """The :class:`FakeState` the app was built with."""
    state: FakeState = request.app.state.fake
    return state


def bad_request(detail: str) -> Response:
    """400 problem reply for malformed bodies (the real text is UNCONFIRMED)."""
    return problem({"title": "Bad request", "detail": detail, "status": 400})


async def json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or a 400 reply if it is not one."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return bad_request("The request body is not valid JSON")
    if not isinstance(body, dict):
        return bad_request("The request body must be a JSON object")
    return body


def page_reply(request: Request, items: list[Any], to_json: Any, page_size: int) -> Response:
    """Paginate newest-first ``items`` (objects with ``seq``/``created_at``) into a page object."""
    state = state_of(request)
    url = state.web_root + request.url.path
    cut = paginate(
        items,
        seq_of=lambda it: int(it.seq),
        created_of=lambda it: float(it.created_at),
        cursor=request.query_params.get("cursor"),
        page_size=page_size,
        url=url,
    )
    if cut is None:
        return bad_request("Invalid cursor")
    page, next_url, prev_url = cut
    return json_response({"next": next_url, "previous": prev_url, "results": [to_json(it) for it in page]})


# --------------------------------------------------------------------------- account & misc
async def get_account(request: Request) -> Response:
    """``GET /v1/account``: type, username, name, github_url (no balance: none exists)."""
    config = state_of(request).config
    return json_response(
        {
            "type": config.account_type,
            "username": config.username,
            "name": config.account_name,
            "github_url": config.github_url,
        }
    )


async def list_hardware(request: Request) -> Response:
    """``GET /v1/hardware``: a bare array of ``{sku, name}``."""
    return json_response([{"sku": sku, "name": name} for sku, name in state_of(request).config.hardware])


async def webhook_secret(request: Request) -> Response:
    """``GET /v1/webhooks/default/secret``: ``{"key": "whsec_..."}``."""
    return json_response({"key": state_of(request).config.webhook_secret})


# --------------------------------------------------------------------------- files
async def create_file(request: Request) -> Response:
    """``POST /v1/files``: multipart with a ``content`` part (required) and optional ``metadata``
    (JSON text or a JSON blob part), ``filename`` and ``type`` fields that override the part's
    own name and type.  201 with the file object; 413 above ``config.file_size_limit``."""
    state = state_of(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return bad_request("Expected a multipart/form-data body with a content part")
    async with request.form(max_files=16, max_fields=64) as form:
        content = form.get("content")
        if not isinstance(content, UploadFile):
            return validation_problem([("required", "", "content is required")])
        data = await content.read()
        if len(data) > state.config.file_size_limit:
            return problem({"title": "Content Too Large", "detail": TOO_LARGE_DETAIL, "status": 413})
        raw_meta = form.get("metadata")
        meta_text = (await raw_meta.read()).decode() if isinstance(raw_meta, UploadFile) else raw_meta
        try:
            metadata = json.loads(meta_text) if meta_text else {}
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            return validation_problem([("invalid_type", "metadata", "Invalid type. Expected: object")])
        override_name, override_type = form.get("filename"), form.get("type")
        name = override_name if isinstance(override_name, str) else (content.filename or "file")
        part_type = content.headers.get("content-type")
        content_type = (
            override_type
            if isinstance(override_type, str)
            else part_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
    stored = state.add_file(name, content_type, data, metadata)
    return json_response(stored.to_json(state.root), status=201)


async def list_files(request: Request) -> Response:
    """``GET /v1/files``: live files, newest first, paginated."""
    state = state_of(request)
    return page_reply(request, state.live_files(), lambda f: f.to_json(state.root), state.config.page_size_other)


async def get_file(request: Request) -> Response:
    """``GET /v1/files/{id}``: the file object (not the bytes), 404 if deleted or expired."""
    state = state_of(request)
    stored = state.get_file(request.path_params["file_id"])
    return json_response(stored.to_json(state.root)) if stored else problem(FILE_NOT_FOUND)


async def delete_file(request: Request) -> Response:
    """``DELETE /v1/files/{id}``: 204 with an empty ``text/plain`` body, then 404."""
    if not state_of(request).delete_file(request.path_params["file_id"]):
        return problem(FILE_NOT_FOUND)
    return Response(b"", status_code=204, media_type="text/plain; charset=UTF-8")


async def download_file(request: Request) -> Response:
    """``GET /v1/files/{id}/download?owner&expiry&signature`` (no token needed): the bytes.

    403 for a wrong owner, a bad signature or a past expiry; 404 for an unknown file.
    """
    state = state_of(request)
    file_id = request.path_params["file_id"]
    stored = state.get_file(file_id)
    if stored is None:
        return problem(FILE_NOT_FOUND)
    params = request.query_params
    try:
        expiry = int(params.get("expiry", ""))
    except ValueError:
        expiry = 0
    expected = state.download_signature(file_id, expiry)
    valid = (
        params.get("owner") == state.config.username
        and expiry > time.time()
        and hmac.compare_digest(expected, params.get("signature", ""))
    )
    if not valid:
        return problem({"title": "Forbidden", "detail": "Invalid or expired download signature", "status": 403})
    return Response(stored.data, media_type="application/octet-stream")


# --------------------------------------------------------------------------- models & versions
async def list_models(request: Request) -> Response:
    """``GET /v1/models``: every model, newest first, paginated."""
    state = state_of(request)
    with state.lock:
        models = sorted(state.models.values(), key=lambda m: -m.seq)
    return page_reply(request, models, lambda m: m.to_json(), state.config.page_size_other)


async def create_model(request: Request) -> Response:
    """``POST /v1/models``: owner, name, visibility, hardware (+ description); 409 if it exists."""
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    missing = [
        ("required", "", f"{key} is required") for key in ("owner", "name", "visibility", "hardware") if key not in body
    ]
    if missing:
        return validation_problem(missing)
    if body["visibility"] not in ("public", "private"):
        return validation_problem(
            [("enum", "visibility", 'visibility must be one of the following: "public", "private"')]
        )
    state = state_of(request)
    if state.get_model(str(body["owner"]), str(body["name"])) is not None:
        return problem({"title": "Conflict", "detail": "A model with this name already exists", "status": 409})
    model = state.add_model(
        str(body["owner"]),
        str(body["name"]),
        visibility=body["visibility"],
        description=body.get("description"),
        hardware=str(body["hardware"]),
    )
    return json_response(model.to_json(), status=201)


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{owner}/{name}``: the model, or the generic 404."""
    model = state_of(request).get_model(request.path_params["owner"], request.path_params["name"])
    return json_response(model.to_json()) if model else problem(NOT_FOUND)


async def list_versions(request: Request) -> Response:
    """``GET /v1/models/{owner}/{name}/versions``: newest first, paginated."""
    state = state_of(request)
    model = state.get_model(request.path_params["owner"], request.path_params["name"])
    if model is None:
        return problem(NOT_FOUND)
    return page_reply(request, list(model.versions), lambda v: v.to_json(), state.config.page_size_other)


async def get_version(request: Request) -> Response:
    """``GET /v1/models/{owner}/{name}/versions/{id}``."""
    model = state_of(request).get_model(request.path_params["owner"], request.path_params["name"])
    version = model.find_version(request.path_params["version_id"]) if model else None
    return json_response(version.to_json()) if version else problem(NOT_FOUND)


# --------------------------------------------------------------------------- helpers outside /v1
async def delivery(request: Request) -> Response:
    """``GET /_fake/deliveries/{run_id}/{name}``: bytes behind a run's output URLs."""
    name = request.path_params["name"]
    data = state_of(request).delivery_bytes(request.path_params["run_id"], name)
    if data is None:
        return problem(NOT_FOUND)
    return Response(data, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")


async def web_page(request: Request) -> Response:
    """``GET /p/{id}``: a minimal page for ``urls.web``."""
    run = state_of(request).get_run(request.path_params["run_id"])
    if run is None:
        return problem(NOT_FOUND)
    return HTMLResponse(f"<html><body><h1>{run.kind} {run.id}</h1><p>{run.status}</p></body></html>")


async def status_summary(request: Request) -> Response:
    """``GET /api/v1/summary``: the status page summary in the incident.io widget shape that
    SimpleTuner polls (reference section 12); "operational" when the first two lists are empty."""
    state = state_of(request)
    config = state.config
    return json_response(
        {
            "page_title": "Replicate Status",
            "page_url": state.web_root,
            "ongoing_incidents": config.status_ongoing_incidents,
            "in_progress_maintenances": config.status_in_progress_maintenances,
            "scheduled_maintenances": config.status_scheduled_maintenances,
        }
    )


ROUTES = [
    Route("/v1/account", get_account, methods=["GET"]),
    Route("/v1/hardware", list_hardware, methods=["GET"]),
    Route("/v1/webhooks/default/secret", webhook_secret, methods=["GET"]),
    Route("/v1/files", create_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/download", download_file, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models", create_model, methods=["POST"]),
    Route("/v1/models/{owner}/{name}", get_model, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/versions", list_versions, methods=["GET"]),
    Route("/v1/models/{owner}/{name}/versions/{version_id}", get_version, methods=["GET"]),
    Route("/_fake/deliveries/{run_id}/{name}", delivery, methods=["GET"]),
    Route("/p/{run_id}", web_page, methods=["GET"]),
    Route("/api/v1/summary", status_summary, methods=["GET"]),
]
