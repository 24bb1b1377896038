"""Decoding of ``Content-Encoding: aws-chunked`` request bodies.

The body is a sequence of ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`` chunks ending with
a zero-size chunk, optionally followed by trailing headers (``x-amz-checksum-crc32:<b64>\\r\\n``,
and ``x-amz-trailer-signature:<sig>\\r\\n`` when the trailer is signed) and a final empty line.
(HTTP ``Transfer-Encoding: chunked`` is a separate, outer layer that the HTTP server removes.)

With ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` every chunk signature is chained from the
request's seed signature and verified; with ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` chunks carry no
signature. Decoded data is yielded as it arrives, never buffered whole; a chunk's signature is
checked when the chunk ends, and the object store only publishes an object once the whole stream
was read without error, so data of a chunk that fails its check never becomes visible.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

from cloudtuner.storage import errors
from cloudtuner.storage.sigv4 import SigningContext

MAX_LINE = 8 * 1024
MAX_TRAILER_LINES = 16
MAX_CHUNK_SIZE = 64 * 1024 * 1024


class _Reader:
    """Pull bytes out of an async stream, by lines or by bounded slices."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._buffer = bytearray()

    async def _pull(self) -> bytes:
        try:
            return await anext(self._source)
        except StopAsyncIteration:
            raise errors.IncompleteBody("The aws-chunked body ended before its final chunk.") from None

    async def readline(self) -> bytes:
        """Return the next line without its CRLF; raise IncompleteBody at EOF, InvalidRequest if long."""
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > MAX_LINE:
                raise errors.InvalidRequest("An aws-chunked header line is too long.")
            self._buffer += await self._pull()

    async def read_some(self, limit: int) -> bytes:
        """Return between 1 and ``limit`` bytes; raise IncompleteBody at EOF."""
        if not self._buffer:
            data = await self._pull()
            while not data:
                data = await self._pull()
            if len(data) <= limit:
                return data
            self._buffer += data
        piece = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        return piece

    async def expect_crlf(self) -> None:
        """Consume the CRLF that ends a chunk's data; raise InvalidRequest if something else is there."""
        while len(self._buffer) < 2:
            self._buffer += await self._pull()
        if self._buffer[:2] != b"\r\n":
            raise errors.InvalidRequest("An aws-chunked chunk is longer than its declared size.")
        del self._buffer[:2]

    async def rest_is_empty(self) -> bool:
        """Return whether nothing but whitespace follows (consumes the rest of the stream)."""
        while True:
            if self._buffer.strip():
                return False
            self._buffer.clear()
            try:
                self._buffer += await anext(self._source)
            except StopAsyncIteration:
                return True


class AwsChunkedDecoder:
    """An async iterator over the decoded data of an aws-chunked body.

    After it is exhausted, :attr:`trailers` holds the trailing headers (lower-case names) and
    :attr:`decoded_size` the number of data bytes. Iterating raises S3 errors: IncompleteBody for a
    truncated body or one whose size does not match ``decoded_length``, InvalidRequest for a
    malformed one, SignatureDoesNotMatch for a bad chunk or trailer signature.
    """

    def __init__(
        self,
        source: AsyncIterator[bytes],
        *,
        signing: SigningContext | None,
        signed_trailer: bool = False,
        decoded_length: int | None = None,
    ) -> None:
        """Decode ``source``; ``signing`` verifies chunk signatures (None: unsigned chunks)."""
        self._reader = _Reader(source)
        self._signing = signing
        self._signed_trailer = signed_trailer
        self._decoded_length = decoded_length
        self._previous = signing.seed_signature if signing else ""
        self.trailers: dict[str, str] = {}
        self.decoded_size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = self._parse_chunk_header(await self._reader.readline())
            hasher = hashlib.sha256() if self._signing else None
            remaining = size
            while remaining:
                data = await self._reader.read_some(remaining)
                remaining -= len(data)
                self.decoded_size += len(data)
                if hasher is not None:
                    hasher.update(data)
                yield data
            if self._signing is not None:
                assert hasher is not None
                self._check_chunk_signature(signature, hasher.hexdigest())
            if size == 0:
                break
            await self._reader.expect_crlf()
        await self._read_trailer()
        if self._decoded_length is not None and self._decoded_length != self.decoded_size:
            raise errors.IncompleteBody(
                f"x-amz-decoded-content-length says {self._decoded_length} bytes, the body held {self.decoded_size}."
            )

    def _parse_chunk_header(self, line: bytes) -> tuple[int, str | None]:
        head, *extensions = line.split(b";")
        try:
            size = int(head.strip(), 16)
        except ValueError:
            raise errors.InvalidRequest("An aws-chunked chunk header is malformed.") from None
        if size < 0 or size > MAX_CHUNK_SIZE:
            raise errors.InvalidRequest("An aws-chunked chunk is larger than allowed.")
        signature = None
        for extension in extensions:
            name, _, value = extension.partition(b"=")
            if name.strip() == b"chunk-signature":
                signature = value.strip().decode("ascii", "replace")
        return size, signature

    def _check_chunk_signature(self, signature: str | None, chunk_sha256: str) -> None:
        assert self._signing is not None
        if signature is None:
            raise errors.SignatureDoesNotMatch("An aws-chunked chunk has no chunk-signature.")
        expected = self._signing.chunk_signature(self._previous, chunk_sha256)
        if not hmac.compare_digest(expected, signature.lower()):
            raise errors.SignatureDoesNotMatch("The signature of an aws-chunked chunk does not match.")
        self._previous = expected

    async def _read_trailer(self) -> None:
        lines: list[tuple[str, str]] = []
        trailer_signature: str | None = None
        while True:
            line = await self._reader.readline()
            if not line:
                break
            if len(lines) >= MAX_TRAILER_LINES:
                raise errors.InvalidRequest("The aws-chunked trailer has too many headers.")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise errors.InvalidRequest("An aws-chunked trailing header is malformed.")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                trailer_signature = value.lower()
            else:
                lines.append((name, value))
        if self._signed_trailer and self._signing is not None:
            canonical = "".join(f"{name}:{value}\n" for name, value in lines).encode("latin-1")
            expected = self._signing.trailer_signature(self._previous, canonical)
            if trailer_signature is None or not hmac.compare_digest(expected, trailer_signature):
                raise errors.SignatureDoesNotMatch("The signature of the aws-chunked trailer does not match.")
        self.trailers = dict(lines)
        if not await self._reader.rest_is_empty():
            raise errors.InvalidRequest("Data follows the end of the aws-chunked body.")
