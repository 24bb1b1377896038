"""Building archives from real folders: layout, compression, determinism, atomicity, limits."""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from cloudtuner.packaging import (
    REPLICATE_UPLOAD_LIMIT_BYTES,
    archive,
    build_archive,
    check_upload_limit,
    errors,
    hash_package,
    layout,
    rewrite_dataloader_config,
    scan_datasets,
    summarize_scan,
    walk,
)
from tests.integration.packaging.helpers import (
    create_with_raw_name,
    files_left_in,
    local_dataset,
    make_files,
    run_with_deadline,
)

IMAGE = bytes(range(256)) * 40  # 10 KiB, stands in for a compressed image


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_files(
        tmp_path / "datasets" / "my-dataset",
        {
            "cat_01.jpg": IMAGE,
            "cat_01.txt": "a photo of a cat, " * 20,
            "cat_02.png": IMAGE[::-1],
            "nested/deeper/cat_03.webp": IMAGE[:5000],
            ".env": "HF_TOKEN=hf_secret",
        },
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _build(config: list[dict[str, Any]], destination: Path, **options: Any) -> archive.BuiltArchive:
    return build_archive(scan_datasets(config), destination, **options)


def test_the_archive_holds_each_dataset_under_its_own_folder(dataset: Path, out: Path) -> None:
    built = _build([local_dataset("training-images", dataset)], out / "job.zip")
    assert built.path == out / "job.zip"
    assert built.file_count == 4
    assert built.size_bytes == (out / "job.zip").stat().st_size
    with zipfile.ZipFile(built.path) as opened:
        assert opened.testzip() is None
        assert opened.namelist() == [
            "datasets/training-images/cat_01.jpg",
            "datasets/training-images/cat_01.txt",
            "datasets/training-images/cat_02.png",
            "datasets/training-images/nested/deeper/cat_03.webp",
        ]
        assert opened.read("datasets/training-images/cat_01.jpg") == IMAGE
        for info in opened.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644


def test_images_are_stored_and_text_is_deflated(dataset: Path, out: Path) -> None:
    built = _build([local_dataset("ds", dataset)], out / "job.zip")
    with zipfile.ZipFile(built.path) as opened:
        methods = {info.filename.rsplit("/", 1)[-1]: info.compress_type for info in opened.infolist()}
        caption = opened.getinfo("datasets/ds/cat_01.txt")
    assert methods == {
        "cat_01.jpg": zipfile.ZIP_STORED,
        "cat_01.txt": zipfile.ZIP_DEFLATED,
        "cat_02.png": zipfile.ZIP_STORED,
        "cat_03.webp": zipfile.ZIP_STORED,
    }
    assert caption.compress_size < caption.file_size


def test_two_datasets_with_the_same_folder_name_do_not_collide(tmp_path: Path, out: Path) -> None:
    first = make_files(tmp_path / "a" / "images", {"same.jpg": b"from a"})
    second = make_files(tmp_path / "b" / "images", {"same.jpg": b"from b"})
    third = make_files(tmp_path / "c" / "images", {"same.jpg": b"from c"})
    config = [local_dataset("my data", first), local_dataset("my_data", second), local_dataset("My-Data", third)]
    built = _build(config, out / "job.zip")
    with zipfile.ZipFile(built.path) as opened:
        assert opened.read("datasets/my_data/same.jpg") == b"from a"
        assert opened.read("datasets/my_data-2/same.jpg") == b"from b"
        assert opened.read("datasets/My-Data/same.jpg") == b"from c"


def test_datasets_sharing_a_folder_are_packaged_once(dataset: Path, out: Path) -> None:
    config = [local_dataset("subject-1024", dataset), local_dataset("subject-512", dataset, resolution=512)]
    scan = scan_datasets(config)
    summary = summarize_scan(scan)
    assert summary.file_count == 4
    assert summary.datasets[1].same_files_as == "subject-1024"
    built = build_archive(scan, out / "job.zip")
    with zipfile.ZipFile(built.path) as opened:
        assert len(opened.namelist()) == 4


def test_extracted_archive_matches_the_rewritten_config(dataset: Path, out: Path, tmp_path: Path) -> None:
    config = [local_dataset("training-images", dataset, cache_dir_vae="/cache/vae")]
    built = _build(config, out / "job.zip")
    root = tmp_path / "trainer"
    with zipfile.ZipFile(built.path) as opened:
        opened.extractall(root)
    rewritten = rewrite_dataloader_config(config, str(root))
    extracted = Path(rewritten[0]["instance_data_dir"])
    assert (extracted / "cat_01.jpg").read_bytes() == IMAGE
    assert (extracted / "nested" / "deeper" / "cat_03.webp").read_bytes() == IMAGE[:5000]
    assert not (extracted / ".env").exists()
    assert rewritten[0]["cache_dir_vae"] == str(root / "cache" / "training-images" / "vae")


def test_the_same_files_give_a_byte_identical_archive_and_hash(dataset: Path, out: Path) -> None:
    config = [local_dataset("ds", dataset)]
    first = _build(config, out / "first.zip")
    second = _build(config, out / "second.zip")
    assert first.sha256 == second.sha256
    assert (out / "first.zip").read_bytes() == (out / "second.zip").read_bytes()
    assert first.sha256 == hashlib.sha256((out / "first.zip").read_bytes()).hexdigest()
    assert hash_package(scan_datasets(config)) == first.sha256
    assert files_left_in(out) == ["first.zip", "second.zip"]


def test_the_archive_bytes_are_pinned(tmp_path: Path, out: Path) -> None:
    """Stored members only, so no zlib version is involved: this hash never changes.

    It is the hash the ``zipfile``-based writer gave the same files, so a provider still holding
    an upload made before keeps matching. A change here breaks upload reuse: update the
    fingerprint's ``ARCHIVE_FORMAT_VERSION`` with it.
    """
    folder = make_files(
        tmp_path / "golden",
        {
            "cat_01.jpg": bytes(range(256)) * 40,
            "cat_02.png": bytes(range(255, -1, -1)) * 9000,  # spans several stream buffers
            "nested/caf\u00e9.webp": b"\x00" * 70000,
            "empty.jpg": b"",
        },
    )
    scan = scan_datasets([local_dataset("golden set", folder)])
    built = build_archive(scan, out / "golden.zip", durable=False)
    assert built.sha256 == "79a306d96da11d516b16bdc42808cfca6035c2e93f16c79b8b9398840e944f14"
    assert built.size_bytes == 2384882 == scan.estimated_archive_bytes
    assert hash_package(scan) == built.sha256


def test_many_files_and_files_larger_than_the_buffers_round_trip(tmp_path: Path, out: Path) -> None:
    files: dict[str, bytes | str] = {f"img_{index:03d}.jpg": os.urandom(index * 97) for index in range(120)}
    files |= {f"img_{index:03d}.txt": f"caption {index} " * index for index in range(120)}
    files["large.png"] = os.urandom(3 * archive.STREAM_BUFFER_BYTES + 12345)
    files["large.csv"] = "1,2,3\n" * (archive.READ_CHUNK_BYTES // 3)
    folder = make_files(tmp_path / "many", files)
    scan = scan_datasets([local_dataset("many", folder)])
    built = build_archive(scan, out / "many.zip", durable=False)
    assert built.sha256 == hashlib.sha256((out / "many.zip").read_bytes()).hexdigest() == hash_package(scan)
    assert built.size_bytes == (out / "many.zip").stat().st_size
    with zipfile.ZipFile(built.path) as opened:
        assert opened.testzip() is None
        assert len(opened.namelist()) == len(files) == built.file_count
        for name, content in files.items():
            expected = content.encode() if isinstance(content, str) else content
            assert opened.read(f"datasets/many/{name}") == expected


def test_a_write_failure_midway_is_reported_and_cleaned_up(tmp_path: Path, out: Path) -> None:
    folder = make_files(tmp_path / "big", {"a.jpg": os.urandom(2 * archive.STREAM_BUFFER_BYTES), "b.jpg": b"b"})
    scan = scan_datasets([local_dataset("ds", folder)])
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (archive.STREAM_BUFFER_BYTES // 2, limits[1]))  # EFBIG past it
    try:
        with pytest.raises(errors.ArchiveWriteError, match="could not be written: File too large"):
            build_archive(scan, out / "job.zip")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert files_left_in(out) == []


def test_touching_files_changes_the_fingerprint_but_not_the_content_hash(dataset: Path, out: Path) -> None:
    config = [local_dataset("ds", dataset)]
    before = _build(config, out / "before.zip")
    os.utime(dataset / "cat_01.jpg", ns=(1_000_000_000, 1_000_000_000))
    after = _build(config, out / "after.zip")
    assert after.fingerprint != before.fingerprint
    assert after.sha256 == before.sha256


def test_a_changed_file_changes_the_hash_even_with_the_same_size_and_time(dataset: Path, out: Path) -> None:
    config = [local_dataset("ds", dataset)]
    before = _build(config, out / "before.zip")
    image = dataset / "cat_02.png"
    times = image.stat()
    image.write_bytes(b"X" + IMAGE[::-1][1:])
    os.utime(image, ns=(times.st_atime_ns, times.st_mtime_ns))
    after = _build(config, out / "after.zip")
    assert after.fingerprint == before.fingerprint  # the cheap check cannot see this change...
    assert after.sha256 != before.sha256  # ...the content hash does


def test_every_name_in_the_archive_is_a_safe_relative_path(dataset: Path, out: Path, tmp_path: Path) -> None:
    make_files(dataset, {"..\\..\\evil.jpg": b"e", "sub/..\\up.txt": "u", "tab\there.jpg": b"t"})
    create_with_raw_name(dataset, b"bad-\xff.jpg")
    built = _build([local_dataset("../../escape", dataset)], out / "job.zip")
    root = tmp_path / "extract"
    with zipfile.ZipFile(built.path) as opened:
        names = opened.namelist()
        opened.extractall(root)
    assert all(layout.is_safe_member_name(name) for name in names)
    assert all(name.startswith("datasets/escape/") for name in names)
    assert not any("evil" in name or "up.txt" in name or "bad-" in name for name in names)
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())


def test_a_link_inside_the_dataset_is_stored_as_the_target_content(dataset: Path, out: Path) -> None:
    (dataset / "alias.jpg").symlink_to("cat_01.jpg")
    built = _build([local_dataset("ds", dataset)], out / "job.zip")
    with zipfile.ZipFile(built.path) as opened:
        info = opened.getinfo("datasets/ds/alias.jpg")
        assert opened.read(info) == IMAGE
        assert info.external_attr >> 16 == 0o100644


def test_building_through_a_symlink_loop_ends(dataset: Path, out: Path) -> None:
    (dataset / "nested" / "loop").symlink_to("..")
    (dataset / "a").symlink_to("b")
    (dataset / "b").symlink_to("a")
    built = run_with_deadline(lambda: _build([local_dataset("ds", dataset)], out / "job.zip"))
    assert built.file_count == 4


def test_progress_goes_from_zero_to_the_total(dataset: Path, out: Path) -> None:
    calls: list[tuple[int, int]] = []
    built = _build([local_dataset("ds", dataset)], out / "job.zip", progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, built.source_bytes)
    assert calls[-1] == (built.source_bytes, built.source_bytes)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_the_size_prediction_is_exact_for_images_and_an_upper_bound_with_text(dataset: Path, out: Path) -> None:
    images_only = make_files(out.parent / "images-only", {"a.jpg": IMAGE, "b/c.png": IMAGE[:100]})
    scan = scan_datasets([local_dataset("images", images_only)])
    assert build_archive(scan, out / "images.zip").size_bytes == scan.estimated_archive_bytes
    scan = scan_datasets([local_dataset("ds", dataset)])
    built = build_archive(scan, out / "ds.zip")
    assert built.size_bytes <= scan.estimated_archive_bytes
    assert summarize_scan(scan).estimated_archive_bytes == scan.estimated_archive_bytes


def test_over_the_limit_is_refused_before_building(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "big", {"a.jpg": b"x" * 700_000, "b.jpg": b"y" * 500_000})
    scan = scan_datasets([local_dataset("portraits", folder)])
    summary = summarize_scan(scan, upload_limit_bytes=1024 * 1024)
    assert not summary.fits_upload_limit
    assert summary.bytes_over_limit == scan.estimated_archive_bytes - 1024 * 1024
    with pytest.raises(errors.UploadTooLargeError) as caught:
        check_upload_limit(scan, limit_bytes=1024 * 1024, provider_label="Replicate")
    message = str(caught.value)
    assert message.startswith("The packaged datasets are 1.1 MiB, 148.")
    assert "KiB over Replicate's 1 MiB upload limit. Largest: portraits (1.1 MiB)." in message
    check_upload_limit(scan, limit_bytes=REPLICATE_UPLOAD_LIMIT_BYTES, provider_label="Replicate")


def _fail(*_: object) -> NoReturn:
    raise RuntimeError("interrupted")


def test_a_failure_leaves_nothing_behind_and_keeps_an_existing_archive(dataset: Path, out: Path) -> None:
    destination = out / "job.zip"
    destination.write_bytes(b"previous archive")
    scan = scan_datasets([local_dataset("ds", dataset)])
    calls = {"count": 0}

    def fail_midway(done: int, total: int) -> None:
        calls["count"] += 1
        if calls["count"] == 2:
            _fail()

    with pytest.raises(RuntimeError, match="interrupted"):
        build_archive(scan, destination, progress=fail_midway)
    assert files_left_in(out) == ["job.zip"]
    assert destination.read_bytes() == b"previous archive"


def test_a_disk_error_is_reported_and_cleaned_up(dataset: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(_: int) -> NoReturn:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(errors.ArchiveWriteError, match="No space left"):
        _build([local_dataset("ds", dataset)], out / "job.zip", durable=True)
    assert files_left_in(out) == []


@pytest.mark.parametrize("direct_io", [True, False])
def test_durable_and_ordinary_writes_give_the_same_archive(
    dataset: Path, out: Path, monkeypatch: pytest.MonkeyPatch, direct_io: bool
) -> None:
    monkeypatch.setattr(archive, "DIRECT_IO", direct_io)
    monkeypatch.setattr(archive, "WRITE_BACK_BYTES", 4096)  # without direct I/O, write-back starts often
    synced: list[int] = []
    real_fsync = os.fsync

    def record_fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", record_fsync)
    config = [local_dataset("ds", dataset)]
    durable = _build(config, out / "durable.zip", durable=True)
    assert len(synced) == 2  # the archive, then its folder (the rename)
    plain = _build(config, out / "plain.zip")
    assert len(synced) == 2
    assert durable.sha256 == plain.sha256
    assert (out / "durable.zip").read_bytes() == (out / "plain.zip").read_bytes()


def test_files_added_after_the_scan_are_refused(dataset: Path, out: Path) -> None:
    scan = scan_datasets([local_dataset("ds", dataset)])
    (dataset / "late.jpg").write_bytes(b"late")
    with pytest.raises(errors.DatasetChangedError, match="Review the upload summary again"):
        build_archive(scan, out / "job.zip")
    assert files_left_in(out) == []


def test_files_removed_after_the_scan_are_refused(dataset: Path, out: Path) -> None:
    scan = scan_datasets([local_dataset("ds", dataset)])
    (dataset / "cat_02.png").unlink()
    with pytest.raises(errors.DatasetChangedError):
        build_archive(scan, out / "job.zip")
    assert files_left_in(out) == []


def test_a_file_that_changes_before_packaging_reaches_it_is_refused(dataset: Path, out: Path) -> None:
    scan = scan_datasets([local_dataset("ds", dataset)])

    def grow_a_later_file(done: int, total: int) -> None:
        if done == 0:
            with (dataset / "nested" / "deeper" / "cat_03.webp").open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(errors.DatasetChangedError, match="changed after the upload summary was made"):
        build_archive(scan, out / "job.zip", progress=grow_a_later_file)
    assert files_left_in(out) == []


def test_a_file_that_grows_while_it_is_read_is_refused(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_files(tmp_path / "ds", {"big.jpg": b"b" * (3 * archive.READ_CHUNK_BYTES)})
    scan = scan_datasets([local_dataset("ds", folder)])
    monkeypatch.setattr(archive, "PROGRESS_STEP_BYTES", 1)
    appended: list[int] = []

    def append_once(done: int, total: int) -> None:
        if 0 < done < total and not appended:  # after the first chunk was read, before the rest
            appended.append(done)
            with (folder / "big.jpg").open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(errors.DatasetChangedError, match=r"big\.jpg in dataset 'ds' changed"):
        build_archive(scan, out / "job.zip", progress=append_once)
    assert appended
    assert files_left_in(out) == []


def test_the_archive_cannot_be_written_inside_a_dataset_or_a_missing_folder(dataset: Path, tmp_path: Path) -> None:
    scan = scan_datasets([local_dataset("ds", dataset)])
    with pytest.raises(errors.InvalidArchivePathError, match="inside the folder of dataset 'ds'"):
        build_archive(scan, dataset / "nested" / "job.zip")
    with pytest.raises(errors.InvalidArchivePathError, match="does not exist"):
        build_archive(scan, tmp_path / "missing" / "job.zip")


def test_nothing_to_package(tmp_path: Path) -> None:
    scan = scan_datasets([{"id": "hub", "type": "huggingface"}])
    with pytest.raises(errors.NothingToPackageError):
        build_archive(scan, tmp_path / "job.zip")
    with pytest.raises(errors.NothingToPackageError):
        hash_package(scan)


@pytest.mark.parametrize("size_bytes", [0, 100, archive.PREFETCH_BYTES // 3, 2 * archive.PREFETCH_BYTES])
def test_read_ahead_keeps_the_order_and_looks_a_bounded_way_ahead(tmp_path: Path, size_bytes: int) -> None:
    pulled: list[int] = []

    def files() -> Iterator[walk.WalkedFile]:
        for index in range(300):
            pulled.append(index)
            yield walk.WalkedFile((f"f{index}.jpg",), str(tmp_path / f"missing-{index}"), size_bytes, 0, "jpg", 0)

    seen = []
    for item in archive._read_ahead(files()):
        index = int(item.relative_parts[0][1:-4])
        assert len(pulled) - 1 - index <= archive.PREFETCH_FILES  # files looked up ahead of this one
        seen.append(index)
    assert seen == list(range(300))
