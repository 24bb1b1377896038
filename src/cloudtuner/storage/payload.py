"""The body of a write request and every integrity claim made about it.

A :class:`RequestPayload` unwraps the body (plain, or aws-chunked with or without chunk signatures
and trailers) and collects what it must match: the signed ``x-amz-content-sha256`` hex digest,
``Content-MD5``, one ``x-amz-checksum-<algorithm>`` header or a checksum announced in
``x-amz-trailer`` and sent after the data. The object store computes the needed digests while it
streams the data to disk and calls :meth:`RequestPayload.verify` before it publishes anything.

Errors: XAmzContentSHA256Mismatch for the signed payload hash, BadDigest for ``Content-MD5`` and
checksums that do not match, InvalidDigest for a malformed ``Content-MD5``, InvalidRequest for
malformed or contradictory checksum headers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping

from cloudtuner.storage import checksums, errors, sigv4
from cloudtuner.storage.chunked import AwsChunkedDecoder
from cloudtuner.storage.messages import S3Request


class RequestPayload:
    """The decoded body of one request plus the digests it must match."""

    def __init__(self, request: S3Request, verified: sigv4.VerifiedRequest) -> None:
        """Inspect the headers of ``request``; raise for malformed integrity headers. Reads nothing."""
        headers = request.headers
        mode = verified.payload_hash
        self._payload_sha256 = None if mode == sigv4.UNSIGNED_PAYLOAD or mode in sigv4.STREAMING_MODES else mode
        self._decoder: AwsChunkedDecoder | None = None
        self.stream: AsyncIterator[bytes]
        self.declared_size: int | None = None
        """The body's length as the request declares it (the decoded length of an aws-chunked body)."""
        if mode in sigv4.STREAMING_MODES:
            if verified.signing is None and mode != sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER:
                raise errors.InvalidRequest("Signed aws-chunked bodies need a Signature Version 4 request.")
            self._decoder = AwsChunkedDecoder(
                request.body,
                signing=None if mode == sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER else verified.signing,
                signed_trailer=mode == sigv4.STREAMING_PAYLOAD_TRAILER,
                decoded_length=_decoded_length(headers.get("x-amz-decoded-content-length")),
            )
            self.stream = aiter(self._decoder)
            self.declared_size = _decoded_length(headers.get("x-amz-decoded-content-length"))
        else:
            self.stream = request.body
            length = headers.get("content-length")
            if length is not None and length.strip().isdigit() and headers.get("transfer-encoding") is None:
                self.declared_size = int(length)

        md5 = headers.get("content-md5")
        self._content_md5 = checksums.decode_content_md5(md5) if md5 is not None else None

        self._header_checksums: dict[str, bytes] = {}
        for name, value in headers.items():
            algorithm = checksums.checksum_algorithm_of_header(name)
            if algorithm is not None:
                self._header_checksums[algorithm] = checksums.decode_checksum(algorithm, value)
        self._trailer_checksums: list[str] = []
        trailer = headers.get("x-amz-trailer")
        if trailer:
            if mode not in (sigv4.STREAMING_PAYLOAD_TRAILER, sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER):
                raise errors.InvalidRequest("x-amz-trailer needs an aws-chunked body with a trailer.")
            for name in (n.strip() for n in trailer.split(",") if n.strip()):
                algorithm = checksums.checksum_algorithm_of_header(name)
                if algorithm is None:
                    raise errors.InvalidRequest(f"The trailing header {name!r} is not supported.")
                self._trailer_checksums.append(algorithm)
        if len(self._header_checksums) + len(self._trailer_checksums) > 1:
            raise errors.InvalidRequest(
                "Expecting a single x-amz-checksum- header. Multiple checksum types are not allowed."
            )
        sdk_algorithm = headers.get("x-amz-sdk-checksum-algorithm")
        if sdk_algorithm:
            wanted = checksums.checked_algorithm(sdk_algorithm)
            if wanted not in self._header_checksums and wanted not in self._trailer_checksums:
                raise errors.InvalidRequest(
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
                    "or x-amz-trailer headers were found."
                )
        self._verified: dict[str, str] = {}

    @property
    def algorithms(self) -> set[str]:
        """The digests the store must compute over the decoded data (``md5`` always, for the ETag)."""
        wanted = {"md5", *self._header_checksums, *self._trailer_checksums}
        if self._payload_sha256 is not None:
            wanted.add("sha256")
        return wanted

    @property
    def checksum_algorithm(self) -> str | None:
        """The flexible checksum algorithm the client sent a value for, if any."""
        return next(iter([*self._header_checksums, *self._trailer_checksums]), None)

    def verify(self, digests: Mapping[str, bytes]) -> None:
        """Check the computed ``digests`` of the whole body against every claim; raise on a mismatch.

        Call only after the stream is exhausted (trailers arrive last).
        """
        if self._payload_sha256 is not None:
            computed = digests["sha256"].hex()
            if not hmac.compare_digest(computed, self._payload_sha256):
                raise errors.XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self._payload_sha256, S3ComputedContentSHA256=computed
                )
        if self._content_md5 is not None and digests["md5"] != self._content_md5:
            raise errors.BadDigest(
                "The Content-MD5 you specified did not match what we received.",
                ExpectedDigest=self._content_md5.hex(),
                CalculatedDigest=checksums.b64(digests["md5"]),
            )
        expected = dict(self._header_checksums)
        if self._trailer_checksums:
            assert self._decoder is not None
            for algorithm in self._trailer_checksums:
                sent = self._decoder.trailers.get(checksums.header_name(algorithm))
                if sent is None:
                    raise errors.InvalidRequest(
                        f"The trailing header {checksums.header_name(algorithm)} was announced but not sent."
                    )
                expected[algorithm] = checksums.decode_checksum(algorithm, sent)
        for algorithm, value in expected.items():
            if digests[algorithm] != value:
                raise errors.BadDigest(f"The {algorithm.upper()} you specified did not match the calculated checksum.")
            self._verified[algorithm] = checksums.b64(value)

    @property
    def verified_checksums(self) -> dict[str, str]:
        """The flexible checksums (base64) that :meth:`verify` confirmed, by algorithm."""
        return dict(self._verified)

    async def read_all(self, limit: int) -> bytes:
        """Read a small body whole (XML requests), verify it, and return it.

        Raise MaxMessageLengthExceeded past ``limit`` bytes, or any error of :meth:`verify`.
        """
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.stream:
            size += len(chunk)
            if size > limit:
                raise errors.MaxMessageLengthExceeded()
            chunks.append(chunk)
        data = b"".join(chunks)
        digests = {
            "md5": hashlib.md5(data, usedforsecurity=False).digest(),
            "sha256": hashlib.sha256(data).digest(),
        }
        for algorithm in self.algorithms - set(digests):
            digests[algorithm] = checksums.compute(algorithm, data)
        self.verify(digests)
        return data


def _decoded_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise errors.InvalidArgument("x-amz-decoded-content-length must be a number of bytes.")
    return int(value)
