"""Sizes: human-readable formatting and the archive size predicted from a scan (no I/O).

The prediction mirrors the records the archive writer produces for each file (``zipformat.py``):

* local header: 30 bytes + name, plus a 20-byte ZIP64 field when the file is near 2 GiB;
* the data: the file itself when stored, at most zlib's deflate bound when compressed;
* data descriptor: 16 bytes (24 with ZIP64);
* central directory entry: 46 bytes + name, plus a ZIP64 field for large files or offsets;
* end of archive: 22 bytes, plus 76 for the ZIP64 end records of very large archives.

So the estimate is exact for archives whose files are all stored (images) and an upper bound
otherwise (captions usually shrink by half or more).
"""

from __future__ import annotations

from cloudtuner.packaging import zipformat

ZIP64_LIMIT = zipformat.ZIP64_LIMIT
"""Sizes and offsets above this get ZIP64 fields."""

ZIP_FILECOUNT_LIMIT = zipformat.FILE_COUNT_LIMIT
"""More entries than this need the ZIP64 end records."""

_LOCAL_HEADER_BYTES = 30
_LOCAL_ZIP64_FIELD_BYTES = 20
_DESCRIPTOR_BYTES = 16
_DESCRIPTOR_ZIP64_BYTES = 24
_CENTRAL_HEADER_BYTES = 46
_ZIP64_FIELD_HEADER_BYTES = 4
_ZIP64_VALUE_BYTES = 8
_END_RECORD_BYTES = 22
_ZIP64_END_RECORDS_BYTES = 56 + 20

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(size_bytes: int) -> str:
    """Return a size in binary units with one decimal: ``512 B``, ``1.5 KiB``, ``142.3 MiB``.

    A size that is a whole number of its unit is shown without decimals (``100 MiB``).
    Negative sizes are shown with a minus sign.
    """
    if size_bytes < 0:
        return f"-{format_size(-size_bytes)}"
    if size_bytes < 1024:
        return f"{size_bytes} B"
    unit_index = 0
    divisor = 1
    while unit_index < len(_UNITS) - 1 and size_bytes >= divisor * 1024:
        divisor *= 1024
        unit_index += 1
    if size_bytes % divisor == 0:
        return f"{size_bytes // divisor} {_UNITS[unit_index]}"
    rounded = round(size_bytes / divisor, 1)
    if rounded >= 1024 and unit_index < len(_UNITS) - 1:
        return f"{round(size_bytes / (divisor * 1024), 1):.1f} {_UNITS[unit_index + 1]}"
    return f"{rounded:.1f} {_UNITS[unit_index]}"


def deflate_bound(size_bytes: int) -> int:
    """Return the most bytes raw deflate can produce from ``size_bytes`` of input (zlib's bound)."""
    return size_bytes + (size_bytes >> 12) + (size_bytes >> 14) + (size_bytes >> 25) + 7


def uses_zip64_header(size_bytes: int) -> bool:
    """Return True when the writer gives a file of this size ZIP64 local fields (>= ~2 GiB)."""
    return zipformat.uses_local_zip64(size_bytes)


def estimate_entry_bytes(name_bytes: int, size_bytes: int, *, compressed: bool) -> int:
    """Return the archive bytes one file takes, headers and central entry included.

    Exact for a stored file; an upper bound for a compressed one. ZIP64 offset fields, which
    depend on where the file lands, are accounted for by ``estimate_archive_bytes``.
    """
    data_bytes = deflate_bound(size_bytes) if compressed else size_bytes
    zip64_local = uses_zip64_header(size_bytes)
    local = _LOCAL_HEADER_BYTES + name_bytes + (_LOCAL_ZIP64_FIELD_BYTES if zip64_local else 0)
    descriptor = _DESCRIPTOR_ZIP64_BYTES if zip64_local else _DESCRIPTOR_BYTES
    central = _CENTRAL_HEADER_BYTES + name_bytes
    if size_bytes > ZIP64_LIMIT or data_bytes > ZIP64_LIMIT:
        central += _ZIP64_FIELD_HEADER_BYTES + 2 * _ZIP64_VALUE_BYTES
    return local + data_bytes + descriptor + central


def estimate_archive_bytes(entry_count: int, entries_bytes: int) -> int:
    """Return the archive size from the entry count and the sum of ``estimate_entry_bytes``.

    When the archive may pass 2 GiB, each entry is assumed to need a ZIP64 offset field, so
    the result stays an upper bound.
    """
    total = entries_bytes + _END_RECORD_BYTES
    if total > ZIP64_LIMIT:
        total += entry_count * (_ZIP64_FIELD_HEADER_BYTES + _ZIP64_VALUE_BYTES)
    if entry_count > ZIP_FILECOUNT_LIMIT or total > ZIP64_LIMIT:
        total += _ZIP64_END_RECORDS_BYTES
    return total
