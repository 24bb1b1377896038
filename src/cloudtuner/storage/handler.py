"""The S3 endpoint's entry point: authenticate, route, run the operation, render errors.

:class:`S3Handler` is framework-neutral: a route adapter builds an
:class:`~cloudtuner.storage.messages.S3Request`, awaits :meth:`S3Handler.handle` and sends the
:class:`~cloudtuner.storage.messages.S3Response` back. ``handle`` never raises for anything a
client can cause: every failure becomes S3 error XML with S3's code and status.

Supported: ListBuckets; Create/Head/DeleteBucket, GetBucketLocation, GetBucketVersioning,
ListObjectsV2, ListObjects, DeleteObjects; Put/Get/Head/Delete/CopyObject; CreateMultipartUpload,
UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts. Everything else is refused
with ``NotImplemented`` (501) or ``MethodNotAllowed`` (405).
"""

from __future__ import annotations

import errno
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from cloudtuner.core.clock import Clock
from cloudtuner.storage import bucket_ops, errors, keys, multipart_ops, object_ops, sigv4, xmlio
from cloudtuner.storage.context import XML_CONTENT_TYPE, OperationContext
from cloudtuner.storage.credentials import CredentialResolver
from cloudtuner.storage.events import StorageObserver
from cloudtuner.storage.messages import ClientDisconnected, S3Request, S3Response
from cloudtuner.storage.objects import FilesystemObjectStore

logger = logging.getLogger(__name__)

Operation = Callable[[OperationContext], Awaitable[S3Response]]

#: S3 sub-resources this endpoint does not implement (any method, bucket or object level).
UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "encryption", "intelligent-tiering",
        "inventory", "legal-hold", "lifecycle", "logging", "metadataTable", "metrics", "notification",
        "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock",
        "replication", "requestPayment", "restore", "retention", "select", "tagging", "torrent",
        "versions", "website",
    }
)  # fmt: skip


class S3Handler:
    """Serve S3 requests from a :class:`FilesystemObjectStore`, signed by resolver credentials."""

    def __init__(
        self,
        store: FilesystemObjectStore,
        credentials: CredentialResolver,
        *,
        clock: Clock | None = None,
        max_skew: timedelta = sigv4.DEFAULT_MAX_SKEW,
        trust_forwarded_host: bool = False,
        allow_sigv2: bool = True,
        observer: StorageObserver | None = None,
    ) -> None:
        """Build the handler.

        ``clock`` defaults to the system clock; ``max_skew`` bounds the difference between a signed
        request's time and now (S3: 15 minutes); ``trust_forwarded_host`` also accepts signatures
        over ``X-Forwarded-Host``; ``allow_sigv2`` accepts Signature Version 2 as well, as boto3
        presigns with it by default (see :class:`~cloudtuner.storage.sigv4.SigV4Verifier`).
        ``observer`` hears about writes and deletions of the keys it tracks (``storage.events``).
        """
        self.store = store
        self.observer = observer
        self._verifier = sigv4.SigV4Verifier(
            credentials,
            clock=clock,
            max_skew=max_skew,
            trust_forwarded_host=trust_forwarded_host,
            allow_sigv2=allow_sigv2,
        )

    async def handle(self, request: S3Request) -> S3Response:
        """Answer one request. Never raises for client errors; unexpected errors become 500 XML."""
        request_id = secrets.token_hex(8).upper()
        body = _TrackedBody(request.body)
        request = replace(request, body=body)
        try:
            response = await self._handle(request, request_id)
        except ClientDisconnected:
            logger.info("S3 %s %s: the client went away mid-request", request.method, request.path)
            response = _error_response(request, errors.IncompleteBody(), request_id)
        except errors.S3Error as error:
            if error.status >= 500:
                logger.warning("S3 %s %s failed: %s", request.method, request.path, error.message)
            response = _error_response(request, error, request_id)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                failure = errors.InternalError("The server has no disk space left for this object.")
            else:
                logger.exception("S3 %s %s failed", request.method, request.path)
                failure = errors.InternalError()
            response = _error_response(request, failure, request_id)
        except Exception:
            logger.exception("S3 %s %s failed", request.method, request.path)
            response = _error_response(request, errors.InternalError(), request_id)
        response.headers.extend([("x-amz-request-id", request_id), ("x-amz-id-2", request_id)])
        if not body.exhausted and _declares_body(request):
            # The client may still be sending (or, after "Expect: 100-continue", may never send) the
            # body we did not read: the connection cannot be reused for another request.
            response.headers.append(("Connection", "close"))
        return response

    async def _handle(self, request: S3Request, request_id: str) -> S3Response:
        query = dict(reversed(sigv4.decode_query(request.query)))
        verified = await self._verifier.verify(request, query)
        bucket, key = keys.split_path(request.path)
        if bucket is not None:
            keys.validate_bucket_name(bucket)
        if key is not None:
            keys.validate_key(key)
        context = OperationContext(request, query, bucket, key, verified, self.store, request_id, self.observer)
        if bucket is not None and key is not None:
            context.require_key_access(bucket, key)
        operation = route(request.method.upper(), bucket, key, query, request.headers.names())
        return await operation(context)


def route(method: str, bucket: str | None, key: str | None, query: Mapping[str, str], headers: set[str]) -> Operation:
    """Return the operation for a request; raise MethodNotAllowed or NotImplemented.

    ``headers`` is the set of lower-case header names (``x-amz-copy-source`` selects CopyObject).
    """
    unsupported = UNSUPPORTED_SUBRESOURCES.intersection(query)
    if unsupported:
        raise errors.NotImplementedOperation(f"The {sorted(unsupported)[0]!r} sub-resource is not supported.")
    if bucket is None:
        if method == "GET":
            return bucket_ops.list_buckets
        raise errors.MethodNotAllowed()
    if key is None:
        return _route_bucket(method, query)
    return _route_object(method, query, headers)


def _route_bucket(method: str, query: Mapping[str, str]) -> Operation:
    if method == "GET":
        if "uploads" in query:
            raise errors.NotImplementedOperation("ListMultipartUploads is not supported.")
        if "location" in query:
            return bucket_ops.get_bucket_location
        if "versioning" in query:
            return bucket_ops.get_bucket_versioning
        if query.get("list-type") == "2":
            return bucket_ops.list_objects_v2
        return bucket_ops.list_objects_v1
    if method == "HEAD":
        return bucket_ops.head_bucket
    if method == "PUT":
        if "versioning" in query or "location" in query:
            raise errors.NotImplementedOperation()
        return bucket_ops.create_bucket
    if method == "DELETE":
        return bucket_ops.delete_bucket
    if method == "POST":
        if "delete" in query:
            return bucket_ops.delete_objects
        raise errors.NotImplementedOperation("POST uploads from HTML forms are not supported.")
    raise errors.MethodNotAllowed()


def _route_object(method: str, query: Mapping[str, str], headers: set[str]) -> Operation:
    upload = "uploadId" in query
    if method == "PUT":
        if upload:
            return multipart_ops.upload_part
        if "x-amz-copy-source" in headers:
            return object_ops.copy_object
        return object_ops.put_object
    if method == "GET":
        return multipart_ops.list_parts if upload else object_ops.get_object
    if method == "HEAD":
        return object_ops.head_object
    if method == "DELETE":
        return multipart_ops.abort_multipart_upload if upload else object_ops.delete_object
    if method == "POST":
        if "uploads" in query:
            return multipart_ops.create_multipart_upload
        if upload:
            return multipart_ops.complete_multipart_upload
        raise errors.NotImplementedOperation()
    raise errors.MethodNotAllowed()


class _TrackedBody:
    """The request body, remembering whether it was read to the end."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self.exhausted = False

    def __aiter__(self) -> _TrackedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._source)
        except StopAsyncIteration:
            self.exhausted = True
            raise


def _declares_body(request: S3Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return request.headers.get("transfer-encoding") is not None


def _resource(request: S3Request) -> str:
    try:
        bucket, key = keys.split_path(request.path)
    except errors.S3Error:
        return request.path or "/"
    if bucket is None:
        return "/"
    return f"/{bucket}" + (f"/{key}" if key is not None else "")


def _error_response(request: S3Request, error: errors.S3Error, request_id: str) -> S3Response:
    headers = list(error.headers)
    if request.method.upper() == "HEAD":
        return S3Response(error.status, [*headers, ("Content-Length", "0")], b"")
    body = xmlio.error_document(error, _resource(request), request_id)
    return S3Response(
        error.status,
        [("Content-Type", XML_CONTENT_TYPE), ("Content-Length", str(len(body))), *headers],
        body,
    )
