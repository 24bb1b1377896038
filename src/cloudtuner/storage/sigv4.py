"""AWS Signature Version 4 verification, as S3 applies it.

Both forms are verified: the ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` header and presigned query parameters (``X-Amz-Algorithm``, ``X-Amz-Credential``,
``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``).

S3 rules for the canonical request: the path is URI-encoded once (no double encoding, no dot
segment normalization) and is the *full* path the client signed, mount prefix included; query
parameters are decoded, re-encoded with the RFC 3986 unreserved set and sorted; signed header
values are trimmed with inner runs of spaces folded, repeated headers joined with commas. Because
clients differ in how they encode characters they did not have to encode, the verifier also
accepts the path and query exactly as received; both forms decode to the same request, so this
leniency lets nothing else through.

The functions at module level are pure and exposed for tests; :class:`SigV4Verifier` does the I/O
(credential lookup) and the clock checks.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from cloudtuner.core.clock import Clock, SystemClock
from cloudtuner.storage import errors, sigv2
from cloudtuner.storage.credentials import CredentialResolver, S3Credential
from cloudtuner.storage.messages import S3Headers, S3Request

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = frozenset({STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
DEFAULT_MAX_SKEW = timedelta(minutes=15)
_HEX_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


# --- canonical request ---------------------------------------------------------------------------


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in raw_query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((key, value))
    return pairs


def _unquote_query_component(raw: str) -> bytes:
    return unquote_to_bytes(raw.replace("+", " "))


def decode_query(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into ``(name, value)`` pairs in order (``+`` is a space)."""
    return [
        (
            _unquote_query_component(k).decode("utf-8", "replace"),
            _unquote_query_component(v).decode("utf-8", "replace"),
        )
        for k, v in _split_query(raw_query)
    ]


def canonical_uri(raw_path: str) -> str:
    """Return the S3 canonical URI of a raw path: each segment decoded and URI-encoded once."""
    if not raw_path:
        return "/"
    return "/".join(quote(unquote_to_bytes(segment), safe="") for segment in raw_path.split("/"))


def canonical_query(raw_query: str, exclude: Iterable[str] = ()) -> str:
    """Return the canonical query string: decoded, re-encoded, sorted, without ``exclude`` names."""
    skipped = set(exclude)
    pairs = sorted(
        (quote(_unquote_query_component(k), safe=""), quote(_unquote_query_component(v), safe=""))
        for k, v in _split_query(raw_query)
        if _unquote_query_component(k).decode("utf-8", "replace") not in skipped
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def raw_canonical_query(raw_query: str, exclude: Iterable[str] = ()) -> str:
    """Return the query as received, pairs sorted, without ``exclude`` names (lenient variant)."""
    skipped = set(exclude)
    pairs = sorted((k, v) for k, v in _split_query(raw_query) if k not in skipped)
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: S3Headers, signed_headers: Iterable[str]) -> str:
    """Return the canonical header block (``name:value\\n`` per signed header, in the given order)."""
    lines = []
    for name in signed_headers:
        value = ",".join(" ".join(v.split()) for v in headers.get_all(name))
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers_block: str,
    signed_headers: str,
    payload_hash: str,
) -> str:
    """Assemble the canonical request from its already-canonical parts."""
    return "\n".join([method.upper(), uri, query, headers_block, signed_headers, payload_hash])


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    """Return the SigV4 string to sign of a canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """Derive the SigV4 signing key of ``secret`` for ``date`` (YYYYMMDD), region and service."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(key: bytes, text: str) -> str:
    """Return the hex HMAC-SHA256 of ``text`` under ``key``."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SigningContext:
    """What aws-chunked bodies need to verify their per-chunk signatures."""

    timestamp: str
    scope: str
    key: bytes = field(repr=False)
    seed_signature: str

    def chunk_signature(self, previous: str, chunk_sha256_hex: str) -> str:
        """Return the expected signature of a chunk whose data hashes to ``chunk_sha256_hex``."""
        text = f"{ALGORITHM}-PAYLOAD\n{self.timestamp}\n{self.scope}\n{previous}\n{EMPTY_SHA256}\n{chunk_sha256_hex}"
        return sign(self.key, text)

    def trailer_signature(self, previous: str, canonical_trailer: bytes) -> str:
        """Return the expected signature of the trailing headers (``name:value\\n`` each)."""
        digest = hashlib.sha256(canonical_trailer).hexdigest()
        text = f"{ALGORITHM}-TRAILER\n{self.timestamp}\n{self.scope}\n{previous}\n{digest}"
        return sign(self.key, text)


# --- parsing the signature parameters -----------------------------------------------------------


@dataclass(frozen=True)
class SignatureParams:
    """The signature parameters a request carries, from its header or its query."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool

    @property
    def scope(self) -> str:
        """The credential scope ``date/region/service/aws4_request``."""
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _parse_credential(value: str, error: type[errors.S3Error]) -> tuple[str, str, str, str]:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        raise error(f"The credential {value!r} is not of the form KEY/YYYYMMDD/REGION/s3/aws4_request.")
    if parts[3] != "s3":
        raise error(f"The credential scope names service {parts[3]!r}; this endpoint is 's3'.")
    return parts[0], parts[1], parts[2], parts[3]


def _parse_signed_headers(value: str, error: type[errors.S3Error]) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in value.split(";") if name.strip())
    if "host" not in names:
        raise error("The signed headers must include 'host'.")
    return names


def parse_authorization(value: str) -> SignatureParams:
    """Parse an ``Authorization: AWS4-HMAC-SHA256 ...`` header; raise AuthorizationHeaderMalformed."""
    error = errors.AuthorizationHeaderMalformed
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise error(f"Unsupported authorization type; use {ALGORITHM} (Signature Version 4).")
    fields: dict[str, str] = {}
    for piece in rest.split(","):
        name, sep, field_value = piece.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise error(f"The authorization header lacks {', '.join(missing)}.")
    key_id, date, region, service = _parse_credential(fields["Credential"], error)
    signature = fields["Signature"].lower()
    if not _SIGNATURE_RE.match(signature):
        raise error("The signature is not 64 hexadecimal digits.")
    return SignatureParams(
        key_id, date, region, service, _parse_signed_headers(fields["SignedHeaders"], error), signature, False
    )


def parse_presigned(params: dict[str, str]) -> SignatureParams:
    """Parse presigned query parameters; raise AuthorizationQueryParametersError."""
    error = errors.AuthorizationQueryParametersError
    missing = [name for name in _PRESIGN_PARAMS if name not in params]
    if missing:
        raise error(f"Query-string authentication requires {', '.join(missing)}.")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise error(f"X-Amz-Algorithm only supports {ALGORITHM!r}.")
    key_id, date, region, service = _parse_credential(params["X-Amz-Credential"], error)
    signature = params["X-Amz-Signature"].lower()
    if not _SIGNATURE_RE.match(signature):
        raise error("X-Amz-Signature is not 64 hexadecimal digits.")
    signed = _parse_signed_headers(params["X-Amz-SignedHeaders"], error)
    return SignatureParams(key_id, date, region, service, signed, signature, True)


def parse_timestamp(value: str) -> datetime:
    """Parse an ``X-Amz-Date`` value (``YYYYMMDDTHHMMSSZ``) into an aware UTC datetime."""
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def check_payload_hash(value: str) -> str:
    """Return a valid ``x-amz-content-sha256`` value; raise for unknown or unsupported ones."""
    if value in (UNSIGNED_PAYLOAD, *STREAMING_MODES) or _HEX_SHA256_RE.match(value):
        return value.lower() if _HEX_SHA256_RE.match(value) else value
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256"):
        raise errors.NotImplementedOperation("Signature Version 4A (ECDSA) is not supported.")
    raise errors.InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-... value or a SHA-256 hex digest."
    )


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature checked out.

    ``payload_hash`` is what the body must match: a hex SHA-256, ``UNSIGNED-PAYLOAD`` or one of
    the ``STREAMING-...`` modes, in which case the body is aws-chunked and ``signing`` verifies its
    chunk signatures. ``signing`` is None for Signature Version 2 requests (always unsigned
    payloads). ``region`` is the region the client signed for.
    """

    credential: S3Credential
    payload_hash: str
    signing: SigningContext | None
    presigned: bool
    region: str = "us-east-1"


class SigV4Verifier:
    """Verify SigV4-signed requests against a credential resolver and a clock."""

    def __init__(
        self,
        credentials: CredentialResolver,
        *,
        clock: Clock | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        trust_forwarded_host: bool = False,
        allow_sigv2: bool = True,
    ) -> None:
        """Build a verifier.

        ``trust_forwarded_host``: also accept a signature computed over the first
        ``X-Forwarded-Host`` value, for reverse proxies that rewrite ``Host``. Off by default: a
        proxy should pass ``Host`` through unchanged. ``allow_sigv2``: also accept Signature
        Version 2 (see :mod:`cloudtuner.storage.sigv2`), which boto3 uses for presigned URLs in
        us-east-1 unless told otherwise.
        """
        self._credentials = credentials
        self._clock = clock or SystemClock()
        self._max_skew = max_skew
        self._trust_forwarded_host = trust_forwarded_host
        self._allow_sigv2 = allow_sigv2

    async def verify(self, request: S3Request, query: dict[str, str]) -> VerifiedRequest:
        """Verify ``request`` (with its decoded ``query``) and return what the body must satisfy.

        Raise AccessDenied when the request is anonymous or a presigned URL has expired,
        AuthorizationHeaderMalformed / AuthorizationQueryParametersError when the parameters are
        malformed, RequestTimeTooSkewed, InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken.
        """
        if self._allow_sigv2 and sigv2.is_sigv2(request, query):
            return await self._verify_sigv2(request, query)
        header = request.headers.get("authorization")
        if header is not None and "X-Amz-Algorithm" in query:
            raise errors.InvalidArgument("Only one authentication mechanism is allowed per request.")
        if header is not None:
            params = parse_authorization(header)
            timestamp = self._header_timestamp(request.headers)
            payload = request.headers.get("x-amz-content-sha256")
            if payload is None:
                raise errors.InvalidRequest("Missing required header for this request: x-amz-content-sha256.")
            payload = check_payload_hash(payload.strip())
            if "x-amz-content-sha256" not in params.signed_headers:
                raise errors.AuthorizationHeaderMalformed("x-amz-content-sha256 must be a signed header.")
            self._check_skew(timestamp)
        elif "X-Amz-Algorithm" in query:
            params = parse_presigned(query)
            timestamp = query["X-Amz-Date"]
            self._check_presign_window(timestamp, query.get("X-Amz-Expires"))
            payload = UNSIGNED_PAYLOAD
        else:
            raise errors.AccessDenied("Anonymous access is not allowed; sign the request with SigV4.")
        if params.date != timestamp[:8]:
            raise errors.SignatureDoesNotMatch(
                "The credential date does not match the request date.", AWSAccessKeyId=params.access_key_id
            )
        credential = await self._credentials.resolve(params.access_key_id)
        if credential is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=params.access_key_id)
        key = signing_key(credential.secret_access_key, params.date, params.region, params.service)
        self._check_signature(request, params, timestamp, payload, key)
        if credential.is_expired(self._clock.now()):
            raise errors.ExpiredToken(AWSAccessKeyId=params.access_key_id)
        signing = SigningContext(timestamp, params.scope, key, params.signature)
        return VerifiedRequest(credential, payload, signing, params.presigned, params.region)

    async def _verify_sigv2(self, request: S3Request, query: dict[str, str]) -> VerifiedRequest:
        key_id, signature, presigned = sigv2.parse(request, query)
        date_line = sigv2.check_time(request, query, self._clock.now(), self._max_skew)
        credential = await self._credentials.resolve(key_id)
        if credential is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=key_id)
        sigv2.check_signature(request, query, credential, signature, date_line)
        if credential.is_expired(self._clock.now()):
            raise errors.ExpiredToken(AWSAccessKeyId=key_id)
        return VerifiedRequest(credential, UNSIGNED_PAYLOAD, None, presigned)

    def _header_timestamp(self, headers: S3Headers) -> str:
        amz_date = headers.get("x-amz-date")
        if amz_date is not None:
            try:
                parse_timestamp(amz_date.strip())
            except ValueError:
                raise errors.AccessDenied("X-Amz-Date is not of the form YYYYMMDDTHHMMSSZ.") from None
            return amz_date.strip()
        date = headers.get("date")
        if date is None:
            raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header.")
        try:
            parsed = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise errors.AccessDenied("The Date header is not a valid HTTP date.") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).strftime(TIMESTAMP_FORMAT)

    def _check_skew(self, timestamp: str) -> None:
        now = self._clock.now()
        moment = parse_timestamp(timestamp)
        if abs(now - moment) > self._max_skew:
            raise errors.RequestTimeTooSkewed(
                RequestTime=timestamp,
                ServerTime=now.strftime(TIMESTAMP_FORMAT),
                MaxAllowedSkewMilliseconds=str(int(self._max_skew.total_seconds() * 1000)),
            )

    def _check_presign_window(self, timestamp: str, expires: str | None) -> None:
        error = errors.AuthorizationQueryParametersError
        try:
            moment = parse_timestamp(timestamp)
        except ValueError:
            raise error("X-Amz-Date must be in the ISO8601 long format YYYYMMDDTHHMMSSZ.") from None
        if expires is None or not expires.isdigit():
            raise error("X-Amz-Expires must be a number of seconds.")
        seconds = int(expires)
        if seconds > MAX_PRESIGN_EXPIRES:
            raise error("X-Amz-Expires must be less than a week (in seconds); that is, 604800.")
        now = self._clock.now()
        if moment - now > self._max_skew:
            raise errors.AccessDenied("Request is not valid yet.", **{"X-Amz-Date": timestamp})
        if now > moment + timedelta(seconds=seconds):
            raise errors.AccessDenied(
                "Request has expired.",
                **{"X-Amz-Expires": expires},
                Expires=(moment + timedelta(seconds=seconds)).strftime(TIMESTAMP_FORMAT),
                ServerTime=now.strftime(TIMESTAMP_FORMAT),
            )

    def _check_signature(
        self, request: S3Request, params: SignatureParams, timestamp: str, payload: str, key: bytes
    ) -> None:
        exclude = ("X-Amz-Signature",) if params.presigned else ()
        signed_names = ";".join(params.signed_headers)
        uris = dict.fromkeys([canonical_uri(request.signed_path), request.signed_path])
        queries = dict.fromkeys([canonical_query(request.query, exclude), raw_canonical_query(request.query, exclude)])
        header_sets = [request.headers]
        forwarded = request.headers.get("x-forwarded-host")
        if self._trust_forwarded_host and forwarded:
            replaced = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
            header_sets.append(S3Headers([*replaced, ("host", forwarded.split(",")[0].strip())]))
        first: tuple[str, str] | None = None
        for headers in header_sets:
            block = canonical_headers(headers, params.signed_headers)
            for uri in uris:
                for query in queries:
                    canonical = canonical_request(request.method, uri, query, block, signed_names, payload)
                    text = string_to_sign(timestamp, params.scope, canonical)
                    if hmac.compare_digest(sign(key, text), params.signature):
                        return
                    first = first or (canonical, text)
        assert first is not None
        raise errors.SignatureDoesNotMatch(
            AWSAccessKeyId=params.access_key_id,
            StringToSign=first[1],
            SignatureProvided=params.signature,
            CanonicalRequest=first[0],
        )
