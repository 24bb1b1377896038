"""CRC-32 (the zip and S3 polynomial) from the fastest implementation installed.

``zlib-ng`` (a dependency) computes it with vector instructions, many times faster than zlib (about
52 GiB/s against 3 GiB/s on the project's machines); zlib's is used where it is missing. Zip
packaging and the S3 endpoint's checksums both use :data:`crc32`.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Sequence
from typing import cast

Crc32 = Callable[[bytes | bytearray | memoryview, int], int]

FAST_CRC32_MODULES = ("zlib_ng.zlib_ng",)
"""Optional modules whose ``crc32`` is used instead of zlib's when installed: the values are the
same (checked at import), and zlib-ng's is many times faster (vector instructions)."""


def load_crc32(module_names: Sequence[str] = FAST_CRC32_MODULES) -> Crc32:
    """Return the first working ``crc32`` among ``module_names``, else ``zlib.crc32``.

    A candidate is used only if it gives the CRC-32 check value (``0xCBF43926`` for
    ``b"123456789"``) and continues a running CRC like zlib's.
    """
    for module_name in module_names:
        try:
            candidate = getattr(importlib.import_module(module_name), "crc32", None)
        except ImportError:
            continue
        if callable(candidate) and _behaves_like_zlib(cast(Crc32, candidate)):
            return cast(Crc32, candidate)
    return zlib.crc32


def _behaves_like_zlib(candidate: Crc32) -> bool:
    try:
        return candidate(b"123456789", 0) == 0xCBF43926 and candidate(b"6789", candidate(b"12345", 0)) == 0xCBF43926
    except Exception:
        return False


crc32: Crc32 = load_crc32()
"""CRC-32 of a buffer, continuing from a running value (0 to start)."""
