"""parse_progress: SimpleTuner log lines, the fake's logs, long logs."""

from __future__ import annotations

import time

import pytest

from cloudtuner.core.progress import JobProgress
from cloudtuner.core.trainer_logs import MAX_SCAN_LINES, STAGES, parse_progress
from tests.fakes.replicate.logs import plan_for, trainer_success_lines, trainer_timeline

BAR = "Epoch 1/5, Steps:  10%|█         | 10/100 [00:05<00:45, 2.0it/s, lr=0.0001, step_loss=0.1234]"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (BAR, JobProgress("training", 10, 100, 0.1234, 0.0001)),
        (
            "Epoch 3/5, Steps:  55%|█████▌    | 55/100 [01:28<01:12, lr=0.0001, step_loss=0.0731]",
            JobProgress("training", 55, 100, 0.0731, 0.0001),
        ),
        ("Training step 4/5 loss=0.2 lr=0.0001", JobProgress("training", 4, 5, 0.2, 0.0001)),
        ("Step 40 of 400, loss: 0.05", JobProgress("training", 40, 400, 0.05, None)),
        (
            "Steps:  20%|██        | 2/10 [00:02<00:08, {'lr': 2e-05, 'step_loss': 0.5}]",
            JobProgress("training", 2, 10, 0.5, 2e-05),
        ),
        ("  7%|▋         | 7/100 [00:03<00:40, loss=0.31]", JobProgress("training", 7, 100, 0.31, None)),
        ("Caching text embeds: 100%|██████████| 24/24", JobProgress(stage="caching_text_embeds")),
        ("Caching VAE latents:  50%|█████     | 12/24", JobProgress(stage="caching_latents")),
        ("Loading base model black-forest-labs/FLUX.1-dev", JobProgress(stage="loading_model")),
        ("Downloading training data from https://example.test/f", JobProgress(stage="preparing_data")),
        ("***** Running training *****", JobProgress(stage="training")),
        ("Running validation for prompt 1 of 4", JobProgress(stage="validating")),
        ("Saving checkpoint to /src/output/checkpoint-100", JobProgress(stage="saving")),
        ("Pushing model to the hub: user/my-lora", JobProgress(stage="uploading")),
        ("Uploading to S3 bucket my-bucket", JobProgress(stage="uploading")),
        ("Training complete. Output: /src/output", JobProgress(stage="complete")),
        ("-  Total optimization steps = 400", JobProgress(total_steps=400)),
        ("-  Learning rate = 1e-4", JobProgress(learning_rate=0.0001)),
    ],
)
def test_line_shapes(line: str, expected: JobProgress) -> None:
    assert parse_progress(line) == expected


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "Using seed: 1234", "  4%|▍         | 1/28 [00:01<00:00]", "Epoch 1/5", "lr_scheduler=constant"],
)
def test_nothing_to_say(text: str) -> None:
    assert parse_progress(text) is None


def test_newest_line_wins_per_field() -> None:
    log = "\n".join(
        [
            "Training step 1/10 loss=0.9 lr=0.001",
            "Training step 2/10 loss=0.8",
            "Saving checkpoint to /out",
            "Training step 3/10",
        ]
    )
    assert parse_progress(log) == JobProgress("training", 3, 10, 0.8, 0.001)


def test_stage_after_the_last_step_wins() -> None:
    log = BAR + "\nRunning validation for prompt 1\n"
    assert parse_progress(log) == JobProgress("validating", 10, 100, 0.1234, 0.0001)


def test_carriage_return_redraws_are_lines() -> None:
    log = "\r".join(BAR.replace("10/100", f"{n}/100") for n in range(1, 31))
    progress = parse_progress(log)
    assert progress is not None and progress.step == 30


def test_summary_total_used_before_the_first_step() -> None:
    log = "***** Running training *****\n-  Num Epochs = 5\n-  Total optimization steps = 120\n"
    assert parse_progress(log) == JobProgress(stage="training", total_steps=120)


def test_non_finite_loss_is_ignored() -> None:
    log = "Training step 1/10 loss=0.5\nTraining step 2/10 loss=nan\n"
    progress = parse_progress(log)
    assert progress is not None and progress.step == 2 and progress.loss == 0.5


def test_fake_trainer_timeline_reads_like_the_real_thing() -> None:
    plan = plan_for({"config_json": '{"--max_train_steps": 40}', "images": "https://x.test/f"}, 100)
    timeline = [line for _, line in trainer_timeline("run-1", plan, 4)]
    stages_seen = []
    for end in range(1, len(timeline) + 1):
        progress = parse_progress("\n".join(timeline[:end]) + "\n")
        if progress is not None and progress.stage and progress.stage not in stages_seen:
            stages_seen.append(progress.stage)
    assert stages_seen == ["preparing_data", "loading_model", "caching_text_embeds", "caching_latents", "training"]
    final = parse_progress("\n".join(timeline + trainer_success_lines(plan, "/src/output")) + "\n")
    assert final is not None
    assert (final.stage, final.step, final.total_steps) == ("complete", 40, 40)
    assert final.loss is not None and 0 < final.loss < 1
    assert final.learning_rate == 0.0001
    assert set(stages_seen) <= set(STAGES)


def test_multi_megabyte_log_is_fast() -> None:
    noise = "INFO some trainer chatter that mentions nothing useful at all, again and again\n"
    log = noise * 60_000 + BAR + "\n" + noise * 60_000
    assert len(log) > 9_000_000
    started = time.perf_counter()
    progress = parse_progress(log)
    elapsed = time.perf_counter() - started
    # The bar is further back than the scan limit, so only what the last lines say is used.
    assert progress is None
    assert elapsed < 1.0

    log = noise * 120_000 + BAR + "\n" + noise * 10
    started = time.perf_counter()
    assert parse_progress(log) == JobProgress("training", 10, 100, 0.1234, 0.0001)
    assert time.perf_counter() - started < 0.1


def test_scan_limit_is_in_lines() -> None:
    log = BAR + "\n" + "x\n" * (MAX_SCAN_LINES - 1)
    progress = parse_progress(log)
    assert progress is not None and progress.step == 10
    assert parse_progress(BAR + "\n" + "x\n" * MAX_SCAN_LINES) is None


def test_one_huge_line_does_not_break_the_reader() -> None:
    log = "a" * 300_000 + " Training step 5/9 loss=0.1"
    assert parse_progress(log) == JobProgress("training", 5, 9, 0.1, None)
