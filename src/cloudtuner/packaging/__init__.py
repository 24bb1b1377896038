"""Packaging: turn a job's local datasets into one uploadable, deterministic zip archive.

Pure library code (no web framework, database or network); it imports ``cloudtuner.core``
and ``cloudtuner.schemas`` only. The steps, in the order a caller uses them::

    scan = packaging.scan_datasets(dataloader_config)              # walk, no contents read
    summary = packaging.summarize_scan(scan, upload_limit_bytes=limit)  # for consent
    packaging.check_upload_limit(scan, limit_bytes=limit, provider_label="Replicate")
    built = packaging.build_archive(scan, archive_path, progress=on_progress)
    # or, with no file and no sha256: packaging.stream_archive(scan, send_buffers)
    trainer_config = packaging.rewrite_dataloader_config(dataloader_config, "/src/datasets")

Modules: ``rules`` (what is excluded and how files are stored), ``layout`` (archive folders),
``walk`` (the file-system walk), ``scan`` (counts and fingerprint), ``summary`` (upload
summary and limits), ``archive`` (the zip, to a file or a sink, and its sha256), ``stream``
(its buffers and threads), ``rewrite`` (trainer-side paths), ``sizes`` (human-readable sizes
and archive size prediction), ``errors``.
"""

from cloudtuner.packaging.archive import (
    BuiltArchive,
    ProgressCallback,
    StreamedArchive,
    build_archive,
    hash_package,
    stream_archive,
)
from cloudtuner.packaging.errors import PackagingError
from cloudtuner.packaging.layout import DatasetLayout, plan_dataset_layout
from cloudtuner.packaging.rewrite import rewrite_dataloader_config
from cloudtuner.packaging.scan import PackageScan, scan_datasets
from cloudtuner.packaging.sizes import format_size
from cloudtuner.packaging.summary import (
    REPLICATE_UPLOAD_LIMIT_BYTES,
    check_archive_size,
    check_upload_limit,
    summarize_scan,
)

__all__ = [
    "REPLICATE_UPLOAD_LIMIT_BYTES",
    "BuiltArchive",
    "DatasetLayout",
    "PackageScan",
    "PackagingError",
    "ProgressCallback",
    "StreamedArchive",
    "build_archive",
    "check_archive_size",
    "check_upload_limit",
    "format_size",
    "hash_package",
    "plan_dataset_layout",
    "rewrite_dataloader_config",
    "scan_datasets",
    "stream_archive",
    "summarize_scan",
]
