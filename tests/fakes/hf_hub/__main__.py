"""Run the fake Hub as a process: ``python -m tests.fakes.hf_hub --port N [--token T=USER ...]``."""

from __future__ import annotations

import argparse
import time

from tests.fakes.hf_hub import DEFAULT_TOKEN, FakeHub, HubConfig


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Hugging Face Hub on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="TOKEN=USER (repeatable)")
    args = parser.parse_args()
    tokens = dict(item.split("=", 1) for item in args.token) or {DEFAULT_TOKEN: "cloudtuner-test"}
    hub = FakeHub(HubConfig(tokens=tokens), port=args.port).start()
    print(f"fake-hub listening on {hub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
