"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from cloudtuner.storage import checksums, errors, keys, xmlio
from cloudtuner.storage.context import (
    OperationContext,
    attributes_from_headers,
    empty_response,
    evaluate_preconditions,
    object_headers,
    quote_etag,
    xml_response,
)
from cloudtuner.storage.layout import ObjectAttributes, ObjectInfo
from cloudtuner.storage.messages import S3Response
from cloudtuner.storage.objects import Verifier
from cloudtuner.storage.payload import RequestPayload
from cloudtuner.storage.ranges import parse_range

_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def checksum_headers(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return ``x-amz-checksum-<algorithm>`` headers for verified checksums."""
    return [(checksums.header_name(algorithm), value) for algorithm, value in values.items()]


def payload_verifier(payload: RequestPayload) -> Verifier:
    """Return the store callback that checks ``payload``'s claims and yields its checksums."""

    def verify(digests: Mapping[str, bytes]) -> Mapping[str, str]:
        payload.verify(digests)
        return payload.verified_checksums

    return verify


async def put_object(ctx: OperationContext) -> S3Response:
    """PutObject: stream the body to the object, verifying every digest the client sent."""
    if_none_match = ctx.headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise errors.NotImplementedOperation("Only 'If-None-Match: *' is supported on PUT.")
    if ctx.headers.get("if-match") is not None:
        raise errors.NotImplementedOperation("Conditional writes with If-Match are not supported.")
    payload = RequestPayload(ctx.request, ctx.verified)
    algorithms = payload.algorithms
    seen: dict[str, bytes] = {}
    check = payload_verifier(payload)
    if ctx.tracks(ctx.bucket_name, ctx.object_key):
        # The observer records the object's SHA-256: compute it on the way to disk.
        algorithms = algorithms | {"sha256"}

    def verify(digests: Mapping[str, bytes]) -> Mapping[str, str]:
        seen.update(digests)
        return check(digests)

    info = await ctx.store.put_object(
        ctx.bucket_name,
        ctx.object_key,
        payload.stream,
        algorithms=algorithms,
        verify=verify,
        attributes=attributes_from_headers(ctx.headers),
        if_none_match=if_none_match is not None,
    )
    await ctx.notify_written(info, seen.get("sha256"))
    return empty_response(200, [("ETag", quote_etag(info.etag)), *checksum_headers(info.checksums)])


async def get_object(ctx: OperationContext, *, with_body: bool = True) -> S3Response:
    """GetObject (and HeadObject with ``with_body=False``): conditional and ranged reads."""
    if ctx.query.get("versionId", "null") != "null":
        raise errors.NotImplementedOperation("Object versions are not supported.")
    if "partNumber" in ctx.query:
        raise errors.NotImplementedOperation("Reading one part of an object is not supported.")
    opened = await ctx.store.open_object(ctx.bucket_name, ctx.object_key)
    try:
        info = opened.info
        headers = object_headers(info)
        if evaluate_preconditions(ctx.headers, info):
            await opened.aclose()
            return S3Response(304, [h for h in headers if h[0] in ("ETag", "Last-Modified")], b"")
        byte_range = parse_range(ctx.headers.get("range"), info.size)
        headers = _apply_overrides(headers, ctx.query)
        if byte_range is None and (ctx.headers.get("x-amz-checksum-mode") or "").upper() == "ENABLED":
            headers.extend(checksum_headers(info.checksums))
        if byte_range is None:
            status, start, length = 200, 0, info.size
        else:
            status, start, length = 206, byte_range.start, byte_range.length
            headers.append(("Content-Range", byte_range.content_range()))
        headers.append(("Content-Length", str(length)))
        if not with_body:
            await opened.aclose()
            return S3Response(status, headers, b"")
        return S3Response(status, headers, opened.stream(start, length))
    except BaseException:
        await opened.aclose()
        raise


def _apply_overrides(headers: list[tuple[str, str]], query: Mapping[str, str]) -> list[tuple[str, str]]:
    # Header values travel as latin-1; a UTF-8 override (a file name, say) is sent as its raw bytes.
    overrides = {
        header: query[param].encode("utf-8").decode("latin-1")
        for param, header in _RESPONSE_OVERRIDES.items()
        if param in query
    }
    if not overrides:
        return headers
    lowered = {name.lower() for name in overrides}
    return [h for h in headers if h[0].lower() not in lowered] + list(overrides.items())


async def head_object(ctx: OperationContext) -> S3Response:
    """HeadObject: the headers of GetObject without the body."""
    return await get_object(ctx, with_body=False)


async def delete_object(ctx: OperationContext) -> S3Response:
    """DeleteObject: 204 whether or not the object existed."""
    if ctx.query.get("versionId", "null") != "null":
        raise errors.NotImplementedOperation("Object versions are not supported.")
    await ctx.store.delete_object(ctx.bucket_name, ctx.object_key)
    await ctx.notify_removed(ctx.bucket_name, ctx.object_key)
    return empty_response(204)


def parse_copy_source(value: str) -> tuple[str, str]:
    """Return the decoded ``(bucket, key)`` of an ``x-amz-copy-source`` header; raise if invalid."""
    source, _, version = value.partition("?")
    if version and version != "versionId=null":
        raise errors.NotImplementedOperation("Object versions are not supported.")
    bucket, sep, key = unquote(source).lstrip("/").partition("/")
    if not sep or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey.")
    keys.validate_bucket_name(bucket)
    return bucket, keys.validate_key(key)


async def copy_object(ctx: OperationContext) -> S3Response:
    """CopyObject: copy another object (metadata copied, or replaced with ``REPLACE``)."""
    source_bucket, source_key = parse_copy_source(ctx.headers.get("x-amz-copy-source") or "")
    ctx.require_key_access(source_bucket, source_key)
    directive = (ctx.headers.get("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.", ArgumentName="x-amz-metadata-directive")
    if (source_bucket, source_key) == (ctx.bucket, ctx.key) and directive == "COPY":
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without "
            "changing the object's metadata."
        )
    opened = await ctx.store.open_object(source_bucket, source_key)
    try:
        source = opened.info
        if evaluate_preconditions(ctx.headers, source, prefix="x-amz-copy-source-if-"):
            raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-None-Match")
        attributes = attributes_from_headers(ctx.headers) if directive == "REPLACE" else _attributes_of(source)
        stream = opened.stream()
    except BaseException:
        await opened.aclose()
        raise
    try:
        info = await ctx.store.put_object(ctx.bucket_name, ctx.object_key, stream, attributes=attributes)
    finally:
        await stream.aclose()
    await ctx.notify_written(info)
    body = xmlio.render(
        "CopyObjectResult",
        [("LastModified", xmlio.timestamp(info.last_modified)), ("ETag", quote_etag(info.etag))],
    )
    return xml_response(body)


def _attributes_of(info: ObjectInfo) -> ObjectAttributes:
    return ObjectAttributes(content_type=info.content_type, metadata=info.metadata, headers=info.headers)
