"""GPU detection with ``nvidia-smi``, where it exists."""

from __future__ import annotations

import shutil
import subprocess

from cloudtuner.schemas.workers import GpuInfo


def detect_gpus(timeout: float = 10.0) -> list[GpuInfo]:
    """Return this machine's NVIDIA GPUs (model, memory), or [] without ``nvidia-smi`` or on any error."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run(  # noqa: S603 - a fixed command found on PATH
            [binary, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus: list[GpuInfo] = []
    for line in out.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip() and memory.strip().isdigit():
            gpus.append(GpuInfo(name=name.strip(), memory_mb=int(memory.strip())))
    return gpus
