"""Training progress read from a SimpleTuner-style log.

:func:`parse_progress` reads the *end* of a trainer's console log and returns what it last said
about itself: the training step and the total, the loss, the learning rate and the stage. It is
pure (no I/O) and cheap on multi-megabyte logs: it walks the text backwards in blocks and stops as
soon as every field is known, or after :data:`MAX_SCAN_LINES` lines.

Line shapes understood (``\\r``-separated tqdm redraws count as lines too):

* tqdm training bars: ``Epoch 1/5, Steps:  10%|█         | 10/100 [00:05<00:45, 2.0it/s,
  lr=0.0001, step_loss=0.1234]``. The bar's ``n/total`` is the step; a bar counts as training when
  its description names steps, epochs or training, or its postfix carries a loss. Other bars
  (``Caching VAE latents: 100%|██████████| 24/24``) only set the stage.
* plain lines: ``Training step 4/5 loss=0.2 lr=0.0001``, ``Step 40 of 100``.
* the training summary: ``Total optimization steps = 100`` (total only) and
  ``Learning rate = 1e-4``.
* stage messages, mapped to the values of :data:`STAGES`.

The newest line that says something decides each field: the step and total come from the newest
progress line, the loss and learning rate from the newest line that shows them, the stage from the
newest line that names one (a progress line names ``training``). Loss values that are not finite
numbers (``nan``) are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from cloudtuner.core.progress import JobProgress

STAGE_PREPARING_DATA = "preparing_data"
STAGE_LOADING_MODEL = "loading_model"
STAGE_CACHING_TEXT_EMBEDS = "caching_text_embeds"
STAGE_CACHING_LATENTS = "caching_latents"
STAGE_TRAINING = "training"
STAGE_VALIDATING = "validating"
STAGE_SAVING = "saving"
STAGE_UPLOADING = "uploading"
STAGE_COMPLETE = "complete"

STAGES = (
    STAGE_PREPARING_DATA,
    STAGE_LOADING_MODEL,
    STAGE_CACHING_TEXT_EMBEDS,
    STAGE_CACHING_LATENTS,
    STAGE_TRAINING,
    STAGE_VALIDATING,
    STAGE_SAVING,
    STAGE_UPLOADING,
    STAGE_COMPLETE,
)
"""Every value :func:`parse_progress` may put in ``JobProgress.stage``, in the usual order."""

MAX_SCAN_LINES = 20_000
"""Lines read from the end before giving up on fields not yet found."""

_FIRST_BLOCK = 4 * 1024
_MAX_BLOCK = 64 * 1024

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN|inf|-inf"
_BAR = re.compile(r"^(?P<desc>.*?)(?:\d{1,3}%)?\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+)\b(?P<rest>.*)$")
_PLAIN_STEP = re.compile(r"\bsteps?\b\s*[:=#]?\s*(?P<step>\d+)\s*(?:/|\bof\b)\s*(?P<total>\d+)\b", re.IGNORECASE)
_TOTAL_STEPS = re.compile(r"\btotal\s+optimi[sz]ation\s+steps\s*[=:]\s*(?P<total>\d+)", re.IGNORECASE)
_LOSS = re.compile(rf"['\"]?\b(?P<key>step_loss|avg_loss|train_loss|loss)['\"]?\s*[=:]\s*(?P<value>{_NUMBER})")
_LR = re.compile(rf"['\"]?\b(?:lr|learning[ _]rate)['\"]?\s*[=:]\s*(?P<value>{_NUMBER})", re.IGNORECASE)
_TRAINING_DESC = re.compile(r"\b(?:steps?|epoch|training|train)\b", re.IGNORECASE)

_STAGE_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # (cheap keywords, one of which a lowercased line must hold; the pattern; the stage)
    (("complete", "finished"), re.compile(r"\btraining (?:is )?complete\b|\bfinished training\b"), STAGE_COMPLETE),
    (
        ("push", "upload"),
        re.compile(r"\bpush(?:ing|ed)? (?:\w+ )?to (?:the )?hub\b|\buploading\b|\bupload(?:ing)? to s3\b"),
        STAGE_UPLOADING,
    ),
    (("sav", "checkpoint"), re.compile(r"\bsaving\b|\bsave_model\b|\bcheckpoint saved\b"), STAGE_SAVING),
    (("validat",), re.compile(r"\bvalidation\b|\bvalidating\b"), STAGE_VALIDATING),
    (
        ("training",),
        re.compile(r"\brunning training\b|\bbeginning training\b|\bstart(?:ing)? training\b"),
        STAGE_TRAINING,
    ),
    (("cach",), re.compile(r"\bcach(?:e|ing)\b.*\b(?:text|prompt)\s*embed"), STAGE_CACHING_TEXT_EMBEDS),
    (("cach",), re.compile(r"\bcach(?:e|ing)\b.*\b(?:latents?|vae)\b"), STAGE_CACHING_LATENTS),
    (
        ("loading",),
        re.compile(r"\bloading (?:the )?(?:base )?(?:model|pipeline|transformer|unet|vae|text encoders?)\b"),
        STAGE_LOADING_MODEL,
    ),
    (
        ("download", "extract"),
        re.compile(r"\bdownloading (?:the )?training data\b|\bextract(?:ed|ing)\b.*\bimages?\b"),
        STAGE_PREPARING_DATA,
    ),
)
"""Stage patterns, matched against the lowercased line; the first that matches wins."""

_STAGE_HINT = re.compile("|".join(sorted({word for words, _, _ in _STAGE_PATTERNS for word in words})))


@dataclass
class _Found:
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    lr: float | None = None
    stage: str | None = None
    summary_total: int | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.step, self.total, self.loss, self.lr, self.stage)

    def any(self) -> bool:
        return any(v is not None for v in (self.step, self.total, self.loss, self.lr, self.stage, self.summary_total))


def parse_progress(log_text: str) -> JobProgress | None:
    """Return the progress the end of ``log_text`` shows, or None when it shows none.

    Never raises for odd input; unknown lines are skipped.
    """
    if not log_text:
        return None
    found = _Found()
    for count, line in enumerate(_lines_from_end(log_text)):
        if count >= MAX_SCAN_LINES:
            break
        _read_line(line, found)
        if found.complete:
            break
    if not found.any():
        return None
    total = found.total if found.total is not None else found.summary_total
    return JobProgress(
        stage=found.stage,
        step=found.step,
        total_steps=total,
        loss=found.loss,
        learning_rate=found.lr,
    )


def _lines_from_end(text: str) -> Iterator[str]:
    """Yield the lines of ``text``, last first, reading it backwards in blocks.

    The first block is small (the answer is usually in the last few lines); each next one is four
    times as long, up to 64 KiB.
    """
    end = len(text)
    carry = ""
    block = _FIRST_BLOCK
    while end > 0:
        start = max(0, end - block)
        block = min(block * 4, _MAX_BLOCK)
        lines = (text[start:end] + carry).splitlines()
        if start > 0 and lines:
            carry = lines[0]
            lines = lines[1:]
        else:
            carry = ""
        yield from reversed(lines)
        end = start
    if carry:
        yield carry


def _read_line(line: str, found: _Found) -> None:
    """Fill the fields of ``found`` that are still empty from one line."""
    if not line or line.isspace():
        return
    low = line.lower()
    training_line = False
    if found.step is None or found.stage is None:
        progress = _progress_of(line, low)
        training_line = progress is not None
        if progress is not None and found.step is None:
            found.step, found.total = progress
    if found.loss is None and "loss" in low:
        found.loss = _number(_LOSS, line)
    if found.lr is None and ("lr" in low or "learning" in low):
        found.lr = _number(_LR, line)
    if found.stage is None:
        found.stage = STAGE_TRAINING if training_line else _stage_of(low)
    if found.summary_total is None and "optimi" in low and (match := _TOTAL_STEPS.search(line)):
        found.summary_total = int(match["total"])


def _progress_of(line: str, low: str) -> tuple[int, int] | None:
    """Return ``(step, total)`` if ``line`` (``low`` is its lowercase form) reports a training step."""
    if "|" in line and "/" in line and (bar := _BAR.match(line)):
        if _TRAINING_DESC.search(bar["desc"]) or ("loss" in bar["rest"] and _LOSS.search(bar["rest"])):
            total = int(bar["total"])
            return (int(bar["step"]), total) if total > 0 else None
        return None
    if "step" in low and (plain := _PLAIN_STEP.search(line)) and not ("optimi" in low and _TOTAL_STEPS.search(line)):
        total = int(plain["total"])
        return (int(plain["step"]), total) if total > 0 else None
    return None


def _stage_of(low: str) -> str | None:
    if not _STAGE_HINT.search(low):
        return None
    for keywords, pattern, stage in _STAGE_PATTERNS:
        if any(word in low for word in keywords) and pattern.search(low):
            return stage
    return None


def _number(pattern: re.Pattern[str], line: str) -> float | None:
    """Return the last finite number ``pattern`` captures in ``line`` (``step_loss`` preferred)."""
    best: float | None = None
    preferred = False
    for match in pattern.finditer(line):
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        is_step_loss = match.groupdict().get("key") == "step_loss"
        if is_step_loss or not preferred:
            best = value
            preferred = preferred or is_step_loss
    return best
