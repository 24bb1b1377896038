"""Telling S3-signed requests from the server's own JSON API under the same path."""

from __future__ import annotations

import pytest

from cloudtuner.storage import S3Headers, carries_s3_signature


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=CT/20260101/us-east-1/s3/aws4_request, ..."}, "", True),
        ({"Authorization": "AWS CTKEY:c2lnbmF0dXJl"}, "", True),
        ({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=CT%2F...&X-Amz-Signature=abc", True),
        ({}, "AWSAccessKeyId=CT&Signature=abc&Expires=1", True),
        ({"authorization": "aws4-hmac-sha256 lower case is not S3's"}, "", False),
        ({"Authorization": "Bearer stk_123"}, "", False),
        ({}, "", False),
        ({}, "kind=admin&all=true", False),
        ({}, "note=X-Amz-Signature", False),
    ],
)
def test_carries_s3_signature(headers: dict[str, str], query: str, expected: bool) -> None:
    assert carries_s3_signature(S3Headers(headers.items()), query) is expected
