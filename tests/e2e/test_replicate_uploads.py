"""Datasets over Replicate's 100 MiB upload limit are refused at submit, before anything is sent.

The dataset is a bit over 100 MiB of *sparse* files: the submit-time check scans names and sizes
(``st_size``, the apparent size) and reads no contents, so sparse files count at their full size
and the test needs neither the disk space nor the time to write 100 MiB. (Were such a job
packaged, the packager would read the holes as zero bytes, i.e. as ordinary data.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudtuner.packaging.sizes import format_size
from tests.e2e.harness import ServerFactory
from tests.e2e.replicate_support import fake_process, fresh_fake, replicate_server, seed_body
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote

MIB = 1024 * 1024
LIMIT = 100 * MIB


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    for remote in fresh_fake(fake_proc):
        assert remote.config()["file_size_limit"] == LIMIT  # the fake refuses larger files with 413 too
        yield remote


def make_sparse_dataset(root: Path) -> Path:
    """Two images of 60 MiB and 40.5 MiB (sparse, so instant) with captions: 100.5 MiB and a bit."""
    folder = root / "big-dataset"
    folder.mkdir()
    for name, size in (("a.jpg", 60 * MIB), ("b.jpg", 40 * MIB + 512 * 1024)):
        with (folder / name).open("wb") as handle:
            handle.truncate(size)
        (folder / name).with_suffix(".txt").write_text("a photo of sks dog")
    return folder


def test_oversized_dataset_is_refused_at_submit_and_nothing_reaches_replicate(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    folder = make_sparse_dataset(tmp_path)
    stat = os.stat(folder / "a.jpg")
    assert stat.st_blocks * 512 < MIB, "the file system did not keep the file sparse"
    server = replicate_server(servers, fake, webhooks=False)

    with server.http() as http:
        preview = http.post("/api/cloud/jobs/preview", params={"provider": "replicate"}, json=seed_body(folder))
        assert preview.status_code == 200, preview.text
        summary = preview.json()["upload_summary"]
        assert summary["upload_limit_bytes"] == LIMIT, summary
        assert summary["fits_upload_limit"] is False, summary
        over = summary["bytes_over_limit"]
        assert over == summary["estimated_archive_bytes"] - LIMIT and over > 512 * 1024, summary

        for consent in (True, None):  # refused for its size whether or not consent was given
            reply = http.post(
                "/api/cloud/jobs/submit", params={"provider": "replicate"}, json=seed_body(folder, consent=consent)
            )
            assert reply.status_code == 400, reply.text
            error = reply.json()
            assert error["code"] == "upload_too_large", error
            assert f"{format_size(over)} over Replicate's 100 MiB upload limit" in error["detail"], error

        jobs = http.get("/api/cloud/jobs").json()["jobs"]
    assert jobs == [], jobs
    sent = [(r["method"], r["path"]) for r in fake.requests() if r["method"] != "GET"]
    assert sent == [], f"the refused job reached Replicate: {sent}"
    assert fake.count_runs() == 0
