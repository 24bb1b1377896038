"""Size formatting, archive size prediction, the upload summary and the limit check (no I/O)."""

from __future__ import annotations

import pytest

from cloudtuner.packaging import errors, layout, sizes, summary
from cloudtuner.packaging.scan import FolderScan, PackageScan
from cloudtuner.schemas.uploads import ExcludedPath, ExclusionReason

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("size_bytes", "shown"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (100 * MIB, "100 MiB"),
        (int(142.3 * MIB), "142.3 MiB"),
        (int(42.3 * MIB), "42.3 MiB"),
        (1024 * MIB - 1, "1.0 GiB"),
        (3 * 1024 * MIB, "3 GiB"),
        (5 * 1024**4, "5 TiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_format_size(size_bytes: int, shown: str) -> None:
    assert sizes.format_size(size_bytes) == shown


def test_stored_entries_are_predicted_exactly_and_compressed_ones_bounded() -> None:
    # local header 30 + name, data, descriptor 16, central entry 46 + name
    assert sizes.estimate_entry_bytes(10, 1000, compressed=False) == 30 + 10 + 1000 + 16 + 46 + 10
    assert sizes.estimate_entry_bytes(10, 1000, compressed=True) > sizes.estimate_entry_bytes(
        10, 1000, compressed=False
    )
    assert sizes.deflate_bound(0) == 7
    assert sizes.estimate_archive_bytes(0, 0) == 22


def test_large_archives_include_zip64_records_in_the_prediction() -> None:
    big = 3 * 1024 * MIB
    entry = sizes.estimate_entry_bytes(10, big, compressed=False)
    assert entry == 30 + 10 + 20 + big + 24 + 46 + 10 + 20
    assert sizes.estimate_archive_bytes(1, entry) == entry + 22 + 12 + 76
    assert sizes.estimate_archive_bytes(70_000, 70_000 * 100) == 70_000 * 100 + 22 + 76


def test_the_over_limit_message_gives_sizes_the_overage_the_largest_datasets_and_fixes() -> None:
    message = summary.upload_too_large_message(
        archive_bytes=int(142.3 * MIB),
        limit_bytes=100 * MIB,
        provider_label="Replicate",
        largest_datasets=[("portraits", 120 * MIB), ("styles", 20 * MIB), ("a", 2), ("b", 1)],
    )
    assert message.startswith("The packaged datasets are 142.3 MiB, 42.3 MiB over Replicate's 100 MiB upload limit.")
    assert "portraits (120 MiB), styles (20 MiB), a (2 B)." in message
    assert "b (1 B)" not in message
    assert "self-hosted worker" in message
    assert "resized" in message


def test_bytes_over_limit() -> None:
    assert summary.bytes_over_limit(150, 100) == 50
    assert summary.bytes_over_limit(100, 100) == 0
    assert summary.bytes_over_limit(10**12, None) == 0


def _scan(total_bytes: int) -> PackageScan:
    folder = layout.SourceFolder("/data/portraits", "datasets/portraits", ("portraits", "portraits-512"))
    entries_bytes = sizes.estimate_entry_bytes(30, total_bytes, compressed=False)
    folder_scan = FolderScan(
        folder=folder,
        file_count=1,
        total_bytes=total_bytes,
        image_count=1,
        images_by_extension={"jpg": 1},
        captioned_images=1,
        excluded=(ExcludedPath(path=".env", reason=ExclusionReason.ENVIRONMENT_FILE, detail="d"),),
        excluded_count=3,
        entries_bytes=entries_bytes,
        fingerprint="f" * 64,
    )
    planned = layout.DatasetLayout(
        datasets=(
            layout.LocalDataset(0, "portraits", "image", "textfile", "/data/portraits", "datasets/portraits",
                                "cache/portraits", None),
            layout.LocalDataset(1, "portraits-512", "image", "filename", "/data/portraits", "datasets/portraits",
                                "cache/portraits-512", "portraits"),
        ),
        folders=(folder,),
    )  # fmt: skip
    return PackageScan(layout=planned, folders=(folder_scan,), fingerprint="e" * 64)


def test_the_summary_counts_shared_folders_once_and_measures_the_limit() -> None:
    result = summary.summarize_scan(_scan(150 * MIB), upload_limit_bytes=100 * MIB)
    assert [dataset.dataset_id for dataset in result.datasets] == ["portraits", "portraits-512"]
    first, second = result.datasets
    assert first.captions_found == 1
    assert second.captions_found is None  # caption_strategy "filename"
    assert second.same_files_as == "portraits"
    assert result.file_count == 1
    assert result.total_bytes == 150 * MIB
    assert result.excluded_count == 3
    assert first.excluded[0].reason is ExclusionReason.ENVIRONMENT_FILE
    assert result.captions_found == 1
    assert not result.fits_upload_limit
    assert result.bytes_over_limit == result.estimated_archive_bytes - 100 * MIB
    assert result.fingerprint == "e" * 64
    assert result.model_dump(mode="json")["datasets"][0]["excluded"][0]["reason"] == "environment_file"


def test_the_summary_without_a_limit_always_fits() -> None:
    result = summary.summarize_scan(_scan(150 * MIB))
    assert result.fits_upload_limit
    assert result.bytes_over_limit == 0
    assert result.upload_limit_bytes is None


def test_check_upload_limit_refuses_before_building() -> None:
    with pytest.raises(errors.UploadTooLargeError) as caught:
        summary.check_upload_limit(_scan(150 * MIB), limit_bytes=100 * MIB, provider_label="Replicate")
    assert caught.value.code == "upload_too_large"
    assert "over Replicate's 100 MiB upload limit" in str(caught.value)
    assert "portraits / portraits-512 (150 MiB)" in str(caught.value)
    summary.check_upload_limit(_scan(50 * MIB), limit_bytes=100 * MIB, provider_label="Replicate")
    summary.check_upload_limit(_scan(500 * MIB), limit_bytes=None, provider_label="worker")


def test_check_archive_size() -> None:
    with pytest.raises(errors.UploadTooLargeError, match=r"101 MiB, 1 MiB over Replicate's 100 MiB"):
        summary.check_archive_size(101 * MIB, limit_bytes=100 * MIB, provider_label="Replicate")
    summary.check_archive_size(100 * MIB, limit_bytes=100 * MIB, provider_label="Replicate")
