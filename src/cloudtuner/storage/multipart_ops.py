"""Multipart operations: Create, UploadPart, Complete, Abort, ListParts."""

from __future__ import annotations

from urllib.parse import quote

from cloudtuner.storage import checksums, errors, xmlio
from cloudtuner.storage.context import (
    OWNER_ID,
    OperationContext,
    attributes_from_headers,
    empty_response,
    quote_etag,
    xml_response,
)
from cloudtuner.storage.messages import S3Response
from cloudtuner.storage.multipart import MAX_PART_NUMBER, CompletedPart
from cloudtuner.storage.object_ops import checksum_headers, payload_verifier
from cloudtuner.storage.payload import RequestPayload

_CHECKSUM_ELEMENTS = {f"Checksum{algorithm.upper()}": algorithm for algorithm in checksums.CHECKSUM_ALGORITHMS}


def _int_param(ctx: OperationContext, name: str, default: int | None = None, maximum: int | None = None) -> int:
    value = ctx.query.get(name)
    if value is None or value == "":
        if default is None:
            raise errors.InvalidArgument(f"The {name} parameter is required.", ArgumentName=name)
        return default
    if not value.isdigit():
        raise errors.InvalidArgument(
            f"The {name} parameter must be a non-negative integer.", ArgumentName=name, ArgumentValue=value
        )
    number = int(value)
    return min(number, maximum) if maximum is not None else number


async def create_multipart_upload(ctx: OperationContext) -> S3Response:
    """CreateMultipartUpload (``POST ?uploads``)."""
    algorithm_header = ctx.headers.get("x-amz-checksum-algorithm")
    algorithm = checksums.checked_algorithm(algorithm_header) if algorithm_header else None
    upload = await ctx.store.multipart.create(
        ctx.bucket_name, ctx.object_key, attributes_from_headers(ctx.headers), algorithm
    )
    body = xmlio.render(
        "InitiateMultipartUploadResult",
        [("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id)],
    )
    headers = [("x-amz-checksum-algorithm", algorithm.upper())] if algorithm else []
    return xml_response(body, headers=headers)


async def upload_part(ctx: OperationContext) -> S3Response:
    """UploadPart (``PUT ?partNumber=N&uploadId=ID``)."""
    if ctx.headers.get("x-amz-copy-source") is not None:
        raise errors.NotImplementedOperation("UploadPartCopy is not supported.")
    part_number = _int_param(ctx, "partNumber")
    payload = RequestPayload(ctx.request, ctx.verified)
    part = await ctx.store.multipart.upload_part(
        ctx.bucket_name,
        ctx.object_key,
        ctx.query["uploadId"],
        part_number,
        payload.stream,
        algorithms=payload.algorithms,
        verify=payload_verifier(payload),
        declared_size=payload.declared_size,
    )
    return empty_response(200, [("ETag", quote_etag(part.etag)), *checksum_headers(part.checksums)])


async def complete_multipart_upload(ctx: OperationContext) -> S3Response:
    """CompleteMultipartUpload (``POST ?uploadId=ID`` with the XML part list)."""
    payload = RequestPayload(ctx.request, ctx.verified)
    document = xmlio.parse(await payload.read_all(xmlio.MAX_XML_BODY))
    if document.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    parts = []
    for element in document.find_all("Part"):
        number, etag = element.child_text("PartNumber"), element.child_text("ETag")
        if number is None or etag is None or not number.isdigit() or not 1 <= int(number) <= MAX_PART_NUMBER:
            raise errors.MalformedXML("Every Part needs a PartNumber between 1 and 10000 and an ETag.")
        sums = {
            algorithm: text
            for tag, algorithm in _CHECKSUM_ELEMENTS.items()
            if (text := element.child_text(tag)) is not None
        }
        parts.append(CompletedPart(int(number), etag.strip('"'), sums))
    info = await ctx.store.multipart.complete(ctx.bucket_name, ctx.object_key, ctx.query["uploadId"], parts)
    await ctx.notify_written(info)
    children: list[xmlio.Node | None] = [
        ("Location", _location(ctx)),
        ("Bucket", info.bucket),
        ("Key", info.key),
        ("ETag", quote_etag(info.etag)),
    ]
    children.extend((f"Checksum{alg.upper()}", value) for alg, value in info.checksums.items())
    return xml_response(xmlio.render("CompleteMultipartUploadResult", children))


def _location(ctx: OperationContext) -> str:
    scheme = (ctx.headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    host = ctx.headers.get("host") or "localhost"
    path = f"{ctx.request.mount_path.rstrip('/')}/{quote(ctx.bucket_name)}/{quote(ctx.object_key)}"
    return f"{scheme}://{host}{path}"


async def abort_multipart_upload(ctx: OperationContext) -> S3Response:
    """AbortMultipartUpload (``DELETE ?uploadId=ID``)."""
    await ctx.store.multipart.abort(ctx.bucket_name, ctx.object_key, ctx.query["uploadId"])
    return empty_response(204)


async def list_parts(ctx: OperationContext) -> S3Response:
    """ListParts (``GET ?uploadId=ID``) with ``max-parts`` and ``part-number-marker``."""
    max_parts = _int_param(ctx, "max-parts", default=1000, maximum=1000)
    marker = _int_param(ctx, "part-number-marker", default=0)
    page = await ctx.store.multipart.list_parts(
        ctx.bucket_name, ctx.object_key, ctx.query["uploadId"], max_parts=max_parts, marker=marker
    )
    owner: xmlio.Node = ("ID", OWNER_ID)
    children: list[xmlio.Node | None] = [
        ("Bucket", page.upload.bucket),
        ("Key", page.upload.key),
        ("UploadId", page.upload.upload_id),
        ("Initiator", [owner, ("DisplayName", OWNER_ID)]),
        ("Owner", [owner, ("DisplayName", OWNER_ID)]),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", str(marker)),
        ("NextPartNumberMarker", str(page.next_marker)) if page.next_marker is not None else None,
        ("MaxParts", str(max_parts)),
        ("IsTruncated", xmlio.boolean(page.is_truncated)),
    ]
    if page.upload.checksum_algorithm:
        children.append(("ChecksumAlgorithm", page.upload.checksum_algorithm.upper()))
    for part in page.parts:
        fields: list[xmlio.Node | None] = [
            ("PartNumber", str(part.part_number)),
            ("LastModified", xmlio.timestamp(part.last_modified)),
            ("ETag", quote_etag(part.etag)),
            ("Size", str(part.size)),
        ]
        fields.extend((f"Checksum{alg.upper()}", value) for alg, value in part.checksums.items())
        children.append(("Part", fields))
    return xml_response(xmlio.render("ListPartsResult", children))
