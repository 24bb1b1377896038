"""SQLite WAL checkpoints on a thread of their own, off the event loop.

In WAL mode every commit appends pages to ``<db>-wal``; a *checkpoint* copies them back into the
database file (and syncs it) so that the log can start over. By default SQLite runs one inside the
commit that takes the log past 1,000 pages, on the committing connection. cloudtuner's SQLite
statements run on the event loop's thread (``inline_sqlite.py``), so that commit would hold every
request for the checkpoint's copying and its fsync: a few milliseconds, every few hundred commits,
which shows up as the tail of request latency under load.

So the store's connections leave automatic checkpoints to a log ten times as long
(:data:`FALLBACK_AUTOCHECKPOINT_PAGES`, a safety net only), and a :class:`WalCheckpointer` runs
``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection, on a daemon thread, every
:data:`INTERVAL_SECONDS`. Python's ``sqlite3`` releases the GIL while SQLite works, so the copying
uses the other core while requests go on. A passive checkpoint never waits for or blocks writers
and readers: it copies what it can and returns, and commits keep appending meanwhile. Where
nothing is waiting to be copied it only reads the shared WAL index.

If the thread cannot open the file, or a checkpoint fails, the connections' own checkpoints take
over once the log reaches the fallback length, and SQLite checkpoints it when the last connection
closes, so nothing is lost and the log stays bounded. The thread starts with the store's first
connection and stops when the store is disposed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from urllib.parse import quote

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
"""How often the checkpointer copies the WAL's new pages into the database file."""

FALLBACK_AUTOCHECKPOINT_PAGES = 10_000
"""``wal_autocheckpoint`` of the store's connections: they checkpoint only a log this long (about
40 MiB), which happens only if the checkpointer is not keeping up or not running."""


class WalCheckpointer:
    """Checkpoints one SQLite file's WAL every :data:`INTERVAL_SECONDS` on a daemon thread.

    Thread-safe; :meth:`start` may be called any number of times (the first call starts the
    thread) and :meth:`stop` waits for the thread to finish its current checkpoint.
    """

    def __init__(self, path: str, *, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread, unless it was started (or stopped) before."""
        with self._guard:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoints", daemon=True)
            self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop the thread (after its current checkpoint) and wait for it."""
        with self._guard:
            self._stopping.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_seconds)

    def _run(self) -> None:
        try:
            # mode=rw: never create the file (a store deleted under a running server stops this).
            connection = sqlite3.connect(
                f"file:{quote(self._path)}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoints stay with the connections: cannot open %s (%s)", self._path, exc)
            return
        reported: str | None = None
        try:
            while not self._stopping.wait(self._interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    if str(exc) != reported:  # once per kind of failure, not five times a second
                        reported = str(exc)
                        log.warning("SQLite checkpoint of %s failed (%s); trying again", self._path, exc)
        finally:
            connection.close()
