"""Archive layout: folder names, de-duplication, member names, the plan (no file system)."""

from __future__ import annotations

from typing import Any

import pytest

from cloudtuner.packaging import errors, layout


@pytest.mark.parametrize(
    ("dataset_id", "expected"),
    [
        ("training-images", "training-images"),
        ("My Dataset (v2)", "My_Dataset_v2"),
        ("../../etc", "etc"),
        ("/abs/path", "abs_path"),
        (".hidden", "hidden"),
        ("..", "dataset"),
        ("", "dataset"),
        ("训练图片", "dataset"),
        ("a\\b", "a_b"),
        ("ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
        ("x" * 100, "x" * layout.MAX_FOLDER_NAME_LENGTH),
    ],
)
def test_dataset_ids_become_plain_folder_names(dataset_id: str, expected: str) -> None:
    assert layout.sanitize_folder_name(dataset_id) == expected


def test_names_are_made_unique_ignoring_case_in_order() -> None:
    assert layout.allocate_unique_names(["a", "A", "a", "b", "a-2"]) == ["a", "A-2", "a-3", "b", "a-2-2"]


def test_member_names_are_relative_and_plain() -> None:
    assert layout.member_name("datasets/x", ("sub", "a.jpg")) == "datasets/x/sub/a.jpg"


@pytest.mark.parametrize("parts", [("..", "etc", "passwd"), ("a\\..\\..\\b",), ("",), ("ok", "."), ("bad\udcff",)])
def test_member_names_refuse_anything_that_could_escape(parts: tuple[str, ...]) -> None:
    with pytest.raises(errors.UnsafeArchiveNameError):
        layout.member_name("datasets/x", parts)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("datasets/x/a.jpg", True),
        ("/etc/passwd", False),
        ("datasets/../../etc/passwd", False),
        ("datasets/x/../a.jpg", False),
        ("datasets//a.jpg", False),
        ("datasets/./a.jpg", False),
        ("datasets/x\\..\\a.jpg", False),
        ("C:/windows/a.jpg", False),
        ("datasets/x/a\x00.jpg", False),
        ("", False),
    ],
)
def test_safe_member_name_check(name: str, safe: bool) -> None:
    assert layout.is_safe_member_name(name) is safe


def test_source_dirs_are_normalised_without_touching_the_disk() -> None:
    assert layout.normalise_source_dir("/data/x/../y/") == "/data/y"
    assert layout.normalise_source_dir("images", base_dir="/jobs/1") == "/jobs/1/images"


def _local(dataset_id: str, path: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": dataset_id, "type": "local", "dataset_type": "image", **extra}
    if path is not None:
        entry["instance_data_dir"] = path
    return entry


def test_plan_gives_colliding_folder_names_distinct_archive_folders() -> None:
    planned = layout.plan_dataset_layout(
        [_local("images", "/data/a/images"), _local("Images", "/data/b/images"), _local("images!", "/c")]
    )
    assert [folder.archive_folder for folder in planned.folders] == [
        "datasets/images",
        "datasets/Images-2",
        "datasets/images-3",
    ]


def test_plan_shares_one_folder_between_datasets_with_the_same_path() -> None:
    planned = layout.plan_dataset_layout(
        [_local("subject-512", "/data/subject"), _local("subject-1024", "/data/subject/")]
    )
    assert len(planned.folders) == 1
    assert planned.folders[0].dataset_ids == ("subject-512", "subject-1024")
    first, second = planned.datasets
    assert first.archive_folder == second.archive_folder == "datasets/subject-512"
    assert first.same_files_as is None
    assert second.same_files_as == "subject-512"
    assert first.cache_folder != second.cache_folder


def test_plan_ignores_other_types_and_disabled_entries_and_only_caches_embed_datasets() -> None:
    planned = layout.plan_dataset_layout(
        [
            {"id": "s3", "type": "aws", "aws_bucket_name": "b"},
            {"id": "hub", "type": "huggingface", "dataset_name": "x/y"},
            _local("off", "/data/off", disabled=True),
            _local("images", "/data/images"),
            {"id": "text-cache", "type": "local", "dataset_type": "text_embeds", "cache_dir": "c"},
        ]
    )
    assert [dataset.dataset_id for dataset in planned.datasets] == ["images", "text-cache"]
    assert [dataset.index for dataset in planned.datasets] == [3, 4]
    cache = planned.datasets[1]
    assert cache.source_dir is None
    assert cache.archive_folder is None
    assert cache.cache_folder == "cache/text-cache"
    assert [folder.source_dir for folder in planned.folders] == ["/data/images"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"id": "x"}, "list"),
        ("not a list", "list"),
        (["text"], "#1"),
        ([{"type": "local", "instance_data_dir": "/d"}], '"id"'),
        ([{"id": "  ", "type": "local", "instance_data_dir": "/d"}], '"id"'),
        ([_local("a", "/d1"), _local("a", "/d2")], "unique"),
        ([_local("a")], "instance_data_dir"),
        ([_local("a", "")], "instance_data_dir"),
        ([_local("a", "/d\x00")], "NUL"),
    ],
)
def test_plan_refuses_configs_it_cannot_package(config: Any, fragment: str) -> None:
    with pytest.raises(errors.InvalidDatasetConfigError) as caught:
        layout.plan_dataset_layout(config)
    assert fragment in str(caught.value)
    assert caught.value.code == "invalid_dataset_config"
