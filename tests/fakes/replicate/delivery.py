"""The fake trainer's delivery: what a SimpleTuner run uploads before it reports success.

The real trainer pushes its outputs where its inputs say (reference section 11): to the Hub
repository ``hub_model_id`` with ``hf_token``, or to ``s3://<s3_bucket>/<s3_base_path>/`` of the
endpoint ``s3_endpoint_url`` with ``s3_access_key``/``s3_secret_key``. The fake does the same with
the real clients (``huggingface_hub``, ``boto3``), uploading a small, deterministic set of files:

- ``pytorch_lora_weights.safetensors`` (the final weights),
- ``samples/step-<total>.png`` (a validation sample),
- ``checkpoint-<half>/pytorch_lora_weights.safetensors`` (a checkpoint; with
  ``config.delivery_checkpoint_bytes`` over 5 MiB it is sent as a multipart upload).

Only loopback destinations are contacted: an S3 endpoint elsewhere (or AWS, with no endpoint)
and a Hub delivery without ``config.hf_endpoint`` are skipped, and the run succeeds as before
without uploading. A failed upload fails the run with the client's error, as the trainer would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .webhooks import is_loopback_url

WEIGHTS = "pytorch_lora_weights.safetensors"
MULTIPART_CHUNK = 5 * 1024 * 1024


@dataclass
class DeliveryResult:
    """What a delivery did: files uploaded (path -> sha256), log lines, an error if it failed."""

    uploaded: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None


def payload(run_id: str, name: str, size: int) -> bytes:
    """Deterministic bytes of one delivered file (recomputable by tests)."""
    seed = hashlib.sha256(f"{run_id}:{name}".encode()).digest()
    repeats = size // len(seed) + 1
    return (seed * repeats)[:size]


def delivery_files(run_id: str, total_steps: int, checkpoint_bytes: int) -> dict[str, bytes]:
    """The files a run delivers, by path inside its folder or repository."""
    half = max(1, total_steps // 2)
    return {
        WEIGHTS: payload(run_id, WEIGHTS, 64 * 1024),
        f"samples/step-{total_steps}.png": payload(run_id, "sample", 4096),
        f"checkpoint-{half}/{WEIGHTS}": payload(run_id, "checkpoint", max(1024, checkpoint_bytes)),
    }


def needs_delivery(run_input: dict[str, Any], hf_endpoint: str | None) -> bool:
    """Whether a run's inputs name a destination the fake may reach (loopback only)."""
    if run_input.get("hub_model_id") and run_input.get("hf_token"):
        return bool(hf_endpoint) and is_loopback_url(str(hf_endpoint))
    endpoint = run_input.get("s3_endpoint_url")
    return bool(run_input.get("s3_bucket") and endpoint and is_loopback_url(str(endpoint)))


def _private_from_config(run_input: dict[str, Any]) -> bool:
    try:
        config = json.loads(str(run_input.get("config_json") or "{}"))
    except ValueError:
        return True
    value = config.get("--model_card_private", True) if isinstance(config, dict) else True
    return value not in (False, "false", "False", 0, "0")


def deliver(
    run_id: str, run_input: dict[str, Any], *, total_steps: int, hf_endpoint: str | None, checkpoint_bytes: int
) -> DeliveryResult:
    """Upload the run's files where its inputs say (blocking; call from a worker thread)."""
    result = DeliveryResult()
    files = delivery_files(run_id, total_steps, checkpoint_bytes)
    try:
        if run_input.get("hub_model_id"):
            _to_hub(run_input, files, str(hf_endpoint), result)
        else:
            _to_s3(run_input, files, result)
    except Exception as exc:
        result.error = f"Publishing failed: {type(exc).__name__}: {exc}"
    return result


def _to_hub(run_input: dict[str, Any], files: dict[str, bytes], endpoint: str, result: DeliveryResult) -> None:
    # The fake Hub speaks the LFS protocol, not Xet: keep huggingface_hub on LFS even if hf_xet is installed.
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    from huggingface_hub import CommitOperationAdd, HfApi, constants

    constants.HF_HUB_DISABLE_XET = True

    repo_id = str(run_input["hub_model_id"])
    api = HfApi(endpoint=endpoint, token=str(run_input["hf_token"]))
    api.create_repo(repo_id, private=_private_from_config(run_input), exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
    result.lines.append(f"Pushing {len(files)} files to the Hugging Face Hub: {repo_id}")
    api.create_commit(repo_id, operations, commit_message="Upload trained LoRA")
    result.uploaded = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    result.lines.append(f"Model pushed to https://huggingface.co/{repo_id}")


def _to_s3(run_input: dict[str, Any], files: dict[str, bytes], result: DeliveryResult) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    bucket = str(run_input["s3_bucket"])
    base = str(run_input.get("s3_base_path") or "").strip("/")
    client = boto3.client(
        "s3",
        endpoint_url=str(run_input["s3_endpoint_url"]),
        aws_access_key_id=run_input.get("s3_access_key"),
        aws_secret_access_key=run_input.get("s3_secret_key"),
        region_name=str(run_input.get("s3_region") or "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
    )
    transfer = TransferConfig(multipart_threshold=MULTIPART_CHUNK + 1, multipart_chunksize=MULTIPART_CHUNK)
    result.lines.append(f"Uploading {len(files)} files to s3://{bucket}/{base}")
    for path, data in files.items():
        key = f"{base}/{path}" if base else path
        if len(data) > MULTIPART_CHUNK:
            client.upload_fileobj(io.BytesIO(data), bucket, key, Config=transfer)
        else:
            client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
        result.uploaded[path] = hashlib.sha256(data).hexdigest()
    result.lines.append(f"Uploaded outputs to s3://{bucket}/{base}")
