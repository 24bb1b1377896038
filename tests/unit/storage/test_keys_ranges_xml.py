"""Key and bucket validation, Range parsing, XML rendering and safe parsing."""

from __future__ import annotations

import pytest

from cloudtuner.storage import errors, keys, xmlio
from cloudtuner.storage.ranges import parse_range

# --- keys ------------------------------------------------------------------------------------------

TRAVERSALS = [
    "..", "../x", "../../x", "a/../../x", "a/..", "./x", "a/./b", ".", "/abs", "a//b", "a/", "//x",
    "..\\x", "a\\b", "x\x00y", "x\ny", "x\x7fy",
    "%2e%2e", "%2e%2e/x", "%2E%2E%2Fx", "..%2fx", "a/%2e%2e/%2e%2e/x", "%2e/x",
    "%252e%252e%252fx", "%25252e%25252e", "..%5cx", "%5c", "x%00y",
]  # fmt: skip
FINE = ["a", "a/b/c.txt", "with space", "ünï/日本", "100%", "a%2Fb", "...", "..a", "a..", ".hidden/x", "a+b=c&d"]


@pytest.mark.parametrize("key", TRAVERSALS)
def test_traversal_keys_are_refused(key: str) -> None:
    with pytest.raises(errors.InvalidObjectKey):
        keys.validate_key(key)
    assert not keys.is_storable_key(key)


@pytest.mark.parametrize("key", FINE)
def test_ordinary_keys_are_accepted(key: str) -> None:
    assert keys.validate_key(key) == key


def test_key_length_limits() -> None:
    keys.validate_key("a" * 255 + "/" + "b" * 255)
    with pytest.raises(errors.KeyTooLongError):
        keys.validate_key("a" * 256)
    with pytest.raises(errors.KeyTooLongError):
        keys.validate_key("/".join(["abcd"] * 300))
    with pytest.raises(errors.InvalidObjectKey):
        keys.validate_key("")


@pytest.mark.parametrize("name", ["ab", "A-bucket", "-start", "end-", "a..b", "a.-b", "192.168.1.1", "x" * 64,
                                  "under_score", ".cloudtuner-s3", "xn--abc", "a/b", ".."])  # fmt: skip
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(errors.InvalidBucketName):
        keys.validate_bucket_name(name)


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket.v2", "0-models", "x" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert keys.validate_bucket_name(name) == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", (None, None)),
        ("/", (None, None)),
        ("/bucket", ("bucket", None)),
        ("/bucket/", ("bucket", None)),
        ("/bucket/a%20b/c", ("bucket", "a b/c")),
        ("/bucket/%2e%2e%2fx", ("bucket", "../x")),
        ("/bucket/a+b", ("bucket", "a+b")),
        ("/bucket//x", ("bucket", "/x")),
    ],
)
def test_split_path(raw: str, expected: tuple[str | None, str | None]) -> None:
    assert keys.split_path(raw) == expected


def test_split_path_refuses_invalid_utf8() -> None:
    with pytest.raises(errors.InvalidObjectKey):
        keys.split_path("/bucket/%ff%fe")


# --- ranges ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=90-500", 100, (90, 99)),
        ("bytes=99-99", 100, (99, 99)),
        ("Bytes = 1 - 2", 100, (1, 2)),
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    byte_range = parse_range(header, size)
    assert byte_range is not None
    assert (byte_range.start, byte_range.end) == expected
    assert byte_range.length == expected[1] - expected[0] + 1
    assert byte_range.content_range() == f"bytes {expected[0]}-{expected[1]}/{size}"


@pytest.mark.parametrize(
    "header", [None, "", "bytes=", "bytes=-", "items=0-1", "bytes=0-1,3-4", "bytes=5-2", "bytes=a-b"]
)
def test_ignored_ranges(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(errors.InvalidRange) as caught:
        parse_range(header, size)
    assert caught.value.status == 416
    assert ("Content-Range", f"bytes */{size}") in caught.value.headers


# --- xml -------------------------------------------------------------------------------------------


def test_render_with_namespace_and_escaping() -> None:
    document = xmlio.render(
        "ListBucketResult", [("Name", "b"), None, ("Contents", [("Key", 'a<b>&"c\x01')]), ("Empty", [])]
    )
    text = document.decode()
    assert text.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    )
    assert "<Key>a&lt;b&gt;&amp;&quot;c\ufffd</Key>" in text
    assert "<Empty></Empty>" in text
    parsed = xmlio.parse(document)
    assert parsed.tag == "ListBucketResult"
    contents = parsed.find("Contents")
    assert contents is not None
    assert contents.child_text("Key") == 'a<b>&"c\ufffd'


def test_error_document() -> None:
    error = errors.NoSuchKey(Key="a/b")
    document = xmlio.error_document(error, "/bucket/a/b", "REQ1").decode()
    assert "xmlns" not in document
    for part in ("<Code>NoSuchKey</Code>", "<Message>The specified key does not exist.</Message>",
                 "<Key>a/b</Key>", "<Resource>/bucket/a/b</Resource>", "<RequestId>REQ1</RequestId>"):  # fmt: skip
        assert part in document


def test_timestamp_format() -> None:
    from datetime import UTC, datetime

    assert xmlio.timestamp(datetime(2024, 1, 31, 12, 0, 5, 123456, tzinfo=UTC)) == "2024-01-31T12:00:05.123Z"


def test_parse_complete_multipart_upload_with_and_without_namespace() -> None:
    parts = '<Part><PartNumber>1</PartNumber><ETag>"abc"</ETag></Part><Part><PartNumber>2</PartNumber></Part>'
    for root in (f'<CompleteMultipartUpload xmlns="{xmlio.S3_NAMESPACE}">', "<CompleteMultipartUpload>"):
        body = f"{root}{parts}</CompleteMultipartUpload>"
        parsed = xmlio.parse(body.encode())
        assert [p.child_text("PartNumber") for p in parsed.find_all("Part")] == ["1", "2"]


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<Delete>&lol2;</Delete>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Delete>&xxe;</Delete>',
        b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><Delete/>',
        b"<Delete><Object>",
        b"not xml at all",
        b"<a/><b/>",
        b"<Delete>&undefined;</Delete>",
        b"<a>" * 40 + b"</a>" * 40,
    ],
)
def test_hostile_or_broken_xml_is_refused(document: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        xmlio.parse(document)


def test_oversized_xml_is_refused() -> None:
    with pytest.raises(errors.MaxMessageLengthExceeded):
        xmlio.parse(b"<a>" + b"x" * (xmlio.MAX_XML_BODY + 1) + b"</a>")
