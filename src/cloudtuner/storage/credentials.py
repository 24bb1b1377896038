"""S3 credentials: what a key may touch, for how long, and where the endpoint looks keys up.

The handler asks a :class:`CredentialResolver` for the secret of the access key id a request was
signed with; the server implements it on the database (per-job ephemeral keys and long-lived ones
an admin creates), tests use :class:`InMemoryCredentialResolver`. The handler, not the resolver,
enforces expiry and scope: a key limited to ``bucket``/``prefix`` is refused with ``AccessDenied``
everywhere else.

Prefixes are compared as plain string prefixes, as S3 policies do: give ``jobs/42/`` (with the
slash) to keep ``jobs/420/`` out.
"""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class S3Credential:
    """An access key and its limits.

    - ``bucket``: the only bucket the key may use, or None for any bucket.
    - ``prefix``: the key prefix the key is limited to inside ``bucket``, or None for any key.
      A prefix without a bucket limits keys in every bucket.
    - ``expires_at``: an aware datetime after which the key is refused, or None for no expiry.
    - ``principal``: who the key belongs to (e.g. ``job:42``), for logs; never the secret.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str | None = None
    prefix: str | None = None
    expires_at: datetime | None = None
    principal: str | None = None

    def is_expired(self, now: datetime) -> bool:
        """Return whether the key has expired at ``now`` (an aware datetime)."""
        return self.expires_at is not None and now >= self.expires_at

    @property
    def is_unrestricted(self) -> bool:
        """Whether the key may use every bucket and every key."""
        return self.bucket is None and not self.prefix

    def allows_bucket(self, bucket: str) -> bool:
        """Return whether the key may use ``bucket`` at all (for some key in it)."""
        return self.bucket is None or self.bucket == bucket

    def allows_whole_bucket(self, bucket: str) -> bool:
        """Return whether the key may act on ``bucket`` as a whole (create or delete it)."""
        return self.allows_bucket(bucket) and not self.prefix

    def allows_key(self, bucket: str, key: str) -> bool:
        """Return whether the key may read or write object ``key`` of ``bucket``."""
        return self.allows_bucket(bucket) and key.startswith(self.prefix or "")

    def listing_floor(self, bucket: str, prefix: str) -> str | None:
        """Return the prefix a listing of ``bucket`` under ``prefix`` must be narrowed to, or None.

        A listing is allowed when ``prefix`` lies inside the key's prefix (nothing to narrow: the
        request prefix is returned) or when the key's prefix lies inside ``prefix`` (the listing is
        narrowed to the key's prefix, so ``aws s3 ls s3://b/jobs/42`` works for a ``jobs/42/`` key).
        None means the listing is refused.
        """
        if not self.allows_bucket(bucket):
            return None
        own = self.prefix or ""
        if prefix.startswith(own):
            return prefix
        if own.startswith(prefix):
            return own
        return None


class CredentialResolver(Protocol):
    """Where the endpoint looks up access keys."""

    async def resolve(self, access_key_id: str) -> S3Credential | None:
        """Return the credential of ``access_key_id``, or None if there is no such key (or revoked).

        Return expired credentials as they are (the handler refuses them with a clear error). Must
        not raise for an unknown key; any exception it raises becomes an ``InternalError`` reply.
        """
        ...


class InMemoryCredentialResolver:
    """A :class:`CredentialResolver` over a dict, for tests and single-process tools."""

    def __init__(self, credentials: list[S3Credential] | None = None) -> None:
        """Start with ``credentials`` (later ones replace earlier ones with the same key id)."""
        self._credentials: dict[str, S3Credential] = {}
        for credential in credentials or []:
            self.add(credential)

    def add(self, credential: S3Credential) -> None:
        """Register ``credential``, replacing any with the same access key id."""
        self._credentials[credential.access_key_id] = credential

    def remove(self, access_key_id: str) -> None:
        """Forget ``access_key_id``; no error if it is unknown."""
        self._credentials.pop(access_key_id, None)

    async def resolve(self, access_key_id: str) -> S3Credential | None:
        """Return the credential of ``access_key_id``, or None."""
        return self._credentials.get(access_key_id)


_UNBIASED_BELOW = 256 - 256 % len(_ACCESS_KEY_ALPHABET)
"""Random bytes at or above this are dropped, so that ``byte % 36`` picks each of the 36 letters
and digits alike."""


def new_access_key_id(prefix: str = "CT") -> str:
    """Return a fresh random access key id: ``prefix`` + upper-case letters and digits, 20 chars."""
    wanted = 20 - len(prefix)
    chosen: list[str] = []
    while len(chosen) < wanted:  # one call to the system's random source, rarely two
        randoms = secrets.token_bytes(wanted + 8)
        chosen += [_ACCESS_KEY_ALPHABET[b % len(_ACCESS_KEY_ALPHABET)] for b in randoms if b < _UNBIASED_BELOW]
    return prefix + "".join(chosen[:wanted])


def new_secret_access_key() -> str:
    """Return a fresh random 40-character secret access key (240 random bits).

    Its alphabet is exactly base64's, so the base64 of 30 random bytes is such a key, every
    character drawn alike (a 40th of the time of choosing the characters one by one).
    """
    return base64.b64encode(secrets.token_bytes(30)).decode("ascii")
