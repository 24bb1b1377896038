"""aws-chunked decoding: botocore's own encoder output, signed chunks, trailers, malformed bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import zlib
from collections.abc import AsyncIterator

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum

from cloudtuner.storage import errors, sigv4
from cloudtuner.storage.chunked import AwsChunkedDecoder
from tests.unit.storage.capture import stream

SECRET = "chunk-secret"
TIMESTAMP = "20240501T120000Z"
SCOPE = "20240501/us-east-1/s3/aws4_request"
SEED = "1" * 64


def context() -> sigv4.SigningContext:
    return sigv4.SigningContext(TIMESTAMP, SCOPE, sigv4.signing_key(SECRET, "20240501", "us-east-1"), SEED)


def encode_signed(chunks: list[bytes], trailer: dict[str, str] | None = None, seed: str = SEED) -> bytes:
    """An independent encoder, straight from the protocol description."""
    key = hmac.new(f"AWS4{SECRET}".encode(), b"20240501", hashlib.sha256).digest()
    for part in (b"us-east-1", b"s3", b"aws4_request"):
        key = hmac.new(key, part, hashlib.sha256).digest()
    previous, out = seed, bytearray()
    for chunk in [*chunks, b""]:
        text = f"AWS4-HMAC-SHA256-PAYLOAD\n{TIMESTAMP}\n{SCOPE}\n{previous}\n{hashlib.sha256(b'').hexdigest()}\n"
        previous = hmac.new(key, (text + hashlib.sha256(chunk).hexdigest()).encode(), hashlib.sha256).hexdigest()
        out += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        out += chunk + b"\r\n" if chunk else b""
    if trailer is not None:
        canonical = "".join(f"{k}:{v}\n" for k, v in trailer.items()).encode()
        text = f"AWS4-HMAC-SHA256-TRAILER\n{TIMESTAMP}\n{SCOPE}\n{previous}\n{hashlib.sha256(canonical).hexdigest()}"
        signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        out += b"".join(f"{k}:{v}\r\n".encode() for k, v in trailer.items())
        out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(out + b"\r\n")


async def decode(decoder: AwsChunkedDecoder) -> bytes:
    return b"".join([piece async for piece in decoder])


def botocore_encoded(data: bytes, checksum_cls: type = Crc32Checksum, chunk_size: int = 1000) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name="x-amz-checksum-crc32", chunk_size=chunk_size
    )
    return wrapper.read()


@pytest.mark.parametrize("piece", [1, 3, 999, 1000, 1001, 65536])
async def test_decodes_botocore_unsigned_trailer_bodies_whatever_the_split(piece: int) -> None:
    data = bytes(range(256)) * 20
    encoded = botocore_encoded(data)
    decoder = AwsChunkedDecoder(stream(encoded, piece), signing=None, decoded_length=len(data))
    assert await decode(decoder) == data
    expected = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert decoder.trailers == {"x-amz-checksum-crc32": expected}


async def test_empty_body_with_trailer() -> None:
    encoded = botocore_encoded(b"", checksum_cls=Sha256Checksum)
    decoder = AwsChunkedDecoder(stream(encoded), signing=None, decoded_length=0)
    assert await decode(decoder) == b""
    assert "x-amz-checksum-crc32" in decoder.trailers


async def test_signed_chunks_and_signed_trailer() -> None:
    chunks = [b"a" * 8192, b"b" * 100, b"c"]
    decoder = AwsChunkedDecoder(stream(encode_signed(chunks), 333), signing=context())
    assert await decode(decoder) == b"".join(chunks)

    trailer = {"x-amz-checksum-crc32": "AAAAAA=="}
    decoder = AwsChunkedDecoder(stream(encode_signed(chunks, trailer)), signing=context(), signed_trailer=True)
    assert await decode(decoder) == b"".join(chunks)
    assert decoder.trailers == trailer


async def test_wrong_chunk_signature() -> None:
    body = encode_signed([b"a" * 100, b"b" * 100], seed="2" * 64)
    with pytest.raises(errors.SignatureDoesNotMatch):
        await decode(AwsChunkedDecoder(stream(body), signing=context()))
    reordered = encode_signed([b"b" * 100, b"a" * 100])
    original = encode_signed([b"a" * 100, b"b" * 100])
    spliced = original[: original.index(b"\r\n") + 2] + reordered[reordered.index(b"\r\n") + 2 :]
    with pytest.raises(errors.SignatureDoesNotMatch):
        await decode(AwsChunkedDecoder(stream(spliced), signing=context()))


async def test_wrong_trailer_signature() -> None:
    body = encode_signed([b"x"], {"x-amz-checksum-crc32": "AAAAAA=="})
    tampered = body.replace(b"x-amz-checksum-crc32:AAAAAA==", b"x-amz-checksum-crc32:AAAAAQ==")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await decode(AwsChunkedDecoder(stream(tampered), signing=context(), signed_trailer=True))


async def test_unsigned_chunk_in_signed_body() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        await decode(AwsChunkedDecoder(stream(b"3\r\nabc\r\n0\r\n\r\n"), signing=context()))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"3\r\nabc\r\n", errors.IncompleteBody),  # no final chunk
        (b"5\r\nabc", errors.IncompleteBody),  # truncated data
        (b"zz\r\nabc\r\n0\r\n\r\n", errors.InvalidRequest),  # not hex
        (b"2\r\nabc\r\n0\r\n\r\n", errors.InvalidRequest),  # chunk longer than declared
        (b"3\r\nabc\r\n0\r\n\r\nextra", errors.InvalidRequest),  # data after the end
        (b"3\r\nabc\r\n0\r\nnot a header\r\n\r\n", errors.InvalidRequest),
        (b"f" * 20000, errors.InvalidRequest),  # endless header line
        (b"ffffffff\r\n", errors.InvalidRequest),  # absurd chunk size
    ],
)
async def test_malformed_bodies(body: bytes, error: type[errors.S3Error]) -> None:
    with pytest.raises(error):
        await decode(AwsChunkedDecoder(stream(body, 5000), signing=None))


async def test_decoded_length_must_match() -> None:
    with pytest.raises(errors.IncompleteBody):
        await decode(AwsChunkedDecoder(stream(b"3\r\nabc\r\n0\r\n\r\n"), signing=None, decoded_length=4))


async def test_data_is_streamed_not_buffered() -> None:
    chunk = b"z" * (1024 * 1024)
    encoded = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
    sizes: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for start in range(0, len(encoded), 65536):
            yield encoded[start : start + 65536]

    async for piece in AwsChunkedDecoder(source(), signing=None):
        sizes.append(len(piece))
    assert sum(sizes) == len(chunk)
    assert max(sizes) <= 65536
