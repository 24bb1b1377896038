"""Digests of object data: MD5 (ETags, ``Content-MD5``) and S3's flexible checksums.

S3 checksums travel base64-encoded in ``x-amz-checksum-<algorithm>`` headers or in the trailer of
an aws-chunked body. Supported algorithms: ``crc32``, ``crc32c``, ``sha1``, ``sha256`` (and ``md5``
for ETags and ``Content-MD5``). CRC32C uses the ``google_crc32c`` extension when it is installed and
a slower pure-Python table otherwise. CRC-32 comes from ``core.crc32`` (zlib-ng's where installed,
else zlib's; the same values).
``crc64nvme`` is refused with ``NotImplemented``.

:class:`DigestSet` is fed from a worker thread by the object store (hashlib and zlib release the GIL
on large buffers), so hashing does not stall the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from cloudtuner.core.crc32 import crc32 as _crc32
from cloudtuner.storage import errors

_crc32c_extension: Callable[[int, bytes], int] | None
try:  # pragma: no cover - depends on the environment
    from google_crc32c import extend as _crc32c_extension
except ImportError:  # pragma: no cover - depends on the environment
    _crc32c_extension = None

#: Checksum algorithms a client may ask for, by their lower-case S3 name.
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("crc32", "crc32c", "sha1", "sha256")
#: Algorithms S3 knows but this endpoint does not compute.
UNSUPPORTED_CHECKSUM_ALGORITHMS: tuple[str, ...] = ("crc64nvme",)
#: Raw digest length per algorithm, to validate base64 values before any byte is read.
DIGEST_SIZES: Mapping[str, int] = {"md5": 16, "crc32": 4, "crc32c": 4, "sha1": 20, "sha256": 32}

_CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = _crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def _make_crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE: tuple[int, ...] | None = None


def _crc32c_extend(crc: int, data: bytes | memoryview) -> int:
    if _crc32c_extension is not None:
        return int(_crc32c_extension(crc, bytes(data)))
    global _CRC32C_TABLE  # noqa: PLW0603 - built lazily, once, only without the extension
    if _CRC32C_TABLE is None:
        _CRC32C_TABLE = _make_crc32c_table()
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class _Crc32c:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = _crc32c_extend(self._value, data)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


_FACTORIES: Mapping[str, Callable[[], _Hasher]] = {
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
    "crc32": _Crc32,
    "crc32c": _Crc32c,
}


class DigestSet:
    """Compute several digests of one byte stream in a single pass.

    Not thread-safe: feed it from one thread at a time (the store feeds it from a worker thread).
    """

    __slots__ = ("_hashers", "_size")

    def __init__(self, algorithms: Iterable[str]) -> None:
        """Start digests for ``algorithms`` (names from :data:`DIGEST_SIZES`); raise KeyError else."""
        self._hashers = {name: _FACTORIES[name]() for name in dict.fromkeys(algorithms)}
        self._size = 0

    @property
    def size(self) -> int:
        """Number of bytes fed so far."""
        return self._size

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the stream."""
        self._size += len(data)
        for hasher in self._hashers.values():
            hasher.update(data)

    def digests(self) -> dict[str, bytes]:
        """Return the raw digest of every algorithm over the bytes fed so far."""
        return {name: hasher.digest() for name, hasher in self._hashers.items()}


def compute(algorithm: str, data: bytes) -> bytes:
    """Return the raw ``algorithm`` digest of ``data`` (small buffers; tests and part lists)."""
    digests = DigestSet([algorithm])
    digests.update(data)
    return digests.digests()[algorithm]


def b64(raw: bytes) -> str:
    """Encode a raw digest the way S3 headers carry it (standard base64)."""
    return base64.b64encode(raw).decode("ascii")


def decode_checksum(algorithm: str, value: str) -> bytes:
    """Decode the base64 checksum ``value`` of ``algorithm``; raise InvalidRequest if malformed."""
    raw = _b64decode(value)
    if raw is None or len(raw) != DIGEST_SIZES[algorithm]:
        raise errors.InvalidRequest(f"Value for x-amz-checksum-{algorithm} header is invalid.")
    return raw


def decode_content_md5(value: str) -> bytes:
    """Decode a ``Content-MD5`` header; raise InvalidDigest if it is not 16 bytes of base64."""
    raw = _b64decode(value)
    if raw is None or len(raw) != 16:
        raise errors.InvalidDigest("The Content-MD5 you specified was invalid.")
    return raw


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def checksum_algorithm_of_header(name: str) -> str | None:
    """Return the algorithm named by an ``x-amz-checksum-*`` header name, or None for other headers.

    Raise NotImplemented for an algorithm S3 knows but this endpoint does not compute, and
    InvalidRequest for an unknown one. ``x-amz-checksum-algorithm``, ``-mode`` and ``-type`` are not
    checksum values and give None.
    """
    lname = name.lower()
    if not lname.startswith(_CHECKSUM_HEADER_PREFIX):
        return None
    algorithm = lname[len(_CHECKSUM_HEADER_PREFIX) :]
    if algorithm in ("algorithm", "mode", "type"):
        return None
    return checked_algorithm(algorithm)


def checked_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` lower-cased if supported; raise NotImplemented/InvalidRequest otherwise."""
    name = algorithm.strip().lower()
    if name in CHECKSUM_ALGORITHMS:
        return name
    if name in UNSUPPORTED_CHECKSUM_ALGORITHMS:
        raise errors.NotImplementedOperation(f"The {name.upper()} checksum algorithm is not supported.")
    raise errors.InvalidRequest(f"Checksum algorithm {algorithm!r} is not valid.")


def header_name(algorithm: str) -> str:
    """Return the header that carries ``algorithm``'s checksum, e.g. ``x-amz-checksum-crc32``."""
    return _CHECKSUM_HEADER_PREFIX + algorithm


def composite_checksum(algorithm: str, part_checksums: Iterable[bytes]) -> str:
    """Return S3's composite checksum of a multipart object: ``b64(H(raw part sums))-N``."""
    parts = list(part_checksums)
    return f"{b64(compute(algorithm, b''.join(parts)))}-{len(parts)}"
