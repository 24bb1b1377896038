"""The zip records: readable by zipfile, ZIP64 where needed, and a working CRC-32 choice."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import pytest

from cloudtuner.core.crc32 import crc32
from cloudtuner.packaging import zipformat
from cloudtuner.packaging.zipformat import METHOD_DEFLATED, METHOD_STORED, ZIP64_LIMIT

GIB = 1 << 30


def _archive(members: list[tuple[str, bytes, int]]) -> bytes:
    """Write members (name, content, method) the way the packaging does, into memory."""
    out = bytearray()
    entries = []
    for name, content, method in members:
        entry, header = zipformat.start_entry(name, method=method, size_bytes=len(content), offset=len(out))
        out += header
        if method == METHOD_DEFLATED:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            data = compressor.compress(content) + compressor.flush()
        else:
            data = content
        out += data
        out += zipformat.finish_entry(entry, crc=crc32(content, 0), compressed_size=len(data), size=len(content))
        entries.append(entry)
    for record in zipformat.central_directory(entries, start=len(out)):
        out += record
    return bytes(out)


def test_zipfile_reads_stored_deflated_empty_and_non_ascii_members() -> None:
    members = [
        ("datasets/a/photo.jpg", os.urandom(5000), METHOD_STORED),
        ("datasets/a/photo.txt", b"a photo of a cat " * 50, METHOD_DEFLATED),
        ("datasets/a/empty.jpg", b"", METHOD_STORED),
        ("datasets/a/caf\u00e9 \u732b.png", b"png", METHOD_STORED),
    ]
    with zipfile.ZipFile(io.BytesIO(_archive(members))) as opened:
        assert opened.testzip() is None
        infos = opened.infolist()
        assert [info.filename for info in infos] == [name for name, _, _ in members]
        for info, (name, content, method) in zip(infos, members, strict=True):
            assert opened.read(name) == content
            assert info.compress_type == method
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3
            assert info.flag_bits & 0x08  # data descriptor
            assert bool(info.flag_bits & 0x800) == (not name.isascii())


def test_an_empty_archive_is_a_valid_zip() -> None:
    with zipfile.ZipFile(io.BytesIO(_archive([]))) as opened:
        assert opened.namelist() == []


def test_the_local_header_has_zero_crc_and_sizes_until_the_descriptor() -> None:
    entry, header = zipformat.start_entry("a.jpg", method=METHOD_STORED, size_bytes=10, offset=0)
    fields = struct.unpack("<4s2B4HL2L2H", header[:30])
    assert fields[0] == b"PK\x03\x04"
    assert fields[1] == 20  # version needed
    assert fields[7:10] == (0, 0, 0)  # CRC, compressed and uncompressed sizes
    assert header[30:] == b"a.jpg"
    descriptor = zipformat.finish_entry(entry, crc=0xDEADBEEF, compressed_size=10, size=10)
    assert struct.unpack("<LLLL", descriptor) == (0x08074B50, 0xDEADBEEF, 10, 10)


def test_a_file_near_2_gib_gets_local_zip64_fields_and_a_long_descriptor() -> None:
    size = int(ZIP64_LIMIT / 1.05) + 1
    assert zipformat.uses_local_zip64(size)
    assert not zipformat.uses_local_zip64(int(ZIP64_LIMIT / 1.05) - 1)
    entry, header = zipformat.start_entry("big.jpg", method=METHOD_STORED, size_bytes=size, offset=0)
    fields = struct.unpack("<4s2B4HL2L2H", header[:30])
    assert fields[1] == 45
    assert fields[8:10] == (0xFFFFFFFF, 0xFFFFFFFF)
    assert header[30 + len("big.jpg") :] == struct.pack("<HHQQ", 1, 16, 0, 0)
    descriptor = zipformat.finish_entry(entry, crc=1, compressed_size=size, size=size)
    assert struct.unpack("<LLQQ", descriptor) == (0x08074B50, 1, size, size)


def test_a_small_entry_cannot_grow_past_2_gib_silently() -> None:
    entry, _ = zipformat.start_entry("a.jpg", method=METHOD_STORED, size_bytes=10, offset=0)
    with pytest.raises(ValueError, match="2 GiB"):
        zipformat.finish_entry(entry, crc=0, compressed_size=3 * GIB, size=3 * GIB)


def _central_records(data: bytes) -> list[tuple[tuple[int, ...], bytes, bytes]]:
    records = []
    position = 0
    while data[position : position + 4] == b"PK\x01\x02":
        fields = struct.unpack("<4s4B4HL2L5H2L", data[position : position + 46])
        name_length, extra_length = fields[12], fields[13]
        name = data[position + 46 : position + 46 + name_length]
        extra = data[position + 46 + name_length : position + 46 + name_length + extra_length]
        records.append((fields[1:], name, extra))
        position += 46 + name_length + extra_length
    return records


def test_central_entries_get_zip64_fields_for_large_sizes_and_offsets() -> None:
    small = zipformat.Entry(b"a.txt", 0x08, METHOD_DEFLATED, False, header_offset=0, crc=7, compressed_size=3, size=9)
    large = zipformat.Entry(b"b.jpg", 0x08, METHOD_STORED, True, header_offset=100, crc=8)
    large.size = large.compressed_size = 3 * GIB
    late = zipformat.Entry(
        b"c.jpg", 0x08, METHOD_STORED, False, header_offset=5 * GIB, crc=9, compressed_size=4, size=4
    )
    pieces = list(zipformat.central_directory([small, large, late], start=6 * GIB))
    records = _central_records(b"".join(pieces))
    assert [name for _, name, _ in records] == [b"a.txt", b"b.jpg", b"c.jpg"]
    (small_fields, _, small_extra), (large_fields, _, large_extra), (late_fields, _, late_extra) = records
    assert small_fields[0] == small_fields[2] == 20
    assert small_fields[8:11] == (7, 3, 9)
    assert small_extra == b""
    assert large_fields[0] == large_fields[2] == 45
    assert large_fields[9:11] == (0xFFFFFFFF, 0xFFFFFFFF)
    assert large_extra == struct.pack("<HHQQ", 1, 16, 3 * GIB, 3 * GIB)
    assert late_fields[0] == 45
    assert late_fields[-1] == 0xFFFFFFFF
    assert late_extra == struct.pack("<HHQ", 1, 8, 5 * GIB)
    # the central directory starts past 2 GiB: ZIP64 end records, then the classic one
    end64, locator, end = pieces[-3:]
    directory_size = sum(len(piece) for piece in pieces[:3])
    assert struct.unpack("<4sQ2H2L4Q", end64) == (b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, directory_size, 6 * GIB)
    assert struct.unpack("<4sLQL", locator) == (b"PK\x06\x07", 0, 6 * GIB + directory_size, 1)
    assert struct.unpack("<4s4H2LH", end) == (b"PK\x05\x06", 0, 0, 3, 3, directory_size, 0xFFFFFFFF, 0)


def test_more_than_65535_entries_need_the_zip64_end_records() -> None:
    entries = [zipformat.Entry(b"x", 0x08, METHOD_STORED, False, header_offset=0) for _ in range(0x10000)]
    pieces = list(zipformat.central_directory(entries, start=1000))
    assert pieces[-3][:4] == b"PK\x06\x06"
    assert struct.unpack("<4s4H2LH", pieces[-1])[3:5] == (0xFFFF, 0xFFFF)
    few = list(zipformat.central_directory(entries[:0xFFFF], start=1000))
    assert few[-2][:4] == b"PK\x01\x02"  # no ZIP64 records before the end record
