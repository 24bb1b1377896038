"""Scanning real dataset folders: counts, exclusions with reasons, symlinks, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cloudtuner.packaging import errors, scan_datasets, summarize_scan
from cloudtuner.schemas.uploads import ExclusionReason as R
from cloudtuner.schemas.uploads import UploadSummary
from tests.integration.packaging.helpers import (
    create_with_raw_name,
    local_dataset,
    make_files,
    run_with_deadline,
)

running_as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")


def _summary(*datasets: dict[str, object], max_listed: int = 100) -> UploadSummary:
    return summarize_scan(scan_datasets(list(datasets), max_listed_exclusions=max_listed))


def _reasons(summary: UploadSummary) -> dict[str, R]:
    return {excluded.path: excluded.reason for excluded in summary.datasets[0].excluded}


def test_counts_files_bytes_images_and_captions(tmp_path: Path) -> None:
    folder = make_files(
        tmp_path / "ds",
        {
            "a.jpg": b"j" * 100,
            "a.txt": "a cat",
            "b.png": b"p" * 50,
            "sub/c.webp": b"w" * 10,
            "sub/c.txt": "a dog",
            "sub/C.JPG": b"J" * 5,
            "notes.md": "hello",
        },
    )
    summary = _summary(local_dataset("training-images", folder))
    dataset = summary.datasets[0]
    assert dataset.dataset_id == "training-images"
    assert dataset.path == str(folder)
    assert dataset.archive_folder == "datasets/training-images"
    assert dataset.file_count == 7
    assert dataset.total_bytes == 100 + 5 + 50 + 10 + 5 + 5 + 5
    assert dataset.image_count == 4
    assert dataset.images_by_extension == {"jpg": 2, "png": 1, "webp": 1}
    assert dataset.captions_found == 2
    assert dataset.excluded_count == 0
    assert summary.file_count == 7
    assert summary.captions_found == 2


def test_captions_are_not_counted_for_other_caption_strategies(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "a.txt": "a cat"})
    summary = _summary(local_dataset("ds", folder, caption_strategy="filename"))
    assert summary.datasets[0].captions_found is None
    assert summary.datasets[0].file_count == 2


def test_sensitive_and_hidden_files_are_excluded_with_reasons(tmp_path: Path) -> None:
    folder = make_files(
        tmp_path / "ds",
        {
            "a.jpg": b"j",
            ".env": "REPLICATE_API_TOKEN=r8_x",
            ".env.local": "X=1",
            ".git/config": "[core]",
            ".ssh/id_rsa": "key",
            ".aws/credentials": "[default]",
            "credentials.json": "{}",
            "server.pem": "-----BEGIN",
            "keys/id_ed25519": "key",
            "client_secret.json": "{}",
            ".DS_Store": "x",
            ".cache/thumb.jpg": b"t",
            ".netrc": "machine x",
            "sub/.env.production": "X=1",
        },
    )
    summary = _summary(local_dataset("ds", folder))
    assert _reasons(summary) == {
        ".DS_Store": R.HIDDEN,
        ".aws": R.CREDENTIALS,
        ".cache": R.HIDDEN,
        ".env": R.ENVIRONMENT_FILE,
        ".env.local": R.ENVIRONMENT_FILE,
        ".git": R.VERSION_CONTROL,
        ".netrc": R.CREDENTIALS,
        ".ssh": R.CREDENTIALS,
        "client_secret.json": R.SECRET_NAME,
        "credentials.json": R.CREDENTIALS,
        "keys/id_ed25519": R.PRIVATE_KEY,
        "server.pem": R.PRIVATE_KEY,
        "sub/.env.production": R.ENVIRONMENT_FILE,
    }
    dataset = summary.datasets[0]
    assert dataset.file_count == 1
    assert dataset.excluded_count == 13
    folders = {excluded.path for excluded in dataset.excluded if excluded.is_directory}
    assert folders == {".aws", ".cache", ".git", ".ssh"}
    assert all(excluded.detail for excluded in dataset.excluded)


def test_the_excluded_list_is_capped_but_the_count_is_complete(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {f".hidden-{number:03}": "x" for number in range(30)})
    summary = _summary(local_dataset("ds", folder), max_listed=10)
    assert len(summary.datasets[0].excluded) == 10
    assert summary.datasets[0].excluded_count == 30
    assert summary.excluded_count == 30


def test_symlinks_that_leave_the_dataset_are_excluded(tmp_path: Path) -> None:
    outside = make_files(tmp_path / "outside", {"private.jpg": b"private", "more/x.jpg": b"x"})
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "real/b.jpg": b"b"})
    (folder / "absolute.jpg").symlink_to(outside / "private.jpg")
    (folder / "relative.jpg").symlink_to(Path("..") / "outside" / "private.jpg")
    (folder / "outside_folder").symlink_to(outside / "more")
    (folder / "real" / "escape").symlink_to(Path("..") / "..")
    (folder / "inside.jpg").symlink_to(Path("real") / "b.jpg")
    summary = _summary(local_dataset("ds", folder))
    reasons = _reasons(summary)
    assert reasons["absolute.jpg"] is R.SYMLINK_OUTSIDE_DATASET
    assert reasons["relative.jpg"] is R.SYMLINK_OUTSIDE_DATASET
    assert reasons["outside_folder"] is R.SYMLINK_OUTSIDE_DATASET
    assert reasons["real/escape"] is R.SYMLINK_OUTSIDE_DATASET
    assert "inside.jpg" not in reasons
    assert summary.datasets[0].file_count == 3  # a.jpg, inside.jpg, real/b.jpg


def test_symlink_loops_are_excluded_and_the_scan_ends(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "sub/b.jpg": b"b", "other/c.jpg": b"c"})
    (folder / "loop_a").symlink_to("loop_b")
    (folder / "loop_b").symlink_to("loop_a")
    (folder / "self").symlink_to("self")
    (folder / "sub" / "parent").symlink_to("..")
    (folder / "sub" / "here").symlink_to(".")
    (folder / "other" / "to_sub").symlink_to(Path("..") / "sub")
    (folder / "other" / "to_sub_again").symlink_to(Path("..") / "sub")
    summary = run_with_deadline(lambda: _summary(local_dataset("ds", folder)))
    reasons = _reasons(summary)
    for looping in ("loop_a", "loop_b", "self", "sub/parent", "sub/here", "other/to_sub_again"):
        assert reasons[looping] is R.SYMLINK_LOOP, looping
    # other/to_sub is followed once: its content appears under the link's name.
    assert summary.datasets[0].file_count == 4  # a.jpg, other/c.jpg, other/to_sub/b.jpg, sub/b.jpg


def test_links_into_excluded_places_and_broken_links_are_excluded(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", ".env": "SECRET=1", ".git/HEAD": "ref"})
    (folder / "innocent.jpg").symlink_to(".env")
    (folder / "photos").symlink_to(".git")
    (folder / "gone.jpg").symlink_to("missing.jpg")
    reasons = _reasons(_summary(local_dataset("ds", folder)))
    assert reasons["innocent.jpg"] is R.ENVIRONMENT_FILE
    assert reasons["photos"] is R.VERSION_CONTROL
    assert reasons["gone.jpg"] is R.BROKEN_SYMLINK


def test_named_pipes_are_excluded_without_being_opened(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j"})
    os.mkfifo(folder / "pipe.txt")
    summary = run_with_deadline(lambda: _summary(local_dataset("ds", folder)))
    assert _reasons(summary) == {"pipe.txt": R.NOT_A_REGULAR_FILE}


def test_names_that_cannot_be_stored_safely_are_excluded(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "..\\..\\evil.jpg": b"e", "line\nbreak.jpg": b"n"})
    create_with_raw_name(folder, b"latin1-\xe9t\xe9.jpg")
    summary = _summary(local_dataset("ds", folder))
    reasons = _reasons(summary)
    assert reasons == {
        "..\\..\\evil.jpg": R.UNSAFE_NAME,
        "latin1-\\xe9t\\xe9.jpg": R.UNSAFE_NAME,
        "line\\x0abreak.jpg": R.UNSAFE_NAME,
    }
    summary.model_dump_json()  # every shown path is valid UTF-8


def test_relative_paths_are_resolved_against_base_dir(tmp_path: Path) -> None:
    make_files(tmp_path / "job" / "images", {"a.jpg": b"j"})
    scan = scan_datasets([local_dataset("ds", Path("images"))], base_dir=str(tmp_path / "job"))
    assert scan.file_count == 1
    assert scan.folders[0].folder.source_dir == str(tmp_path / "job" / "images")


def test_a_missing_folder_names_the_dataset_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(errors.DatasetNotFoundError) as caught:
        scan_datasets([local_dataset("training-images", missing)])
    assert caught.value.code == "dataset_not_found"
    assert "'training-images'" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_a_file_instead_of_a_folder_is_refused(tmp_path: Path) -> None:
    file_path = tmp_path / "images.zip"
    file_path.write_bytes(b"zip")
    with pytest.raises(errors.DatasetNotADirectoryError, match="'ds'"):
        scan_datasets([local_dataset("ds", file_path)])


@running_as_root
def test_an_unreadable_folder_is_refused(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j"})
    folder.chmod(0)
    try:
        with pytest.raises(errors.DatasetUnreadableError, match="'ds'"):
            scan_datasets([local_dataset("ds", folder)])
    finally:
        folder.chmod(0o755)


@running_as_root
def test_unreadable_files_and_subfolders_are_excluded(tmp_path: Path) -> None:
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "locked.jpg": b"l", "closed/b.jpg": b"b"})
    (folder / "locked.jpg").chmod(0)
    (folder / "closed").chmod(0)
    try:
        reasons = _reasons(_summary(local_dataset("ds", folder)))
    finally:
        (folder / "closed").chmod(0o755)
    assert reasons == {"closed": R.UNREADABLE, "locked.jpg": R.UNREADABLE}


def test_a_config_without_local_datasets_gives_an_empty_scan(tmp_path: Path) -> None:
    scan = scan_datasets([{"id": "s3", "type": "aws"}, local_dataset("off", tmp_path / "nope", disabled=True)])
    assert scan.folders == ()
    summary = summarize_scan(scan, upload_limit_bytes=100)
    assert summary.datasets == []
    assert summary.fits_upload_limit


def test_permission_errors_are_reported_even_when_running_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads everything, so permission failures are injected where the walker meets them.
    folder = make_files(tmp_path / "ds", {"a.jpg": b"j", "locked.jpg": b"l", "closed/b.jpg": b"b"})
    real_access, real_scandir = os.access, os.scandir

    def access(path: str, mode: int) -> bool:
        return not str(path).endswith("locked.jpg") and real_access(path, mode)

    def scandir(path: str) -> Any:
        if str(path).endswith("closed"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", scandir)
    reasons = _reasons(_summary(local_dataset("ds", folder)))
    assert reasons == {"closed": R.UNREADABLE, "locked.jpg": R.UNREADABLE}

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(errors.DatasetUnreadableError, match="'ds'"):
        scan_datasets([local_dataset("ds", folder)])
