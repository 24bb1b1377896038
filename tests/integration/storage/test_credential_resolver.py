"""DatabaseCredentialResolver: keys from the table, a short cache, revocation within the cache time."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudtuner.core.errors import ConfigurationError
from cloudtuner.core.permissions import LOCAL_PRINCIPAL
from cloudtuner.db.tables import StorageCredentialRow
from cloudtuner.schemas.storage import CreateStorageCredentialRequest
from cloudtuner.services.secrets import SecretBox
from cloudtuner.services.storage_credentials import create_storage_credential, revoke_storage_credential
from cloudtuner.services.storage_endpoint import DatabaseCredentialResolver
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, make_settings, start_app
from tests.integration.storage.credentials_support import create_key, s3_call, s3_code


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


async def new_key(running: RunningApp, **fields: str) -> tuple[str, str]:
    created = await create_storage_credential(
        running.ctx, LOCAL_PRINCIPAL, CreateStorageCredentialRequest(**fields), request_base_url="http://x/"
    )
    return created.access_key_id, created.secret_access_key


async def test_resolves_scope_and_secret(manual: RunningApp) -> None:
    access_key_id, secret = await new_key(manual, bucket="models", prefix="a/", name="n")
    resolver = DatabaseCredentialResolver(manual.ctx.db, manual.ctx.secrets.box)
    credential = await resolver.resolve(access_key_id)
    assert credential is not None
    assert (credential.secret_access_key, credential.bucket, credential.prefix) == (secret, "models", "a/")
    assert credential.expires_at is None
    assert credential.principal == "key:n"
    assert secret not in repr(credential)
    assert await resolver.resolve("CTANOSUCHKEY00000000") is None
    for malformed in ("", "lower-case-key", "X" * 100, "CTA'; DROP TABLE x;--"):
        assert await resolver.resolve(malformed) is None


async def test_revocation_is_seen_once_the_cache_time_is_over(manual: RunningApp) -> None:
    access_key_id, _ = await new_key(manual)
    clock = FakeMonotonic()
    resolver = DatabaseCredentialResolver(manual.ctx.db, manual.ctx.secrets.box, cache_seconds=2.0, monotonic=clock)
    assert await resolver.resolve(access_key_id) is not None
    await revoke_storage_credential(manual.ctx, access_key_id)  # as another server process would
    clock.value += 1.9
    assert await resolver.resolve(access_key_id) is not None  # still cached
    clock.value += 0.2
    assert await resolver.resolve(access_key_id) is None


async def test_misses_are_cached_briefly_and_forget_drops_entries(manual: RunningApp) -> None:
    access_key_id, _ = await new_key(manual)
    await revoke_storage_credential(manual.ctx, access_key_id)
    clock = FakeMonotonic()
    resolver = DatabaseCredentialResolver(manual.ctx.db, manual.ctx.secrets.box, cache_seconds=2.0, monotonic=clock)
    assert await resolver.resolve(access_key_id) is None
    async with manual.ctx.db.transaction() as session:  # un-revoked behind the resolver's back
        row = await session.get(StorageCredentialRow, access_key_id)
        assert row is not None
        row.revoked_at = None
    assert await resolver.resolve(access_key_id) is None  # the miss is cached
    resolver.forget(access_key_id)
    assert await resolver.resolve(access_key_id) is not None
    await revoke_storage_credential(manual.ctx, access_key_id)
    resolver.forget()
    assert await resolver.resolve(access_key_id) is None


async def test_the_cache_is_bounded_and_can_be_off(manual: RunningApp) -> None:
    keys = [(await new_key(manual))[0] for _ in range(3)]
    clock = FakeMonotonic()
    bounded = DatabaseCredentialResolver(
        manual.ctx.db, manual.ctx.secrets.box, cache_seconds=60, max_entries=2, monotonic=clock
    )
    for key in keys:
        assert await bounded.resolve(key) is not None
    await revoke_storage_credential(manual.ctx, keys[0])
    await revoke_storage_credential(manual.ctx, keys[2])
    assert await bounded.resolve(keys[0]) is None  # evicted, so read again
    assert await bounded.resolve(keys[2]) is not None  # still cached
    uncached = DatabaseCredentialResolver(manual.ctx.db, manual.ctx.secrets.box, cache_seconds=0)
    assert await uncached.resolve(keys[2]) is None


async def test_a_changed_server_key_is_an_internal_error(manual: RunningApp, tmp_path: Path) -> None:
    access_key_id, _ = await new_key(manual)
    other_box = SecretBox(tmp_path / "other.key", "a different passphrase")
    resolver = DatabaseCredentialResolver(manual.ctx.db, other_box)
    with pytest.raises(ConfigurationError):
        await resolver.resolve(access_key_id)


async def test_the_server_reports_an_undecryptable_key_as_internal_error(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, secret_key="first key")
    async with start_app(settings, ScriptedProvider()) as running:
        key, _ = await create_key(running)
        assert (await s3_call(running, "GET", "/cloudtuner", key)).status_code == 200
    changed = make_settings(tmp_path, database_url, scheduler_enabled=False, secret_key="another key")
    async with start_app(changed, ScriptedProvider()) as running:
        reply = await s3_call(running, "GET", "/cloudtuner", key)
        assert (reply.status_code, s3_code(reply)) == (500, "InternalError")
