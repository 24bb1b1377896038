"""Framework-neutral request and response types of the S3 endpoint.

A route adapter (ASGI, FastAPI, anything) translates its request into an :class:`S3Request`, calls
:meth:`cloudtuner.storage.handler.S3Handler.handle` and translates the :class:`S3Response` back.
The adapter does no S3 work of its own: no decoding of the path, no parsing of the query, no
reading of the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

#: Where the endpoint is mounted on the server; part of the path every client signs.
DEFAULT_MOUNT_PATH = "/api/cloud/storage"


class ClientDisconnected(Exception):  # noqa: N818 - named after the event, like ConnectionResetError
    """The client went away before sending the whole request body.

    Route adapters raise it from the body stream of an :class:`S3Request`; the upload in progress is
    discarded and the handler logs it quietly instead of as a server error.
    """


class S3Headers:
    """An immutable, case-insensitive multi-map of HTTP headers, in the order received."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """Build from ``(name, value)`` pairs; names are matched case-insensitively."""
        self._items: tuple[tuple[str, str], ...] = tuple((str(k), str(v)) for k, v in items)
        index: dict[str, list[str]] = {}
        for name, value in self._items:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> S3Headers:
        """Build from raw ASGI header pairs (bytes, decoded as latin-1 as HTTP requires)."""
        return cls((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name``, or ``default`` when it is absent."""
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` in the order received (empty when absent)."""
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def items(self) -> Iterator[tuple[str, str]]:
        """Iterate over the ``(name, value)`` pairs as received."""
        return iter(self._items)

    def names(self) -> set[str]:
        """Return the set of lower-cased header names present."""
        return set(self._index)

    def __repr__(self) -> str:
        shown = [(k, "<redacted>" if k.lower() == "authorization" else v) for k, v in self._items]
        return f"S3Headers({shown!r})"


_PRESIGN_MARKERS = ("X-Amz-Signature=", "X-Amz-Credential=", "AWSAccessKeyId=")


def carries_s3_signature(headers: S3Headers, raw_query: str) -> bool:
    """Return whether a request is signed the way S3 clients sign (so it is meant for the endpoint).

    True for an ``Authorization`` header of SigV4 (``AWS4-HMAC-SHA256 ...``) or SigV2 (``AWS ...``),
    and for presigned query parameters of either. Nothing is verified here: a route table uses it
    to tell S3 requests from the server's own JSON API under the same path.
    """
    authorization = headers.get("authorization")
    if authorization is not None and authorization.startswith(("AWS4-", "AWS ")):
        return True
    return any(piece.startswith(_PRESIGN_MARKERS) for piece in raw_query.split("&"))


async def empty_body() -> AsyncIterator[bytes]:
    """An empty request body."""
    return
    yield b""  # pragma: no cover - makes this function an async generator


@dataclass(frozen=True)
class S3Request:
    """One HTTP request to the S3 endpoint, as received.

    - ``method``: the HTTP method, any case.
    - ``path``: the raw (still percent-encoded) path *below* the mount path, e.g. ``/bucket/a%20b``;
      ``""`` or ``"/"`` is the service root. Pass ASGI ``raw_path`` minus the mount prefix, never the
      decoded ``path``: the signature covers the encoding the client chose.
    - ``query``: the raw query string without ``?`` (ASGI ``query_string`` decoded as latin-1).
    - ``headers``: every header as received, ``Host`` included (as received, also behind a proxy).
    - ``body``: the request body as an async stream of bytes, read at most once, lazily; it must
      raise (preferably :class:`ClientDisconnected`) when the client disconnects mid-body, so that
      the upload is discarded.
    - ``mount_path``: the raw path prefix the client put in front of ``path`` (what it signed).
      Behind a reverse proxy that adds a prefix, pass the prefix the client used.
    """

    method: str
    path: str
    query: str = ""
    headers: S3Headers = field(default_factory=S3Headers)
    body: AsyncIterator[bytes] = field(default_factory=empty_body)
    mount_path: str = DEFAULT_MOUNT_PATH

    @property
    def signed_path(self) -> str:
        """The full raw path as the client signed it (mount path + path)."""
        path = self.path if self.path.startswith("/") or not self.path else "/" + self.path
        return (self.mount_path + path) or "/"


@dataclass
class S3Response:
    """What the handler answers: status, headers and a body.

    ``body`` is either ``bytes`` or an async iterator of bytes for streamed objects; a streamed body
    owns an open file, so the adapter must exhaust it or call :meth:`aclose` (also when the client
    went away). ``headers`` already hold ``Content-Length`` where it is known; for ``HEAD`` requests
    ``Content-Length`` describes the object and ``body`` is empty, so the adapter must not recompute
    it.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""

    @property
    def is_streaming(self) -> bool:
        """Whether ``body`` is an async iterator rather than bytes."""
        return not isinstance(self.body, bytes)

    def header(self, name: str) -> str | None:
        """Return the first value of response header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    async def aclose(self) -> None:
        """Release the streamed body's resources early; harmless on a bytes body or when exhausted."""
        body = self.body
        closer = getattr(body, "aclose", None)
        if closer is not None:
            await closer()
