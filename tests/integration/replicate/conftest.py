"""Fixtures: one fake Replicate per session (reset per test) and providers pointed at it."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudtuner.core.ids import new_sortable_id
from cloudtuner.providers.base import DatasetArchive, RunRequest
from cloudtuner.providers.replicate import ReplicateOptions, ReplicateProvider, RetryPolicy
from cloudtuner.settings import Settings
from tests.fakes.replicate import FakeConfig, FakeReplicate

FAST = FakeConfig(
    starting_seconds=0.05,
    processing_seconds=0.6,
    log_steps=5,
    total_steps=20,
    tick_seconds=0.01,
    webhook_retry_delays=(0.05, 0.1),
    webhook_timeout_seconds=2.0,
)

OPTIONS = ReplicateOptions(
    retry=RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, budget_seconds=5.0),
    create_timeout_seconds=0.5,
)


class Tokens:
    """A token source whose answer a test can change."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        return self.token


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeReplicate]:
    with FakeReplicate(FAST) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeReplicate) -> FakeReplicate:
    """The session's fake, reset: FAST config, seeded catalog, no runs, files, faults or records."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def tokens(fake: FakeReplicate) -> Tokens:
    return Tokens(fake.token)


@pytest.fixture
def settings(tmp_path: Path, fake: FakeReplicate) -> Settings:
    return Settings(data_dir=tmp_path / "data", replicate_api_url=fake.base_url)


ProviderFactory = Callable[..., ReplicateProvider]


@pytest.fixture
async def make_provider(settings: Settings, tokens: Tokens) -> AsyncIterator[ProviderFactory]:
    """Build providers (a new one is a "restarted server": no memory); all are closed afterwards."""
    made: list[ReplicateProvider] = []

    def build(**kwargs: Any) -> ReplicateProvider:
        kwargs.setdefault("options", OPTIONS)
        provider = ReplicateProvider(settings, tokens, **kwargs)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.aclose()


@pytest.fixture
def provider(make_provider: ProviderFactory) -> ReplicateProvider:
    return make_provider()


def run_request(**fields: Any) -> RunRequest:
    """A run request for a new job: the seeds' inline flux LoRA config, 20 steps."""
    values: dict[str, Any] = {
        "job_id": new_sortable_id(),
        "config": {
            "--model_family": "flux",
            "--model_type": "lora",
            "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
            "--max_train_steps": 20,
            "--learning_rate": "1e-4",
        },
        "dataloader_config": [
            {
                "id": "training-images",
                "type": "local",
                "dataset_type": "image",
                "instance_data_dir": "/src/datasets/training-images",
                "caption_strategy": "textfile",
                "resolution": 1024,
            }
        ],
    }
    values.update(fields)
    return RunRequest(**values)


def make_archive(directory: Path, size: int = 200_000, name: str = "datasets.zip") -> DatasetArchive:
    """Write a small zip of incompressible bytes and describe it as packaging would."""
    path = directory / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("datasets/training-images/a.png", hashlib.sha256(b"seed").digest() * (size // 32))
        archive.writestr("datasets/training-images/a.txt", "a photo of sks dog")
    data = path.read_bytes()
    return DatasetArchive(path=path, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
