"""Local datasets on their way to a provider: the upload summary, consent, and the archive.

At submission, :func:`check_upload` scans the job's local datasets (names and sizes only), refuses
the job if the package would exceed the provider's limit, and applies the consent mode. At
dispatch, :func:`prepare_archive` builds the archive the provider uploads. A self-hosted worker
downloads its job's datasets instead: :func:`prepare_stream` scans them and :func:`archive_chunks`
packs the zip while it is being sent, with no file on the server's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudtuner import packaging
from cloudtuner.core.errors import UploadConsentRequiredError, UploadsDisabledError
from cloudtuner.providers.base import CloudTrainerService, DatasetArchive, ProgressCallback
from cloudtuner.schemas.settings import ConsentMode
from cloudtuner.schemas.uploads import UploadSummary
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.settings_documents import get_cloud_settings

PACKAGES_FOLDER = "packages"

log = logging.getLogger(__name__)


def local_datasets(dataloader: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the enabled datasets whose files live on this machine."""
    return [d for d in dataloader if d.get("type") == "local" and not d.get("disabled")]


def uploads_for(provider: CloudTrainerService, dataloader: list[dict[str, Any]]) -> bool:
    """Return True if sending this job to ``provider`` uploads local datasets."""
    return provider.capabilities.uploads_datasets and bool(local_datasets(dataloader))


async def summarize(provider: CloudTrainerService, dataloader: list[dict[str, Any]]) -> UploadSummary | None:
    """Return the upload summary of a job for ``provider``, or None when nothing would be uploaded.

    Raises:
        PackagingError: a dataset folder is missing or unreadable, or the config is incomplete.
    """
    if not uploads_for(provider, dataloader):
        return None
    scan = await asyncio.to_thread(packaging.scan_datasets, dataloader)
    return packaging.summarize_scan(scan, upload_limit_bytes=provider.capabilities.max_upload_bytes)


def _label(provider: CloudTrainerService) -> str:
    return provider.provider_name.capitalize()


async def check_upload(
    ctx: ServiceContext, provider: CloudTrainerService, dataloader: list[dict[str, Any]], consent: bool | None
) -> UploadSummary | None:
    """Apply the upload rules to a submission; return its upload summary (None: no upload).

    Raises:
        PackagingError: a dataset cannot be read, or (UploadTooLargeError) the package would
            exceed the provider's limit; the message says by how much.
        UploadsDisabledError: the consent mode is never_upload.
        UploadConsentRequiredError: the mode is always_ask and ``consent`` is not true; the error
            carries the summary for the user to review.
    """
    if not uploads_for(provider, dataloader):
        return None
    mode = (await get_cloud_settings(ctx)).upload_consent
    if mode is ConsentMode.NEVER_UPLOAD:
        raise UploadsDisabledError()
    scan = await asyncio.to_thread(packaging.scan_datasets, dataloader)
    limit = provider.capabilities.max_upload_bytes
    packaging.check_upload_limit(scan, limit_bytes=limit, provider_label=_label(provider))
    summary = packaging.summarize_scan(scan, upload_limit_bytes=limit)
    if mode is ConsentMode.ALWAYS_ASK and consent is not True:
        raise UploadConsentRequiredError(upload_summary=summary.model_dump(mode="json"))
    return summary


@dataclass(frozen=True)
class ScannedUpload:
    """A job's local datasets, scanned and checked against the provider's limit: ready to be
    packed while they are sent (no file), or into an archive (:class:`PreparedUpload`)."""

    scan: packaging.PackageScan
    dataloader: list[dict[str, Any]]
    """The dataloader config with dataset paths under the provider's extract root."""
    summary: UploadSummary


def _scan_for_upload(provider: CloudTrainerService, dataloader: list[dict[str, Any]]) -> ScannedUpload:
    scan = packaging.scan_datasets(dataloader)
    limit = provider.capabilities.max_upload_bytes
    packaging.check_upload_limit(scan, limit_bytes=limit, provider_label=_label(provider))
    root = provider.capabilities.dataset_extract_root or "/datasets"
    return ScannedUpload(
        scan=scan,
        dataloader=packaging.rewrite_dataloader_config(dataloader, root),
        summary=packaging.summarize_scan(scan, upload_limit_bytes=limit),
    )


@dataclass(frozen=True)
class PreparedUpload:
    """What dispatch hands a provider for a job with local datasets."""

    archive: DatasetArchive
    dataloader: list[dict[str, Any]]
    summary: UploadSummary


def _build(
    provider: CloudTrainerService, dataloader: list[dict[str, Any]], destination: Path,
    progress: packaging.ProgressCallback | None,
) -> PreparedUpload:  # fmt: skip
    scanned = _scan_for_upload(provider, dataloader)
    destination.parent.mkdir(parents=True, exist_ok=True)
    built = packaging.build_archive(scanned.scan, destination, progress=progress)
    limit = provider.capabilities.max_upload_bytes
    packaging.check_archive_size(built.size_bytes, limit_bytes=limit, provider_label=_label(provider))
    return PreparedUpload(
        archive=DatasetArchive(path=built.path, sha256=built.sha256, size_bytes=built.size_bytes),
        dataloader=scanned.dataloader,
        summary=scanned.summary,
    )


async def prepare_archive(
    ctx: ServiceContext,
    provider: CloudTrainerService,
    job_id: str,
    dataloader: list[dict[str, Any]],
    report: ProgressCallback | None = None,
) -> PreparedUpload:
    """Package a job's local datasets into ``<data dir>/packages/<job id>.zip``, off the event loop.

    Raises:
        PackagingError: a dataset cannot be read, changed while being packed, or the archive is
            over the provider's limit.
    """
    loop = asyncio.get_running_loop()
    last_report = 0.0

    async def forward(done: int, total: int) -> None:
        if report is not None:
            await report("packaging", done, total)

    def progress(done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if report is not None and (now - last_report > 0.5 or done == total):
            last_report = now
            asyncio.run_coroutine_threadsafe(forward(done, total), loop)

    destination = ctx.settings.data_dir / PACKAGES_FOLDER / f"{job_id}.zip"
    return await asyncio.to_thread(_build, provider, dataloader, destination, progress)


def discard_archive(archive: DatasetArchive) -> None:
    """Delete a job's archive once the provider has it (or the job ended)."""
    with contextlib.suppress(FileNotFoundError):
        archive.path.unlink()


async def prepare_stream(provider: CloudTrainerService, dataloader: list[dict[str, Any]]) -> ScannedUpload:
    """Scan a job's local datasets for :func:`archive_chunks`, off the event loop.

    Everything that can be checked before the first byte is sent is checked here, so that the
    caller can still answer with an error.

    Raises:
        PackagingError: a dataset cannot be read, or the package is over the provider's limit.
    """
    return await asyncio.to_thread(_scan_for_upload, provider, dataloader)


async def archive_chunks(scan: packaging.PackageScan) -> AsyncGenerator[memoryview, None]:
    """Yield the zip of ``scan`` while a thread of its own packs it (``packaging.stream_archive``).

    Each chunk is valid only until the next one is asked for: packing waits while the consumer
    sends a chunk, so memory stays fixed and nothing is copied. Closing the generator early
    stops the packing. An error while packing (a dataset changed since the scan) is raised
    after the chunks that came before it: the receiver gets an archive that does not end.
    """
    handoff = _ChunkHandoff(asyncio.get_running_loop())
    # A thread of its own, not the loop's default executor: a download may take hours, and a few
    # of them must not hold every executor thread that the rest of the server waits for.
    threading.Thread(target=handoff.produce, args=(scan,), name="cloudtuner-archive-stream", daemon=True).start()
    try:
        async for chunk in handoff.chunks():
            yield chunk
    except packaging.PackagingError as exc:
        log.warning("a dataset archive stopped part way through: %s", exc.message)
        raise
    finally:
        handoff.close()  # a producer still packing stops at its next buffer


class _ReceiverGoneError(Exception):
    """The generator was closed: stop packing."""


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class _ChunkHandoff:
    """Hands the stream's buffers from the packing thread to the event loop; waits until sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready: asyncio.Queue[Sequence[memoryview] | _End] = asyncio.Queue()
        self._sent = threading.Semaphore(0)
        self._closed = False

    def produce(self, scan: packaging.PackageScan) -> None:
        """Pack the archive into this handoff (on the packing thread); never raises."""
        try:
            packaging.stream_archive(scan, self._give)
        except BaseException as exc:  # handed to the generator, which raises it
            self._put(_End(exc))
        else:
            self._put(_End(None))

    async def chunks(self) -> AsyncIterator[memoryview]:
        while True:
            item = await self._ready.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            for view in item:
                yield view
            self._sent.release()

    def close(self) -> None:
        self._closed = True
        self._sent.release()  # wakes a sink waiting for its buffers to be sent

    def _give(self, views: Sequence[memoryview]) -> None:
        if self._closed:
            raise _ReceiverGoneError()
        self._put(list(views))
        self._sent.acquire()
        if self._closed:
            raise _ReceiverGoneError()

    def _put(self, item: Sequence[memoryview] | _End) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(self._ready.put_nowait, item)
