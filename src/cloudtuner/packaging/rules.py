"""Which files of a dataset are uploaded, and how they are stored: pure name-based rules.

Nothing here touches the file system; the walker (``walk.py``) applies these rules to what it
finds. Names are matched case-insensitively.

Folders left out, with everything in them:

* version control: ``.git``, ``.hg``, ``.svn``, ``.bzr``;
* credential stores: ``.ssh``, ``.aws``, ``.gnupg``, ``.azure``, ``.kube``, ``.docker``,
  ``.gcloud``, ``.password-store``, ``secrets``, ``.secrets``, ``credentials``;
* every other hidden folder (name starting with ``.``).

Files left out:

* environment files: ``.env``, ``.env.*``, ``*.env``, ``.envrc``;
* version control: a ``.git`` file (worktrees and submodules);
* keys and key stores: ``*.pem``, ``*.key``, ``*.p12``, ``*.pfx``, ``*.jks``, ``*.keystore``,
  ``*.ppk``, ``*.gpg``, ``*.pgp``, ``*.asc``, ``id_rsa*``, ``id_dsa*``, ``id_ecdsa*``,
  ``id_ed25519*``;
* credentials: ``credentials``, ``credentials.*``, ``*.credentials``, ``.netrc``, ``_netrc``,
  ``.npmrc``, ``.pypirc``, ``.pgpass``, ``.git-credentials``, ``.htpasswd``, ``.dockercfg``,
  ``.boto``, ``.s3cfg``, ``kubeconfig``, ``*.kubeconfig``, ``*.tfstate``, ``*.tfstate.*``,
  ``*.kdbx``;
* names containing ``secret``, ``password``, ``passwd``, ``credential``, ``private_key``,
  ``private-key``, ``privatekey``, ``api_key``, ``api-key``, ``apikey``, ``access_key``,
  ``accesskey``, ``auth_token`` or ``access_token``;
* every other hidden file.

Images (by extension) and the ``.txt`` captions beside them are what a dataset is made of,
so the key, credential and secret-name patterns do not apply to them: ``secret_garden.jpg``
and its caption ``secret_garden.txt`` are uploaded. The hidden, version-control and
environment-file rules apply to every file.

A name that cannot be stored safely in a zip archive (empty, ``.``/``..``, containing ``/``
or ``\\``, control characters, not valid UTF-8, longer than 255 bytes) is left out too.
"""

from __future__ import annotations

import fnmatch
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from cloudtuner.schemas.uploads import ExclusionReason

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "avif", "heic", "heif", "jxl"})
"""Extensions (lower case, no dot) counted as images in the upload summary."""

CAPTION_EXTENSION = "txt"
"""Extension of the caption files read by the ``textfile`` caption strategy."""

_DEFLATED_EXTENSIONS = frozenset(
    {
        # text and metadata
        "txt", "caption", "json", "jsonl", "csv", "tsv", "yaml", "yml", "toml", "md", "xml",
        "html", "htm", "svg",
        # uncompressed image, audio and array formats
        "bmp", "tif", "tiff", "ppm", "pgm", "pbm", "pnm", "tga", "wav", "npy",
    }
)  # fmt: skip
"""Extensions worth compressing; everything else (jpg, png, webp, video, archives,
unknown binaries) is already compressed or unknown, and is stored as is."""

MAX_NAME_BYTES = 255
"""Longest file or folder name accepted, in UTF-8 bytes (the usual file-system limit)."""

_VERSION_CONTROL_FOLDERS = frozenset({".git", ".hg", ".svn", ".bzr"})
_CREDENTIAL_FOLDERS = frozenset(
    {
        ".ssh", ".aws", ".gnupg", ".azure", ".kube", ".docker", ".gcloud", ".password-store",
        "secrets", ".secrets", "credentials",
    }
)  # fmt: skip
_ENVIRONMENT_FILE_PATTERNS = (".env", ".env.*", "*.env", ".envrc")
_KEY_FILE_PATTERNS = (
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.gpg", "*.pgp", "*.asc",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
)  # fmt: skip
_CREDENTIAL_FILE_PATTERNS = (
    "credentials", "credentials.*", "*.credentials", ".netrc", "_netrc", ".npmrc", ".pypirc",
    ".pgpass", ".git-credentials", ".htpasswd", ".dockercfg", ".boto", ".s3cfg", "kubeconfig",
    "*.kubeconfig", "*.tfstate", "*.tfstate.*", "*.kdbx",
)  # fmt: skip
_SECRET_NAME_WORDS = (
    "secret", "password", "passwd", "credential", "private_key", "private-key", "privatekey",
    "api_key", "api-key", "apikey", "access_key", "accesskey", "auth_token", "access_token",
)  # fmt: skip

_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
_NEEDS_ESCAPING = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # see _printable_name


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Why a name is left out: a stable reason and a sentence for a person."""

    reason: ExclusionReason
    detail: str


def extension_of(name: str) -> str:
    """Return the lower-case extension of a file name without the dot, or "" if it has none."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return ""
    return extension.lower()


def stem_of(name: str) -> str:
    """Return a file name without its last extension (``a.b.jpg`` → ``a.b``)."""
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def is_image_name(name: str) -> bool:
    """Return True when the name has an image extension (see ``IMAGE_EXTENSIONS``)."""
    return extension_of(name) in IMAGE_EXTENSIONS


def is_caption_name(name: str) -> bool:
    """Return True when the name has the caption extension (``.txt``)."""
    return extension_of(name) == CAPTION_EXTENSION


def should_compress(name: str) -> bool:
    """Return True for files worth deflating (text, uncompressed formats); False to store as is."""
    return extension_of(name) in _DEFLATED_EXTENSIONS


def compression_for_name(name: str) -> int:
    """Return the zip compression method for a file: ``ZIP_DEFLATED`` for text, else ``ZIP_STORED``."""
    return zipfile.ZIP_DEFLATED if should_compress(name) else zipfile.ZIP_STORED


def unsafe_name_detail(name: str) -> str | None:
    """Return why a single file or folder name cannot be stored in a zip archive, or None if it can."""
    if name in {"", ".", ".."}:
        return "this name cannot be used inside an archive"
    if "/" in name or "\\" in name:
        return "the name contains a slash or backslash, which would unpack as a folder separator"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if _CONTROL_CHARACTER.search(name):
        return "the name contains control characters"
    if len(encoded) > MAX_NAME_BYTES:
        return f"the name is longer than {MAX_NAME_BYTES} bytes"
    return None


def _matches_any(lowered_name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(lowered_name, pattern) for pattern in patterns)


def exclusion_for_folder(name: str) -> Exclusion | None:
    """Return why a folder (and everything in it) is left out, or None when it is walked."""
    lowered = name.lower()
    if lowered in _VERSION_CONTROL_FOLDERS:
        return Exclusion(ExclusionReason.VERSION_CONTROL, "version-control folders are never uploaded")
    if lowered in _CREDENTIAL_FOLDERS:
        return Exclusion(ExclusionReason.CREDENTIALS, "this folder usually holds credentials or keys")
    if lowered.startswith("."):
        return Exclusion(ExclusionReason.HIDDEN, "hidden folders are not uploaded")
    return None


def exclusion_for_file(name: str, *, is_caption_of_sibling_image: bool = False) -> Exclusion | None:
    """Return why a file is left out, or None when it is uploaded.

    ``is_caption_of_sibling_image`` is True for a ``.txt`` file whose stem matches an image in
    the same folder; such captions, like images, are exempt from the key, credential and
    secret-name patterns.
    """
    lowered = name.lower()
    if lowered == ".git":
        return Exclusion(ExclusionReason.VERSION_CONTROL, "version-control metadata is never uploaded")
    if _matches_any(lowered, _ENVIRONMENT_FILE_PATTERNS):
        return Exclusion(ExclusionReason.ENVIRONMENT_FILE, "environment files hold secrets")
    dataset_content = is_caption_of_sibling_image or is_image_name(name)
    if not dataset_content:
        if _matches_any(lowered, _KEY_FILE_PATTERNS):
            return Exclusion(ExclusionReason.PRIVATE_KEY, "key and certificate files are never uploaded")
        if _matches_any(lowered, _CREDENTIAL_FILE_PATTERNS):
            return Exclusion(ExclusionReason.CREDENTIALS, "credential files are never uploaded")
        if any(word in lowered for word in _SECRET_NAME_WORDS):
            return Exclusion(ExclusionReason.SECRET_NAME, "the name says it holds a secret, password, token or key")
    if lowered.startswith("."):
        return Exclusion(ExclusionReason.HIDDEN, "hidden files are not uploaded")
    return None


def exclusion_for_path(parts: tuple[str, ...], *, is_directory: bool) -> Exclusion | None:
    """Return why a path (folders, then a last file or folder) is left out, or None.

    Used for the target of a symbolic link inside the dataset, so that a link cannot bring in
    a file that is excluded where it really lives (``photos -> .git``, ``a.jpg -> .env``).
    """
    for index, part in enumerate(parts):
        unsafe = unsafe_name_detail(part)
        if unsafe is not None:
            return Exclusion(ExclusionReason.UNSAFE_NAME, unsafe)
        is_last_file = index == len(parts) - 1 and not is_directory
        found = exclusion_for_file(part) if is_last_file else exclusion_for_folder(part)
        if found is not None:
            return found
    return None


def printable_path(parts: Iterable[str]) -> str:
    """Return a relative path for display, with undecodable bytes and control characters escaped.

    The result is always valid UTF-8 and can be serialised as JSON, even for names the archive
    refuses.
    """
    return "/".join(_printable_name(part) for part in parts)


def _printable_name(name: str) -> str:
    if not _NEEDS_ESCAPING.search(name):
        return name
    characters: list[str] = []
    for character in name:
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by os.fsdecode (surrogateescape)
            characters.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            characters.append(f"\\u{code:04x}")
        elif code < 0x20 or code == 0x7F:
            characters.append(f"\\x{code:02x}")
        else:
            characters.append(character)
    return "".join(characters)
