"""Service and bucket operations: ListBuckets, Create/Head/DeleteBucket, GetBucketLocation,
GetBucketVersioning, ListObjectsV2, ListObjects (V1) and DeleteObjects."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from cloudtuner.storage import errors, keys, xmlio
from cloudtuner.storage.context import OWNER_ID, OperationContext, empty_response, quote_etag, xml_response
from cloudtuner.storage.layout import ObjectInfo
from cloudtuner.storage.listing import ListPage
from cloudtuner.storage.messages import S3Response
from cloudtuner.storage.payload import RequestPayload

MAX_KEYS = 1000
MAX_DELETE_OBJECTS = 1000
_OWNER: xmlio.Node = ("Owner", [("ID", OWNER_ID), ("DisplayName", OWNER_ID)])


async def list_buckets(ctx: OperationContext) -> S3Response:
    """ListBuckets (``GET /``): the buckets this credential may use."""
    buckets = [b for b in await ctx.store.list_buckets() if ctx.credential.allows_bucket(b.name)]
    entries: list[xmlio.Node | None] = [
        ("Bucket", [("Name", b.name), ("CreationDate", xmlio.timestamp(b.created))]) for b in buckets
    ]
    return xml_response(xmlio.render("ListAllMyBucketsResult", [_OWNER, ("Buckets", entries)]))


async def create_bucket(ctx: OperationContext) -> S3Response:
    """CreateBucket (``PUT /bucket``); succeeds when the bucket exists already, as in us-east-1."""
    if not ctx.credential.allows_whole_bucket(ctx.bucket_name):
        raise errors.AccessDenied("This access key may not create this bucket.")
    payload = RequestPayload(ctx.request, ctx.verified)
    body = await payload.read_all(xmlio.MAX_XML_BODY)
    if body.strip():
        document = xmlio.parse(body)
        if document.tag != "CreateBucketConfiguration":
            raise errors.MalformedXML()
    await ctx.store.create_bucket(ctx.bucket_name)
    return empty_response(200, [("Location", f"/{ctx.bucket_name}")])


async def head_bucket(ctx: OperationContext) -> S3Response:
    """HeadBucket."""
    _require_bucket_access(ctx)
    await ctx.store.head_bucket(ctx.bucket_name)
    return empty_response(200, [("x-amz-bucket-region", ctx.verified.region)])


async def delete_bucket(ctx: OperationContext) -> S3Response:
    """DeleteBucket: only an empty bucket, only with a key not limited to a prefix."""
    if not ctx.credential.allows_whole_bucket(ctx.bucket_name):
        raise errors.AccessDenied("This access key may not delete this bucket.")
    await ctx.store.delete_bucket(ctx.bucket_name)
    return empty_response(204)


async def get_bucket_location(ctx: OperationContext) -> S3Response:
    """GetBucketLocation: empty, meaning us-east-1, the region clients should sign for."""
    _require_bucket_access(ctx)
    await ctx.store.head_bucket(ctx.bucket_name)
    return xml_response(xmlio.render("LocationConstraint", []))


async def get_bucket_versioning(ctx: OperationContext) -> S3Response:
    """GetBucketVersioning: versioning is never enabled here."""
    _require_bucket_access(ctx)
    await ctx.store.head_bucket(ctx.bucket_name)
    return xml_response(xmlio.render("VersioningConfiguration", []))


def _require_bucket_access(ctx: OperationContext) -> None:
    if not ctx.credential.allows_bucket(ctx.bucket_name):
        raise errors.AccessDenied("This access key may not use this bucket.")


def _max_keys(ctx: OperationContext) -> int:
    value = ctx.query.get("max-keys")
    if value is None or value == "":
        return MAX_KEYS
    if not value.isdigit():
        raise errors.InvalidArgument(
            "Provided max-keys not an integer or within integer range.", ArgumentName="max-keys", ArgumentValue=value
        )
    return min(int(value), MAX_KEYS)


def encode_token(after: str, is_prefix: bool) -> str:
    """Return the opaque continuation token of a resume point."""
    raw = ("p" if is_prefix else "k") + after
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> tuple[str, bool]:
    """Return the resume point of a continuation token; raise InvalidArgument if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raw = ""
    if len(raw) < 2 or raw[0] not in "kp":
        raise errors.InvalidArgument("The continuation token provided is incorrect.", ArgumentName="continuation-token")
    return raw[1:], raw[0] == "p"


async def _list(ctx: OperationContext, after: str | None, after_is_prefix: bool, max_keys: int) -> ListPage:
    prefix = ctx.query.get("prefix", "")
    floor = ctx.credential.listing_floor(ctx.bucket_name, prefix)
    if floor is None:
        raise errors.AccessDenied("This access key may not list this prefix.")
    return await ctx.store.list_objects(
        ctx.bucket_name,
        prefix=prefix,
        delimiter=ctx.query.get("delimiter") or None,
        max_keys=max_keys,
        after=after,
        after_is_prefix=after_is_prefix,
        key_filter=floor,
    )


def _url_encoding(ctx: OperationContext) -> bool:
    encoding = ctx.query.get("encoding-type")
    if encoding not in (None, "", "url"):
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request", ArgumentName="encoding-type")
    return encoding == "url"


def _text(value: str, url_encode: bool) -> str:
    return quote(value, safe="/") if url_encode else value


def _contents(info: ObjectInfo, url_encode: bool, owner: bool) -> xmlio.Node:
    return (
        "Contents",
        [
            ("Key", _text(info.key, url_encode)),
            ("LastModified", xmlio.timestamp(info.last_modified)),
            ("ETag", quote_etag(info.etag)),
            ("Size", str(info.size)),
            _OWNER if owner else None,
            ("StorageClass", "STANDARD"),
        ],
    )


async def list_objects_v2(ctx: OperationContext) -> S3Response:
    """ListObjectsV2 (``GET /bucket?list-type=2``)."""
    url_encode = _url_encoding(ctx)
    max_keys = _max_keys(ctx)
    token = ctx.query.get("continuation-token")
    start_after = ctx.query.get("start-after")
    after: str | None
    if token is not None:
        after, after_is_prefix = decode_token(token)
    else:
        after, after_is_prefix = (start_after or None), False
    page = await _list(ctx, after, after_is_prefix, max_keys)
    prefix, delimiter = ctx.query.get("prefix", ""), ctx.query.get("delimiter")
    children: list[xmlio.Node | None] = [
        ("Name", ctx.bucket_name),
        ("Prefix", _text(prefix, url_encode)),
        ("Delimiter", _text(delimiter, url_encode)) if delimiter else None,
        ("MaxKeys", str(max_keys)),
        ("KeyCount", str(len(page.objects) + len(page.common_prefixes))),
        ("IsTruncated", xmlio.boolean(page.is_truncated)),
        ("EncodingType", "url") if url_encode else None,
        ("ContinuationToken", token) if token is not None else None,
        ("StartAfter", _text(start_after, url_encode)) if start_after else None,
    ]
    if page.is_truncated and page.next_after is not None:
        children.append(("NextContinuationToken", encode_token(page.next_after, page.next_is_prefix)))
    owner = ctx.query.get("fetch-owner") == "true"
    children.extend(_contents(info, url_encode, owner) for info in page.objects)
    children.extend(("CommonPrefixes", [("Prefix", _text(p, url_encode))]) for p in page.common_prefixes)
    return xml_response(xmlio.render("ListBucketResult", children))


async def list_objects_v1(ctx: OperationContext) -> S3Response:
    """ListObjects, version 1 (``GET /bucket`` without ``list-type``), with ``marker``."""
    url_encode = _url_encoding(ctx)
    max_keys = _max_keys(ctx)
    marker = ctx.query.get("marker") or None
    delimiter = ctx.query.get("delimiter") or None
    marker_is_prefix = bool(marker and delimiter and marker.endswith(delimiter))
    page = await _list(ctx, marker, marker_is_prefix, max_keys)
    children: list[xmlio.Node | None] = [
        ("Name", ctx.bucket_name),
        ("Prefix", _text(ctx.query.get("prefix", ""), url_encode)),
        ("Marker", _text(marker or "", url_encode)),
        ("NextMarker", _text(page.next_after, url_encode))
        if page.is_truncated and page.next_after is not None
        else None,
        ("MaxKeys", str(max_keys)),
        ("Delimiter", _text(delimiter, url_encode)) if delimiter else None,
        ("IsTruncated", xmlio.boolean(page.is_truncated)),
        ("EncodingType", "url") if url_encode else None,
    ]
    children.extend(_contents(info, url_encode, True) for info in page.objects)
    children.extend(("CommonPrefixes", [("Prefix", _text(p, url_encode))]) for p in page.common_prefixes)
    return xml_response(xmlio.render("ListBucketResult", children))


async def delete_objects(ctx: OperationContext) -> S3Response:
    """DeleteObjects (``POST /bucket?delete``): per-key results, per-key AccessDenied for keys
    outside the credential's scope."""
    payload = RequestPayload(ctx.request, ctx.verified)
    document = xmlio.parse(await payload.read_all(xmlio.MAX_XML_BODY))
    if document.tag != "Delete":
        raise errors.MalformedXML()
    entries = document.find_all("Object")
    if not entries or len(entries) > MAX_DELETE_OBJECTS:
        raise errors.MalformedXML("A Delete request lists between 1 and 1000 objects.")
    quiet = (document.child_text("Quiet") or "").lower() == "true"
    await ctx.store.head_bucket(ctx.bucket_name)
    results: list[xmlio.Node | None] = []
    for entry in entries:
        key = entry.find("Key")
        if key is None:
            raise errors.MalformedXML("Every Object of a Delete request needs a Key.")
        try:
            if (entry.child_text("VersionId") or "null") != "null":
                raise errors.NotImplementedOperation("Object versions are not supported.")
            keys.validate_key(key.text)
            ctx.require_key_access(ctx.bucket_name, key.text)
            await ctx.store.delete_object(ctx.bucket_name, key.text)
        except errors.S3Error as error:
            results.append(("Error", [("Key", key.text), ("Code", error.code), ("Message", error.message)]))
            continue
        await ctx.notify_removed(ctx.bucket_name, key.text)
        if not quiet:
            results.append(("Deleted", [("Key", key.text)]))
    return xml_response(xmlio.render("DeleteResult", results))
