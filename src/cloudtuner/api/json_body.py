"""Reading a JSON request body into a model outside FastAPI's dependency solving, with its errors.

A route that skips FastAPI's request handling (see ``routes.jobs.fast_submit_route``) still has
to answer bad bodies exactly as a FastAPI body parameter would, so that clients see one API:

* a body that is not JSON, sent as JSON, is a ``json_invalid`` validation error, raised before
  anything else is checked (FastAPI reads the body before it solves dependencies, so this comes
  ahead of a 401 or 403);
* a JSON body is taken as JSON only when its content type says so (``application/json`` or
  ``application/...+json``, FastAPI's strict default); any other body is validated as raw bytes,
  which the model refuses;
* an empty body is a ``missing`` error at ``("body",)``;
* a model's errors carry ``("body", ...)`` locations.

The app's handler for ``RequestValidationError`` (``api.errors``) turns them into the usual
400 ``invalid_json``, 415 ``unsupported_media_type`` (raw bytes) or 422 ``validation_error``
replies. :func:`parse_body` returns a :class:`ParsedBody`, whose model or errors the route takes
after its permission check.
"""

from __future__ import annotations

import email.message
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ParsedBody(Generic[M]):
    """A body read for a model: the model, or the validation errors FastAPI would report."""

    model: M | None
    errors: list[dict[str, Any]]

    def value(self) -> M:
        """Return the model.

        Raises:
            RequestValidationError: the body did not validate (FastAPI's errors, ``body`` first).
        """
        if self.model is None:
            raise RequestValidationError(self.errors)
        return self.model


def is_json_content_type(content_type: str | None) -> bool:
    """Return whether FastAPI reads a body with this content type as JSON (strict content types)."""
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def parse_body(request: Request, model: type[M]) -> ParsedBody[M]:
    """Read ``request``'s body into ``model`` as a FastAPI body parameter would (module docstring).

    A well-formed JSON body is validated straight from its bytes (one pass); anything else takes
    FastAPI's own steps, so that its errors are FastAPI's.

    Raises:
        RequestValidationError: the body was sent as JSON and is not JSON (``json_invalid``).
    """
    raw = await request.body()
    data: Any
    if raw and is_json_content_type(request.headers.get("content-type")):
        try:
            return ParsedBody(model.model_validate_json(raw), [])
        except ValidationError:
            pass  # not a valid model, or not JSON: FastAPI's steps below say which, in its words
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            problem = {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
            raise RequestValidationError([problem], body=exc.doc) from exc
    elif raw:
        data = raw
    else:
        return ParsedBody(None, [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        # FastAPI validates a body parameter with from_attributes, which words some errors its own way.
        return ParsedBody(model.model_validate(data, from_attributes=True), [])
    except ValidationError as exc:
        return ParsedBody(None, [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()])
