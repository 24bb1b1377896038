"""The ``/_fake`` control endpoints over HTTP, and the fake running as a separate process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.replicate import ControlError, FakeReplicate, FakeReplicateRemote, spawn

from .helpers import create_training


@pytest.fixture
def remote(fake: FakeReplicate) -> Iterator[FakeReplicateRemote]:
    with FakeReplicateRemote(fake.base_url) as client:
        yield client


def test_raw_control_endpoints(fake: FakeReplicate) -> None:
    root = fake.root_url
    assert httpx.get(f"{root}/_fake/health").json() == {"ok": True, "base_url": fake.base_url}
    patched = httpx.patch(f"{root}/_fake/config", json={"username": "someone"})
    assert patched.json()["username"] == "someone"
    assert httpx.patch(f"{root}/_fake/config", json={"nope": 1}).status_code == 400
    wrong_type = httpx.patch(f"{root}/_fake/config", json={"page_size_runs": "ten", "username": "other"})
    assert wrong_type.status_code == 400
    assert "page_size_runs expects int" in wrong_type.json()["error"]
    assert httpx.get(f"{root}/_fake/config").json()["username"] == "someone"
    assert httpx.patch(f"{root}/_fake/config", content=b"{bad").status_code == 400
    fault = httpx.post(f"{root}/_fake/faults", json={"kind": "status", "status": 504, "path": "/v1/hardware"}).json()
    assert fault["id"]
    assert fault["count"] == 1
    assert httpx.get(f"{fake.base_url}/hardware", headers={"Authorization": f"Bearer {fake.token}"}).status_code == 504
    assert httpx.get(f"{root}/_fake/runs/unknown").status_code == 404
    assert httpx.post(f"{root}/_fake/reset").json() == {}
    assert httpx.get(f"{root}/_fake/config").json()["username"] == "cloudtuner-test"


def test_remote_client_drives_a_run(fake: FakeReplicate, remote: FakeReplicateRemote, api: httpx.Client) -> None:
    assert remote.token == fake.token
    remote.configure(log_steps=3)
    remote.script_next(hold_starting=True, kind="training")
    assert remote.set_default_script(outcome="succeed", processing_seconds=0.2)["processing_seconds"] == 0.2
    assert len(fake.state.scripts) == 1
    run_id = create_training(api).json()["id"]
    assert remote.run(run_id)["status"] == "starting"
    assert remote.append_logs(run_id, "custom line") == 1
    remote.advance(run_id, "processing")
    finished = remote.wait_for_run(run_id, "succeeded")
    assert "custom line\n" in finished["logs"]
    assert finished["api"]["status"] == "succeeded"
    with pytest.raises(ControlError) as info:
        remote.advance(run_id, "failed")
    assert info.value.status == 409
    with pytest.raises(ControlError):
        remote.advance(run_id, "starting")
    assert remote.count_runs(status="succeeded") == 1
    assert remote.requests(method="POST")[0]["status"] == 201
    remote.clear_scripts()
    assert fake.state.scripts == []
    assert remote.webhooks() == []
    remote.clear_webhooks()
    remote.clear_requests()
    assert fake.requests() == []


def test_remote_fault_helpers(fake: FakeReplicate, remote: FakeReplicateRemote, api: httpx.Client) -> None:
    remote.insufficient_credit()
    assert create_training(api).status_code == 402
    remote.fail_next(503, path=["/v1/account", "/v1/hardware"], count=2)
    assert [api.get(p).status_code for p in ("hardware", "account", "account")] == [503, 503, 200]
    remote.reorder_webhooks(2)
    remote.duplicate_webhooks()
    assert [f["kind"] for f in remote.faults()["webhook_faults"]] == ["reorder", "duplicate"]
    assert remote.flush_webhooks() == 0
    remote.reset()
    assert remote.faults() == {"request_faults": [], "webhook_faults": []}
    with pytest.raises(ControlError, match="count of at least 2"):
        remote.reorder_webhooks(1)
    file_id = api.post("files", files={"content": ("a.txt", b"abc")}).json()["id"]
    assert httpx.get(remote.file_download_url(file_id)).content == b"abc"
    assert remote.add_model("acme", "x", versions=2)["latest_version"] is not None


def test_remote_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeReplicateRemote("https://api.replicate.com/v1")


def test_fake_as_a_separate_process() -> None:
    with spawn(config={"starting_seconds": 0.05, "processing_seconds": 0.2, "tokens": ["r8_process"]}) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        assert proc.remote.token == "r8_process"
        headers = {"Authorization": "Bearer r8_process"}
        with httpx.Client(base_url=proc.base_url + "/", headers=headers) as client:
            proc.remote.script_next(hold_starting=True)
            run_id = create_training(client).json()["id"]
            assert proc.remote.count_runs() == 1
            proc.remote.advance(run_id, "succeeded")
            assert client.get(f"trainings/{run_id}").json()["status"] == "succeeded"
    assert proc.proc.returncode is not None


def test_process_entry_rejects_bad_arguments() -> None:
    from tests.fakes.replicate.__main__ import main

    assert main(["--host", "0.0.0.0"]) == 2
    assert main(["--config", '{"unknown": 1}']) == 2
