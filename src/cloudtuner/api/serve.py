"""Starting the server process: what `cloudtuner server` runs (by import string).

Importing this module is cheap: the server's packages are imported by :func:`serve`, while the
garbage collector is off (see there).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

    from cloudtuner.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


SHUTDOWN_GRACE_SECONDS = 3
"""How long requests still running at SIGTERM may take before they are cut."""


async def prepare_store(settings: Settings) -> str | None:
    """Create the data dir, check the server may start (an admin exists if the address is not
    loopback) and migrate the store; return a sentence saying what failed, or None."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloudtuner.api.app import check_startable
    from cloudtuner.core.errors import ConfigurationError
    from cloudtuner.db import migrate
    from cloudtuner.db.engine import Database

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        return f"cannot create the data dir {settings.data_dir}: {exc.strerror}"
    try:
        db = Database(settings.resolved_database_url)
    except (ValueError, ImportError) as exc:
        return f"invalid CLOUDTUNER_DATABASE_URL: {exc}"
    try:
        await check_startable(settings, db)
        await migrate.upgrade(db)
    except ConfigurationError as exc:
        return exc.message
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"cannot open the job store ({db.dialect.name}): {reason}"
    finally:
        await db.dispose()
    return None


def _build_server(host: str | None, port: int | None, data_dir: Path | None) -> uvicorn.Server | int:
    """Return the server, ready to run; or, after printing why on stderr, the exit code."""
    import uvicorn
    from pydantic import ValidationError

    from cloudtuner.api.app import create_app
    from cloudtuner.core.errors import ConfigurationError
    from cloudtuner.settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        app = create_app(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    # Every provider poll would be an INFO line; keep the outbound clients to warnings.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    problem = asyncio.run(prepare_store(settings))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    app.state.store_prepared = True  # migrated just now: the lifespan need not check again
    print(f"cloudtuner: serving on http://{settings.host}:{settings.port} (data in {settings.data_dir})", flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # The client address is cloudtuner's to decide (trusted_proxies in the Cloud settings);
        # uvicorn must not rewrite it from X-Forwarded-For on its own rules.
        proxy_headers=False,
        log_level=settings.log_level,
        access_log=False,
        ws="none",  # no WebSocket routes: don't import a WebSocket implementation
        # Open event streams (the web UI) and workers' long-polling claims never finish on their
        # own: on SIGTERM they get this long, then they are cut, so that the server stops.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    return uvicorn.Server(config)


def serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
    """Run the server until interrupted; return the process exit code.

    Options given here win over ``CLOUDTUNER_*`` variables. Configuration errors are printed as
    one line on stderr, with exit code 2.
    """
    # Starting makes some 130,000 objects (modules, classes, pydantic and SQLAlchemy models,
    # routes) that nearly all live as long as the process. Collecting cycles among them while they
    # are made costs about a sixth of the start and frees next to nothing; so the collector is off
    # until the server is built, and what was built is then frozen out of later collections.
    collecting = gc.isenabled()
    gc.disable()
    try:
        server = _build_server(host, port, data_dir)
    finally:
        if collecting:
            gc.enable()
    if isinstance(server, int):
        return server
    gc.freeze()
    # uvicorn shuts down cleanly on SIGTERM, then raises the signal again under the handler it
    # found. With the default handler that would kill the process (exit 143) after a clean stop;
    # a handler that does nothing lets serve() return 0, as a service manager expects.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    server.run()
    return 0 if server.started else 1
