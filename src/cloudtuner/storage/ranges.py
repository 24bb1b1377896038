"""``Range: bytes=...`` parsing for ranged GET, with S3's rules.

One range per request, as S3 does: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n``. A header that is
not a single well-formed byte range is ignored (the whole object is sent, status 200), as HTTP
requires; a well-formed range that lies outside the object is refused with ``InvalidRange`` (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloudtuner.storage import errors

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range ``start..end`` of an object of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 206 reply, e.g. ``bytes 0-9/100``."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Return the range ``header`` asks of an object of ``size`` bytes, or None for the whole object.

    Raise InvalidRange when the range is well-formed but not satisfiable (it starts at or beyond the
    end, or is a zero-length suffix, or the object is empty).
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    return ByteRange(start, min(end, size - 1), size)


def _unsatisfiable(header: str, size: int) -> errors.InvalidRange:
    error = errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=header.strip())
    error.headers.append(("Content-Range", f"bytes */{size}"))
    return error
