"""Exclusion rules, unsafe names, compression choice: names only, no file system."""

from __future__ import annotations

import zipfile

import pytest

from cloudtuner.packaging import rules
from cloudtuner.schemas.uploads import ExclusionReason as R


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".env", R.ENVIRONMENT_FILE),
        (".env.production", R.ENVIRONMENT_FILE),
        (".ENV.local", R.ENVIRONMENT_FILE),
        ("prod.env", R.ENVIRONMENT_FILE),
        (".envrc", R.ENVIRONMENT_FILE),
        (".git", R.VERSION_CONTROL),
        ("server.pem", R.PRIVATE_KEY),
        ("tls.key", R.PRIVATE_KEY),
        ("bundle.p12", R.PRIVATE_KEY),
        ("cert.PFX", R.PRIVATE_KEY),
        ("id_rsa", R.PRIVATE_KEY),
        ("id_rsa.pub", R.PRIVATE_KEY),
        ("id_ed25519", R.PRIVATE_KEY),
        ("credentials", R.CREDENTIALS),
        ("credentials.json", R.CREDENTIALS),
        ("gcp.credentials", R.CREDENTIALS),
        (".netrc", R.CREDENTIALS),
        (".npmrc", R.CREDENTIALS),
        (".pypirc", R.CREDENTIALS),
        ("terraform.tfstate", R.CREDENTIALS),
        ("client_secret.json", R.SECRET_NAME),
        ("secrets.yaml", R.SECRET_NAME),
        ("db_password.txt", R.SECRET_NAME),
        ("my-api-key.txt", R.SECRET_NAME),
        ("aws_access_key.csv", R.SECRET_NAME),
        (".DS_Store", R.HIDDEN),
        (".hidden.jpg", R.HIDDEN),
    ],
)
def test_sensitive_and_hidden_files_are_excluded_with_their_reason(name: str, reason: R) -> None:
    exclusion = rules.exclusion_for_file(name)
    assert exclusion is not None
    assert exclusion.reason is reason
    assert exclusion.detail


@pytest.mark.parametrize(
    "name", ["cat_01.jpg", "cat_01.txt", "metadata.json", "README", "tokenizer.json", "photo.PNG", "a.b.webp"]
)
def test_ordinary_dataset_files_are_kept(name: str) -> None:
    assert rules.exclusion_for_file(name) is None


@pytest.mark.parametrize("name", ["secret_garden.jpg", "password_reset_screen.png", "credentials.webp", "id_rsa.jpg"])
def test_images_are_exempt_from_the_secret_name_patterns(name: str) -> None:
    assert rules.exclusion_for_file(name) is None


def test_a_caption_beside_an_image_is_exempt_but_a_lone_secret_text_is_not() -> None:
    assert rules.exclusion_for_file("secret_garden.txt", is_caption_of_sibling_image=True) is None
    lone = rules.exclusion_for_file("secret_garden.txt")
    assert lone is not None
    assert lone.reason is R.SECRET_NAME


def test_hidden_and_environment_rules_apply_even_to_images_and_captions() -> None:
    hidden = rules.exclusion_for_file(".cat.jpg")
    assert hidden is not None
    assert hidden.reason is R.HIDDEN
    env = rules.exclusion_for_file(".env", is_caption_of_sibling_image=True)
    assert env is not None
    assert env.reason is R.ENVIRONMENT_FILE


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".git", R.VERSION_CONTROL),
        (".hg", R.VERSION_CONTROL),
        (".svn", R.VERSION_CONTROL),
        (".ssh", R.CREDENTIALS),
        (".aws", R.CREDENTIALS),
        (".gnupg", R.CREDENTIALS),
        ("secrets", R.CREDENTIALS),
        (".cache", R.HIDDEN),
        (".ipynb_checkpoints", R.HIDDEN),
    ],
)
def test_sensitive_and_hidden_folders_are_excluded(name: str, reason: R) -> None:
    exclusion = rules.exclusion_for_folder(name)
    assert exclusion is not None
    assert exclusion.reason is reason


@pytest.mark.parametrize("name", ["images", "secret_garden_photos", "subject-1", "__MACOSX"])
def test_ordinary_folders_are_walked(name: str) -> None:
    assert rules.exclusion_for_folder(name) is None


def test_a_link_target_is_checked_along_its_whole_path() -> None:
    in_git = rules.exclusion_for_path((".git", "objects", "ab"), is_directory=False)
    assert in_git is not None
    assert in_git.reason is R.VERSION_CONTROL
    env = rules.exclusion_for_path(("config", ".env"), is_directory=False)
    assert env is not None
    assert env.reason is R.ENVIRONMENT_FILE
    assert rules.exclusion_for_path(("photos", "cat.jpg"), is_directory=False) is None
    assert rules.exclusion_for_path(("photos",), is_directory=True) is None
    assert rules.exclusion_for_path((), is_directory=True) is None


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a\\..\\b.jpg", "a/b", "line\nbreak.jpg", "tab\tname.txt", "bell\x07", "undecodable\udcff.jpg"],
)
def test_names_that_cannot_be_stored_safely_are_unsafe(name: str) -> None:
    assert rules.unsafe_name_detail(name) is not None


def test_overlong_names_are_unsafe_and_unicode_names_are_fine() -> None:
    assert rules.unsafe_name_detail("x" * 256) is not None
    assert rules.unsafe_name_detail("猫の写真.jpg") is None
    assert rules.unsafe_name_detail("café: 1.png") is None


def test_printable_path_escapes_undecodable_bytes_and_control_characters() -> None:
    shown = rules.printable_path(["dir", "bad\udcffname\n.jpg"])
    assert shown == "dir/bad\\xffname\\x0a.jpg"
    shown.encode("utf-8")


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("a.jpg", zipfile.ZIP_STORED),
        ("a.JPEG", zipfile.ZIP_STORED),
        ("a.png", zipfile.ZIP_STORED),
        ("a.webp", zipfile.ZIP_STORED),
        ("clip.mp4", zipfile.ZIP_STORED),
        ("weights.safetensors", zipfile.ZIP_STORED),
        ("no_extension", zipfile.ZIP_STORED),
        ("a.txt", zipfile.ZIP_DEFLATED),
        ("meta.jsonl", zipfile.ZIP_DEFLATED),
        ("scan.bmp", zipfile.ZIP_DEFLATED),
        ("scan.tiff", zipfile.ZIP_DEFLATED),
    ],
)
def test_compressed_formats_are_stored_and_text_is_deflated(name: str, method: int) -> None:
    assert rules.compression_for_name(name) == method


def test_extensions_and_stems() -> None:
    assert rules.extension_of("a.b.JPG") == "jpg"
    assert rules.extension_of(".bashrc") == ""
    assert rules.extension_of("README") == ""
    assert rules.stem_of("a.b.jpg") == "a.b"
    assert rules.stem_of("README") == "README"
    assert rules.is_image_name("x.HEIC")
    assert not rules.is_image_name("x.txt")
    assert rules.is_caption_name("x.txt")
