"""Walk one dataset folder: every file to upload and every exclusion, in a fixed order.

The walk is depth-first over ``os.scandir``; each folder's entries are sorted by name, so the
same tree always gives the same sequence. Only one folder listing per level of depth is held
in memory, never the whole tree.

Symbolic links:

* a link whose target resolves outside the dataset folder is excluded;
* a link to a file inside is uploaded under the link's name, with the target's content;
* a link to a folder inside is followed, once per target folder: a link back to a folder
  that contains it, or to a folder already followed through another link, is excluded as a
  loop, so the walk always ends;
* a link whose target lies in an excluded place (``photos -> .git``, ``a.jpg -> .env``) is
  excluded for that reason; broken links and OS-level link loops are excluded.

Devices, sockets and named pipes are excluded and never opened. A sub-folder that cannot be
listed is excluded as unreadable; the dataset folder itself must be readable.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from cloudtuner.packaging import errors, rules
from cloudtuner.schemas.uploads import ExclusionReason

_FolderKey = tuple[int, int]
"""(st_dev, st_ino) of a folder."""


@dataclass(frozen=True, slots=True)
class WalkedFile:
    """A file to upload."""

    relative_parts: tuple[str, ...]
    """Path inside the dataset, as the archive will name it (the link's name for links)."""
    open_path: str
    """Path to open for reading: the file itself, or the resolved target of a link."""
    size_bytes: int
    mtime_ns: int
    image_extension: str | None
    """Lower-case extension when the file is an image, else None."""
    captioned_images: int
    """For a caption ``.txt``: how many images in the same folder share its stem, else 0."""


@dataclass(frozen=True, slots=True)
class WalkedExclusion:
    """A file or folder left out, with its reason."""

    relative_parts: tuple[str, ...]
    reason: ExclusionReason
    detail: str
    is_directory: bool


@dataclass(frozen=True, slots=True)
class _Subfolder:
    relative_parts: tuple[str, ...]
    listing_path: str
    key: _FolderKey


@dataclass(slots=True)
class _Frame:
    """One folder being walked: its sorted names and what is needed to classify them."""

    listing_path: str
    relative_parts: tuple[str, ...]
    names: Iterator[str]
    image_stems: dict[str, int]
    ancestors: frozenset[_FolderKey]


def walk_dataset(root: str, *, dataset_label: str) -> Iterator[WalkedFile | WalkedExclusion]:
    """Yield the files to upload and the exclusions of one dataset folder, in archive order.

    ``dataset_label`` names the dataset in error messages (e.g. ``dataset 'training-images'``).

    Raises:
        DatasetNotFoundError: the folder does not exist.
        DatasetNotADirectoryError: the path is not a folder.
        DatasetUnreadableError: the folder cannot be listed.
    """
    root_stat = _stat_root(root, dataset_label=dataset_label)
    root_real = os.path.realpath(root)
    followed_links: set[_FolderKey] = set()
    try:
        root_frame = _open_frame(root, (), frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    except OSError as exc:
        raise errors.DatasetUnreadableError(
            f"The folder of {dataset_label} ({root}) cannot be read: {exc.strerror or exc}."
        ) from exc
    stack = [root_frame]
    while stack:
        frame = stack[-1]
        name = next(frame.names, None)
        if name is None:
            stack.pop()
            continue
        item = _classify(frame, name, root_real=root_real, followed_links=followed_links)
        if not isinstance(item, _Subfolder):
            yield item
            continue
        try:
            stack.append(_open_frame(item.listing_path, item.relative_parts, frame.ancestors | {item.key}))
        except OSError as exc:
            yield WalkedExclusion(
                item.relative_parts,
                ExclusionReason.UNREADABLE,
                f"the folder cannot be read: {exc.strerror or exc}",
                is_directory=True,
            )


def _open_frame(listing_path: str, relative_parts: tuple[str, ...], ancestors: frozenset[_FolderKey]) -> _Frame:
    """List one folder (names only, sorted). Raises OSError if it cannot be listed."""
    with os.scandir(listing_path) as scanner:
        names = sorted(entry.name for entry in scanner)
    image_stems: dict[str, int] = {}
    for name in names:
        if rules.is_image_name(name) and not name.startswith(".") and rules.unsafe_name_detail(name) is None:
            stem = rules.stem_of(name)
            image_stems[stem] = image_stems.get(stem, 0) + 1
    return _Frame(listing_path, relative_parts, iter(names), image_stems, ancestors)


def _stat_root(root: str, *, dataset_label: str) -> os.stat_result:
    try:
        root_stat = os.stat(root)
    except FileNotFoundError as exc:
        raise errors.DatasetNotFoundError(
            f"The folder of {dataset_label} does not exist: {root}. Check instance_data_dir."
        ) from exc
    except NotADirectoryError as exc:
        raise errors.DatasetNotADirectoryError(
            f"The path of {dataset_label} is not a folder: {root}. Check instance_data_dir."
        ) from exc
    except OSError as exc:
        raise errors.DatasetUnreadableError(
            f"The folder of {dataset_label} ({root}) cannot be read: {exc.strerror or exc}."
        ) from exc
    if not stat.S_ISDIR(root_stat.st_mode):
        raise errors.DatasetNotADirectoryError(
            f"The path of {dataset_label} is not a folder: {root}. Check instance_data_dir."
        )
    if not os.access(root, os.R_OK | os.X_OK):
        raise errors.DatasetUnreadableError(
            f"The folder of {dataset_label} ({root}) cannot be read: permission denied."
        )
    return root_stat


def _classify(
    frame: _Frame, name: str, *, root_real: str, followed_links: set[_FolderKey]
) -> WalkedFile | WalkedExclusion | _Subfolder:
    parts = (*frame.relative_parts, name)
    path = os.path.join(frame.listing_path, name)
    try:
        entry_stat = os.lstat(path)
    except OSError as exc:
        return WalkedExclusion(parts, ExclusionReason.UNREADABLE, f"cannot be read: {exc.strerror}", False)
    is_link = stat.S_ISLNK(entry_stat.st_mode)
    is_folder = stat.S_ISDIR(entry_stat.st_mode)
    unsafe = rules.unsafe_name_detail(name)
    if unsafe is not None:
        return WalkedExclusion(parts, ExclusionReason.UNSAFE_NAME, unsafe, is_folder)
    captioned_images = 0
    if is_folder:
        excluded = rules.exclusion_for_folder(name)
    else:
        if rules.is_caption_name(name):
            captioned_images = frame.image_stems.get(rules.stem_of(name), 0)
        excluded = rules.exclusion_for_file(name, is_caption_of_sibling_image=captioned_images > 0)
    if excluded is not None:
        return WalkedExclusion(parts, excluded.reason, excluded.detail, is_folder)
    if is_link:
        return _classify_link(
            path,
            parts,
            root_real=root_real,
            followed_links=followed_links,
            ancestors=frame.ancestors,
            captioned_images=captioned_images,
        )
    if is_folder:
        return _Subfolder(parts, path, (entry_stat.st_dev, entry_stat.st_ino))
    return _regular_file(parts, path, entry_stat, captioned_images=captioned_images)


def _regular_file(
    parts: tuple[str, ...], open_path: str, file_stat: os.stat_result, *, captioned_images: int
) -> WalkedFile | WalkedExclusion:
    if not stat.S_ISREG(file_stat.st_mode):
        return WalkedExclusion(
            parts, ExclusionReason.NOT_A_REGULAR_FILE, "devices, sockets and named pipes are not uploaded", False
        )
    if not os.access(open_path, os.R_OK):
        return WalkedExclusion(parts, ExclusionReason.UNREADABLE, "the file cannot be read: permission denied", False)
    name = parts[-1]
    extension = rules.extension_of(name)
    return WalkedFile(
        relative_parts=parts,
        open_path=open_path,
        size_bytes=file_stat.st_size,
        mtime_ns=file_stat.st_mtime_ns,
        image_extension=extension if rules.is_image_name(name) else None,
        captioned_images=captioned_images,
    )


def _classify_link(
    path: str,
    parts: tuple[str, ...],
    *,
    root_real: str,
    followed_links: set[_FolderKey],
    ancestors: frozenset[_FolderKey],
    captioned_images: int,
) -> WalkedFile | WalkedExclusion | _Subfolder:
    try:
        target_stat = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return WalkedExclusion(parts, ExclusionReason.SYMLINK_LOOP, "the symbolic link loops", False)
        if exc.errno in {errno.ENOENT, errno.ENOTDIR}:
            return WalkedExclusion(parts, ExclusionReason.BROKEN_SYMLINK, "the symbolic link points to nothing", False)
        return WalkedExclusion(
            parts, ExclusionReason.UNREADABLE, f"the link target cannot be read: {exc.strerror}", False
        )
    target_real = os.path.realpath(path)
    is_folder = stat.S_ISDIR(target_stat.st_mode)
    if not _is_within(target_real, root_real):
        return WalkedExclusion(
            parts,
            ExclusionReason.SYMLINK_OUTSIDE_DATASET,
            "the symbolic link points outside the dataset folder",
            is_folder,
        )
    target_parts = tuple(os.path.relpath(target_real, root_real).split(os.sep)) if target_real != root_real else ()
    excluded = rules.exclusion_for_path(target_parts, is_directory=is_folder)
    if excluded is not None:
        return WalkedExclusion(
            parts, excluded.reason, f"the symbolic link points to an excluded place: {excluded.detail}", is_folder
        )
    if not is_folder:
        return _regular_file(parts, target_real, target_stat, captioned_images=captioned_images)
    key = (target_stat.st_dev, target_stat.st_ino)
    if key in ancestors:
        return WalkedExclusion(
            parts, ExclusionReason.SYMLINK_LOOP, "the symbolic link points back to a folder that contains it", True
        )
    if key in followed_links:
        return WalkedExclusion(
            parts, ExclusionReason.SYMLINK_LOOP, "another symbolic link to the same folder was already followed", True
        )
    followed_links.add(key)
    return _Subfolder(parts, target_real, key)


def _is_within(path: str, folder: str) -> bool:
    if path == folder:
        return True
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return path.startswith(prefix)
