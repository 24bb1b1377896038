"""The byte records of the packaging's zip archives: pure functions, no I/O.

The archive is written as one forward-only stream, so every entry uses a data descriptor
(general-purpose flag bit 3): the local header carries zero CRC and sizes, and the CRC and
sizes follow the data. The records are exactly those Python's ``zipfile`` (3.11) writes for
the same entries to a non-seekable stream, which is how archives were written before this
module existed: the same files keep the same archive bytes, and so the same content hash.
Defining them here means the bytes no longer depend on the Python version.

Fixed for every entry: timestamp 1980-01-01 00:00 (DOS date 33, time 0), creator system Unix,
mode 0644 (regular file), versions 2.0 (4.5 for an entry with ZIP64 fields), no extra fields
beyond ZIP64, no comments. Names are stored as ASCII, or as UTF-8 with flag bit 11.

ZIP64 is used where ``zipfile`` uses it: a local ZIP64 field (and 24-byte descriptor) when
``size * 1.05`` exceeds 2 GiB - 1; central ZIP64 fields for sizes or offsets above 2 GiB - 1;
the ZIP64 end records for more than 65,535 entries or a central directory past 2 GiB - 1.
``sizes.py`` predicts archive sizes from the same rules.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

METHOD_STORED = 0
METHOD_DEFLATED = 8

ZIP64_LIMIT = (1 << 31) - 1
"""Sizes and offsets above this get ZIP64 fields."""

FILE_COUNT_LIMIT = 0xFFFF
"""More entries than this need the ZIP64 end records."""

_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_DOS_TIME = 0  # 00:00:00
_VERSION = 20
_ZIP64_VERSION = 45
_CREATED_ON_UNIX = 3
_EXTERNAL_ATTRIBUTES = 0o100644 << 16
_FLAG_DATA_DESCRIPTOR = 0x08
_FLAG_UTF8_NAME = 0x800
_ZIP64_EXTRA_ID = 1

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_DESCRIPTOR = struct.Struct("<LLLL")
_DESCRIPTOR_ZIP64 = struct.Struct("<LLQQ")
_END_RECORD = struct.Struct("<4s4H2LH")
_END_RECORD_ZIP64 = struct.Struct("<4sQ2H2L4Q")
_END_LOCATOR_ZIP64 = struct.Struct("<4sLQL")
_LOCAL_ZIP64_EXTRA = struct.pack("<HHQQ", _ZIP64_EXTRA_ID, 16, 0, 0)
_DESCRIPTOR_SIGNATURE = 0x08074B50


def encode_name(name: str) -> tuple[bytes, int]:
    """Return a member name's stored bytes and its name flag (UTF-8 flag for non-ASCII names)."""
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _FLAG_UTF8_NAME


def uses_local_zip64(size_bytes: int) -> bool:
    """Return True when an entry of this (uncompressed) size gets local ZIP64 fields (>= ~2 GiB)."""
    return size_bytes * 1.05 > ZIP64_LIMIT


@dataclass(slots=True)
class Entry:
    """One member, as the central directory needs it once its data is written."""

    name: bytes
    flags: int
    method: int
    local_zip64: bool
    header_offset: int
    crc: int = 0
    compressed_size: int = 0
    size: int = 0


def start_entry(name: str, *, method: int, size_bytes: int, offset: int) -> tuple[Entry, bytes]:
    """Return the entry record and the local header of a member starting at ``offset``.

    ``size_bytes`` is the expected uncompressed size; it only decides the ZIP64 layout, the
    real sizes go into the data descriptor.
    """
    encoded, name_flag = encode_name(name)
    entry = Entry(
        name=encoded,
        flags=_FLAG_DATA_DESCRIPTOR | name_flag,
        method=method,
        local_zip64=uses_local_zip64(size_bytes),
        header_offset=offset,
    )
    if entry.local_zip64:
        version, extra, size_field = _ZIP64_VERSION, _LOCAL_ZIP64_EXTRA, 0xFFFFFFFF
    else:
        version, extra, size_field = _VERSION, b"", 0
    header = _LOCAL_HEADER.pack(
        b"PK\x03\x04", version, 0, entry.flags, method, _DOS_TIME, _DOS_DATE, 0, size_field, size_field,
        len(encoded), len(extra),
    )  # fmt: skip
    return entry, header + encoded + extra


def finish_entry(entry: Entry, *, crc: int, compressed_size: int, size: int) -> bytes:
    """Record the member's CRC-32 and sizes in ``entry``; return its data descriptor.

    Raises:
        ValueError: a size does not fit the entry's layout (only possible for a member that
            grew past ~2 GiB beyond the size given to ``start_entry``).
    """
    entry.crc, entry.compressed_size, entry.size = crc, compressed_size, size
    if entry.local_zip64:
        return _DESCRIPTOR_ZIP64.pack(_DESCRIPTOR_SIGNATURE, crc, compressed_size, size)
    if size > ZIP64_LIMIT or compressed_size > ZIP64_LIMIT:
        raise ValueError("a member without ZIP64 fields grew past 2 GiB")
    return _DESCRIPTOR.pack(_DESCRIPTOR_SIGNATURE, crc, compressed_size, size)


def central_directory(entries: list[Entry], *, start: int) -> Iterator[bytes]:
    """Yield the central directory and end records for ``entries``, which begin at ``start``.

    ``start`` is the archive offset where the central directory begins (the bytes written so
    far). The records come in pieces of a few hundred bytes each.
    """
    size = 0
    for entry in entries:
        record = _central_entry(entry)
        size += len(record)
        yield record
    count = len(entries)
    if count > FILE_COUNT_LIMIT or start > ZIP64_LIMIT or size > ZIP64_LIMIT:
        yield _END_RECORD_ZIP64.pack(b"PK\x06\x06", 44, _ZIP64_VERSION, _ZIP64_VERSION, 0, 0, count, count, size, start)
        yield _END_LOCATOR_ZIP64.pack(b"PK\x06\x07", 0, start + size, 1)
        count = min(count, 0xFFFF)
        size = min(size, 0xFFFFFFFF)
        start = min(start, 0xFFFFFFFF)
    yield _END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0)


def _central_entry(entry: Entry) -> bytes:
    values: list[int] = []
    size, compressed_size, offset = entry.size, entry.compressed_size, entry.header_offset
    if size > ZIP64_LIMIT or compressed_size > ZIP64_LIMIT:
        values += [size, compressed_size]
        size = compressed_size = 0xFFFFFFFF
    if offset > ZIP64_LIMIT:
        values.append(offset)
        offset = 0xFFFFFFFF
    extra = struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA_ID, 8 * len(values), *values) if values else b""
    version = _ZIP64_VERSION if values or entry.local_zip64 else _VERSION
    header = _CENTRAL_HEADER.pack(
        b"PK\x01\x02", version, _CREATED_ON_UNIX, version, 0, entry.flags, entry.method, _DOS_TIME, _DOS_DATE,
        entry.crc, compressed_size, size, len(entry.name), len(extra), 0, 0, 0, _EXTERNAL_ATTRIBUTES, offset,
    )  # fmt: skip
    return header + entry.name + extra
