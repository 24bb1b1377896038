"""The HTTP side of the Replicate provider: auth, bounded calls and error mapping.

Contracts:

* The token is read from the async token source on **every** call and sent as
  ``Authorization: Bearer``; it is never stored here, logged or put in an exception.
* One :class:`httpx.AsyncClient` with ``trust_env=True`` (proxies from ``HTTPS_PROXY``,
  ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``; ``SSL_CERT_DIR``), the CA bundle from the
  settings (:func:`.network.tls_verification`) and explicit :class:`.retries.Timeouts`; closed by
  :meth:`ReplicateHTTP.aclose`. A proxy or CA bundle that cannot be used stops the server at start
  with a ``ConfigurationError``.
* Calls marked ``retry=True`` (reads, cancel, file upload) are repeated on 429, 500, 502, 503,
  504 and on connection errors and timeouts, with exponential backoff and jitter, honouring
  ``Retry-After``, bounded by :class:`.retries.RetryPolicy` (tries and a total time budget). A TLS
  certificate that cannot be verified is not retried. Calls with ``retry=False`` (creating a
  prediction) are sent exactly once.
* A create call goes through a :class:`.retries.CreateGate`: a 429 on it (nothing was created)
  raises ``ProviderUnavailableError`` and closes the gate for ``Retry-After`` (capped; without the
  header, a growing backoff with jitter), so the caller's next create call, after reconciling,
  waits for the time Replicate asked for instead of being refused again.
* Time, waits and jitter come from :class:`.retries.Timing`, so tests never sleep.
* Replies become errors here: 401 → ``ProviderAuthError``; 402 → ``ProviderRejectedError``
  (insufficient credit); 407 (a proxy wants credentials) → ``ProviderUnavailableError``;
  413 → ``ProviderRejectedError`` (file too large); other 4xx →
  ``ProviderRejectedError`` with Replicate's ``detail``; 429/5xx/timeouts/connection errors (after
  any retries) → ``ProviderUnavailableError``. A 404 is returned to the caller as None when it
  asked for that.
* Pagination links (absolute ``next`` URLs) are followed only on the API's own origin, so the
  token is never sent to another host.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from cloudtuner.core.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from cloudtuner.providers.base import NOTHING_CREATED
from cloudtuner.providers.replicate.network import (
    CA_BUNDLE_VARIABLES,
    PROXY_VARIABLES,
    certificate_rejected,
    environment_proxies,
    tls_verification,
    unusable_proxy_message,
)
from cloudtuner.providers.replicate.retries import (
    RETRY_STATUSES,
    CreateGate,
    CreateThrottle,
    RetryPolicy,
    Timeouts,
    Timing,
    retry_after_seconds,
)

__all__ = [
    "CA_BUNDLE_VARIABLES",
    "INSUFFICIENT_CREDIT_MESSAGE",
    "INVALID_TOKEN_ADVICE",
    "NOT_R8_NOTE",
    "NOT_SENT",
    "NOT_SET_MESSAGE",
    "OUTCOME_UNKNOWN",
    "PROXY_VARIABLES",
    "RETRY_STATUSES",
    "TOKEN_PAGE",
    "BodyFactory",
    "CreateGate",
    "CreateThrottle",
    "ReplicateHTTP",
    "RetryPolicy",
    "Timeouts",
    "Timing",
    "TokenSource",
    "clean_token",
    "decode_json",
    "environment_proxies",
    "invalid_token_message",
    "problem_detail",
    "retry_after_seconds",
    "tls_verification",
]
"""The retry and network names are defined in :mod:`.retries` and :mod:`.network` and stay
importable from here, where callers have always found them."""

log = logging.getLogger(__name__)

TokenSource = Callable[[], Awaitable[str | None]]
BodyFactory = Callable[[], AsyncIterator[bytes]]

TOKEN_PAGE = "https://replicate.com/account/api-tokens"  # noqa: S105 - a web page, not a secret


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)
"""Failures that happen before the request can have reached Replicate."""

OUTCOME_UNKNOWN = "unknown"
"""``ProviderUnavailableError.context["create_outcome"]`` of a create call that was sent but got no
reply (a read timeout, a dropped connection): Replicate may have made the run, or may still be making it."""

NOT_SET_MESSAGE = (
    "REPLICATE_API_TOKEN not set. Export it before starting the server "
    '(export REPLICATE_API_TOKEN="r8_...") and restart cloudtuner, or save a token in the Cloud '
    "settings (PUT /api/cloud/providers/replicate/token)."
)
INVALID_TOKEN_ADVICE = (
    f"Replicate tokens start with r8_; generate a new one at {TOKEN_PAGE} and check the saved "
    "token or REPLICATE_API_TOKEN for stray spaces or newlines."
)
NOT_R8_NOTE = "This token does not start with r8_."
INSUFFICIENT_CREDIT_MESSAGE = (
    "Replicate refused the run: insufficient credit. Add credit at https://replicate.com/account/billing "
    "and wait a few minutes before submitting again."
)


def problem_detail(response: httpx.Response) -> str:
    """Return the human part of a Replicate error reply (``detail``, else ``title``, else the status)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return f"HTTP {response.status_code}"


def clean_token(raw: str | None) -> str:
    """Return the token with surrounding whitespace removed.

    Raises:
        ProviderAuthError: no token, or one with whitespace or control characters inside.
    """
    token = (raw or "").strip()
    if not token:
        raise ProviderAuthError(NOT_SET_MESSAGE)
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ProviderAuthError(f"Invalid token: it contains spaces or control characters. {INVALID_TOKEN_ADVICE}")
    return token


def invalid_token_message(token: str) -> str:
    """Return the message for a token Replicate refused (401)."""
    note = "" if token.startswith("r8_") else f" {NOT_R8_NOTE}"
    return f"Invalid token: Replicate refused it (401 Unauthenticated).{note} {INVALID_TOKEN_ADVICE}"


class ReplicateHTTP:
    """Authenticated, bounded calls to Replicate's ``/v1`` API."""

    def __init__(
        self,
        base_url: str,
        token_source: TokenSource,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        create_throttle: CreateThrottle | None = None,
        verify: ssl.SSLContext | bool = True,
        timing: Timing | None = None,
        user_agent: str = "cloudtuner",
    ) -> None:
        """Build the client. Proxies come from the environment (ignored when ``transport`` is given).

        Raises:
            ConfigurationError: a proxy in the environment cannot be used (its URL is not shown
                with any password it carries).
        """
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._token_source = token_source
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.timing = timing or Timing()
        self.create_gate = CreateGate(create_throttle or CreateThrottle(), self.timing)
        try:
            self._client = httpx.AsyncClient(
                base_url=self.base_url + "/",
                transport=transport,
                timeout=self.timeouts.as_httpx(),
                verify=verify,
                trust_env=True,
                follow_redirects=False,
                headers={"User-Agent": user_agent, "Accept": "application/json"},
            )
        except (ValueError, ImportError) as exc:
            raise ConfigurationError(unusable_proxy_message(exc)) from None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def token(self) -> str:
        """Return the current token from the token source.

        Raises:
            ProviderAuthError: no usable token.
        """
        return clean_token(await self._token_source())

    def url(self, path: str) -> str:
        """Return the absolute URL of an API path (``files``, ``predictions/ID``) or a same-origin URL.

        Raises:
            ProviderUnavailableError: ``path`` is an absolute URL on another origin.
        """
        if "://" in path:
            if _origin(path) != self._origin:
                raise ProviderUnavailableError("Replicate returned a link to another host; it was not followed.")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        creates: bool = False,
        allow_not_found: bool = False,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        body: BodyFactory | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
        action: str = "call Replicate",
    ) -> httpx.Response | None:
        """Send one call (retried when ``retry``) and return its successful reply.

        Returns None for a 404 when ``allow_not_found``. ``body`` builds a fresh streamed body for
        each try. ``action`` completes error messages ("could not <action>"). ``creates`` marks a
        call that creates something (sent once, never with ``retry``): it waits for the create gate
        first, and a 429 on it closes the gate (see :class:`CreateGate`).

        Raises:
            ProviderAuthError: no token, or Replicate refused it.
            ProviderRejectedError: Replicate refused the request (402, 413, other 4xx).
            ProviderUnavailableError: a timeout, a connection error, 429 or 5xx (after retries); a
                TLS certificate that cannot be verified, or a proxy that fails or wants credentials.
        """
        if creates and retry:
            raise ValueError("a create call is never retried")
        token = await self.token()
        url = self.url(path)
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        timeout = self.timeouts.as_httpx()
        if read_timeout is not None:
            timeout = httpx.Timeout(
                connect=self.timeouts.connect, read=read_timeout, write=self.timeouts.write, pool=self.timeouts.pool
            )
        if creates:
            await self.create_gate.wait()
        tries = self.retry.attempts if retry else 1
        started = self.timing.monotonic()
        for attempt in range(tries):
            hint: float | None = None
            unsettled = False
            nothing_created = False
            try:
                response = await self._client.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    content=body() if body is not None else None,
                    headers=all_headers,
                    timeout=timeout,
                )
            except httpx.RequestError as exc:
                failure, unsettled = self._transport_failure(exc, action)
            else:
                if response.status_code < 400:
                    if creates:
                        self.create_gate.accepted()
                    return response
                if response.status_code == 404 and allow_not_found:
                    return None
                if response.status_code not in RETRY_STATUSES:
                    raise self._refusal(response, token, action)
                hint = retry_after_seconds(response.headers.get("retry-after"), now=self.timing.now())
                failure = _unavailable_message(response, action, hint)
                if creates and response.status_code == 429:
                    nothing_created = True
                    delay = self.create_gate.refused(hint)
                    failure = (
                        f"{failure} Nothing was created; the next create call waits {delay:.3g} s before it is sent."
                    )
            if creates and unsettled:
                raise ProviderUnavailableError(failure, create_outcome=OUTCOME_UNKNOWN)
            if nothing_created:
                raise ProviderUnavailableError(failure, create_outcome=NOTHING_CREATED)
            if attempt + 1 >= tries:
                raise ProviderUnavailableError(failure)
            wait = self.retry.wait(attempt, hint, self.timing.jitter())
            if self.timing.monotonic() - started + wait > self.retry.budget_seconds:
                raise ProviderUnavailableError(failure)
            log.info("Replicate call %s %s failed (%s); retrying in %.2f s", method, _path_of(url), failure, wait)
            await self.timing.sleep(wait)
        raise ProviderUnavailableError(f"Could not {action}.")  # pragma: no cover - the loop always returns or raises

    def _transport_failure(self, exc: httpx.RequestError, action: str) -> tuple[str, bool]:
        """Return the message for a call that got no reply, and whether Replicate may have received it.

        Raises:
            ProviderUnavailableError: Replicate's TLS certificate could not be verified (not worth retrying).
        """
        kind = type(exc).__name__
        unsettled = not isinstance(exc, NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            failure = f"Replicate did not answer in time ({kind}); could not {action}."
            advice = isinstance(exc, httpx.ConnectTimeout)
        elif isinstance(exc, httpx.ProxyError):
            return (
                f"The proxy refused or failed the connection to Replicate ({kind}); could not {action}. "
                f"Check {PROXY_VARIABLES} and NO_PROXY.",
                unsettled,
            )
        elif certificate_rejected(exc):
            raise ProviderUnavailableError(
                f"Replicate's TLS certificate could not be verified; could not {action}. If a proxy or "
                f"firewall inspects TLS, point {CA_BUNDLE_VARIABLES} at a PEM bundle holding its CA."
            ) from None
        else:
            failure = f"Could not reach Replicate ({kind}); could not {action}."
            advice = isinstance(exc, httpx.ConnectError)
        if advice:
            failure += (
                f" Check that this machine can reach {self._origin[1]}, and {PROXY_VARIABLES} and NO_PROXY "
                "if it needs a proxy."
            )
        return failure, unsettled

    async def get_json(self, path: str, *, params: dict[str, str] | None = None, action: str) -> Any:
        """GET ``path`` (retried) and return its JSON body.

        Raises:
            ProviderAuthError, ProviderRejectedError, ProviderUnavailableError: as :meth:`request`;
                also ProviderUnavailableError for a reply that is not JSON.
        """
        response = await self.request("GET", path, retry=True, params=params, action=action)
        assert response is not None
        return decode_json(response, action)

    async def find_json(self, path: str, *, action: str) -> Any | None:
        """GET ``path`` (retried) and return its JSON body, or None for a 404.

        Raises:
            ProviderAuthError, ProviderRejectedError, ProviderUnavailableError: as :meth:`get_json`.
        """
        response = await self.request("GET", path, retry=True, allow_not_found=True, action=action)
        return None if response is None else decode_json(response, action)

    async def pages(
        self, path: str, *, params: dict[str, str] | None = None, max_pages: int, action: str
    ) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        """Yield ``(results, more)`` for each page of a paginated list, following ``next``.

        ``more`` says whether another page follows. Stops after ``max_pages`` pages (the caller
        sees ``more=True`` on the last one it got).

        Raises:
            ProviderAuthError, ProviderRejectedError, ProviderUnavailableError: as :meth:`get_json`;
                also ProviderUnavailableError for a page that is not a page object.
        """
        next_path: str | None = path
        next_params = params
        for _ in range(max_pages):
            if next_path is None:
                return
            page = await self.get_json(next_path, params=next_params, action=action)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise ProviderUnavailableError(f"Replicate sent an unexpected reply; could not {action}.")
            link = page.get("next")
            next_path = link if isinstance(link, str) and link else None
            next_params = None
            yield [item for item in page["results"] if isinstance(item, dict)], next_path is not None

    def _refusal(self, response: httpx.Response, token: str, action: str) -> Exception:
        status = response.status_code
        if status == 401:
            return ProviderAuthError(invalid_token_message(token))
        if status == 402:
            return ProviderRejectedError(INSUFFICIENT_CREDIT_MESSAGE)
        if status == 403:
            return ProviderAuthError(f"Replicate refused this token permission to {action}: {problem_detail(response)}")
        if status == 407:
            return ProviderUnavailableError(
                f"The proxy between cloudtuner and Replicate asks for credentials (HTTP 407); could not {action}. "
                f"Put them in the proxy URL ({PROXY_VARIABLES}: http://user:password@host:port)."
            )
        if status == 413:
            return ProviderRejectedError(
                "Replicate refused the dataset archive as too large "
                f"({problem_detail(response)}). Make the datasets smaller (Replicate accepts up to 100 MiB)."
            )
        return ProviderRejectedError(f"Replicate refused to {action} (HTTP {status}): {problem_detail(response)}")


def decode_json(response: httpx.Response, action: str) -> Any:
    """Return a reply's JSON body.

    Raises:
        ProviderUnavailableError: the body is not JSON (a proxy's error page, a cut reply).
    """
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailableError(f"Replicate sent a reply that is not JSON; could not {action}.") from exc


def _unavailable_message(response: httpx.Response, action: str, hint: float | None) -> str:
    status = response.status_code
    what = "is rate limiting requests" if status == 429 else f"answered HTTP {status}"
    later = f"; it asked to wait {hint:g} s" if hint is not None else ""
    return f"Replicate {what} ({problem_detail(response)}){later}; could not {action}."


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _path_of(url: str) -> str:
    return urlsplit(url).path
