"""``/v1`` routes of predictions and trainings: create, get, list (cursor pages), cancel.

Contracts (reference sections 4 and 5):

* Creates answer 201.  A training's create reply has the recorded quirk of ``urls`` under
  ``/v1/predictions``; ``GET``/``cancel`` under ``/v1/predictions/{id}`` work for trainings too.
* Unknown top-level keys, missing ``version``/``input``/``destination`` and schema violations of
  ``input`` get 422 in the section 13 shape; an unknown version gets the 422 "Invalid version or
  not permitted" body; a missing (or not owned) destination the recorded 404.
* ``Prefer: wait[=N]`` holds a prediction create until the run ends or N (default 60) seconds
  pass, echoing ``Preference-Applied``.  ``Cancel-After`` sets ``deadline``.
* Cancel answers 200 with the object; a terminal run is returned unchanged.
* The legacy ``webhook_completed`` field, when given without ``webhook``, acts as a webhook with
  the filter ``["completed"]`` (whether Replicate still honours it is UNCONFIRMED).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .catalog import Model, Version, input_schema_of
from .routes_api import bad_request, json_body, page_reply, state_of
from .runs import Run, RunKind
from .state import FakeState
from .util import INVALID_VERSION, NOT_FOUND, json_response, problem, validation_problem
from .validation import (
    MODEL_PREDICTION_KEYS,
    PREDICTION_KEYS,
    TRAINING_KEYS,
    check_body,
    check_input,
    check_webhook,
    parse_duration,
)

DESTINATION_MISSING = {"detail": "The specified training destination does not exist", "status": 404}
_PREFER = re.compile(r"^wait(=([1-9]|[1-9][0-9]|60))?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _resolve_version(state: FakeState, ref: str) -> tuple[Model, Version] | None:
    """``<64 hex>``, ``owner/name:<64 hex>`` or (official models only) ``owner/name``."""
    if _HEX64.match(ref):
        return state.find_version(ref)
    name, _, version_id = ref.partition(":")
    owner, _, model_name = name.partition("/")
    model = state.get_model(owner, model_name) if owner and model_name else None
    if model is None:
        return None
    if not version_id:
        return (model, model.versions[0]) if model.is_official and model.versions else None
    version = model.find_version(version_id)
    return (model, version) if version else None


def _input_errors(state: FakeState, version: Version, run_input: dict[str, Any]) -> Response | None:
    if not state.config.validate_input:
        return None
    schema = input_schema_of(version)
    if schema is None:
        return None
    components = version.openapi_schema.get("components", {}).get("schemas", {})
    errors = check_input(run_input, schema, components, reject_unknown=state.config.reject_unknown_input)
    return validation_problem(errors) if errors else None


def _deadline(state: FakeState, request: Request) -> float | Response | None:
    header = request.headers.get("cancel-after")
    if header is None:
        return None
    seconds = parse_duration(header)
    if seconds is None or seconds < state.config.cancel_after_minimum:
        detail = f"Cancel-After must be a duration of at least {state.config.cancel_after_minimum:g}s"
        return validation_problem([("format", "Cancel-After", detail)])
    return time.time() + seconds


async def _create(
    request: Request,
    kind: RunKind,
    model: Model,
    version: Version,
    body: dict[str, Any],
    destination: str | None = None,
) -> Response:
    state = state_of(request)
    run_input: dict[str, Any] = body["input"]
    invalid = _input_errors(state, version, run_input)
    if invalid is not None:
        return invalid
    deadline = _deadline(state, request) if kind == "prediction" else None
    if isinstance(deadline, Response):
        return deadline
    webhook, events = body.get("webhook"), body.get("webhook_events_filter")
    if webhook is None and body.get("webhook_completed") is not None:
        webhook, events = body["webhook_completed"], ["completed"]
    run = state.create_run(
        kind,
        model,
        version,
        run_input,
        webhook=webhook,
        events_filter=tuple(events) if events is not None else None,
        destination=destination,
        deadline=deadline,
    )
    headers: dict[str, str] = {}
    prefer = request.headers.get("prefer", "").strip()
    if kind == "prediction" and _PREFER.match(prefer):
        headers["Preference-Applied"] = prefer
        await _hold_until_done(state, run, float(prefer.partition("=")[2] or 60))
    with state.lock:
        reply = run.to_json(state.root, create_reply=True)
    return json_response(reply, status=201, headers=headers)


async def _hold_until_done(state: FakeState, run: Run, seconds: float) -> None:
    """Poll until ``run`` is terminal or ``seconds`` have passed (``Prefer: wait``)."""
    deadline = time.monotonic() + seconds
    while not run.terminal and time.monotonic() < deadline:
        await asyncio.sleep(state.config.tick_seconds)


async def _validated_body(request: Request, allowed: frozenset[str], required: tuple[str, ...]) -> Any:
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    errors = check_body(body, allowed, required) + check_webhook(body, state_of(request).config)
    return validation_problem(errors) if errors else body


async def create_prediction(request: Request) -> Response:
    """``POST /v1/predictions`` with ``version`` and ``input``."""
    body = await _validated_body(request, PREDICTION_KEYS, ("version", "input"))
    if isinstance(body, Response):
        return body
    found = _resolve_version(state_of(request), str(body["version"]))
    if found is None:
        return problem(INVALID_VERSION)
    return await _create(request, "prediction", found[0], found[1], body)


async def create_model_prediction(request: Request) -> Response:
    """``POST /v1/models/{owner}/{name}/predictions``: official models only, else 404."""
    state = state_of(request)
    model = state.get_model(request.path_params["owner"], request.path_params["name"])
    if model is None or not model.is_official or not model.versions:
        return problem(NOT_FOUND)
    body = await _validated_body(request, MODEL_PREDICTION_KEYS, ("input",))
    if isinstance(body, Response):
        return body
    return await _create(request, "prediction", model, model.versions[0], body)


async def create_training(request: Request) -> Response:
    """``POST /v1/models/{owner}/{name}/versions/{version_id}/trainings``."""
    state = state_of(request)
    model = state.get_model(request.path_params["owner"], request.path_params["name"])
    if model is None:
        return problem(NOT_FOUND)
    body = await _validated_body(request, TRAINING_KEYS, ("destination", "input"))
    if isinstance(body, Response):
        return body
    version = model.find_version(request.path_params["version_id"])
    if version is None:
        return problem(INVALID_VERSION)
    destination = str(body["destination"])
    owner, _, name = destination.partition("/")
    if owner != state.config.username or state.get_model(owner, name) is None:
        return problem(DESTINATION_MISSING)
    return await _create(request, "training", model, version, body, destination=destination)


def _get_reply(request: Request, kind: RunKind | None) -> Response:
    state = state_of(request)
    run = state.get_run(request.path_params["run_id"], kind)
    if run is None:
        return problem(NOT_FOUND)
    with state.lock:
        return json_response(run.to_json(state.root))


def _cancel_reply(request: Request, kind: RunKind | None) -> Response:
    state = state_of(request)
    run = state.get_run(request.path_params["run_id"], kind)
    if run is None:
        return problem(NOT_FOUND)
    state.cancel_run(run)
    with state.lock:
        return json_response(run.to_json(state.root))


async def get_prediction(request: Request) -> Response:
    """``GET /v1/predictions/{id}`` (trainings are predictions underneath, so they match too)."""
    return _get_reply(request, None)


async def cancel_prediction(request: Request) -> Response:
    """``POST /v1/predictions/{id}/cancel``."""
    return _cancel_reply(request, None)


async def get_training(request: Request) -> Response:
    """``GET /v1/trainings/{id}``."""
    return _get_reply(request, "training")


async def cancel_training(request: Request) -> Response:
    """``POST /v1/trainings/{id}/cancel``."""
    return _cancel_reply(request, "training")


async def list_predictions(request: Request) -> Response:
    """``GET /v1/predictions?created_after&created_before&source&cursor``, newest first."""
    state = state_of(request)
    runs = state.list_runs("prediction")
    params = request.query_params
    try:
        after = _micros(params["created_after"]) if "created_after" in params else None
        before = _micros(params["created_before"]) if "created_before" in params else None
    except ValueError:
        return bad_request("created_after/created_before must be ISO 8601 date-times")
    if after is not None:
        runs = [r for r in runs if _shown_micros(r.created_at) > after]
    if before is not None:
        runs = [r for r in runs if _shown_micros(r.created_at) < before]
    if params.get("source") == "web":
        runs = []
    with state.lock:
        return page_reply(request, runs, lambda r: r.to_json(state.root), state.config.page_size_runs)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(text: str) -> int:
    """Microseconds since the epoch of an ISO 8601 time (``Z`` or an offset; naive means UTC),
    counted exactly (no float), as the API compares them."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _shown_micros(ts: float) -> int:
    """Microseconds since the epoch of a run's time as its ``created_at`` shows it."""
    return (datetime.fromtimestamp(ts, UTC) - _EPOCH) // timedelta(microseconds=1)


async def list_trainings(request: Request) -> Response:
    """``GET /v1/trainings?cursor``, newest first."""
    state = state_of(request)
    with state.lock:
        return page_reply(
            request, state.list_runs("training"), lambda r: r.to_json(state.root), state.config.page_size_runs
        )


ROUTES = [
    Route("/v1/predictions", create_prediction, methods=["POST"]),
    Route("/v1/predictions", list_predictions, methods=["GET"]),
    Route("/v1/predictions/{run_id}", get_prediction, methods=["GET"]),
    Route("/v1/predictions/{run_id}/cancel", cancel_prediction, methods=["POST"]),
    Route("/v1/models/{owner}/{name}/predictions", create_model_prediction, methods=["POST"]),
    Route("/v1/models/{owner}/{name}/versions/{version_id}/trainings", create_training, methods=["POST"]),
    Route("/v1/trainings", list_trainings, methods=["GET"]),
    Route("/v1/trainings/{run_id}", get_training, methods=["GET"]),
    Route("/v1/trainings/{run_id}/cancel", cancel_training, methods=["POST"]),
]
