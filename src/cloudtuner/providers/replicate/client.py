"""The HTTP side of the Replicate provider: auth, timeouts, bounded retries and error mapping.

Contracts:

* The token is read from the async token source on **every** call and sent as
  ``Authorization: Bearer``; it is never stored here, logged or put in an exception.
* One :class:`httpx.AsyncClient` with ``trust_env=True`` (proxies from ``HTTPS_PROXY``,
  ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``; ``SSL_CERT_DIR``), the CA bundle from the
  settings (:func:`tls_verification`) and explicit timeouts; closed by :meth:`ReplicateHTTP.aclose`.
  A proxy or CA bundle that cannot be used stops the server at start with a ``ConfigurationError``.
* Calls marked ``retry=True`` (reads, cancel, file upload) are repeated on 429, 500, 502, 503,
  504 and on connection errors and timeouts, with exponential backoff and jitter, honouring
  ``Retry-After``, bounded by :class:`RetryPolicy` (tries and a total time budget). A TLS
  certificate that cannot be verified is not retried. Calls with ``retry=False`` (creating a
  prediction) are sent exactly once.
* A create call goes through a :class:`CreateGate`: a 429 on it (nothing was created) raises
  ``ProviderUnavailableError`` and closes the gate for ``Retry-After`` (capped; without the header,
  a growing backoff with jitter), so the caller's next create call, after reconciling, waits for
  the time Replicate asked for instead of being refused again.
* Time, waits and jitter come from :class:`Timing`, so tests never sleep.
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

import asyncio
import email.utils
import logging
import random
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from cloudtuner.core.clock import utcnow
from cloudtuner.core.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderRejectedError,
    ProviderUnavailableError,
)

log = logging.getLogger(__name__)

TokenSource = Callable[[], Awaitable[str | None]]
BodyFactory = Callable[[], AsyncIterator[bytes]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOKEN_PAGE = "https://replicate.com/account/api-tokens"  # noqa: S105 - a web page, not a secret
CA_BUNDLE_VARIABLES = "CLOUDTUNER_REPLICATE_CA_BUNDLE, REQUESTS_CA_BUNDLE or SSL_CERT_FILE"
PROXY_VARIABLES = "HTTPS_PROXY, HTTP_PROXY or ALL_PROXY"

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


@dataclass(frozen=True)
class Timing:
    """Where the HTTP layer gets time, waits and randomness: the seam tests replace.

    ``monotonic`` measures budgets and gates, ``now`` (aware UTC) reads ``Retry-After`` dates,
    ``sleep`` waits, and ``jitter`` returns a number in ``[0, 1)``.
    """

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random


@dataclass(frozen=True)
class RetryPolicy:
    """How retryable calls are repeated: at most ``attempts`` tries within ``budget_seconds``.

    The wait before try ``n + 1`` is ``Retry-After`` when the reply has one (plus up to
    ``retry_after_jitter`` of it, so that clients told the same time do not return together), else
    half of ``min(max_delay, base_delay * 2**n)`` plus a random part up to the other half. A wait
    that would end after the budget is not taken: the call fails instead.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 4.0
    budget_seconds: float = 10.0
    retry_after_jitter: float = 0.1

    def backoff(self, retry_number: int, jitter: float | None = None) -> float:
        """Return the wait before retry ``retry_number`` (0 for the first retry) without a hint.

        ``jitter`` in ``[0, 1)`` picks the point in the upper half of the ceiling (default: random).
        """
        if jitter is None:
            jitter = random.random()  # noqa: S311 - jitter, not a secret
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** min(retry_number, 62)))
        return ceiling / 2 + (ceiling / 2) * _unit(jitter)

    def wait(self, retry_number: int, hint: float | None, jitter: float) -> float:
        """Return the wait before retry ``retry_number``: ``Retry-After`` (``hint``) if given, else backoff."""
        if hint is not None:
            return hint * (1.0 + self.retry_after_jitter * _unit(jitter))
        return self.backoff(retry_number, jitter)


@dataclass(frozen=True)
class CreateThrottle:
    """How long create calls wait after Replicate rate-limited one (HTTP 429: nothing was created).

    ``Retry-After`` is honoured up to ``max_wait_seconds``; without it the wait grows with each
    429 in a row (``base_delay * 2**n`` with jitter, at most ``max_delay``).
    """

    max_wait_seconds: float = 60.0
    base_delay: float = 1.0
    max_delay: float = 30.0
    retry_after_jitter: float = 0.1

    def delay(self, strikes: int, hint: float | None, jitter: float) -> float:
        """Return the wait after the ``strikes``-th 429 in a row (1 for the first)."""
        policy = RetryPolicy(
            base_delay=self.base_delay, max_delay=self.max_delay, retry_after_jitter=self.retry_after_jitter
        )
        return min(self.max_wait_seconds, policy.wait(max(0, strikes - 1), hint, jitter))


@dataclass
class CreateGate:
    """Holds create calls back after a 429, for the time Replicate asked (capped); see :class:`CreateThrottle`.

    Shared by every create call of one provider: Replicate's rate limit is per account, so a
    ``Retry-After`` applies to the next create of any job.
    """

    throttle: CreateThrottle = field(default_factory=CreateThrottle)
    timing: Timing = field(default_factory=Timing)
    strikes: int = 0
    closed_until: float = 0.0

    def remaining(self) -> float:
        """Return the seconds until create calls may be sent again (0: now)."""
        return max(0.0, self.closed_until - self.timing.monotonic())

    async def wait(self) -> float:
        """Wait until create calls may be sent again; return the seconds waited."""
        remaining = self.remaining()
        if remaining > 0:
            log.info("Replicate rate-limited a create call; waiting %.2f s before the next one", remaining)
            await self.timing.sleep(remaining)
        return remaining

    def refused(self, hint: float | None) -> float:
        """Record a 429 on a create call (``hint``: its ``Retry-After``); return the wait it imposes."""
        self.strikes += 1
        delay = self.throttle.delay(self.strikes, hint, self.timing.jitter())
        self.closed_until = max(self.closed_until, self.timing.monotonic() + delay)
        return delay

    def accepted(self) -> None:
        """Record a create call that got through."""
        self.strikes = 0


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


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
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
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


def tls_verification(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """Return what verifies Replicate's TLS certificate: the CA bundle's context, or True for the default.

    ``ca_bundle`` is a PEM file (or a directory prepared with ``c_rehash``) holding every CA to
    trust; it replaces the default store. Without one, httpx uses ``SSL_CERT_DIR`` when set, else
    certifi's bundle.

    Raises:
        ConfigurationError: the bundle cannot be read or holds no certificate.
    """
    if ca_bundle is None:
        return True
    where = f"The CA bundle for Replicate ({ca_bundle}; from {CA_BUNDLE_VARIABLES})"
    try:
        if ca_bundle.is_dir():
            return ssl.create_default_context(capath=str(ca_bundle))
        context = ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist.") from exc
    except PermissionError as exc:
        raise ConfigurationError(f"{where} cannot be read by this user.") from exc
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(f"{where} is not a PEM file of CA certificates ({type(exc).__name__}).") from exc
    if not context.cert_store_stats().get("x509"):
        raise ConfigurationError(f"{where} holds no certificate.")
    return context


def environment_proxies() -> dict[str, str]:
    """Return the proxies the environment sets (``scheme -> URL``) with any user and password removed."""
    shown: dict[str, str] = {}
    for scheme, url in urllib.request.getproxies().items():
        if scheme == "no":
            continue
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = _safe_port(parts)
        shown[scheme] = f"{parts.scheme}://{parts.hostname or '?'}{f':{port}' if port else ''}"
    return shown


def _safe_port(parts: Any) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return None
    return port


def _proxy_problem(exc: Exception) -> str:
    proxies = ", ".join(f"{scheme}={url}" for scheme, url in sorted(environment_proxies().items())) or "none found"
    reason = (
        "SOCKS proxies need the 'socksio' package (pip install 'httpx[socks]')"
        if isinstance(exc, ImportError)
        else "only http://, https://, socks5:// and socks5h:// proxy URLs work"
    )
    return (
        f"The proxy set in {PROXY_VARIABLES} cannot be used for Replicate ({proxies}): {reason}. "
        "Fix or unset the variable and start again."
    )


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
            raise ConfigurationError(_proxy_problem(exc)) from None

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
                    delay = self.create_gate.refused(hint)
                    failure = (
                        f"{failure} Nothing was created; the next create call waits {delay:.3g} s before it is sent."
                    )
            if creates and unsettled:
                raise ProviderUnavailableError(failure, create_outcome=OUTCOME_UNKNOWN)
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
        elif _certificate_rejected(exc):
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


def _certificate_rejected(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _path_of(url: str) -> str:
    return urlsplit(url).path
