"""CRC-32 for zip packaging and S3 checksums: the fast implementation only when it is right."""

from __future__ import annotations

import os
import sys
import types
import zlib

import pytest

from cloudtuner.core.crc32 import crc32, load_crc32


def test_crc32_matches_zlib_when_continued_over_pieces() -> None:
    data = os.urandom(300_000)
    running = 0
    for start in range(0, len(data), 65536):
        running = crc32(data[start : start + 65536], running)
    assert running == zlib.crc32(data)


def test_an_installed_crc32_is_used_only_if_it_gives_the_right_values(monkeypatch: pytest.MonkeyPatch) -> None:
    def right(data: bytes, value: int = 0) -> int:
        return zlib.crc32(data, value)

    def wrong(data: bytes, value: int = 0) -> int:
        return 0

    good = types.ModuleType("fake_good_crc")
    good.crc32 = right  # type: ignore[attr-defined]
    bad = types.ModuleType("fake_bad_crc")
    bad.crc32 = wrong  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_good_crc", good)
    monkeypatch.setitem(sys.modules, "fake_bad_crc", bad)
    assert load_crc32(("no_such_module_here", "fake_bad_crc")) is zlib.crc32
    assert load_crc32(("fake_bad_crc", "fake_good_crc")) is right
