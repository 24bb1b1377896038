"""Bucket names, object keys, and how they map to paths on disk.

Keys map one-to-one to files below the bucket's folder, so a key is only accepted when it is a
plain relative path: no empty, ``.`` or ``..`` segment, no absolute path, no backslash, no NUL or
other control character, no percent-encoded form of any of these (``%2e%2e%2f`` is refused even when
it arrives double-encoded and so would be a literal file name), at most 1024 bytes in UTF-8 and 255
bytes per segment. On top of that every path is resolved (symlinks included) and must stay below
the bucket's folder. These rules are stricter than S3's, on purpose.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

from cloudtuner.storage import errors

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_FORBIDDEN_CHARS_RE = re.compile(r"[\x00-\x1f\x7f\\]")
_MAX_DECODE_ROUNDS = 4


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name (DNS-style); raise InvalidBucketName otherwise."""
    if (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IPV4_RE.match(name)
        or name.startswith("xn--")
    ):
        raise errors.InvalidBucketName(BucketName=name)
    return name


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe to store as a file; raise InvalidObjectKey or KeyTooLongError.

    See the module docstring for the rules.
    """
    if not key:
        raise errors.InvalidObjectKey("The object key must not be empty.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(Key=key)
    _check_plain(key, key)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise errors.InvalidObjectKey(
                "The object key must be a relative path without empty, '.' or '..' segments.", Key=key
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise errors.KeyTooLongError(
                f"Each '/'-separated part of a key is limited to {MAX_SEGMENT_BYTES} bytes.", Key=key
            )
    decoded = key
    for _ in range(_MAX_DECODE_ROUNDS):
        previous, decoded = decoded, unquote(decoded, errors="replace")
        if decoded == previous:
            break
        _check_plain(decoded, key)
        if any(segment in (".", "..") for segment in decoded.split("/")):
            raise errors.InvalidObjectKey("The object key must not encode '.' or '..' segments.", Key=key)
    return key


def _check_plain(text: str, key: str) -> None:
    if _FORBIDDEN_CHARS_RE.search(text):
        raise errors.InvalidObjectKey(
            "The object key must not contain backslashes, NUL or other control characters.", Key=key
        )
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise errors.InvalidObjectKey("The object key is not valid UTF-8.", Key=key)


def is_storable_key(key: str) -> bool:
    """Return whether ``key`` passes :func:`validate_key` (used to skip foreign files in listings)."""
    try:
        validate_key(key)
    except errors.S3Error:
        return False
    return True


def decode_component(raw: str) -> str:
    """Percent-decode one raw path component as UTF-8; raise InvalidObjectKey if it is not UTF-8."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidObjectKey("The request path is not valid UTF-8 once decoded.") from None


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """Split a raw request path below the mount path into ``(bucket, key)``, both decoded.

    ``""`` and ``"/"`` give ``(None, None)`` (the service); ``/b`` and ``/b/`` give ``("b", None)``.
    The key is returned as sent, not validated: call :func:`validate_key` on it.
    """
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    if not path:
        return None, None
    raw_bucket, sep, raw_key = path.partition("/")
    bucket = decode_component(raw_bucket)
    if not sep or not raw_key:
        return bucket, None
    return bucket, decode_component(raw_key)


def path_under(base: Path, key: str) -> Path:
    """Return the path of ``key`` below ``base``; raise InvalidObjectKey if it would resolve outside.

    ``key`` must already be valid. The check resolves symlinks of every existing component, so a
    symlink planted inside ``base`` cannot lead a key outside of it.
    """
    candidate = base.joinpath(*key.split("/"))
    real_base = os.path.realpath(base)
    real = os.path.realpath(candidate)
    if real == real_base or os.path.commonpath([real_base, real]) != real_base:
        raise errors.InvalidObjectKey("The object key resolves outside of its bucket.", Key=key)
    return candidate
