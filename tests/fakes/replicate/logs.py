"""Log text of fake runs, shaped like SimpleTuner's console output.

A run's logs are a *timeline*: ``(fraction, line)`` pairs, where ``fraction`` in ``[0, 1]`` is the
share of the processing time after which the line appears.  Progress lines look like SimpleTuner's
tqdm bar, e.g. ``Epoch 1/5, Steps:  10%|█         | 10/100 [00:16<02:24, lr=0.0001, step_loss=0.1542]``,
so a parser can read ``step/total`` and ``step_loss``.  All text is deterministic per run id.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

SECONDS_PER_STEP = 1.6
"""Simulated wall time per training step used in the elapsed/remaining part of progress lines."""


@dataclass(frozen=True)
class TrainerPlan:
    """What the trainer logs are about, read from a run's ``input``."""

    model_family: str
    base_model: str
    total_steps: int
    learning_rate: str
    num_batches: int
    datasets: tuple[str, ...]
    images_url: str | None

    @property
    def epochs(self) -> int:
        """Epochs needed to reach ``total_steps`` with one step per batch."""
        return max(1, math.ceil(self.total_steps / self.num_batches))


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _config_value(config: dict[str, Any], key: str) -> Any:
    return config.get(f"--{key}", config.get(key))


def plan_for(run_input: dict[str, Any], default_total_steps: int) -> TrainerPlan:
    """Read model family, steps and datasets from ``config_json``/``dataloader_json``.

    ``input.max_train_steps`` wins over the config's ``--max_train_steps``, which wins over
    ``default_total_steps``.  Unparseable configs (e.g. a path) fall back to defaults.
    """
    config = _json_or_none(run_input.get("config_json"))
    config = config if isinstance(config, dict) else {}
    loader = _json_or_none(run_input.get("dataloader_json"))
    datasets: list[str] = []
    if isinstance(loader, list):
        for entry in loader:
            if isinstance(entry, dict) and entry.get("dataset_type", "image") == "image":
                datasets.append(str(entry.get("id", f"dataset-{len(datasets) + 1}")))
    total: Any = run_input.get("max_train_steps") or _config_value(config, "max_train_steps")
    try:
        total_steps = int(total) if total else default_total_steps
    except (TypeError, ValueError):
        total_steps = default_total_steps
    family = str(_config_value(config, "model_family") or "flux")
    base = str(
        _config_value(config, "pretrained_model_name_or_path")
        or {"flux": "black-forest-labs/FLUX.1-dev", "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}.get(
            family, f"{family}-base"
        )
    )
    images = run_input.get("images")
    return TrainerPlan(
        model_family=family,
        base_model=base,
        total_steps=max(1, total_steps),
        learning_rate=str(_config_value(config, "learning_rate") or "1e-4"),
        num_batches=24,
        datasets=tuple(datasets) or ("default",),
        images_url=images if isinstance(images, str) else None,
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(plan: TrainerPlan, step: int, loss: float) -> str:
    """One tqdm-style progress line for ``step`` of ``plan.total_steps``."""
    total = plan.total_steps
    pct = int(100 * step / total)
    filled = min(10, pct // 10)
    bar = "█" * filled + " " * (10 - filled)
    epoch = min(plan.epochs, 1 + (step - 1) // plan.num_batches)
    elapsed = _clock(step * SECONDS_PER_STEP)
    remaining = _clock((total - step) * SECONDS_PER_STEP)
    return (
        f"Epoch {epoch}/{plan.epochs}, Steps: {pct:3d}%|{bar}| {step}/{total} "
        f"[{elapsed}<{remaining}, lr={plan.learning_rate}, step_loss={loss:.4f}]"
    )


def step_numbers(total: int, log_steps: int) -> list[int]:
    """The ``log_steps`` step numbers (evenly spread, ending at ``total``) that get a line."""
    count = max(0, min(log_steps, total))
    return sorted({max(1, round(total * k / count)) for k in range(1, count + 1)}) if count else []


def trainer_timeline(run_id: str, plan: TrainerPlan, log_steps: int) -> list[tuple[float, str]]:
    """Stage messages in the first 15 % of processing, progress lines over the rest."""
    rng = random.Random(run_id)
    stage = [f"Starting SimpleTuner training (model family: {plan.model_family})"]
    if plan.images_url:
        stage.append(f"Downloading training data from {plan.images_url}")
        stage.append(f"Extracted {plan.num_batches} images into /src/datasets")
    stage += [
        f"Loading base model {plan.base_model}",
        *(f"Configured data backend '{name}' (image)" for name in plan.datasets),
        f"Caching text embeds: 100%|██████████| {plan.num_batches}/{plan.num_batches}",
        f"Caching VAE latents: 100%|██████████| {plan.num_batches}/{plan.num_batches}",
        "***** Running training *****",
        f"-  Num batches = {plan.num_batches}",
        f"-  Num Epochs = {plan.epochs}",
        f"-  Total optimization steps = {plan.total_steps}",
        f"-  Learning rate = {plan.learning_rate}",
    ]
    timeline = [(0.15 * i / len(stage), line) for i, line in enumerate(stage)]
    steps = step_numbers(plan.total_steps, log_steps)
    for index, step in enumerate(steps, start=1):
        loss = 0.04 + 0.14 * math.exp(-3.0 * step / plan.total_steps) + rng.uniform(-0.01, 0.01)
        timeline.append((0.15 + 0.8 * index / len(steps), progress_line(plan, step, loss)))
    return timeline


def trainer_success_lines(plan: TrainerPlan, output_dir: str) -> list[str]:
    """Lines appended when a trainer run succeeds."""
    return [
        f"Saving checkpoint to {output_dir}/checkpoint-{plan.total_steps}",
        f"Training complete. Output: {output_dir}",
    ]


def failure_lines(error: str) -> list[str]:
    """Lines appended when a run fails with ``error``."""
    return [
        "Traceback (most recent call last):",
        '  File "/src/predict.py", line 212, in predict',
        "    trainer.train()",
        f"RuntimeError: {error}",
    ]


def prediction_timeline(run_id: str, log_steps: int) -> list[tuple[float, str]]:
    """Logs of an ordinary (non-trainer) prediction: a seed line and diffusion progress."""
    seed = random.Random(run_id).randint(0, 2**31 - 1)
    total = 28
    lines: list[tuple[float, str]] = [(0.0, f"Using seed: {seed}")]
    steps = step_numbers(total, log_steps)
    for index, step in enumerate(steps, start=1):
        pct = int(100 * step / total)
        bar = "█" * (pct // 10) + " " * (10 - pct // 10)
        lines.append((0.9 * index / len(steps), f"{pct:3d}%|{bar}| {step}/{total} [00:0{index % 10}<00:00]"))
    return lines
