"""The model card cloudtuner pushes to a Hub repository when a job that publishes there completes.

It lists the base model, the training settings (the job's config arguments, without anything that
looks like a secret), the datasets (from the upload summary, else the dataloader config) and what
the job cost. The front matter carries ``base_model`` and tags, as the Hub reads them.
"""

from __future__ import annotations

import json
import re
from typing import Any

SECRET_NAME = re.compile(r"token|secret|password|passwd|api[_-]?key|access[_-]?key|credential", re.IGNORECASE)
BASE_MODEL_KEYS = ("--pretrained_model_name_or_path", "pretrained_model_name_or_path")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def _yaml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def base_model_of(config: dict[str, Any]) -> str | None:
    """Return the base model a config trains from, if it names one."""
    for key in BASE_MODEL_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _datasets_section(upload_summary: dict[str, Any] | None, dataloader: list[dict[str, Any]]) -> list[str]:
    lines = ["## Datasets", ""]
    summaries = (upload_summary or {}).get("datasets")
    if isinstance(summaries, list) and summaries:
        lines += ["| dataset | files | images | captions | bytes |", "| --- | --- | --- | --- | --- |"]
        for item in summaries:
            if isinstance(item, dict):
                lines.append(
                    f"| {_cell(item.get('dataset_id'))} | {item.get('file_count', '')} | {item.get('image_count', '')} "
                    f"| {item.get('captions_found', '')} | {item.get('total_bytes', '')} |"
                )
    elif dataloader:
        lines += ["| dataset | type | kind | resolution |", "| --- | --- | --- | --- |"]
        for item in dataloader:
            lines.append(
                f"| {_cell(item.get('id'))} | {_cell(item.get('type', ''))} | {_cell(item.get('dataset_type', ''))} "
                f"| {_cell(item.get('resolution', ''))} |"
            )
    else:
        lines.append("No dataset was recorded.")
    return lines


def model_card(
    *,
    repo_id: str,
    job_id: str,
    provider: str,
    hardware: str | None,
    config: dict[str, Any],
    dataloader: list[dict[str, Any]],
    upload_summary: dict[str, Any] | None,
    cost_usd: float,
    run_seconds: float | None,
    price_per_second: float | None,
    finished_at: str | None,
) -> str:
    """Return the README.md (model card) text for a completed job."""
    base = base_model_of(config)
    family = config.get("--model_family")
    model_type = config.get("--model_type")
    tags = ["cloudtuner", *(str(t) for t in (family, model_type) if isinstance(t, str) and t)]
    front = ["---"]
    if base:
        front.append(f"base_model: {_yaml_string(base)}")
    front += ["tags:", *(f"- {_yaml_string(tag)}" for tag in tags), "---", ""]
    name = repo_id.rsplit("/", 1)[-1]
    body = [
        f"# {name}",
        "",
        f"Trained with cloudtuner (job `{job_id}`) on {provider}"
        + (f", hardware `{hardware}`" if hardware else "")
        + ".",
        "",
        "## Base model",
        "",
        f"`{base}`" if base else "Not named in the training config.",
        "",
        "## Training settings",
        "",
        "| argument | value |",
        "| --- | --- |",
    ]
    for key in sorted(config):
        if SECRET_NAME.search(key):
            continue
        body.append(f"| `{_cell(key)}` | {_cell(config[key])} |")
    body.append("")
    body += _datasets_section(upload_summary, dataloader)
    body += ["", "## Cost", ""]
    cost_line = f"US${cost_usd:.2f}"
    if run_seconds:
        cost_line += f" for {run_seconds:,.0f} s of GPU time"
        if price_per_second:
            cost_line += f" at US${price_per_second:.6f}/s"
    body.append(cost_line + (f", finished {finished_at}." if finished_at else "."))
    return "\n".join(front + body) + "\n"
