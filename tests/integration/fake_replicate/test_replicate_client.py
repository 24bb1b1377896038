"""The official ``replicate`` Python client (1.0.7) works against the fake unchanged."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.pagination import paginate
from replicate.webhook import InvalidSignatureError

from tests.fakes.replicate import TRAINER_OLD_VERSION, TRAINER_VERSION, FakeReplicate

from .helpers import DESTINATION, TRAINER, trainer_input
from .receiver import Receiver


@pytest.fixture
def client(fake: FakeReplicate) -> Client:
    made = Client(api_token=fake.token, base_url=fake.root_url, trust_env=False)
    made.poll_interval = 0.02
    return made


def test_account_hardware_and_secret(client: Client, fake: FakeReplicate) -> None:
    account = client.accounts.current()
    assert (account.type, account.username, account.name) == ("user", "cloudtuner-test", "Cloudtuner Test")
    assert "gpu-l40s" in {h.sku for h in client.hardware.list()}
    assert client.webhooks.default.secret().key == fake.webhook_secret


def test_files_round_trip(client: Client, tmp_path: Path) -> None:
    archive = tmp_path / "dataset.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    created = client.files.create(archive, metadata={"job": "j1"})
    assert (created.name, created.content_type, created.size) == ("dataset.zip", "application/zip", 104)
    assert created.metadata == {"job": "j1"}
    assert created.etag == created.checksums["md5"]
    assert client.files.get(created.id).id == created.id
    assert [f.id for f in client.files.list()] == [created.id]
    client.files.delete(created.id)
    with pytest.raises(ReplicateError) as info:
        client.files.get(created.id)
    assert info.value.status == 404


def test_models_and_versions(client: Client) -> None:
    model = client.models.get(TRAINER)
    assert model.latest_version is not None
    assert model.latest_version.id == TRAINER_VERSION
    assert [v.id for v in model.versions.list()] == [TRAINER_VERSION, TRAINER_OLD_VERSION]
    version = model.versions.get(TRAINER_OLD_VERSION)
    assert "config_json" in version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    with pytest.raises(ReplicateError) as info:
        client.models.get("nobody/nothing")
    assert info.value.status == 404


def test_trainings_create_get_list_cancel(client: Client, fake: FakeReplicate, receiver: Receiver) -> None:
    training = client.trainings.create(
        model=TRAINER,
        version=TRAINER_VERSION,
        input=trainer_input(),
        destination=DESTINATION,
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    assert training.status == "starting"
    fake.wait_for_run(training.id, "succeeded")
    training.reload()
    assert str(training.status) == "succeeded", "reload() refreshes the object in place"
    assert training.destination == DESTINATION
    assert isinstance(training.output, dict)
    assert training.output["weights"].startswith(fake.root_url)
    assert client.trainings.get(training.id).completed_at is not None
    fake.script_next(hold_starting=True)
    held = client.trainings.create(f"{TRAINER}:{TRAINER_VERSION}", trainer_input(), DESTINATION)
    canceled = client.trainings.cancel(held.id)
    assert canceled.status == "canceled"
    assert {t.id for t in client.trainings.list()} == {training.id, held.id}
    with pytest.raises(ReplicateError) as info:
        client.trainings.create(
            model=TRAINER, version=TRAINER_VERSION, input=trainer_input(), destination="cloudtuner-test/missing"
        )
    assert (info.value.status, info.value.detail) == (404, "The specified training destination does not exist")


def test_pagination_via_next(client: Client, fake: FakeReplicate) -> None:
    fake.configure(page_size_runs=2)
    fake.set_default_script(hold_starting=True)
    created = [
        client.trainings.create(
            model=TRAINER, version=TRAINER_VERSION, input=trainer_input(), destination=DESTINATION
        ).id
        for _ in range(5)
    ]
    page = client.trainings.list()
    assert len(page) == 2
    assert page.previous is None
    assert page.next is not None
    assert page.next.startswith(fake.base_url)
    second = client.trainings.list(cursor=page.next)
    assert [t.id for t in second] == created[::-1][2:4]
    every = [t.id for p in paginate(client.trainings.list) for t in p]
    assert every == created[::-1]


def test_predictions_wait_and_cancel(client: Client, fake: FakeReplicate) -> None:
    prediction = client.predictions.create(version=f"{TRAINER}:{TRAINER_VERSION}", input=trainer_input())
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.output == "Training complete. Output: /src/output"
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] > 0
    assert prediction.logs is not None
    assert "| 40/40 [" in prediction.logs
    fake.script_next(outcome="hang")
    hanging = client.predictions.create(version=TRAINER_VERSION, input=trainer_input())
    hanging.cancel()
    assert client.predictions.get(hanging.id).status == "canceled"
    assert [p.id for p in client.predictions.list()] == [hanging.id, prediction.id]


def test_client_retries_get_on_429_and_503(client: Client, fake: FakeReplicate) -> None:
    fake.throttle_next(2, retry_after=0, method="GET")
    fake.fail_next(503, method="GET")
    assert client.models.get(TRAINER).name == "advanced-trainer"
    assert len(fake.requests(method="GET", path=f"/v1/models/{TRAINER}")) == 4


def test_client_surfaces_402_and_does_not_retry_post(client: Client, fake: FakeReplicate) -> None:
    fake.insufficient_credit()
    with pytest.raises(ReplicateError) as info:
        client.predictions.create(version=TRAINER_VERSION, input=trainer_input())
    assert (info.value.status, info.value.title) == (402, "Insufficient credit")
    assert len(fake.requests(method="POST")) == 1


def test_client_webhook_validation_accepts_fake_signatures(
    client: Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    training = client.trainings.create(
        model=TRAINER,
        version=TRAINER_VERSION,
        input=trainer_input(),
        destination=DESTINATION,
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    fake.wait_for_webhooks(1, training.id, outcome="delivered")
    (hit,) = receiver.snapshot()
    secret = client.webhooks.default.secret()
    request = httpx.Request("POST", receiver.url, headers=hit.headers, content=hit.body)
    client.webhooks.validate(request=request, secret=secret, tolerance=300)
    forged = httpx.Request("POST", receiver.url, headers=hit.headers, content=hit.body + b" ")
    with pytest.raises(InvalidSignatureError):
        client.webhooks.validate(request=forged, secret=secret, tolerance=300)
