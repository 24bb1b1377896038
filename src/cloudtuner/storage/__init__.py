"""The built-in S3-compatible endpoint: its object store and its protocol core.

Framework-neutral: a route adapter turns an HTTP request into an :class:`S3Request`, awaits
:meth:`S3Handler.handle` and sends back the :class:`S3Response`::

    store = FilesystemObjectStore(data_dir / "cloud_outputs")
    handler = S3Handler(store, credentials)          # credentials: a CredentialResolver
    response = await handler.handle(S3Request(method, raw_path_below_mount, raw_query, headers, body))

Modules: ``messages`` (request/response types), ``handler`` (entry point and routing) with
``bucket_ops``/``object_ops``/``multipart_ops`` and their shared ``context``; ``sigv4`` and
``sigv2`` (signature verification), ``chunked`` (aws-chunked bodies), ``payload`` (the digests a
body must match), ``checksums``, ``keys`` (names and paths), ``ranges``, ``xmlio``; the store:
``objects``, ``multipart``, ``listing``, ``layout``, ``diskio``; ``credentials``; ``errors`` (the
S3 error tree, rendered as S3 XML, separate from the project's JSON errors).
"""

from cloudtuner.storage.credentials import (
    CredentialResolver,
    InMemoryCredentialResolver,
    S3Credential,
    new_access_key_id,
    new_secret_access_key,
)
from cloudtuner.storage.errors import S3Error
from cloudtuner.storage.events import ObjectRemoved, ObjectWritten, StorageObserver
from cloudtuner.storage.handler import S3Handler
from cloudtuner.storage.layout import ObjectAttributes, ObjectInfo
from cloudtuner.storage.messages import (
    DEFAULT_MOUNT_PATH,
    ClientDisconnected,
    S3Headers,
    S3Request,
    S3Response,
    carries_s3_signature,
)
from cloudtuner.storage.objects import BucketInfo, FilesystemObjectStore

__all__ = [
    "DEFAULT_MOUNT_PATH",
    "BucketInfo",
    "ClientDisconnected",
    "CredentialResolver",
    "FilesystemObjectStore",
    "InMemoryCredentialResolver",
    "ObjectAttributes",
    "ObjectInfo",
    "ObjectRemoved",
    "ObjectWritten",
    "S3Credential",
    "S3Error",
    "S3Handler",
    "S3Headers",
    "S3Request",
    "S3Response",
    "StorageObserver",
    "carries_s3_signature",
    "new_access_key_id",
    "new_secret_access_key",
]
