"""The upload summary shown before consent, and the check against a provider's upload limit.

Both work from a scan alone: nothing is built or sent. The figure compared with a limit is
the scan's estimated archive size, which is exact for stored images and an upper bound when
captions are compressed, so a package that passes the check fits once built.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudtuner.packaging import errors, sizes
from cloudtuner.packaging.scan import FolderScan, PackageScan
from cloudtuner.schemas.uploads import DatasetUploadSummary, UploadSummary

REPLICATE_UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024
"""Replicate's file upload API accepts archives up to 100 MiB."""

_LARGEST_DATASETS_NAMED = 3


def summarize_scan(scan: PackageScan, *, upload_limit_bytes: int | None = None) -> UploadSummary:
    """Return the upload summary of a scan, measured against a provider's limit if it has one.

    Datasets that share a folder each appear, with the same counts; the later ones name the
    first in ``same_files_as`` and the totals count the shared files once.
    """
    datasets: list[DatasetUploadSummary] = []
    captions_found = 0
    folders_with_captions_counted: set[str] = set()
    for dataset in scan.layout.datasets:
        if dataset.archive_folder is None or dataset.source_dir is None:
            continue
        folder = scan.find_folder(dataset.archive_folder)
        if folder is None:
            continue
        uses_caption_files = dataset.caption_strategy == "textfile"
        if uses_caption_files and dataset.archive_folder not in folders_with_captions_counted:
            folders_with_captions_counted.add(dataset.archive_folder)
            captions_found += folder.captioned_images
        datasets.append(
            DatasetUploadSummary(
                dataset_id=dataset.dataset_id,
                path=dataset.source_dir,
                archive_folder=dataset.archive_folder,
                same_files_as=dataset.same_files_as,
                caption_strategy=dataset.caption_strategy,
                file_count=folder.file_count,
                total_bytes=folder.total_bytes,
                image_count=folder.image_count,
                images_by_extension=dict(folder.images_by_extension),
                captions_found=folder.captioned_images if uses_caption_files else None,
                excluded=list(folder.excluded),
                excluded_count=folder.excluded_count,
            )
        )
    estimated = scan.estimated_archive_bytes
    over = bytes_over_limit(estimated, upload_limit_bytes)
    return UploadSummary(
        datasets=datasets,
        file_count=scan.file_count,
        total_bytes=scan.total_bytes,
        image_count=sum(folder.image_count for folder in scan.folders),
        captions_found=captions_found,
        excluded_count=sum(folder.excluded_count for folder in scan.folders),
        estimated_archive_bytes=estimated,
        upload_limit_bytes=upload_limit_bytes,
        fits_upload_limit=over == 0,
        bytes_over_limit=over,
        fingerprint=scan.fingerprint,
    )


def bytes_over_limit(archive_bytes: int, limit_bytes: int | None) -> int:
    """Return by how many bytes an archive exceeds a limit; 0 when it fits or there is no limit."""
    if limit_bytes is None:
        return 0
    return max(0, archive_bytes - limit_bytes)


def check_upload_limit(scan: PackageScan, *, limit_bytes: int | None, provider_label: str) -> None:
    """Refuse a package that would exceed a provider's upload limit, before anything is built.

    ``provider_label`` is the provider's display name (``"Replicate"``); ``limit_bytes`` None
    means the provider has no limit.

    Raises:
        UploadTooLargeError: the estimated archive is larger than the limit; the message says
            by how much, names the largest datasets and how to get under the limit.
    """
    estimated = scan.estimated_archive_bytes
    if limit_bytes is None or estimated <= limit_bytes:
        return
    largest = sorted(scan.folders, key=lambda folder: folder.total_bytes, reverse=True)
    raise errors.UploadTooLargeError(
        upload_too_large_message(
            archive_bytes=estimated,
            limit_bytes=limit_bytes,
            provider_label=provider_label,
            largest_datasets=[(_folder_name(folder), folder.total_bytes) for folder in largest],
        )
    )


def check_archive_size(archive_bytes: int, *, limit_bytes: int | None, provider_label: str) -> None:
    """Refuse a built archive that exceeds a provider's upload limit, before it is sent.

    Raises:
        UploadTooLargeError: the archive is larger than the limit.
    """
    if limit_bytes is None or archive_bytes <= limit_bytes:
        return
    raise errors.UploadTooLargeError(
        upload_too_large_message(
            archive_bytes=archive_bytes,
            limit_bytes=limit_bytes,
            provider_label=provider_label,
            largest_datasets=[],
        )
    )


def upload_too_large_message(
    *,
    archive_bytes: int,
    limit_bytes: int,
    provider_label: str,
    largest_datasets: Sequence[tuple[str, int]],
) -> str:
    """Return the message for a package over a limit: the sizes, the largest datasets, the fixes.

    ``largest_datasets`` holds (dataset name, bytes), largest first; the first three are named.
    """
    over = archive_bytes - limit_bytes
    message = (
        f"The packaged datasets are {sizes.format_size(archive_bytes)}, {sizes.format_size(over)}"
        f" over {provider_label}'s {sizes.format_size(limit_bytes)} upload limit."
    )
    named = [
        f"{name} ({sizes.format_size(size_bytes)})" for name, size_bytes in largest_datasets[:_LARGEST_DATASETS_NAMED]
    ]
    if named:
        message += f" Largest: {', '.join(named)}."
    message += (
        " To fit, remove images or save them smaller (resized to the training resolution, as"
        ' JPEG or WebP), move a dataset to S3 or Hugging Face (type "aws" or "huggingface",'
        " which are not uploaded), or run the job on a self-hosted worker instead."
    )
    return message


def _folder_name(folder: FolderScan) -> str:
    return " / ".join(folder.folder.dataset_ids)
