"""AWS Signature Version 2 (HMAC-SHA1), for the presigned URLs boto3 makes by default.

boto3 clients in us-east-1 that do not set ``signature_version="s3v4"`` presign S3 URLs with
Signature Version 2 (``?AWSAccessKeyId=...&Expires=...&Signature=...``), so the endpoint accepts
it, as query parameters and as an ``Authorization: AWS <key>:<signature>`` header. The payload is
not covered by a V2 signature (like ``UNSIGNED-PAYLOAD``); ``Content-MD5`` and checksums are still
verified.

The string to sign is ``METHOD\\nContent-MD5\\nContent-Type\\nDate-or-Expires\\n`` followed by the
``x-amz-*`` headers (lower-case, sorted, ``name:value\\n``) and the resource: the path and the
sub-resource query parameters. Clients sign the path either without the mount path (botocore signs
``/bucket/key``) or with it; both are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from cloudtuner.storage import errors
from cloudtuner.storage.credentials import S3Credential
from cloudtuner.storage.messages import S3Headers, S3Request

#: Query parameters that are part of the signed resource (S3's sub-resources and overrides).
SIGNED_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
        "lifecycle", "location", "logging", "metrics", "notification", "object-lock", "partNumber",
        "policy", "replication", "requestPayment", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "response-content-language",
        "response-content-type", "response-expires", "restore", "select", "select-type",
        "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
        "versions", "website",
    }
)  # fmt: skip


def is_sigv2(request: S3Request, query: Mapping[str, str]) -> bool:
    """Return whether ``request`` is signed with Signature Version 2 (header or query)."""
    header = request.headers.get("authorization")
    if header is not None:
        return header.startswith("AWS ") and not header.startswith("AWS4-")
    return "AWSAccessKeyId" in query and "Signature" in query


def canonical_resource(path: str, raw_query: str) -> str:
    """Return the signed resource: ``path`` plus the sub-resources of the query, sorted."""
    pairs = []
    for piece in raw_query.split("&"):
        name, sep, value = piece.partition("=")
        if name in SIGNED_SUBRESOURCES:
            pairs.append((name, f"{name}={unquote(value)}" if sep else name))
    pairs.sort(key=lambda pair: pair[0])
    return path + ("?" + "&".join(text for _, text in pairs) if pairs else "")


def string_to_sign(
    method: str, headers: S3Headers, date_line: str, resource: str, extra_amz: Mapping[str, str] | None = None
) -> str:
    """Return the V2 string to sign; ``extra_amz`` adds ``x-amz-*`` values carried in the query."""
    amz: dict[str, str] = {}
    for name in sorted(headers.names()):
        if name.startswith("x-amz-"):
            amz[name] = ",".join(v.strip() for v in headers.get_all(name))
    for name, value in (extra_amz or {}).items():
        amz.setdefault(name.lower(), value)
    lines = [
        method.upper(),
        (headers.get("content-md5") or "").strip(),
        (headers.get("content-type") or "").strip(),
        date_line,
    ]
    lines.extend(f"{name}:{amz[name]}" for name in sorted(amz))
    return "\n".join([*lines, resource])


def sign(secret: str, text: str) -> str:
    """Return the base64 HMAC-SHA1 signature of ``text``."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def parse(request: S3Request, query: Mapping[str, str]) -> tuple[str, str, bool]:
    """Return ``(access key id, signature, presigned)``; raise AuthorizationHeaderMalformed."""
    header = request.headers.get("authorization")
    if header is not None:
        key_id, sep, signature = header[len("AWS ") :].strip().rpartition(":")
        if not sep or not key_id or not signature:
            raise errors.AuthorizationHeaderMalformed("The authorization header is not 'AWS KEY:SIGNATURE'.")
        return key_id, signature, False
    return query["AWSAccessKeyId"], query["Signature"], True


def check_time(request: S3Request, query: Mapping[str, str], now: datetime, max_skew: timedelta) -> str:
    """Check the request time (header) or expiry (query); return the date line that was signed.

    Raise AccessDenied for an expired or malformed presigned URL, RequestTimeTooSkewed otherwise.
    """
    if request.headers.get("authorization") is None:
        expires = query.get("Expires", "")
        if not expires.isdigit():
            raise errors.AccessDenied("Query-string authentication requires the Expires parameter.")
        if now.timestamp() > int(expires):
            raise errors.AccessDenied("Request has expired.", Expires=expires)
        return expires
    date = request.headers.get("x-amz-date") or request.headers.get("date")
    try:
        moment = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header.")
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if abs(now - moment) > max_skew:
        raise errors.RequestTimeTooSkewed(RequestTime=date or "", ServerTime=now.isoformat())
    return (request.headers.get("date") or "").strip()


def check_signature(
    request: S3Request, query: Mapping[str, str], credential: S3Credential, signature: str, date_line: str
) -> None:
    """Raise SignatureDoesNotMatch unless ``signature`` signs ``request`` under ``credential``."""
    presigned = request.headers.get("authorization") is None
    extra = {k: v for k, v in query.items() if k.lower().startswith("x-amz-")} if presigned else {}
    below = request.path or "/"
    bucket_only = below.count("/") == 1 and below != "/"
    paths = dict.fromkeys([below, below + "/" if bucket_only else below, request.signed_path])
    first = ""
    for path in paths:
        text = string_to_sign(
            request.method, request.headers, date_line, canonical_resource(path, request.query), extra
        )
        if hmac.compare_digest(sign(credential.secret_access_key, text), signature):
            return
        first = first or text
    raise errors.SignatureDoesNotMatch(
        AWSAccessKeyId=credential.access_key_id, StringToSign=first, SignatureProvided=signature
    )
