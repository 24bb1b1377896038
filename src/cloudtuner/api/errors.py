"""The one place where errors become HTTP replies.

Every reply is ``{"detail": <sentence>, "code": <stable code>}``. Bad input never yields a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloudtuner.core import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.CloudtunerError], int] = {
    errors.UnsupportedMediaTypeError: 415,
    errors.InvalidRequestError: 400,
    errors.AuthenticationRequiredError: 401,
    errors.WebhookRejectedError: 401,
    errors.WebhookSourceForbiddenError: 403,
    errors.PermissionDeniedError: 403,
    errors.UploadsDisabledError: 403,
    errors.UploadConsentRequiredError: 428,
    errors.SpendingLimitExceededError: 402,
    errors.LoginThrottledError: 429,
    errors.QueueFullError: 429,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.ProviderAuthError: 502,
    errors.ProviderRejectedError: 502,
    errors.ProviderUnavailableError: 503,
    errors.ProviderError: 502,
    errors.ConfigurationError: 500,
}


def status_for(exc: errors.CloudtunerError) -> int:
    """Return the HTTP status of an error: that of the nearest mapped class in its ancestry."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """Return the JSON body of an error reply."""
    return {"detail": detail, "code": code, **{k: v for k, v in extra.items() if v is not None}}


def _headers_for(exc: errors.CloudtunerError) -> dict[str, str] | None:
    """Return the headers HTTP asks for with some errors: a 401's challenge, a 429's wait."""
    if isinstance(exc, errors.AuthenticationRequiredError):
        return {"WWW-Authenticate": 'Bearer realm="cloudtuner"'}
    retry_after = exc.context.get("retry_after_seconds")
    if isinstance(retry_after, int | float):
        return {"Retry-After": str(max(1, int(retry_after + 0.999)))}
    return None


def _describe_validation(errors_list: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors_list[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors_list) - 5} more)" if len(errors_list) > 5 else ""
    return "The request is not valid: " + "; ".join(parts) + more + "."


def _body_not_sent_as_json(problem: dict[str, Any]) -> bool:
    """Return whether a validation problem is a body FastAPI did not read as JSON: it hands a model
    the raw bytes when the Content-Type is not JSON (or is missing)."""
    return tuple(problem.get("loc", ())) == ("body",) and isinstance(problem.get("input"), bytes | bytearray)


ErrorReply = tuple[int, dict[str, Any], dict[str, str] | None]
"""An error reply's status, JSON body and extra headers."""


def reply_for_error(exc: errors.CloudtunerError) -> ErrorReply:
    """Return the reply to a cloudtuner error (and log it when it is the server's fault)."""
    status = status_for(exc)
    if status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return status, error_body(exc.message, exc.code, **exc.context), _headers_for(exc)


def reply_for_unexpected(exc: Exception) -> ErrorReply:
    """Return the reply to an error nobody expected, after logging it with its traceback."""
    log.exception("unexpected error", exc_info=exc)
    return 500, error_body("The server hit an unexpected error; it has been logged.", "internal_error"), None


def install_error_handlers(app: FastAPI) -> None:
    """Map cloudtuner errors, validation errors and unknown routes to JSON error replies."""

    @app.exception_handler(errors.CloudtunerError)
    async def _cloudtuner_error(_request: Request, exc: errors.CloudtunerError) -> JSONResponse:
        status, body, headers = reply_for_error(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [dict(e) for e in exc.errors()]
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return JSONResponse(
                error_body("The request body is not valid JSON; check quotes, commas and brackets.", "invalid_json"),
                status_code=400,
            )
        if any(_body_not_sent_as_json(problem) for problem in problems):
            status, body, headers = reply_for_error(
                errors.UnsupportedMediaTypeError(
                    f"The request body must be JSON, sent with the header Content-Type: application/json "
                    f"(it came with {request.headers.get('content-type') or 'no Content-Type'}); "
                    "with curl, add -H 'Content-Type: application/json'."
                )
            )
            return JSONResponse(body, status_code=status, headers=headers)
        details = [
            {"loc": list(p.get("loc", ())), "msg": str(p.get("msg", "")), "type": str(p.get("type", ""))}
            for p in problems
        ]
        return JSONResponse(
            error_body(_describe_validation(problems), "validation_error", errors=details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "route_not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if exc.status_code == 404:
            detail = "There is no such route; see /docs for the API."
        elif exc.status_code == 405:
            detail = "That method is not allowed on this route; see /docs for the API."
        return JSONResponse(
            error_body(detail, codes.get(exc.status_code, "http_error")),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = reply_for_unexpected(exc)
        return JSONResponse(body, status_code=status, headers=headers)
