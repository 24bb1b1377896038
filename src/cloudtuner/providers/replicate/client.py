"""The HTTP side of the Replicate provider: auth, timeouts, bounded retries and error mapping.

Contracts:

* The token is read from the async token source on **every** call and sent as
  ``Authorization: Bearer``; it is never stored here, logged or put in an exception.
* One :class:`httpx.AsyncClient` with ``trust_env=True`` (``HTTPS_PROXY``/``NO_PROXY``,
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``) and explicit timeouts; closed by :meth:`ReplicateHTTP.aclose`.
* Calls marked ``retry=True`` (reads, cancel, file upload) are repeated on 429, 500, 502, 503,
  504 and on connection errors and timeouts, with exponential backoff and jitter, honouring
  ``Retry-After``, bounded by :class:`RetryPolicy` (tries and a total time budget). Calls with
  ``retry=False`` (creating a prediction) are sent exactly once.
* Replies become errors here: 401 → ``ProviderAuthError``; 402 → ``ProviderRejectedError``
  (insufficient credit); 413 → ``ProviderRejectedError`` (file too large); other 4xx →
  ``ProviderRejectedError`` with Replicate's ``detail``; 429/5xx/timeouts/connection errors (after
  any retries) → ``ProviderUnavailableError``. A 404 is returned to the caller as None when it
  asked for that.
* Pagination links (absolute ``next`` URLs) are followed only on the API's own origin, so the
  token is never sent to another host.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from cloudtuner.core.errors import ProviderAuthError, ProviderRejectedError, ProviderUnavailableError

log = logging.getLogger(__name__)

TokenSource = Callable[[], Awaitable[str | None]]
BodyFactory = Callable[[], AsyncIterator[bytes]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOKEN_PAGE = "https://replicate.com/account/api-tokens"  # noqa: S105 - a web page, not a secret

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


@dataclass(frozen=True)
class RetryPolicy:
    """How retryable calls are repeated: at most ``attempts`` tries within ``budget_seconds``.

    The wait before try ``n + 1`` is ``Retry-After`` when the reply has one, else half of
    ``min(max_delay, base_delay * 2**n)`` plus a random part up to the other half. A wait that
    would end after the budget is not taken: the call fails instead.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 4.0
    budget_seconds: float = 10.0

    def backoff(self, retry_number: int) -> float:
        """Return the wait before retry ``retry_number`` (0 for the first retry) without a hint."""
        ceiling = min(self.max_delay, self.base_delay * (2.0**retry_number))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for connecting, reading a reply, writing a chunk, and waiting for a pooled connection."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 60.0
    pool: float = 10.0

    def as_httpx(self) -> httpx.Timeout:
        """Return these timeouts for httpx."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


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
        user_agent: str = "cloudtuner",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._token_source = token_source
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            transport=transport,
            timeout=self.timeouts.as_httpx(),
            trust_env=True,
            follow_redirects=False,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )

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
        each try. ``action`` completes error messages ("could not <action>").

        Raises:
            ProviderAuthError: no token, or Replicate refused it.
            ProviderRejectedError: Replicate refused the request (402, 413, other 4xx).
            ProviderUnavailableError: a timeout, a connection error, 429 or 5xx (after retries).
        """
        token = await self.token()
        url = self.url(path)
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        timeout = self.timeouts.as_httpx()
        if read_timeout is not None:
            timeout = httpx.Timeout(
                connect=self.timeouts.connect, read=read_timeout, write=self.timeouts.write, pool=self.timeouts.pool
            )
        tries = self.retry.attempts if retry else 1
        started = time.monotonic()
        for attempt in range(tries):
            hint: float | None = None
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
            except httpx.TimeoutException as exc:
                failure = f"Replicate did not answer in time ({type(exc).__name__}); could not {action}."
            except httpx.RequestError as exc:
                failure = f"Could not reach Replicate ({type(exc).__name__}); could not {action}."
            else:
                if response.status_code < 400:
                    return response
                if response.status_code == 404 and allow_not_found:
                    return None
                if response.status_code not in RETRY_STATUSES:
                    raise self._refusal(response, token, action)
                hint = retry_after_seconds(response.headers.get("retry-after"))
                failure = _unavailable_message(response, action, hint)
            if attempt + 1 >= tries:
                raise ProviderUnavailableError(failure)
            wait = hint if hint is not None else self.retry.backoff(attempt)
            if time.monotonic() - started + wait > self.retry.budget_seconds:
                raise ProviderUnavailableError(failure)
            log.info("Replicate call %s %s failed (%s); retrying in %.2f s", method, _path_of(url), failure, wait)
            await asyncio.sleep(wait)
        raise ProviderUnavailableError(f"Could not {action}.")  # pragma: no cover - the loop always returns or raises

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
