"""Checksums, payload integrity claims, credential scopes, routing and the listing cursor."""

from __future__ import annotations

import base64
import hashlib
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.httpchecksum import Crc32Checksum, Sha1Checksum, Sha256Checksum

from cloudtuner.storage import S3Credential, S3Headers, S3Request, bucket_ops, errors, handler, sigv4
from cloudtuner.storage import checksums as sums
from cloudtuner.storage.context import attributes_from_headers, evaluate_preconditions
from cloudtuner.storage.layout import ObjectInfo
from cloudtuner.storage.listing import Cursor
from cloudtuner.storage.payload import RequestPayload
from tests.unit.storage import capture

# --- checksums -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "botocore_class"), [("crc32", Crc32Checksum), ("sha1", Sha1Checksum), ("sha256", Sha256Checksum)]
)
def test_checksums_match_botocore(algorithm: str, botocore_class: type) -> None:
    data = b"the quick brown fox" * 1000
    expected = botocore_class()
    expected.update(data)
    digests = sums.DigestSet([algorithm, "md5"])
    for start in range(0, len(data), 777):
        digests.update(data[start : start + 777])
    assert sums.b64(digests.digests()[algorithm]) == expected.b64digest()
    assert digests.digests()["md5"] == hashlib.md5(data).digest()
    assert digests.size == len(data)


def test_crc32c_known_value() -> None:
    # CRC-32C of "123456789" is 0xE3069283 (the check value of the Castagnoli polynomial).
    assert sums.compute("crc32c", b"123456789") == bytes.fromhex("e3069283")
    digests = sums.DigestSet(["crc32c"])
    digests.update(b"12345")
    digests.update(b"6789")
    assert digests.digests()["crc32c"] == bytes.fromhex("e3069283")


@pytest.mark.parametrize("fallback", [False, True], ids=["zlib-ng if installed", "zlib"])
def test_crc32_matches_zlib_over_large_chunked_buffers(fallback: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fallback:
        monkeypatch.setattr(sums, "_crc32", zlib.crc32)
    data = bytes(range(256)) * 8192 + b"tail"  # 2 MiB and a bit: the large-buffer code paths
    digests = sums.DigestSet(["crc32"])
    view = memoryview(data)
    for start in range(0, len(data), 300_001):
        digests.update(view[start : start + 300_001])
    assert digests.digests()["crc32"] == zlib.crc32(data).to_bytes(4, "big")
    assert sums.compute("crc32", b"123456789") == bytes.fromhex("cbf43926")


def test_crc32c_pure_python_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sums, "_crc32c_extension", None)
    assert sums.compute("crc32c", b"123456789") == bytes.fromhex("e3069283")


def test_composite_checksum() -> None:
    parts = [zlib.crc32(b"a").to_bytes(4, "big"), zlib.crc32(b"b").to_bytes(4, "big")]
    expected = base64.b64encode(zlib.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
    assert sums.composite_checksum("crc32", parts) == f"{expected}-2"


def test_algorithm_names() -> None:
    assert sums.checksum_algorithm_of_header("X-Amz-Checksum-CRC32") == "crc32"
    assert sums.checksum_algorithm_of_header("x-amz-checksum-algorithm") is None
    assert sums.checksum_algorithm_of_header("content-type") is None
    with pytest.raises(errors.NotImplementedOperation):
        sums.checksum_algorithm_of_header("x-amz-checksum-crc64nvme")
    with pytest.raises(errors.InvalidRequest):
        sums.checked_algorithm("md4")
    with pytest.raises(errors.InvalidRequest):
        sums.decode_checksum("crc32", "AAAAAAAA")
    with pytest.raises(errors.InvalidDigest):
        sums.decode_content_md5("AAAA")


# --- payload claims --------------------------------------------------------------------------------


def _payload(headers: list[tuple[str, str]], payload_hash: str = sigv4.UNSIGNED_PAYLOAD) -> RequestPayload:
    request = S3Request("PUT", "/b/k", headers=S3Headers(headers), body=capture.stream(b"data"))
    verified = sigv4.VerifiedRequest(S3Credential("K", "S"), payload_hash, None, False)
    return RequestPayload(request, verified)


def _digests(data: bytes, *algorithms: str) -> dict[str, bytes]:
    digests = sums.DigestSet(["md5", "sha256", *algorithms])
    digests.update(data)
    return digests.digests()


def test_payload_hash_mismatch() -> None:
    payload = _payload([], hashlib.sha256(b"other").hexdigest())
    assert "sha256" in payload.algorithms
    with pytest.raises(errors.XAmzContentSHA256Mismatch):
        payload.verify(_digests(b"data"))
    _payload([], hashlib.sha256(b"data").hexdigest()).verify(_digests(b"data"))


def test_content_md5_and_checksum_headers() -> None:
    good_md5 = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    bad_md5 = base64.b64encode(hashlib.md5(b"atad").digest()).decode()
    _payload([("Content-MD5", good_md5)]).verify(_digests(b"data"))
    with pytest.raises(errors.BadDigest):
        _payload([("Content-MD5", bad_md5)]).verify(_digests(b"data"))

    crc = base64.b64encode(zlib.crc32(b"data").to_bytes(4, "big")).decode()
    payload = _payload([("x-amz-checksum-crc32", crc), ("x-amz-sdk-checksum-algorithm", "CRC32")])
    assert payload.checksum_algorithm == "crc32"
    payload.verify(_digests(b"data", "crc32"))
    assert payload.verified_checksums == {"crc32": crc}
    with pytest.raises(errors.BadDigest):
        _payload([("x-amz-checksum-crc32", crc)]).verify(_digests(b"dada", "crc32"))


@pytest.mark.parametrize(
    ("headers", "payload_hash", "error"),
    [
        ([("Content-MD5", "!!")], sigv4.UNSIGNED_PAYLOAD, errors.InvalidDigest),
        ([("x-amz-checksum-crc32", "AAAA")], sigv4.UNSIGNED_PAYLOAD, errors.InvalidRequest),
        ([("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha1", "A" * 27 + "=")], sigv4.UNSIGNED_PAYLOAD,
         errors.InvalidRequest),
        ([("x-amz-sdk-checksum-algorithm", "CRC32")], sigv4.UNSIGNED_PAYLOAD, errors.InvalidRequest),
        ([("x-amz-trailer", "x-amz-checksum-crc32")], sigv4.UNSIGNED_PAYLOAD, errors.InvalidRequest),
        ([("x-amz-trailer", "x-amz-meta-a")], sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER, errors.InvalidRequest),
        ([], sigv4.STREAMING_PAYLOAD, errors.InvalidRequest),  # signed chunks need a SigV4 signing context
        ([("x-amz-decoded-content-length", "ten")], sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER, errors.InvalidArgument),
    ],
)  # fmt: skip
def test_malformed_integrity_headers(
    headers: list[tuple[str, str]], payload_hash: str, error: type[errors.S3Error]
) -> None:
    with pytest.raises(error):
        _payload(headers, payload_hash)


async def test_trailer_checksum_is_verified() -> None:
    data = b"trailer data"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    encoded = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % (len(data), data, crc.encode())
    request = S3Request(
        "PUT", "/b/k", headers=S3Headers([("x-amz-trailer", "x-amz-checksum-crc32")]), body=capture.stream(encoded, 5)
    )
    verified = sigv4.VerifiedRequest(S3Credential("K", "S"), sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER, None, False)
    payload = RequestPayload(request, verified)
    assert await payload.read_all(1000) == data
    assert payload.verified_checksums == {"crc32": crc}

    bad = encoded.replace(crc.encode(), b"AAAAAA==")
    request = S3Request("PUT", "/b/k", headers=request.headers, body=capture.stream(bad))
    with pytest.raises(errors.BadDigest):
        await RequestPayload(request, verified).read_all(1000)


async def test_read_all_limit() -> None:
    request = S3Request("POST", "/b?delete", body=capture.stream(b"x" * 100))
    verified = sigv4.VerifiedRequest(S3Credential("K", "S"), sigv4.UNSIGNED_PAYLOAD, None, False)
    with pytest.raises(errors.MaxMessageLengthExceeded):
        await RequestPayload(request, verified).read_all(99)


# --- headers of objects ------------------------------------------------------------------------------


def test_attributes_from_headers() -> None:
    attributes = attributes_from_headers(
        S3Headers([("Content-Type", "text/plain"), ("Content-Encoding", "gzip,aws-chunked"), ("X-Amz-Meta-Job", "42"),
                   ("Cache-Control", "no-cache"), ("Authorization", "secret")])
    )  # fmt: skip
    assert attributes.content_type == "text/plain"
    assert attributes.metadata == {"job": "42"}
    assert attributes.headers == {"content-encoding": "gzip", "cache-control": "no-cache"}
    assert attributes_from_headers(S3Headers([("Content-Encoding", "aws-chunked")])).headers == {}
    with pytest.raises(errors.MetadataTooLarge):
        attributes_from_headers(S3Headers([("x-amz-meta-big", "x" * 3000)]))


def test_preconditions() -> None:
    modified = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
    info = ObjectInfo("b", "k", 1, "abc", modified, "x/y")
    before, after = "Wed, 01 May 2024 11:00:00 GMT", "Wed, 01 May 2024 12:00:00 GMT"
    assert evaluate_preconditions(S3Headers([("If-Match", '"abc"')]), info) is False
    assert evaluate_preconditions(S3Headers([("If-None-Match", '"abc"')]), info) is True
    assert evaluate_preconditions(S3Headers([("If-None-Match", '"zzz"')]), info) is False
    assert evaluate_preconditions(S3Headers([("If-Modified-Since", after)]), info) is True
    assert evaluate_preconditions(S3Headers([("If-Modified-Since", before)]), info) is False
    with pytest.raises(errors.PreconditionFailed):
        evaluate_preconditions(S3Headers([("If-Match", '"zzz"')]), info)
    with pytest.raises(errors.PreconditionFailed):
        evaluate_preconditions(S3Headers([("If-Unmodified-Since", before)]), info)


# --- credentials -----------------------------------------------------------------------------------


def test_credential_scope() -> None:
    job = S3Credential("K", "S", bucket="outputs", prefix="jobs/42/")
    assert job.allows_key("outputs", "jobs/42/model.bin")
    assert not job.allows_key("outputs", "jobs/420/model.bin")
    assert not job.allows_key("other", "jobs/42/model.bin")
    assert not job.allows_whole_bucket("outputs")
    assert job.listing_floor("outputs", "jobs/42/checkpoints/") == "jobs/42/checkpoints/"
    assert job.listing_floor("outputs", "") == "jobs/42/"
    assert job.listing_floor("outputs", "jobs/4") == "jobs/42/"
    assert job.listing_floor("outputs", "jobs/43/") is None
    assert job.listing_floor("other", "") is None
    admin = S3Credential("A", "S")
    assert admin.is_unrestricted
    assert admin.allows_whole_bucket("any")
    assert admin.listing_floor("any", "x") == "x"
    now = datetime.now(UTC)
    assert S3Credential("E", "S", expires_at=now).is_expired(now)
    assert not S3Credential("E", "S", expires_at=now + timedelta(seconds=1)).is_expired(now)
    assert "hush-hush" not in repr(S3Credential("K", "hush-hush"))


# --- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "bucket", "key", "query", "headers", "name"),
    [
        ("GET", None, None, {}, set(), "list_buckets"),
        ("GET", "b", None, {"list-type": "2"}, set(), "list_objects_v2"),
        ("GET", "b", None, {}, set(), "list_objects_v1"),
        ("GET", "b", None, {"location": ""}, set(), "get_bucket_location"),
        ("HEAD", "b", None, {}, set(), "head_bucket"),
        ("PUT", "b", None, {}, set(), "create_bucket"),
        ("DELETE", "b", None, {}, set(), "delete_bucket"),
        ("POST", "b", None, {"delete": ""}, set(), "delete_objects"),
        ("PUT", "b", "k", {}, set(), "put_object"),
        ("PUT", "b", "k", {}, {"x-amz-copy-source"}, "copy_object"),
        ("PUT", "b", "k", {"partNumber": "1", "uploadId": "u"}, set(), "upload_part"),
        ("GET", "b", "k", {}, set(), "get_object"),
        ("GET", "b", "k", {"uploadId": "u"}, set(), "list_parts"),
        ("HEAD", "b", "k", {}, set(), "head_object"),
        ("DELETE", "b", "k", {}, set(), "delete_object"),
        ("DELETE", "b", "k", {"uploadId": "u"}, set(), "abort_multipart_upload"),
        ("POST", "b", "k", {"uploads": ""}, set(), "create_multipart_upload"),
        ("POST", "b", "k", {"uploadId": "u"}, set(), "complete_multipart_upload"),
    ],
)
def test_routing(
    method: str, bucket: str | None, key: str | None, query: dict[str, str], headers: set[str], name: str
) -> None:
    assert handler.route(method, bucket, key, query, headers).__name__ == name


@pytest.mark.parametrize(
    ("method", "bucket", "key", "query", "error"),
    [
        ("PUT", None, None, {}, errors.MethodNotAllowed),
        ("PATCH", "b", "k", {}, errors.MethodNotAllowed),
        ("GET", "b", "k", {"tagging": ""}, errors.NotImplementedOperation),
        ("PUT", "b", None, {"acl": ""}, errors.NotImplementedOperation),
        ("GET", "b", None, {"uploads": ""}, errors.NotImplementedOperation),
        ("POST", "b", "k", {}, errors.NotImplementedOperation),
        ("POST", "b", None, {}, errors.NotImplementedOperation),
    ],
)
def test_unsupported_routes(
    method: str, bucket: str | None, key: str | None, query: dict[str, str], error: type[errors.S3Error]
) -> None:
    with pytest.raises(error):
        handler.route(method, bucket, key, query, set())


def test_continuation_tokens_round_trip() -> None:
    for after, is_prefix in (("jobs/1/", True), ("ünï key", False)):
        assert bucket_ops.decode_token(bucket_ops.encode_token(after, is_prefix)) == (after, is_prefix)
    with pytest.raises(errors.InvalidArgument):
        bucket_ops.decode_token("!!!")


# --- the listing cursor ------------------------------------------------------------------------------


def test_cursor_excludes_folders_before_the_resume_point() -> None:
    cursor = Cursor("b/c/d", False)
    assert cursor.excludes_folder("a/")
    assert not cursor.excludes_folder("b/")
    assert not cursor.excludes_folder("b/c/")
    assert cursor.excludes_folder("b/a/")
    assert not cursor.excludes_folder("c/")
    assert cursor.excludes_key("b/c/d")
    assert not cursor.excludes_key("b/c/e")
    skip = Cursor("b/", True)
    assert skip.excludes_folder("b/")
    assert skip.excludes_folder("b/x/")
    assert skip.excludes_key("b/zzz")
    assert not skip.excludes_key("b0")
    assert not Cursor().excludes_key("anything")
