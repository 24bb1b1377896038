"""Storage keys of a real server, on SQLite and PostgreSQL: the CLI's create/list/revoke, job keys
limited to their prefix, expiry at the job's end plus the grace period, revocation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.e2e.harness import ServerFactory, assert_one_line_error, inline_job, run_cli
from tests.e2e.storage_support import Key, end_job_keys, error_code, issue_job_key, s3_client
from tests.support.waiting import wait_until_sync


def _refusal(call: Callable[[], object]) -> tuple[str, int] | None:
    """Return the error of a boto3 call, or None if it succeeded."""
    try:
        return error_code(call)
    except AssertionError:
        return None


def test_cli_create_list_revoke(servers: ServerFactory, database_url: str | None) -> None:
    server = servers.start()
    created = run_cli(
        "storage", "credentials", "create", "--name", "laptop", "--bucket", "cloudtuner", "--prefix", "mine/",
        "--json", url=server.url,
    ).json()  # fmt: skip
    key = Key(created["access_key_id"], created["secret_access_key"])
    assert created["endpoint_url"] == f"{server.url}/api/cloud/storage"
    s3 = s3_client(server, key)
    s3.put_object(Bucket="cloudtuner", Key="mine/notes.txt", Body=b"hello")
    assert s3.get_object(Bucket="cloudtuner", Key="mine/notes.txt")["Body"].read() == b"hello"
    assert error_code(lambda: s3.put_object(Bucket="cloudtuner", Key="theirs/x", Body=b"x")) == ("AccessDenied", 403)

    human = run_cli("storage", "credentials", "create", "--expires-days", "7", url=server.url)
    assert "Secret access key" in human.stdout
    assert "AWS_ENDPOINT_URL_S3=" in human.stdout
    assert "not shown again" in human.stderr

    table = run_cli("storage", "credentials", "list", url=server.url)
    assert key.access_key_id in table.stdout
    assert "laptop" in table.stdout
    assert "s3://cloudtuner/mine/" in table.stdout
    assert key.secret not in table.stdout
    listed = run_cli("storage", "credentials", "list", "--json", url=server.url).json()["credentials"]
    assert len(listed) == 2
    assert all("secret_access_key" not in c for c in listed)

    revoked = run_cli("storage", "credentials", "revoke", key.access_key_id, url=server.url)
    assert f"Revoked storage key {key.access_key_id}" in revoked.stdout
    refused = wait_until_sync(
        lambda: _refusal(lambda: s3.list_objects_v2(Bucket="cloudtuner", Prefix="mine/")),
        lambda result: result is not None,
        timeout=10,
    )
    assert refused == ("InvalidAccessKeyId", 403)
    assert len(run_cli("storage", "credentials", "list", "--json", url=server.url).json()["credentials"]) == 1
    everything = run_cli("storage", "credentials", "list", "--all", "--json", url=server.url).json()["credentials"]
    assert {c["access_key_id"]: c["status"] for c in everything}[key.access_key_id] == "revoked"

    # One-line errors, non-zero exit.
    missing = run_cli("storage", "credentials", "revoke", "CTANOSUCHKEY00000000", url=server.url, expect=None)
    assert "No storage credential" in assert_one_line_error(missing)
    invalid = run_cli("storage", "credentials", "create", "--bucket", "Bad_Bucket", url=server.url, expect=None)
    assert "not a valid bucket name" in assert_one_line_error(invalid)
    down = run_cli("storage", "credentials", "list", url="http://127.0.0.1:9", expect=None)
    assert "Cannot reach" in assert_one_line_error(down)


def test_job_keys_are_limited_to_their_job_and_end_with_it(servers: ServerFactory, database_url: str | None) -> None:
    server = servers.start()
    job_a = server.submit(inline_job())
    job_b = server.submit(inline_job())
    for job_id in (job_a, job_b):  # dispatched: the server has issued each job its key
        server.wait_for_status(job_id, "starting", "running", "completed")
    key_a, key_b = issue_job_key(server, job_a), issue_job_key(server, job_b)
    assert issue_job_key(server, job_a) == key_a  # a retried start gets the same key
    s3_a, s3_b = s3_client(server, key_a), s3_client(server, key_b)

    s3_a.put_object(Bucket="cloudtuner", Key=f"jobs/{job_a}/model.safetensors", Body=b"weights of a")
    s3_b.put_object(Bucket="cloudtuner", Key=f"jobs/{job_b}/model.safetensors", Body=b"weights of b")
    upload = s3_a.create_multipart_upload(Bucket="cloudtuner", Key=f"jobs/{job_a}/checkpoint.bin")
    s3_a.abort_multipart_upload(Bucket="cloudtuner", Key=f"jobs/{job_a}/checkpoint.bin", UploadId=upload["UploadId"])

    # Another job's key on this job's prefix: AccessDenied, for every kind of request.
    mine = f"jobs/{job_a}/model.safetensors"
    for call in (
        lambda: s3_b.get_object(Bucket="cloudtuner", Key=mine),
        lambda: s3_b.put_object(Bucket="cloudtuner", Key=mine, Body=b"overwritten"),
        lambda: s3_b.delete_object(Bucket="cloudtuner", Key=mine),
        lambda: s3_b.list_objects_v2(Bucket="cloudtuner", Prefix=f"jobs/{job_a}/"),
        lambda: s3_b.create_multipart_upload(Bucket="cloudtuner", Key=f"jobs/{job_a}/sneaky.bin"),
        lambda: s3_b.copy_object(Bucket="cloudtuner", Key=f"jobs/{job_b}/copy", CopySource=f"cloudtuner/{mine}"),
        lambda: s3_b.put_object(Bucket="cloudtuner", Key="outside/x", Body=b"x"),
        lambda: s3_b.create_bucket(Bucket="job-made-bucket"),
    ):
        assert error_code(call) == ("AccessDenied", 403)
    assert s3_a.get_object(Bucket="cloudtuner", Key=mine)["Body"].read() == b"weights of a"
    own_listing = s3_b.list_objects_v2(Bucket="cloudtuner")
    assert [o["Key"] for o in own_listing["Contents"]] == [f"jobs/{job_b}/model.safetensors"]

    with server.http() as http:
        listed = http.get("/api/cloud/storage/credentials", params={"kind": "job"}).json()["credentials"]
    assert {(c["access_key_id"], c["job_id"], c["prefix"]) for c in listed} == {
        (key_a.access_key_id, job_a, f"jobs/{job_a}/"),
        (key_b.access_key_id, job_b, f"jobs/{job_b}/"),
    }

    # Job a ended two hours ago: its key is past the one-hour grace period; b's still works.
    assert end_job_keys(server, job_a, datetime.now(UTC) - timedelta(hours=2)) == 1
    expired = wait_until_sync(
        lambda: _refusal(lambda: s3_a.get_object(Bucket="cloudtuner", Key=mine)),
        lambda result: result is not None,
        timeout=10,
    )
    assert expired == ("ExpiredToken", 400)
    assert s3_b.get_object(Bucket="cloudtuner", Key=f"jobs/{job_b}/model.safetensors")["Body"].read() == b"weights of b"
    # Within the grace period the key keeps working.
    assert end_job_keys(server, job_b, datetime.now(UTC)) == 1
    s3_b.put_object(Bucket="cloudtuner", Key=f"jobs/{job_b}/final.txt", Body=b"late upload")
