"""The ``aws`` CLI against the endpoint: cp, ls, sync and rm --recursive (skipped without the CLI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.storage.conftest import ADMIN_KEY, ADMIN_SECRET, S3Endpoint

AWS = shutil.which("aws")
pytestmark = pytest.mark.skipif(AWS is None, reason="the aws CLI is not installed")


def _aws(s3: S3Endpoint, home: Path, *args: str) -> str:
    assert AWS is not None
    config = home / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ADMIN_KEY,
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "1",
    }
    if "PYENV_ROOT" in os.environ:
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    result = subprocess.run(
        [AWS, "--endpoint-url", s3.url, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_aws_s3_cp_ls_sync_rm(s3: S3Endpoint, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "out"
    (source / "checkpoints").mkdir(parents=True)
    (source / "model.safetensors").write_bytes(os.urandom(300_000))
    (source / "checkpoints" / "step-100.bin").write_bytes(b"step 100")
    (source / "checkpoints" / "step-200.bin").write_bytes(b"step 200")

    _aws(s3, tmp_path, "s3", "cp", str(source / "model.safetensors"), f"s3://{bucket}/job-1/model.safetensors")
    _aws(s3, tmp_path, "s3", "sync", str(source / "checkpoints"), f"s3://{bucket}/job-1/checkpoints/")

    listing = _aws(s3, tmp_path, "s3", "ls", f"s3://{bucket}/job-1/")
    assert "PRE checkpoints/" in listing
    assert "model.safetensors" in listing
    recursive = _aws(s3, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/")
    assert "job-1/checkpoints/step-200.bin" in recursive

    target = tmp_path / "back"
    _aws(s3, tmp_path, "s3", "cp", "--recursive", f"s3://{bucket}/job-1/", str(target))
    assert (target / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert (target / "checkpoints" / "step-100.bin").read_bytes() == b"step 100"

    _aws(s3, tmp_path, "s3", "rm", "--recursive", f"s3://{bucket}/job-1/")
    assert list((s3.root / bucket).iterdir()) == []
