"""Reading a request's credentials and client address; the cookies a sign-in sets.

``authenticate_request`` is what ``deps.requires`` calls. It remembers its answer on the request
(:class:`RequestAudit`), where the audit middleware finds who made a change.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request, Response

from cloudtuner.core.network import client_address, parse_networks
from cloudtuner.services import api_keys, settings_documents
from cloudtuner.services import auth as auth_service
from cloudtuner.services.access import Authentication
from cloudtuner.services.context import ServiceContext

SESSION_COOKIE = "cloudtuner_session"
CSRF_COOKIE = "cloudtuner_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SCOPE_KEY = "cloudtuner.request_audit"


@dataclass
class RequestAudit:
    """What the audit middleware needs to know about a request once its route has run.

    ``checked`` is True once a permission check ran, i.e. the route is not public;
    ``authentication`` is who the caller turned out to be (None if they were refused);
    ``written`` is True once the route wrote the request's entry itself, in the transaction of
    its change (the middleware then writes none).
    """

    checked: bool = False
    authentication: Authentication | None = None
    written: bool = False


def request_audit(scope: MutableMapping[str, Any]) -> RequestAudit:
    """Return the request's audit record, creating it on first use."""
    record = scope.get(_SCOPE_KEY)
    if not isinstance(record, RequestAudit):
        record = RequestAudit()
        scope[_SCOPE_KEY] = record
    return record


def _basic_password(value: str) -> str | None:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    _user, _, password = decoded.partition(":")
    return password or None


def read_credentials(request: Request) -> auth_service.PresentedCredentials:
    """Return the credentials a request carries.

    ``Authorization: Bearer <token>`` first; then ``Authorization: Basic`` whose password is an
    API key or session token (what curl sends for ``https://ci:stk_...@host/``, so a key can ride
    in a URL that scripts already use); then ``X-API-Key``; the session cookie last. A Basic
    password that is neither is ignored: it belongs to something else (a proxy's login).
    """
    token: str | None = None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = value.strip() or None
    elif scheme.lower() == "basic":
        password = _basic_password(value)
        if password and (api_keys.is_api_key(password) or auth_service.is_session_token(password)):
            token = password
    if token is None:
        token = request.headers.get("x-api-key", "").strip() or None
    return auth_service.PresentedCredentials(
        token=token,
        cookie_token=request.cookies.get(SESSION_COOKIE) or None,
        csrf_token=request.headers.get(CSRF_HEADER) or None,
    )


async def authenticate_request(request: Request) -> Authentication:
    """Return who made ``request`` (computed once per request).

    Raises:
        AuthenticationRequiredError, InvalidTokenError, CsrfTokenError: see
            ``services.auth.authenticate``.
    """
    record = request_audit(request.scope)
    if record.authentication is not None:
        return record.authentication
    record.checked = True
    ctx: ServiceContext = request.app.state.ctx
    authentication = await auth_service.authenticate(
        ctx, read_credentials(request), changes=request.method not in SAFE_METHODS
    )
    record.authentication = authentication
    return authentication


async def client_ip(ctx: ServiceContext, request: Request) -> str:
    """Return the client's address: the peer, or behind a trusted proxy the address it reports."""
    peer = request.client.host if request.client else None
    forwarded_for = request.headers.get("x-forwarded-for")
    if not forwarded_for:
        return peer or ""
    cloud = await settings_documents.get_cloud_settings(ctx)
    try:
        networks = parse_networks(cloud.trusted_proxies)
    except ValueError:
        networks = []
    return client_address(peer, forwarded_for, networks)


async def set_session_cookies(
    ctx: ServiceContext, request: Request, response: Response, token: str, csrf_token: str, expires_at: datetime
) -> None:
    """Set the session cookie (HttpOnly) and the CSRF cookie (readable by the page's scripts).

    Both are SameSite=Lax, and Secure when the request came over https or the public URL is https.
    """
    public_url = await settings_documents.public_url(ctx)
    secure = request.url.scheme == "https" or bool(public_url and public_url.startswith("https://"))
    max_age = max(0, int((expires_at - ctx.clock.now()).total_seconds()))
    common: dict[str, Any] = {"max_age": max_age, "path": "/", "secure": secure, "samesite": "lax"}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf_token, httponly=False, **common)


def clear_session_cookies(response: Response) -> None:
    """Remove the session and CSRF cookies from the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
