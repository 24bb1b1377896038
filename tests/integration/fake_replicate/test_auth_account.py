"""Auth, account, hardware, webhook secret, unknown routes and rate-limit headers."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.fakes.replicate import FakeReplicate

from .helpers import PROBLEM

UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_accepted_schemes_return_the_account(fake: FakeReplicate, scheme: str) -> None:
    reply = httpx.get(f"{fake.base_url}/account", headers={"Authorization": f"{scheme} {fake.token}"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {
        "type": "user",
        "username": "cloudtuner-test",
        "name": "Cloudtuner Test",
        "github_url": None,
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer r8_wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
)
def test_bad_or_missing_token_gets_the_recorded_401(fake: FakeReplicate, headers: dict[str, str]) -> None:
    reply = httpx.get(f"{fake.base_url}/trainings", headers=headers)
    assert reply.status_code == 401
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json() == UNAUTHENTICATED


def test_token_set_is_configurable(fake: FakeReplicate) -> None:
    old = fake.token
    fake.configure(tokens=["r8_other", "r8_second"], username="acme", account_type="organization")
    assert httpx.get(f"{fake.base_url}/account", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    reply = httpx.get(f"{fake.base_url}/account", headers={"Authorization": "Token r8_second"})
    assert reply.json()["username"] == "acme"
    assert reply.json()["type"] == "organization"


def test_hardware_is_a_bare_array(api: httpx.Client) -> None:
    hardware = api.get("hardware").json()
    assert isinstance(hardware, list)
    assert {"sku": "gpu-l40s", "name": "Nvidia L40S GPU"} in hardware
    assert all(set(item) == {"sku", "name"} for item in hardware)


def test_webhook_secret_has_the_whsec_form(api: httpx.Client, fake: FakeReplicate) -> None:
    key = api.get("webhooks/default/secret").json()["key"]
    prefix, encoded = key.split("_")
    assert prefix == "whsec"
    assert len(base64.b64decode(encoded)) >= 16
    fake.configure(webhook_secret="whsec_" + base64.b64encode(b"k" * 24).decode())
    assert api.get("webhooks/default/secret").json()["key"] == "whsec_" + base64.b64encode(b"k" * 24).decode()


def test_unknown_route_is_a_problem_404(api: httpx.Client) -> None:
    reply = api.get("deployments/acme/thing")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json() == {"detail": "The requested resource could not be found.", "status": 404}


def test_ratelimit_headers_follow_the_captures_and_can_be_switched_off(api: httpx.Client, fake: FakeReplicate) -> None:
    reply = api.get("account")
    assert reply.headers["ratelimit-remaining"] == "2999"
    assert reply.headers["ratelimit-reset"] == "1"
    fake.configure(ratelimit_headers=False)
    assert "ratelimit-remaining" not in api.get("account").headers


def test_status_summary_in_the_incident_io_shape(fake: FakeReplicate) -> None:
    summary = httpx.get(f"{fake.root_url}/api/v1/summary").json()
    assert summary["ongoing_incidents"] == []
    assert summary["in_progress_maintenances"] == []
    assert summary["scheduled_maintenances"] == []
    incident = {
        "id": "inc1",
        "name": "Slow trainings",
        "status": "investigating",
        "current_worst_impact": "degraded_performance",
        "affected_components": [],
    }
    fake.configure(status_ongoing_incidents=[incident])
    assert httpx.get(f"{fake.root_url}/api/v1/summary").json()["ongoing_incidents"] == [incident]
    fake.reset()
    assert httpx.get(f"{fake.root_url}/api/v1/summary").json()["ongoing_incidents"] == []
