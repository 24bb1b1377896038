"""Secrets at rest: provider tokens and storage keys, encrypted in the job store.

The key is ``CLOUDTUNER_SECRET_KEY`` when set (servers sharing one database must share it), or a
key file ``<data dir>/secret.key`` created on first use with mode 0600. Values are encrypted with
Fernet (AES-128-CBC with HMAC-SHA256). Nothing here logs or returns a secret except ``get``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from datetime import datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete

from cloudtuner.core.clock import Clock
from cloudtuner.core.errors import ConfigurationError
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import SecretRow


class SecretBox:
    """Encrypts and decrypts with the server's key, loaded (or created) on first use."""

    def __init__(self, key_file: Path, passphrase: str | None = None) -> None:
        self._key_file = key_file
        self._passphrase = passphrase
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._load_key())
            return self._fernet

    def _load_key(self) -> bytes:
        if self._passphrase:
            # Any string works as CLOUDTUNER_SECRET_KEY: derive a Fernet key from it.
            return base64.urlsafe_b64encode(hashlib.sha256(self._passphrase.encode()).digest())
        if self._key_file.exists():
            mode = self._key_file.stat().st_mode & 0o777
            if mode & 0o077:
                raise ConfigurationError(
                    f"{self._key_file} can be read by other users (mode {mode:o}); run chmod 600 on it."
                )
            return self._key_file.read_bytes().strip()
        self._key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        descriptor = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key + b"\n")
        return key

    def encrypt(self, value: str) -> str:
        """Return ``value`` encrypted, as text."""
        return self._cipher().encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Return the value inside ``ciphertext``.

        Raises:
            ConfigurationError: it was encrypted with another key (CLOUDTUNER_SECRET_KEY changed).
        """
        try:
            return self._cipher().decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError(
                "A stored secret cannot be decrypted with this server's key: was CLOUDTUNER_SECRET_KEY "
                "or the data dir's secret.key changed? Save the secret again."
            ) from exc


class SecretStore:
    """Named secrets in the job store, encrypted by a SecretBox."""

    def __init__(self, db: Database, box: SecretBox, clock: Clock) -> None:
        self._db = db
        self._box = box
        self._clock = clock

    @property
    def box(self) -> SecretBox:
        """The box that encrypts these secrets; for secrets kept in other tables (storage keys)."""
        return self._box

    async def get(self, name: str) -> str | None:
        """Return the secret called ``name``, or None."""
        async with self._db.read() as session:
            row = await session.get(SecretRow, name)
            ciphertext = row.ciphertext if row else None
        return None if ciphertext is None else self._box.decrypt(ciphertext)

    async def put(self, name: str, value: str) -> datetime:
        """Store (or replace) the secret called ``name``; return when."""
        now = self._clock.now()
        ciphertext = self._box.encrypt(value)
        async with self._db.transaction() as session:
            row = await session.get(SecretRow, name, with_for_update=True)
            if row is None:
                session.add(SecretRow(name=name, ciphertext=ciphertext, updated_at=now))
            else:
                row.ciphertext = ciphertext
                row.updated_at = now
        return now

    async def delete(self, name: str) -> bool:
        """Delete the secret called ``name``; return whether there was one."""
        async with self._db.transaction() as session:
            result = await session.execute(delete(SecretRow).where(SecretRow.name == name))
            return bool(result.rowcount)  # type: ignore[attr-defined]
