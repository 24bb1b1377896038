"""Uploading a job's dataset archive to Replicate's Files API, once per content.

* :func:`find_reusable_file` looks through ``GET /v1/files`` for a live file with the archive's
  sha256 (``checksums.sha256``) and size that will not expire within the reuse margin; its
  ``urls.get`` is used instead of uploading again (0 bytes sent).
* :func:`upload_archive` sends ``POST /v1/files`` as ``multipart/form-data`` with the archive in
  the ``content`` part (reference 3.1), streamed from disk in blocks read in a worker thread: the
  file is never held in memory whole. Progress goes to ``report("uploading", done, total)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cloudtuner.core.errors import ProviderRejectedError, ProviderUnavailableError
from cloudtuner.providers.base import DatasetArchive, ProgressCallback
from cloudtuner.providers.replicate.client import ReplicateHTTP, decode_json
from cloudtuner.providers.replicate.mapping import parse_time

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
ARCHIVE_TYPE = "application/zip"


def archive_filename(archive: DatasetArchive) -> str:
    """Return the name the archive is uploaded under (the same for the same content)."""
    return f"cloudtuner-datasets-{archive.sha256[:16]}.zip"


def _reusable(item: dict[str, Any], archive: DatasetArchive, not_before: datetime) -> str | None:
    checksums = item.get("checksums")
    urls = item.get("urls")
    if not isinstance(checksums, dict) or not isinstance(urls, dict):
        return None
    if str(checksums.get("sha256", "")).lower() != archive.sha256.lower():
        return None
    size = item.get("size")
    if isinstance(size, int) and size != archive.size_bytes:
        return None
    expires = parse_time(item.get("expires_at"))
    if expires is not None and expires <= not_before:
        return None
    url = urls.get("get")
    return url if isinstance(url, str) and url else None


async def find_reusable_file(
    http: ReplicateHTTP, archive: DatasetArchive, *, now: datetime, margin: timedelta, max_pages: int
) -> str | None:
    """Return the ``urls.get`` of a file Replicate still holds with the archive's content, or None.

    A listing that cannot be read (429/5xx/timeouts after retries) counts as "none": the archive
    is then uploaded again, which is always safe.

    Raises:
        ProviderAuthError: the token is missing or refused.
    """
    try:
        async for results, _more in http.pages("files", max_pages=max_pages, action="list uploaded files"):
            for item in results:
                url = _reusable(item, archive, now + margin)
                if url is not None:
                    return url
    except (ProviderUnavailableError, ProviderRejectedError) as exc:
        log.info("could not list Replicate files, uploading the archive again: %s", exc.message)
    return None


def _multipart_frame(filename: str, boundary: str) -> tuple[bytes, bytes]:
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="content"; filename="{safe_name}"\r\n'
        f"Content-Type: {ARCHIVE_TYPE}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail


async def _stream(
    path: Path, head: bytes, tail: bytes, size: int, report: ProgressCallback | None
) -> AsyncIterator[bytes]:
    yield head
    handle = await asyncio.to_thread(path.open, "rb")
    sent = 0
    try:
        if report is not None:
            await report("uploading", 0, size)
        while sent < size:
            block = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, size - sent))
            if not block:
                raise ProviderUnavailableError("The dataset archive became shorter while it was being uploaded.")
            sent += len(block)
            yield block
            if report is not None:
                await report("uploading", sent, size)
    finally:
        await asyncio.to_thread(handle.close)
    yield tail


async def upload_archive(
    http: ReplicateHTTP, archive: DatasetArchive, *, max_bytes: int, report: ProgressCallback | None
) -> str:
    """Upload the archive and return the new file's ``urls.get``.

    Raises:
        ProviderRejectedError: the archive is missing or over ``max_bytes`` (nothing is sent), or
            Replicate refused it (413 and other 4xx).
        ProviderAuthError: the token is missing or refused.
        ProviderUnavailableError: Replicate could not be reached (after retries).
    """
    try:
        size = (await asyncio.to_thread(os.stat, archive.path)).st_size
    except OSError as exc:
        raise ProviderRejectedError(f"The dataset archive could not be read ({exc.strerror}).") from exc
    if size > max_bytes:
        over = size - max_bytes
        raise ProviderRejectedError(
            f"The dataset archive is {size:,} bytes, {over:,} bytes over Replicate's upload limit of "
            f"{max_bytes:,} bytes (100 MiB). Make the datasets smaller."
        )
    boundary = "cloudtuner-" + secrets.token_hex(16)
    head, tail = _multipart_frame(archive_filename(archive), boundary)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    response = await http.request(
        "POST",
        "files",
        retry=True,
        body=lambda: _stream(archive.path, head, tail, size, report),
        headers=headers,
        action="upload the dataset archive",
    )
    assert response is not None
    reply = decode_json(response, "upload the dataset archive")
    urls = reply.get("urls") if isinstance(reply, dict) else None
    url = urls.get("get") if isinstance(urls, dict) else None
    if not isinstance(url, str) or not url:
        raise ProviderUnavailableError("Replicate accepted the dataset archive but sent no URL for it.")
    return url
