"""Listing the keys of a bucket folder in S3 order, with prefixes, delimiters and pagination.

S3 lists keys in the binary order of their UTF-8 bytes, which is the code point order of Python
strings. Walking the folder tree depth-first with every folder's entries sorted by name (a folder
``d`` sorted as ``d/``) yields the keys in exactly that order, so a page is produced by walking
only as far as it needs, skipping folders that lie wholly before the resume point or outside the
prefix, and skipping the rest of a folder as soon as it has been rolled up into a common prefix.

Everything here is synchronous disk work: run it in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cloudtuner.storage import keys
from cloudtuner.storage.layout import ObjectInfo


@dataclass
class Cursor:
    """Where a listing resumes: strictly after ``after``, and past every key starting with it
    when ``after_is_prefix`` (a common prefix returned on an earlier page)."""

    after: str | None = None
    after_is_prefix: bool = False

    def excludes_key(self, key: str) -> bool:
        """Return whether ``key`` lies at or before the resume point."""
        if self.after is None:
            return False
        return key <= self.after or (self.after_is_prefix and key.startswith(self.after))

    def excludes_folder(self, folder: str) -> bool:
        """Return whether every key below ``folder`` (ending with ``/``) lies before the resume point."""
        after = self.after
        if after is None:
            return False
        if self.after_is_prefix and folder.startswith(after):
            return True
        return after > folder and not after.startswith(folder)


@dataclass
class ListPage:
    """One page of a listing, in S3 order.

    ``next_after``/``next_is_prefix`` say where the next page starts when ``is_truncated``.
    """

    objects: list[ObjectInfo] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_after: str | None = None
    next_is_prefix: bool = False


def iter_keys(folder: str, prefix: str, cursor: Cursor) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(key, stat)`` of every storable regular file below ``folder`` in S3 order.

    Only keys starting with ``prefix`` and not excluded by ``cursor`` are yielded; ``cursor`` is
    read as the walk goes, so a consumer may move it forward to skip what remains of a folder.
    Symbolic links are not followed and not listed.
    """
    yield from _walk(folder, "", prefix, cursor)


def _walk(folder: str, relative: str, prefix: str, cursor: Cursor) -> Iterator[tuple[str, os.stat_result]]:
    try:
        with os.scandir(folder) as scanner:
            entries = []
            for entry in scanner:
                if entry.is_dir(follow_symlinks=False):
                    entries.append((relative + entry.name + "/", entry, True))
                elif entry.is_file(follow_symlinks=False):
                    entries.append((relative + entry.name, entry, False))
    except (FileNotFoundError, NotADirectoryError):
        return
    entries.sort(key=lambda item: item[0])
    for name, entry, is_folder in entries:
        if is_folder:
            if not (prefix.startswith(name) or name.startswith(prefix)) or cursor.excludes_folder(name):
                continue
            yield from _walk(entry.path, name, prefix, cursor)
        elif name.startswith(prefix) and not cursor.excludes_key(name) and keys.is_storable_key(name):
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield name, stat


def list_page(
    folder: str,
    *,
    prefix: str,
    delimiter: str | None,
    max_keys: int,
    cursor: Cursor,
    describe: Callable[[str, os.stat_result], ObjectInfo],
    key_filter: str = "",
) -> ListPage:
    """Return one page of at most ``max_keys`` objects and common prefixes of the bucket ``folder``.

    ``describe`` builds an object's :class:`ObjectInfo` from its key and stat (reading its sidecar).
    ``key_filter`` narrows the listing to keys starting with it without changing how common
    prefixes are computed from ``prefix`` (used to confine a scoped credential).
    """
    page = ListPage()
    if max_keys <= 0:
        return page
    walk_prefix = key_filter if len(key_filter) > len(prefix) else prefix
    count = 0
    for key, stat in iter_keys(folder, walk_prefix, cursor):
        if not key.startswith(key_filter):
            continue
        if count >= max_keys:
            page.is_truncated = True
            break
        if delimiter:
            at = key.find(delimiter, len(prefix))
            if at >= 0:
                common = key[: at + len(delimiter)]
                page.common_prefixes.append(common)
                cursor.after, cursor.after_is_prefix = common, True
                page.next_after, page.next_is_prefix = common, True
                count += 1
                continue
        page.objects.append(describe(key, stat))
        cursor.after, cursor.after_is_prefix = key, False
        page.next_after, page.next_is_prefix = key, False
        count += 1
    if not page.is_truncated:
        page.next_after, page.next_is_prefix = None, False
    return page
