"""The built-in S3 endpoint of one server process: its object store, its keys, its handler.

:class:`StorageEndpoint` builds the framework-neutral :class:`~cloudtuner.storage.S3Handler` over
``<data dir>/cloud_outputs/`` and the database-backed :class:`DatabaseCredentialResolver`; the API
layer mounts it (``api/routes/storage.py``) and only translates requests and replies. Writes to a
job's folder (``<default bucket>/jobs/<job id>/``) are recorded as the job's artifacts by the
handler's observer (``services.artifacts.ArtifactRecorder``) before the client gets its reply.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from cloudtuner.db.engine import Database
from cloudtuner.services.artifacts import ArtifactRecorder
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.secrets import SecretBox
from cloudtuner.services.storage_credentials import find_s3_credential
from cloudtuner.storage import FilesystemObjectStore, S3Credential, S3Handler

log = logging.getLogger(__name__)

DEFAULT_CACHE_ENTRIES = 4096


class DatabaseCredentialResolver:
    """A :class:`~cloudtuner.storage.CredentialResolver` over the ``storage_credentials`` table.

    Lookups (found or not) are cached for ``cache_seconds`` in this process, at most
    ``max_entries`` of them (oldest dropped first), so a burst of requests signed with one key
    reads the database once. A key revoked anywhere is refused here within ``cache_seconds``;
    :meth:`forget` drops a key at once (this process's own revocations call it). Expiry is not
    delayed by the cache: the handler checks ``expires_at`` against the clock on every request.
    """

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        cache_seconds: float = 2.0,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Resolve keys from ``db``, decrypting their secrets with ``box``."""
        self._db = db
        self._box = box
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, S3Credential | None]] = OrderedDict()

    async def resolve(self, access_key_id: str) -> S3Credential | None:
        """Return the credential of ``access_key_id``, or None if it is unknown or revoked.

        Raises:
            ConfigurationError: a stored secret cannot be decrypted (the server's key changed);
                the handler answers ``InternalError`` and logs it.
        """
        now = self._monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        credential = await find_s3_credential(self._db, self._box, access_key_id)
        if self._cache_seconds > 0:
            self._cache[access_key_id] = (now, credential)
            self._cache.move_to_end(access_key_id)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return credential

    def forget(self, access_key_id: str | None = None) -> None:
        """Drop ``access_key_id`` from the cache (every key when None)."""
        if access_key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(access_key_id, None)


class StorageEndpoint:
    """The S3 endpoint's parts for one server: resolver now, store and handler on first use.

    The store creates ``<data dir>/cloud_outputs/`` when it opens, so it is opened only once the
    server has made its data dir (:meth:`open`, from the app's start-up), never at import or
    construction time.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        """Prepare the endpoint of the server whose context is ``ctx``."""
        self._ctx = ctx
        settings = ctx.settings
        self.resolver = DatabaseCredentialResolver(
            ctx.db, ctx.secrets.box, cache_seconds=settings.storage_credentials_cache_seconds
        )
        self._handler: S3Handler | None = None

    @property
    def handler(self) -> S3Handler:
        """The S3 handler (opening the store, without creating the default bucket, if not open yet)."""
        if self._handler is None:
            store = FilesystemObjectStore(self._ctx.settings.outputs_dir)
            recorder = ArtifactRecorder(self._ctx, store)
            self._handler = S3Handler(store, self.resolver, clock=self._ctx.clock, observer=recorder)
        return self._handler

    @property
    def store(self) -> FilesystemObjectStore:
        """The object store below ``<data dir>/cloud_outputs/``."""
        return self.handler.store

    async def open(self) -> None:
        """Open the store and create the default bucket jobs deliver to, if missing."""
        bucket = self._ctx.settings.storage_default_bucket
        if await self.store.create_bucket(bucket):
            log.info("created storage bucket %s in %s", bucket, self.store.root)
