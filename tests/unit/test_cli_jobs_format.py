"""`cloudtuner jobs`: progress reads as training steps, or as bytes while packaging and uploading."""

from __future__ import annotations

from cloudtuner.cli.jobs import _steps
from cloudtuner.schemas.jobs import JobProgressResponse


def test_training_progress_is_steps() -> None:
    assert _steps(JobProgressResponse(stage="training", step=40, total_steps=100)) == "40/100"
    assert _steps(JobProgressResponse(step=3, total_steps=4)) == "3/4"


def test_upload_progress_is_bytes() -> None:
    uploading = JobProgressResponse(stage="uploading", step=41_949_813, total_steps=41_949_813)
    assert _steps(uploading) == "40.0 MiB/40.0 MiB"
    assert _steps(JobProgressResponse(stage="packaging", step=0, total_steps=2048)) == "0 B/2.0 KiB"


def test_unknown_progress_is_a_dash() -> None:
    assert _steps(None) == "-"
    assert _steps(JobProgressResponse(stage="loading_model")) == "-"
