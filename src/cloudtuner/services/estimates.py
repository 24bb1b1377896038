"""Cost estimates before submission: how long a job will run, and so what it will cost.

A job's **work** is its steps scaled by image size and batch: one *unit* is one training step of
one 1024 × 1024 image, so ``units = steps × (pixels / 1024²) × batch size × gradient accumulation``.
Its time is ``units × seconds per unit``, where seconds per unit depend on the kind of training
(model family and ``lora``/``full``) and the hardware:

* **history**: learned from this server's own completed jobs of the same provider, kind and
  hardware (their billed seconds ÷ their units; the newest :data:`HISTORY_SAMPLES`). The range is
  the smallest and largest seen, widened by :data:`HISTORY_MARGIN` (more when there are fewer
  than three jobs); the expected figure is the median.
* **defaults** when there is no history: the seeds' cost table, for one L40S (Flux LoRA 1000 steps
  in 30-60 min, SDXL LoRA 2000 steps in 45-90 min, a full fine-tune 5000 steps in 4-12 h), scaled
  by the hardware's GPU type and count (:data:`GPU_SPEED`, :data:`MULTI_GPU_EFFICIENCY`).

Cost is time × the price per second of the hardware (``services.costs_prices``); hardware
without a known price gets a time estimate only. Learned figures are cached per process for
:data:`HISTORY_CACHE_SECONDS`, so a burst of submissions reads the job store once.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from cloudtuner.core.states import JobStatus
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow
from cloudtuner.schemas.costs import CostEstimate, EstimateBasis, HardwarePrice
from cloudtuner.services.context import ServiceContext

REFERENCE_PIXELS = 1024 * 1024
DEFAULT_STEPS = 1000
"""Steps assumed when the config gives neither max_train_steps nor epochs with a known image count."""

SEED_SECONDS_PER_UNIT: Mapping[tuple[str | None, str], tuple[float, float]] = {
    ("flux", "lora"): (1.8, 3.6),  # 1000 steps in 30-60 minutes
    ("sdxl", "lora"): (1.35, 2.7),  # 2000 steps in 45-90 minutes
    (None, "full"): (2.88, 8.64),  # 5000 steps in 4-12 hours
}
"""Seconds per unit on one L40S, from the seeds' table of typical training costs."""
FALLBACK_LORA = (1.35, 3.6)
"""A LoRA of a family the seeds do not list: the span of their LoRA figures."""

REFERENCE_GPU = "L40S"
GPU_SPEED: Mapping[str, float] = {"L40S": 1.0, "A100": 1.3, "H100": 2.0, "A40": 0.6, "L4": 0.45, "T4": 0.2}
"""Throughput of one GPU relative to an L40S (an assumption, stated in the estimate's basis)."""
MULTI_GPU_EFFICIENCY = 0.9
"""Each GPU after the first adds this fraction of one GPU's throughput."""

HISTORY_SAMPLES = 50
HISTORY_MARGIN = 0.1
FEW_SAMPLES_MARGIN = 0.25
HISTORY_CACHE_SECONDS = 5.0


# --- what a job asks for ------------------------------------------------------------------------


def config_value(config: Mapping[str, Any], name: str) -> Any:
    """Return a SimpleTuner argument given as ``--name`` or ``name`` (None if absent)."""
    value = config.get(f"--{name}")
    return config.get(name) if value is None else value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


@dataclass(frozen=True)
class TrainingShape:
    """What drives a job's run time, read from its config and datasets."""

    model_family: str | None
    model_type: str
    steps: int
    steps_assumed: bool
    work_units: float

    @property
    def kind(self) -> str:
        """Return the key estimates learn under: ``<family>/<lora|full>``."""
        return f"{self.model_family or 'unknown'}/{self.model_type}"


def _pixel_factor(config: Mapping[str, Any], dataloader: Sequence[Mapping[str, Any]]) -> float:
    resolutions = [_number(config_value(config, "resolution"))]
    resolutions += [_number(dataset.get("resolution")) for dataset in dataloader if not dataset.get("disabled")]
    known = [value for value in resolutions if value is not None and value > 0]
    if not known:
        return 1.0
    largest = max(known)
    # SimpleTuner takes small values as megapixels (resolution_type "area"), large ones as pixels.
    pixels = largest * 1_000_000 if largest <= 10 else largest * largest
    return min(16.0, max(0.05, pixels / REFERENCE_PIXELS))


def training_shape(
    config: Mapping[str, Any], dataloader: Sequence[Mapping[str, Any]], image_count: int | None = None
) -> TrainingShape:
    """Return the model family, kind, steps and work units of a job."""
    family_value = config_value(config, "model_family")
    family = str(family_value).strip().lower() if family_value else None
    model_type = "full" if str(config_value(config, "model_type") or "").strip().lower() == "full" else "lora"
    batch = max(1.0, _number(config_value(config, "train_batch_size")) or 1.0)
    accumulation = max(1.0, _number(config_value(config, "gradient_accumulation_steps")) or 1.0)
    steps_value = _number(config_value(config, "max_train_steps"))
    epochs = _number(config_value(config, "num_train_epochs"))
    steps_assumed = False
    if steps_value is not None and steps_value > 0:
        steps = int(steps_value)
    elif epochs is not None and epochs > 0 and image_count:
        steps = max(1, int(epochs * math.ceil(image_count / batch) / accumulation))
    else:
        steps, steps_assumed = DEFAULT_STEPS, True
    units = steps * _pixel_factor(config, dataloader) * batch * accumulation
    return TrainingShape(family, model_type, steps, steps_assumed, round(units, 6))


def hardware_speed(profile: HardwarePrice | None) -> float:
    """Return a profile's throughput relative to one L40S (1.0 when its GPU type is unknown)."""
    if profile is None:
        return 1.0
    per_gpu = GPU_SPEED.get((profile.gpu_type or REFERENCE_GPU).upper(), 1.0)
    return per_gpu * (1 + MULTI_GPU_EFFICIENCY * (max(1, profile.gpu_count) - 1))


# --- what this server has seen ------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Seconds per unit of recent completed jobs of one provider, kind and hardware."""

    seconds_per_unit: tuple[float, ...]


_HISTORY: weakref.WeakKeyDictionary[Database, dict[tuple[str, str, str], tuple[float, asyncio.Future[History]]]] = (
    weakref.WeakKeyDictionary()
)


async def _load_history(db: Database, provider: str, kind: str, hardware: str) -> History:
    query = (
        select(JobRow.run_seconds, JobRow.work_units)
        .where(
            JobRow.training_kind == kind,
            JobRow.hardware == hardware,
            JobRow.status == JobStatus.COMPLETED.value,
            JobRow.provider == provider,
            JobRow.run_seconds > 0,
            JobRow.work_units > 0,
        )
        .order_by(JobRow.finished_at.desc())
        .limit(HISTORY_SAMPLES)
    )
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return History(tuple(float(run_seconds) / float(units) for run_seconds, units in rows if run_seconds and units))


async def learned_history(ctx: ServiceContext, provider: str, kind: str, hardware: str) -> History:
    """Return what this server's completed jobs say about ``kind`` on ``hardware`` (cached briefly)."""
    cache = _HISTORY.setdefault(ctx.db, {})
    key = (provider, kind, hardware)
    cached = cache.get(key)
    if cached is None or time.monotonic() - cached[0] >= HISTORY_CACHE_SECONDS:
        cached = (time.monotonic(), asyncio.ensure_future(_load_history(ctx.db, provider, kind, hardware)))
        cache[key] = cached
    try:
        return await asyncio.shield(cached[1])
    except Exception:
        if cache.get(key) is cached:
            del cache[key]
        raise


def forget_history(ctx: ServiceContext) -> None:
    """Drop this process's cached history (tests, and after bulk changes)."""
    _HISTORY.pop(ctx.db, None)


# --- the estimate -------------------------------------------------------------------------------


def _seed_range(shape: TrainingShape) -> tuple[tuple[float, float], str | None]:
    if shape.model_type == "full":
        return SEED_SECONDS_PER_UNIT[(None, "full")], None
    seeded = SEED_SECONDS_PER_UNIT.get((shape.model_family, "lora"))
    if seeded is not None:
        return seeded, None
    family = shape.model_family or "an unnamed model family"
    return FALLBACK_LORA, f"the seeds give no figures for {family}; the span of their LoRA figures is used"


def estimate_from(
    shape: TrainingShape, hardware: str | None, profile: HardwarePrice | None, history: History
) -> CostEstimate:
    """Return the estimate of a job of ``shape`` on ``profile`` (pure; see the module docstring)."""
    notes: list[str] = []
    samples = history.seconds_per_unit
    if samples:
        margin = HISTORY_MARGIN if len(samples) >= 3 else FEW_SAMPLES_MARGIN
        low, high = min(samples) * (1 - margin), max(samples) * (1 + margin)
        expected = statistics.median(samples)
        source = "history"
    else:
        (seed_low, seed_high), note = _seed_range(shape)
        speed = hardware_speed(profile)
        low, high = seed_low / speed, seed_high / speed
        expected = (low + high) / 2
        source = "defaults"
        if note:
            notes.append(note)
        if profile is not None and profile.gpu_type and profile.gpu_type.upper() not in GPU_SPEED:
            notes.append(f"no speed figure for {profile.gpu_type}; taken as fast as an L40S")
        elif speed != 1.0:
            notes.append(f"{hardware} taken as {speed:.2f}x the speed of one L40S")
    if shape.steps_assumed:
        notes.append(f"the config gives no max_train_steps; {DEFAULT_STEPS} steps assumed")
    price = profile.price_per_second if profile is not None else None
    if price is None:
        notes.append(f"no price is known for hardware {hardware or '(default)'}: time only")
    units = shape.work_units

    def usd(seconds: float) -> float | None:
        return round(seconds * price, 4) if price is not None else None

    return CostEstimate(
        low_usd=usd(units * low),
        expected_usd=usd(units * expected),
        high_usd=usd(units * high),
        low_seconds=round(units * low, 1),
        expected_seconds=round(units * expected, 1),
        high_seconds=round(units * high, 1),
        basis=EstimateBasis(
            source=source,
            samples=len(samples),
            model_family=shape.model_family,
            model_type=shape.model_type,
            hardware=hardware,
            steps=shape.steps,
            steps_assumed=shape.steps_assumed,
            work_units=units,
            seconds_per_unit_low=round(low, 4),
            seconds_per_unit_high=round(high, 4),
            price_per_second=price,
            note="; ".join(notes) or None,
        ),
    )


async def estimate_job(
    ctx: ServiceContext,
    provider: str,
    shape: TrainingShape,
    hardware: str | None,
    profile: HardwarePrice | None,
) -> CostEstimate:
    """Return the estimate of a job of ``shape`` on ``hardware`` at ``provider``."""
    history = await learned_history(ctx, provider, shape.kind, hardware) if hardware else History(())
    return estimate_from(shape, hardware, profile, history)
