"""Rewriting dataloader paths to the extracted layout (no file system)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cloudtuner.packaging import errors, rewrite

CONFIG: list[dict[str, Any]] = [
    {
        "id": "training-images",
        "type": "local",
        "dataset_type": "image",
        "instance_data_dir": "/data/datasets/my-dataset",
        "caption_strategy": "textfile",
        "resolution": 1024,
        "cache_dir_vae": "/data/cache/vae/flux",
    },
    {
        "id": "training-images-512",
        "type": "local",
        "instance_data_dir": "/data/datasets/my-dataset",
        "resolution": 512,
        "cache_dir_vae": "/data/cache/vae/flux",
    },
    {"id": "other", "type": "local", "instance_data_dir": "/elsewhere/my-dataset"},
    {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    {"id": "s3-images", "type": "aws", "aws_bucket_name": "bucket", "cache_dir_vae": "/data/cache/s3"},
    {"id": "old", "type": "local", "instance_data_dir": "/data/old", "disabled": True, "cache_dir_vae": "/x"},
]


def test_local_paths_point_into_the_extracted_layout() -> None:
    rewritten = rewrite.rewrite_dataloader_config(CONFIG, "/src/datasets")
    images, images_512, other, text, s3, old = rewritten
    assert images["instance_data_dir"] == "/src/datasets/datasets/training-images"
    assert images["cache_dir_vae"] == "/src/datasets/cache/training-images/vae"
    assert images_512["instance_data_dir"] == "/src/datasets/datasets/training-images"
    assert images_512["cache_dir_vae"] == "/src/datasets/cache/training-images-512/vae"
    assert other["instance_data_dir"] == "/src/datasets/datasets/other"
    assert "cache_dir_vae" not in other
    assert text["cache_dir"] == "/src/datasets/cache/text-embeds"
    assert "instance_data_dir" not in text
    assert s3 == CONFIG[4]
    assert old == CONFIG[5]
    assert images["resolution"] == 1024
    assert images["caption_strategy"] == "textfile"


def test_the_input_is_not_modified_and_the_result_shares_nothing_with_it() -> None:
    config = copy.deepcopy(CONFIG)
    config[0]["nested"] = {"list": [1, 2]}
    before = copy.deepcopy(config)
    rewritten = rewrite.rewrite_dataloader_config(config, "/staging/job-1/")
    assert config == before
    rewritten[0]["nested"]["list"].append(3)
    assert config[0]["nested"]["list"] == [1, 2]


def test_the_root_is_normalised() -> None:
    rewritten = rewrite.rewrite_dataloader_config(CONFIG[:1], "/staging//job-1/./")
    assert rewritten[0]["instance_data_dir"] == "/staging/job-1/datasets/training-images"


def test_two_folders_with_the_same_name_get_different_paths() -> None:
    config = [
        {"id": "faces", "type": "local", "instance_data_dir": "/a/images"},
        {"id": "Faces", "type": "local", "instance_data_dir": "/b/images"},
    ]
    first, second = rewrite.rewrite_dataloader_config(config, "/root")
    assert first["instance_data_dir"] == "/root/datasets/faces"
    assert second["instance_data_dir"] == "/root/datasets/Faces-2"


@pytest.mark.parametrize("root", ["", "   ", "/a\x00b"])
def test_an_unusable_extract_root_is_refused(root: str) -> None:
    with pytest.raises(errors.InvalidExtractRootError):
        rewrite.rewrite_dataloader_config(CONFIG, root)
