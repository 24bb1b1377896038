"""A stand-in for SimpleTuner's trainer, for worker tests: prints progress, writes an output file.

Reads the config from ``CONFIG_PATH`` (as SimpleTuner does with ``SIMPLETUNER_CONFIG_BACKEND=json``).
Behaviour is chosen by the config key ``--fake_mode`` (or ``FAKE_TRAINER_MODE``):

* ``ok`` (default): ``--max_train_steps`` steps of ``--fake_step_seconds`` each, then writes
  ``<output_dir>/pytorch_lora_weights.safetensors`` and exits 0;
* ``crash``: raises after the first step (exit 1, with a traceback);
* ``exit``: exits with code 3 after the first step;
* ``hang``: prints one step, then sleeps until killed (ignores nothing: SIGTERM ends it).

It also appends a line to ``FAKE_TRAINER_RUNS`` (if set) per start, so tests can count runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    config = json.loads(Path(os.environ["CONFIG_PATH"]).read_text())
    mode = str(config.get("--fake_mode") or os.environ.get("FAKE_TRAINER_MODE") or "ok")
    steps = int(config.get("--max_train_steps", 4))
    pause = float(config.get("--fake_step_seconds", 0.1))
    output = Path(config["--output_dir"])
    runs = os.environ.get("FAKE_TRAINER_RUNS")
    if runs:
        with open(runs, "a") as out:
            record = {
                "job_id": os.environ.get("CLOUDTUNER_JOB_ID"),
                "pid": os.getpid(),
                "worker": os.environ.get("FAKE_WORKER"),
            }
            out.write(json.dumps(record) + "\n")
    backend = json.loads(Path(config["--data_backend_config"]).read_text())
    for dataset in backend:
        folder = dataset.get("instance_data_dir")
        if folder and not Path(folder).is_dir():
            print(f"dataset folder missing: {folder}", flush=True)
            return 4
    print("Loading the model pipeline", flush=True)
    print(f"Total optimization steps = {steps}", flush=True)
    for step in range(1, steps + 1):
        time.sleep(pause)
        percent = int(step * 100 / steps)
        print(
            f"Epoch 1/1, Steps: {percent}%|#| {step}/{steps} [00:01<00:01, lr=0.0001, step_loss=0.{step}]", flush=True
        )
        if mode == "crash":
            raise RuntimeError("the fake trainer crashed on purpose")
        if mode == "exit":
            return 3
        if mode == "hang":
            while True:
                time.sleep(0.2)
    output.mkdir(parents=True, exist_ok=True)
    (output / "pytorch_lora_weights.safetensors").write_bytes(b"fake weights")
    print("Training is complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
