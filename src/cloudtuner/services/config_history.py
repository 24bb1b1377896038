"""Every saved version of every config, in a git repository in the data dir.

The repository is bare and written with dulwich (no git binary needed): each save is a commit
that changes ``configs/<name>/config.json`` and ``configs/<name>/multidatabackend.json``. Anyone
can inspect it with ordinary git (``git -C <data dir>/config-history log``).
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from cloudtuner.core.errors import NotFoundError

_BRANCH = Ref(b"refs/heads/main")
_AUTHOR = b"cloudtuner <cloudtuner@localhost>"
CONFIG_FILE = "config.json"
DATALOADER_FILE = "multidatabackend.json"


@dataclass(frozen=True)
class HistoryEntry:
    """One commit that touched a config."""

    commit: str
    message: str
    created_at: datetime


class ConfigHistory:
    """A bare git repository of config versions; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    def _open(self) -> Repo:
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            repo = Repo.init_bare(str(self.path))
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), _BRANCH)
            return repo
        return Repo(str(self.path))

    def _record(self, name: str, files: dict[str, bytes] | None, message: str) -> str:
        with self._thread_lock, (self.path.parent / ".config-history.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            repo = self._open()
            try:
                store = repo.object_store
                parent = _head(repo)
                base_tree = _commit(repo, parent).tree if parent else _empty_tree(repo)
                folder = f"configs/{name}/".encode()
                changes: list[tuple[bytes, int | None, ObjectID | None]] = []
                if files is None:
                    for file_name in (CONFIG_FILE, DATALOADER_FILE):
                        changes.append((folder + file_name.encode(), None, None))
                else:
                    for file_name, content in sorted(files.items()):
                        blob = Blob.from_string(content)
                        store.add_object(blob)
                        changes.append((folder + file_name.encode(), 0o100644, blob.id))
                tree_id = commit_tree_changes(store, base_tree, changes)
                if parent is not None and tree_id == _commit(repo, parent).tree:
                    return str(parent.decode())
                commit = Commit()
                commit.tree = tree_id
                commit.parents = [parent] if parent else []
                commit.author = commit.committer = _AUTHOR
                commit.author_time = commit.commit_time = int(time.time())
                commit.author_timezone = commit.commit_timezone = 0
                commit.encoding = b"UTF-8"
                commit.message = message.encode() + b"\n"
                store.add_object(commit)
                repo.refs[_BRANCH] = commit.id
                return commit.id.decode()
            finally:
                repo.close()

    async def record(self, name: str, files: dict[str, bytes] | None, message: str) -> str:
        """Commit a config's files (or their removal, with ``files=None``); return the commit id.

        Saving identical content makes no new commit and returns the current one.
        """
        return await asyncio.to_thread(self._record, name, files, message)

    def _history(self, name: str, limit: int) -> list[HistoryEntry]:
        if not (self.path / "HEAD").exists():
            return []
        repo = self._open()
        try:
            head = _head(repo)
            if head is None:
                return []
            entries: list[HistoryEntry] = []
            walker = repo.get_walker(include=[head], paths=[f"configs/{name}".encode()])
            for entry in walker:
                commit = entry.commit
                entries.append(
                    HistoryEntry(
                        commit=commit.id.decode(),
                        message=commit.message.decode(errors="replace").strip(),
                        created_at=datetime.fromtimestamp(commit.commit_time, UTC),
                    )
                )
                if len(entries) >= limit:
                    break
            return entries
        finally:
            repo.close()

    async def history(self, name: str, limit: int = 50) -> list[HistoryEntry]:
        """Return the commits that changed config ``name``, newest first."""
        return await asyncio.to_thread(self._history, name, limit)

    def _read(self, name: str, commit_id: str) -> dict[str, bytes]:
        repo = self._open()
        try:
            try:
                commit = repo[commit_id.encode()]
            except (KeyError, ValueError) as exc:
                raise NotFoundError(f"The config history has no commit {commit_id!r}.") from exc
            if not isinstance(commit, Commit):
                raise NotFoundError(f"{commit_id!r} is not a commit of the config history.")
            files: dict[str, bytes] = {}
            for file_name in (CONFIG_FILE, DATALOADER_FILE):
                path = f"configs/{name}/{file_name}".encode()
                try:
                    _mode, sha = _lookup(repo, commit.tree, path)
                except KeyError:
                    continue
                blob = repo[sha]
                assert isinstance(blob, Blob)
                files[file_name] = blob.data
            if not files:
                raise NotFoundError(f"Config {name!r} did not exist at commit {commit_id[:12]}.")
            return files
        finally:
            repo.close()

    async def read(self, name: str, commit_id: str) -> dict[str, bytes]:
        """Return config ``name``'s files as they were at ``commit_id``.

        Raises:
            NotFoundError: no such commit, or the config did not exist in it.
        """
        return await asyncio.to_thread(self._read, name, commit_id)


def _head(repo: Repo) -> ObjectID | None:
    return repo.refs[_BRANCH] if _BRANCH in repo.refs.keys() else None  # noqa: SIM118 - RefsContainer is typed without __contains__


def _commit(repo: Repo, commit_id: ObjectID) -> Commit:
    commit = repo[commit_id]
    assert isinstance(commit, Commit)
    return commit


def _empty_tree(repo: Repo) -> ObjectID:
    tree = Tree()
    repo.object_store.add_object(tree)
    return tree.id


def _lookup(repo: Repo, tree_id: bytes, path: bytes) -> tuple[int, bytes]:
    tree = repo[tree_id]
    assert isinstance(tree, Tree)
    mode, sha = tree.lookup_path(repo.object_store.__getitem__, path)
    return mode, sha
