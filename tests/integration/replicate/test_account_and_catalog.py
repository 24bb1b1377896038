"""validate_credentials, versions, hardware and the webhook secret against the fake."""

from __future__ import annotations

import pytest

from cloudtuner.core.errors import ProviderAuthError, ProviderRejectedError, ProviderUnavailableError
from cloudtuner.providers.replicate import HardwareOverride, ReplicateProvider
from tests.fakes.replicate import DEFAULT_WEBHOOK_SECRET, TRAINER_OLD_VERSION, TRAINER_VERSION, FakeReplicate

from .conftest import ProviderFactory, Tokens


async def test_validate_good_token(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    account = await provider.validate_credentials()
    assert account == {"type": "user", "username": "cloudtuner-test", "name": "Cloudtuner Test", "github_url": None}
    (record,) = fake.requests(method="GET", path="/v1/account")
    assert record["token"] == fake.token


async def test_validate_strips_stray_whitespace(provider: ReplicateProvider, tokens: Tokens) -> None:
    tokens.token = f"  {tokens.token}\n"
    assert (await provider.validate_credentials())["username"] == "cloudtuner-test"


async def test_validate_missing_token(provider: ReplicateProvider, fake: FakeReplicate, tokens: Tokens) -> None:
    tokens.token = None
    with pytest.raises(ProviderAuthError) as caught:
        await provider.validate_credentials()
    message = caught.value.message
    assert message.startswith("REPLICATE_API_TOKEN not set")
    assert "export REPLICATE_API_TOKEN" in message and "PUT /api/cloud/providers/replicate/token" in message
    assert fake.requests() == []


async def test_validate_refused_token(provider: ReplicateProvider, tokens: Tokens) -> None:
    tokens.token = "r8_thisTokenIsNotKnownToTheFake0000000000"
    with pytest.raises(ProviderAuthError) as caught:
        await provider.validate_credentials()
    message = caught.value.message
    assert message.startswith("Invalid token")
    assert "r8_" in message and "api-tokens" in message and "spaces or newlines" in message
    assert tokens.token not in message
    assert "does not start with r8_" not in message


async def test_validate_token_without_r8_prefix(
    provider: ReplicateProvider, fake: FakeReplicate, tokens: Tokens
) -> None:
    tokens.token = "abc_notReplicateShaped"
    with pytest.raises(ProviderAuthError) as caught:
        await provider.validate_credentials()
    assert "Invalid token" in caught.value.message
    assert "does not start with r8_" in caught.value.message
    assert len(fake.requests(path="/v1/account")) == 1  # it was still tried

    fake.configure(tokens=[fake.token, "abc_notReplicateShaped"])
    account = await provider.validate_credentials()
    assert account["username"] == "cloudtuner-test"
    assert "does not start with r8_" in account["warnings"][0]


async def test_validate_when_replicate_is_down(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.fail_next(503, count=None, method="GET", path="/v1/account")
    with pytest.raises(ProviderUnavailableError):
        await provider.validate_credentials()
    assert len(fake.requests(path="/v1/account")) == 4


async def test_versions_newest_first(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.configure(page_size_other=1)
    versions = await provider.list_versions()
    assert [v.id for v in versions] == [TRAINER_VERSION, TRAINER_OLD_VERSION]
    assert versions[0].model == "simpletuner/advanced-trainer"
    assert versions[0].created_at is not None and versions[1].created_at is not None
    assert versions[0].created_at > versions[1].created_at
    assert versions[0].to_dict()["cog_version"]
    h100 = await provider.list_versions("simpletuner/advanced-trainer-h100")
    assert len(h100) == 1


async def test_versions_of_unknown_or_malformed_model(provider: ReplicateProvider) -> None:
    with pytest.raises(ProviderRejectedError, match="could not be found"):
        await provider.list_versions("nobody/nothing")
    with pytest.raises(ProviderRejectedError, match="owner/name"):
        await provider.list_versions("not-a-model")


async def test_hardware_profiles_and_capabilities(make_provider: ProviderFactory) -> None:
    provider = make_provider(hardware_overrides={"gpu-a100-large": HardwareOverride(model="me/a100-trainer")})
    by_sku = {p.sku: p for p in provider.hardware_profiles}
    assert by_sku["gpu-a100-large"].trainer_model == "me/a100-trainer"
    assert by_sku["gpu-l40s"].price_per_second == 0.000975
    capabilities = provider.capabilities
    assert capabilities.cost_tracking and capabilities.live_logs and capabilities.webhooks and capabilities.cancel
    assert capabilities.uploads_datasets and capabilities.max_upload_bytes == 100 * 1024 * 1024
    assert provider.provider_name == "replicate"


async def test_webhook_secret_is_cached(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    assert await provider.webhook_secret() == DEFAULT_WEBHOOK_SECRET
    assert await provider.webhook_secret() == DEFAULT_WEBHOOK_SECRET
    assert len(fake.requests(path="/v1/webhooks/default/secret")) == 1
    fake.configure(webhook_secret="whsec_cm90YXRlZC1zZWNyZXQ=")
    assert await provider.webhook_secret(refresh=True) == "whsec_cm90YXRlZC1zZWNyZXQ="
