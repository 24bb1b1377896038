"""``python -m tests.fakes.replicate [--host 127.0.0.1] [--port N] [--token T ...] [--config JSON]``

Serves the fake in the foreground until SIGINT/SIGTERM.  Once it accepts connections it prints
``fake-replicate listening on http://127.0.0.1:<port>/v1`` on stdout (port 0 picks a free port).
``--config`` is a JSON object of :class:`FakeConfig` fields; ``--token`` replaces the token set.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import uvicorn

from .config import FakeConfig, apply_config_patch
from .process import READY_PREFIX
from .server import base_url_for, bind_loopback, build_app
from .state import FakeState


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the ready line once it is listening."""

    def __init__(self, config: uvicorn.Config, base_url: str) -> None:
        super().__init__(config)
        self.base_url = base_url

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(READY_PREFIX + self.base_url, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.replicate", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--token", action="append", help="accepted API token (repeatable)")
    parser.add_argument("--config", default=None, help="JSON object of FakeConfig fields")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    config = FakeConfig()
    try:
        if args.config:
            apply_config_patch(config, json.loads(args.config))
        if args.token:
            config.tokens = set(args.token)
        sock = bind_loopback(args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = FakeState(config)
    state.root = base_url_for(sock)
    app, _ = build_app(state)
    server = _AnnouncingServer(
        uvicorn.Config(app, log_level=args.log_level, lifespan="on", timeout_graceful_shutdown=1, access_log=False),
        state.root,
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
