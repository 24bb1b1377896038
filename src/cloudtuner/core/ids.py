"""Identifiers that sort by creation time.

A job id is 26 characters of Crockford base32 (lowercase): 48 bits of milliseconds since the
epoch, then 80 random bits, as in a ULID. Lexical order is creation order, so listing newest first
is an index scan on the primary key, at any depth.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_sortable_id(now_ms: int | None = None) -> str:
    """Return a new 26-character id that sorts after ids made earlier."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _encode(ms & ((1 << 48) - 1), 10) + _encode(secrets.randbits(80), 16)


def is_sortable_id(value: str) -> bool:
    """Return True if ``value`` has the shape of an id made by :func:`new_sortable_id`."""
    # 48 bits of time fill 10 characters of 5 bits, so the first one is at most 7.
    return len(value) == 26 and value[0] in "01234567" and all(c in _ALPHABET for c in value)
