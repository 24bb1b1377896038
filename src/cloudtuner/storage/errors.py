"""The S3 error tree of the built-in S3-compatible endpoint.

These errors are *not* part of the project's JSON error tree (``cloudtuner.core.errors``): they are
rendered by :mod:`cloudtuner.storage.handler` as S3 error XML (``Code``, ``Message``, ``Resource``,
``RequestId``) because the clients of the endpoint are S3 clients (``boto3``, ``aws s3``). Each class
carries the S3 error ``code`` and HTTP ``status`` that S3 itself uses for that condition, and its
default message as its docstring. Raise them anywhere below the handler; the handler turns them into
responses, so nothing in this package raises an HTTP exception.
"""

# ruff: noqa: N818  (class names are the S3 error codes they carry)
from __future__ import annotations

from typing import ClassVar


class S3Error(Exception):
    """We encountered an internal error. Please try again."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **fields: str) -> None:
        """Build the error; ``fields`` become extra child elements of the error XML (e.g. ``Key``)."""
        self.message = message or _docstring_message(type(self))
        self.fields = dict(fields)
        #: Extra response headers of the error reply (e.g. ``Content-Range`` of a 416).
        self.headers: list[tuple[str, str]] = []
        super().__init__(self.message)


def _docstring_message(cls: type) -> str:
    doc = (cls.__doc__ or cls.__name__).strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


# --- authentication and authorization ------------------------------------------------------------


class AccessDenied(S3Error):
    """Access Denied"""

    code = "AccessDenied"
    status = 403


class InvalidAccessKeyId(S3Error):
    """The AWS Access Key Id you provided does not exist in our records."""

    code = "InvalidAccessKeyId"
    status = 403


class ExpiredToken(S3Error):
    """The provided token has expired."""

    code = "ExpiredToken"
    status = 400


class SignatureDoesNotMatch(S3Error):
    """The request signature we calculated does not match the signature you provided.

    Check your key and signing method.
    """

    code = "SignatureDoesNotMatch"
    status = 403


class RequestTimeTooSkewed(S3Error):
    """The difference between the request time and the current time is too large."""

    code = "RequestTimeTooSkewed"
    status = 403


class AuthorizationHeaderMalformed(S3Error):
    """The authorization header is malformed."""

    code = "AuthorizationHeaderMalformed"
    status = 400


class AuthorizationQueryParametersError(S3Error):
    """The query parameters of this presigned request are malformed."""

    code = "AuthorizationQueryParametersError"
    status = 400


class MissingSecurityHeader(S3Error):
    """Your request is missing a required header."""

    code = "MissingSecurityHeader"
    status = 400


# --- the request is malformed --------------------------------------------------------------------


class InvalidRequest(S3Error):
    """The request is not valid."""

    code = "InvalidRequest"
    status = 400


class InvalidArgument(S3Error):
    """An argument of the request is not valid."""

    code = "InvalidArgument"
    status = 400


class InvalidObjectKey(InvalidArgument):
    """The object key is not allowed on this endpoint."""


class KeyTooLongError(S3Error):
    """Your key is too long."""

    code = "KeyTooLongError"
    status = 400


class InvalidBucketName(S3Error):
    """The specified bucket is not valid."""

    code = "InvalidBucketName"
    status = 400


class MalformedXML(S3Error):
    """The XML you provided was not well-formed or did not validate against our published schema."""

    code = "MalformedXML"
    status = 400


class IncompleteBody(S3Error):
    """You did not provide the number of bytes specified by the Content-Length HTTP header."""

    code = "IncompleteBody"
    status = 400


class MaxMessageLengthExceeded(S3Error):
    """Your request was too big."""

    code = "MaxMessageLengthExceeded"
    status = 400


class MetadataTooLarge(S3Error):
    """Your metadata headers exceed the maximum allowed metadata size."""

    code = "MetadataTooLarge"
    status = 400


class EntityTooLarge(S3Error):
    """Your proposed upload exceeds the maximum allowed object size."""

    code = "EntityTooLarge"
    status = 400


class MethodNotAllowed(S3Error):
    """The specified method is not allowed against this resource."""

    code = "MethodNotAllowed"
    status = 405


class NotImplementedOperation(S3Error):
    """A header or query parameter you provided implies functionality that is not implemented."""

    code = "NotImplemented"
    status = 501


# --- integrity -----------------------------------------------------------------------------------


class BadDigest(S3Error):
    """The Content-MD5 or checksum you specified did not match what we received."""

    code = "BadDigest"
    status = 400


class InvalidDigest(S3Error):
    """The Content-MD5 or checksum you specified is not valid."""

    code = "InvalidDigest"
    status = 400


class XAmzContentSHA256Mismatch(S3Error):
    """The provided 'x-amz-content-sha256' header does not match what was computed."""

    code = "XAmzContentSHA256Mismatch"
    status = 400


# --- resources -----------------------------------------------------------------------------------


class NoSuchBucket(S3Error):
    """The specified bucket does not exist."""

    code = "NoSuchBucket"
    status = 404


class NoSuchKey(S3Error):
    """The specified key does not exist."""

    code = "NoSuchKey"
    status = 404


class NoSuchUpload(S3Error):
    """The specified multipart upload does not exist.

    The upload ID may be invalid, or the upload may have been aborted or completed.
    """

    code = "NoSuchUpload"
    status = 404


class BucketNotEmpty(S3Error):
    """The bucket you tried to delete is not empty."""

    code = "BucketNotEmpty"
    status = 409


class KeyConflict(InvalidArgument):
    """The key conflicts with an existing object.

    On this endpoint a key cannot name both an object and a folder holding other objects
    (for example ``a`` and ``a/b``).
    """


class InvalidPart(S3Error):
    """One or more of the specified parts could not be found.

    The part may not have been uploaded, or the specified entity tag may not match the part's
    entity tag.
    """

    code = "InvalidPart"
    status = 400


class InvalidPartOrder(S3Error):
    """The list of parts was not in ascending order. Parts must be ordered by part number."""

    code = "InvalidPartOrder"
    status = 400


class EntityTooSmall(S3Error):
    """Your proposed upload is smaller than the minimum allowed object size."""

    code = "EntityTooSmall"
    status = 400


class InvalidRange(S3Error):
    """The requested range is not satisfiable."""

    code = "InvalidRange"
    status = 416


class PreconditionFailed(S3Error):
    """At least one of the preconditions you specified did not hold."""

    code = "PreconditionFailed"
    status = 412


class InternalError(S3Error):
    """We encountered an internal error. Please try again."""
