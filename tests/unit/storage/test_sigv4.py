"""SigV4 verification against requests signed by botocore itself (in memory, never sent)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cloudtuner.storage import InMemoryCredentialResolver, S3Credential, S3Headers, S3Request, errors, sigv4
from tests.unit.storage import capture
from tests.unit.storage.capture import KEY, SECRET, SIGNED_AT_UTC, FixedClock

ODD_KEYS = [
    "plain.txt",
    "with space/and+plus.bin",
    "ünïcødé/日本語.safetensors",
    "tilde~(paren)!*'.txt",
    "a=b&c=d;e,f@g$h",
    "percent%41literal",
    "colon:and?question#hash",
]


def verifier(**overrides: Any) -> sigv4.SigV4Verifier:
    credentials = overrides.pop(
        "credentials", InMemoryCredentialResolver([S3Credential(KEY, SECRET, principal="unit")])
    )
    return sigv4.SigV4Verifier(credentials, clock=overrides.pop("clock", FixedClock()), **overrides)


async def verify(request: S3Request, **overrides: Any) -> sigv4.VerifiedRequest:
    query = dict(reversed(sigv4.decode_query(request.query)))
    return await verifier(**overrides).verify(request, query)


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_put_object_signed_by_botocore(key: str) -> None:
    prepared = capture.capture("put_object", Bucket="bucket", Key=key, Body=b"payload")
    verified = await verify(capture.to_request(prepared))
    assert verified.payload_hash == hashlib.sha256(b"payload").hexdigest()
    assert verified.credential.principal == "unit"
    assert verified.signing is not None
    assert verified.signing.scope == "20240501/us-east-1/s3/aws4_request"


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("list_buckets", {}),
        ("list_objects_v2", {"Bucket": "bucket", "Prefix": "jobs/a b+c=d&é/", "Delimiter": "/", "MaxKeys": 7}),
        ("list_objects_v2", {"Bucket": "bucket", "ContinuationToken": "a+b/c==", "StartAfter": "x y"}),
        ("list_objects", {"Bucket": "bucket", "Marker": "m~n", "Prefix": "*"}),
        ("create_multipart_upload", {"Bucket": "bucket", "Key": "k y", "Metadata": {"a": "  spaced   value "}}),
        ("upload_part", {"Bucket": "bucket", "Key": "k", "UploadId": "u/1+2", "PartNumber": 3, "Body": b"x"}),
        ("list_parts", {"Bucket": "bucket", "Key": "k", "UploadId": "abc", "MaxParts": 2, "PartNumberMarker": 1}),
        ("delete_objects", {"Bucket": "bucket", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b c"}]}}),
        ("get_object", {"Bucket": "bucket", "Key": "k", "Range": "bytes=0-9", "ResponseContentType": "a/b c"}),
        ("head_bucket", {"Bucket": "bucket"}),
        ("create_bucket", {"Bucket": "bucket"}),
        ("copy_object", {"Bucket": "bucket", "Key": "to", "CopySource": "bucket/from here"}),
    ],
)
async def test_operations_signed_by_botocore(operation: str, params: dict[str, Any]) -> None:
    await verify(capture.to_request(capture.capture(operation, **params)))


async def test_wrong_secret_is_refused_with_the_canonical_request() -> None:
    prepared = capture.capture("list_objects_v2", capture.client(secret="wrong"), Bucket="bucket", Prefix="p q")
    with pytest.raises(errors.SignatureDoesNotMatch) as caught:
        await verify(capture.to_request(prepared))
    assert "prefix=p%20q" in caught.value.fields["CanonicalRequest"]
    assert caught.value.fields["AWSAccessKeyId"] == KEY


async def test_mount_path_is_part_of_the_signature() -> None:
    prepared = capture.capture("get_object", Bucket="bucket", Key="k")
    request = capture.to_request(prepared)
    await verify(request)
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(replace(request, mount_path="/api/cloud/other"))
    root = capture.capture(
        "get_object", capture.client(endpoint="http://storage.example:8001"), Bucket="bucket", Key="k"
    )
    await verify(capture.to_request(root, mount=""))


async def test_host_is_verified_as_received_and_forwarded_host_is_opt_in() -> None:
    prepared = capture.capture("get_object", Bucket="bucket", Key="k")
    rewritten = capture.to_request(prepared, host="internal-backend:8001")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(rewritten)
    forwarded = replace(
        rewritten, headers=S3Headers([*rewritten.headers.items(), ("X-Forwarded-Host", "storage.example:8001")])
    )
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(forwarded)
    await verify(forwarded, trust_forwarded_host=True)


async def test_tampered_query_or_header_is_refused() -> None:
    prepared = capture.capture("list_objects_v2", Bucket="bucket", Prefix="a")
    request = capture.to_request(prepared)
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(replace(request, query=request.query.replace("prefix=a", "prefix=b")))
    tampered = [(k, "20240501T120001Z" if k.lower() == "x-amz-date" else v) for k, v in request.headers.items()]
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(replace(request, headers=S3Headers(tampered)))


async def test_clock_skew_limit() -> None:
    request = capture.to_request(capture.capture("list_buckets"))
    await verify(request, clock=FixedClock(SIGNED_AT_UTC + timedelta(minutes=14)))
    with pytest.raises(errors.RequestTimeTooSkewed):
        await verify(
            capture.to_request(capture.capture("list_buckets")), clock=FixedClock(SIGNED_AT_UTC + timedelta(minutes=16))
        )
    with pytest.raises(errors.RequestTimeTooSkewed):
        await verify(
            capture.to_request(capture.capture("list_buckets")), clock=FixedClock(SIGNED_AT_UTC - timedelta(minutes=16))
        )


async def test_unknown_and_expired_keys() -> None:
    request = capture.to_request(capture.capture("list_buckets", capture.client(key="CTNOBODY")))
    with pytest.raises(errors.InvalidAccessKeyId):
        await verify(request)
    expired = InMemoryCredentialResolver([S3Credential(KEY, SECRET, expires_at=SIGNED_AT_UTC - timedelta(seconds=1))])
    with pytest.raises(errors.ExpiredToken):
        await verify(capture.to_request(capture.capture("list_buckets")), credentials=expired)


async def test_presigned_v4_urls() -> None:
    url = capture.presign(
        "get_object", Bucket="bucket", Key="dir/my model.bin", ResponseContentDisposition="attachment"
    )
    assert "X-Amz-Signature=" in url
    verified = await verify(capture.url_request(url))
    assert verified.presigned
    assert verified.payload_hash == sigv4.UNSIGNED_PAYLOAD

    put_url = capture.presign("put_object", Bucket="bucket", Key="up load")
    await verify(capture.url_request(put_url, method="PUT", body=b"data"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(capture.url_request(put_url, method="GET"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(capture.url_request(url + "&extra=1"))


async def test_presigned_v4_expiry_window() -> None:
    url = capture.presign("get_object", expires=60, Bucket="bucket", Key="k")
    await verify(capture.url_request(url), clock=FixedClock(SIGNED_AT_UTC + timedelta(seconds=59)))
    with pytest.raises(errors.AccessDenied, match="expired"):
        await verify(capture.url_request(url), clock=FixedClock(SIGNED_AT_UTC + timedelta(seconds=61)))
    with pytest.raises(errors.AccessDenied, match="not valid yet"):
        await verify(capture.url_request(url), clock=FixedClock(SIGNED_AT_UTC - timedelta(minutes=20)))
    too_long = url.replace("X-Amz-Expires=60", "X-Amz-Expires=604801")
    with pytest.raises(errors.AuthorizationQueryParametersError):
        await verify(capture.url_request(too_long))


async def test_presigned_v2_urls_made_by_default_boto3() -> None:
    url = capture.presign("get_object", capture.client(), Bucket="bucket", Key="a b/c+d")
    assert "AWSAccessKeyId=" in url
    verified = await verify(capture.url_request(url))
    assert verified.signing is None
    assert verified.presigned
    with pytest.raises(errors.AccessDenied, match="expired"):
        await verify(capture.url_request(url), clock=FixedClock(SIGNED_AT_UTC + timedelta(hours=2)))
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(capture.url_request(url.replace("a%20b", "a%20c")))
    with pytest.raises(errors.AccessDenied):
        await verify(capture.url_request(url), allow_sigv2=False)


def _sign_manually(auth_class: type[SigV4Auth], headers: list[tuple[str, str]], path: str = "/bucket/k") -> S3Request:
    url = f"{capture.ENDPOINT}{path}"
    request = AWSRequest(method="GET", url=url, data=b"")
    for name, value in headers:
        request.headers.add_header(name, value)  # a second value repeats the header
    request.headers["X-Amz-Content-SHA256"] = sigv4.EMPTY_SHA256
    request.context["timestamp"] = "20240501T120000Z"
    from unittest import mock

    with mock.patch("botocore.auth.get_current_datetime", return_value=capture.SIGNED_AT):
        auth_class(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(request)
    return capture.to_request(request)  # type: ignore[arg-type]  # keeps repeated headers


async def test_header_values_are_trimmed_folded_and_joined() -> None:
    request = _sign_manually(
        S3SigV4Auth,
        [("X-Amz-Meta-Spaced", "  a   lot    of  space  "), ("X-Amz-Meta-Twice", "one"), ("X-Amz-Meta-Twice", "two")],
    )
    assert request.headers.get_all("x-amz-meta-twice") == ["one", "two"]
    await verify(request)


async def test_date_header_instead_of_x_amz_date() -> None:
    request = _sign_manually(S3SigV4Auth, [("Date", "Wed, 01 May 2024 12:00:00 GMT")])
    assert request.headers.get("x-amz-date") is None
    await verify(request)


@pytest.mark.parametrize(
    "header",
    [
        "AWS4-HMAC-SHA256 Credential=KEY/20240501/us-east-1/s3/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=KEY/2024/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=KEY/20240501/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature="
        + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=KEY/20240501/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature="
        + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=KEY/20240501/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz",
        "AWS4-ECDSA-P256-SHA256 Credential=KEY/20240501/s3/aws4_request, SignedHeaders=host, Signature=00",
    ],
)
async def test_malformed_authorization_headers(header: str) -> None:
    request = S3Request(
        "GET",
        "/bucket",
        headers=S3Headers(
            [
                ("Authorization", header),
                ("x-amz-date", "20240501T120000Z"),
                ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
            ]
        ),
    )
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        await verify(request)


async def test_missing_or_unknown_payload_hash() -> None:
    prepared = capture.capture("list_buckets")
    request = capture.to_request(prepared)
    without = S3Headers([(k, v) for k, v in request.headers.items() if k.lower() != "x-amz-content-sha256"])
    with pytest.raises(errors.InvalidRequest):
        await verify(replace(request, headers=without))
    assert sigv4.check_payload_hash("UNSIGNED-PAYLOAD") == "UNSIGNED-PAYLOAD"
    assert sigv4.check_payload_hash("A" * 64) == "a" * 64
    with pytest.raises(errors.NotImplementedOperation):
        sigv4.check_payload_hash("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD")
    with pytest.raises(errors.InvalidArgument):
        sigv4.check_payload_hash("whatever")


async def test_anonymous_and_mixed_authentication() -> None:
    with pytest.raises(errors.AccessDenied):
        await verify(S3Request("GET", "/bucket", headers=S3Headers([("Host", "h")])))
    url = capture.presign("get_object", Bucket="bucket", Key="k")
    request = capture.url_request(url)
    both = replace(request, headers=S3Headers([*request.headers.items(), ("Authorization", "AWS4-HMAC-SHA256 x")]))
    with pytest.raises(errors.InvalidArgument):
        await verify(both)


def test_canonical_query_matches_botocore() -> None:
    params = [("prefix", "a b+c/é~"), ("list-type", "2"), ("uploads", ""), ("max-keys", "10"), ("a", "z"), ("a", "b")]
    signer = SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1")
    expected = signer._canonical_query_string_params(params)  # type: ignore[attr-defined]
    from urllib.parse import quote

    raw = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" if v else k for k, v in params)
    assert sigv4.canonical_query(raw) == expected
    assert sigv4.canonical_query(raw.replace("%20", "+")) == expected  # '+' is a space in a query


@pytest.mark.parametrize("key", ODD_KEYS)
def test_canonical_uri_is_encoded_once(key: str) -> None:
    from urllib.parse import quote

    raw = "/api/cloud/storage/bucket/" + quote(key, safe="/~")
    assert sigv4.canonical_uri(raw) == raw
    # Characters a client left unencoded are encoded the way S3 encodes them, never twice.
    assert sigv4.canonical_uri("/b/a(1)!") == "/b/a%281%29%21"
    assert sigv4.canonical_uri("/b/%2e%2e/x") == "/b/../x"
    assert sigv4.canonical_uri("/b/a%2Fb") == "/b/a%2Fb"


def test_aws_documented_chunk_signature_example() -> None:
    # The example of AWS's "Signature Calculations for the Authorization Header: Transferring
    # Payload in Multiple Chunks" (protocol test vector).
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    headers = S3Headers(
        [
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", sigv4.STREAMING_PAYLOAD),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
        ]
    )
    signed = ["content-encoding", "content-length", "host", "x-amz-content-sha256", "x-amz-date",
              "x-amz-decoded-content-length", "x-amz-storage-class"]  # fmt: skip
    canonical = sigv4.canonical_request(
        "PUT",
        sigv4.canonical_uri("/examplebucket/chunkObject.txt"),
        "",
        sigv4.canonical_headers(headers, signed),
        ";".join(signed),
        sigv4.STREAMING_PAYLOAD,
    )
    scope = "20130524/us-east-1/s3/aws4_request"
    key = sigv4.signing_key(secret, "20130524", "us-east-1")
    seed = sigv4.sign(key, sigv4.string_to_sign("20130524T000000Z", scope, canonical))
    assert seed == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    context = sigv4.SigningContext("20130524T000000Z", scope, key, seed)
    first = context.chunk_signature(seed, hashlib.sha256(b"a" * 65536).hexdigest())
    assert first == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    second = context.chunk_signature(first, hashlib.sha256(b"a" * 1024).hexdigest())
    assert second == "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    final = context.chunk_signature(second, sigv4.EMPTY_SHA256)
    assert final == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("put_object", {"Bucket": "bucket", "Key": "a b/c+d", "Body": b"x", "ContentType": "text/plain"}),
        ("list_objects_v2", {"Bucket": "bucket", "Prefix": "p q"}),
        ("create_multipart_upload", {"Bucket": "bucket", "Key": "k", "Metadata": {"m": "v"}}),
        ("list_buckets", {}),
        ("head_bucket", {"Bucket": "bucket"}),
    ],
)
async def test_sigv2_header_signed_by_botocore(operation: str, params: dict[str, Any]) -> None:
    prepared = capture.capture(operation, capture.client(signature_version="s3"), **params)
    request = capture.to_request(prepared)
    assert (request.headers.get("authorization") or "").startswith(f"AWS {KEY}:")
    date = request.headers.get("date")
    assert date is not None  # botocore stamps V2 requests with the real time
    clock = FixedClock(parsedate_to_datetime(date))
    verified = await verify(request, clock=clock)
    assert verified.signing is None
    assert verified.payload_hash == sigv4.UNSIGNED_PAYLOAD

    wrong = capture.capture(operation, capture.client(signature_version="s3", secret="x"), **params)
    with pytest.raises(errors.SignatureDoesNotMatch):
        await verify(capture.to_request(wrong), clock=FixedClock(parsedate_to_datetime(date)))
    with pytest.raises(errors.RequestTimeTooSkewed):
        await verify(capture.to_request(prepared), clock=FixedClock(clock.now() + timedelta(minutes=16)))
