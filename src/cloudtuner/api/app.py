"""The FastAPI application: built from one Settings object by :func:`create_app`.

At start the app creates the data dir, migrates the store, loads the providers and starts the
scheduler; at stop it undoes that in reverse.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from cloudtuner import __version__
from cloudtuner.api.audit_middleware import AuditMiddleware
from cloudtuner.api.errors import install_error_handlers
from cloudtuner.api.routes import artifacts as artifact_routes
from cloudtuner.api.routes import audit as audit_routes
from cloudtuner.api.routes import auth as auth_routes
from cloudtuner.api.routes import configs, events, health, jobs, storage, ui, webhooks, worker_protocol
from cloudtuner.api.routes import metrics as metrics_routes
from cloudtuner.api.routes import providers as provider_routes
from cloudtuner.api.routes import queue as queue_routes
from cloudtuner.api.routes import users as user_routes
from cloudtuner.api.webhook_fast_path import WebhookFastPath
from cloudtuner.core.clock import Clock, SystemClock
from cloudtuner.core.errors import ConfigurationError
from cloudtuner.db import migrate
from cloudtuner.db.engine import Database
from cloudtuner.providers.base import CloudTrainerService
from cloudtuner.providers.registry import ProviderRegistry, load_plugin
from cloudtuner.providers.replicate import ReplicateProvider
from cloudtuner.providers.worker import WorkerProvider
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.services import setup_token
from cloudtuner.services.config_history import ConfigHistory
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.provider_admin import provider_token
from cloudtuner.services.secrets import SecretBox, SecretStore
from cloudtuner.services.storage_endpoint import StorageEndpoint
from cloudtuner.services.users import has_admin
from cloudtuner.settings import Settings

log = logging.getLogger(__name__)

ProviderBuilder = Callable[[Settings], Iterable[CloudTrainerService]]


def builtin_providers(settings: Settings, secrets: SecretStore) -> list[CloudTrainerService]:
    """Return the providers that ship with cloudtuner, configured from ``settings``.

    Replicate reads its token on every call: the one saved on this server, else REPLICATE_API_TOKEN.
    """
    return [
        ReplicateProvider(settings, functools.partial(provider_token, settings, secrets, "replicate")),
        WorkerProvider("worker"),
        WorkerProvider("local"),
    ]


def build_registry(
    settings: Settings, secrets: SecretStore, extra: Iterable[CloudTrainerService] = ()
) -> ProviderRegistry:
    """Return the registry of built-in providers, plugins named in settings, and ``extra``."""
    registry = ProviderRegistry(builtin_providers(settings, secrets))
    for import_string in settings.provider_plugins:
        registry.add(load_plugin(import_string, settings))
    for provider in extra:
        registry.add(provider)
    return registry


async def check_startable(settings: Settings, db: Database) -> None:
    """Refuse to serve a non-loopback address while no admin exists.

    Runs before migrations: a store without the users table (new, or from before users) has no
    admin, and is left untouched by a server that refuses to start.

    Raises:
        ConfigurationError: the server would be reachable from other machines with no sign-in.
    """
    if settings.binds_loopback_only:
        return
    try:
        if await has_admin(db):
            return
    except SQLAlchemyError:
        pass  # no users table yet
    raise ConfigurationError(
        f"Refusing to listen on {settings.host}: no admin user exists, so anyone who can reach this "
        "address could spend your provider credits. Create one on this machine first with "
        f"`cloudtuner admin create USERNAME --password-stdin --data-dir {settings.data_dir}` (with the same "
        "CLOUDTUNER_DATABASE_URL, if set), or bind to 127.0.0.1 (the default)."
    )


def create_app(
    settings: Settings,
    *,
    providers: Iterable[CloudTrainerService] = (),
    clock: Clock | None = None,
) -> FastAPI:
    """Return the cloudtuner app for ``settings``; ``providers`` are added to the built-in ones.

    Raises:
        ConfigurationError: a provider plugin cannot be loaded. (A non-loopback address with no
            admin is refused when the app starts: see :func:`check_startable`.)
    """
    clock = clock or SystemClock()
    db = Database(settings.resolved_database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    secrets = SecretStore(db, SecretBox(settings.secret_key_file, secret_key), clock)
    registry = build_registry(settings, secrets, providers)
    ctx = ServiceContext(
        settings=settings,
        db=db,
        providers=registry,
        config_history=ConfigHistory(settings.config_history_dir),
        secrets=secrets,
        clock=clock,
    )
    scheduler = Scheduler(ctx)
    storage_endpoint = StorageEndpoint(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # serve() migrates before it starts uvicorn, with one-line errors; an app built any
            # other way (tests, app_from_environment) migrates here. At the newest revision,
            # upgrade() is one SELECT.
            if not getattr(app.state, "store_prepared", False):
                await check_startable(settings, db)
                await migrate.upgrade(db)
            await setup_token.announce_setup_token(ctx)  # no users yet: log the one-time setup token, once
            await storage_endpoint.open()
            if settings.scheduler_enabled:
                scheduler.start()
            log.info(
                "cloudtuner %s ready: %s store, providers: %s",
                __version__,
                db.dialect.name,
                ", ".join(registry.names) or "none",
            )
            try:
                yield
            finally:
                await scheduler.stop()
        finally:
            await registry.aclose()
            await db.dispose()

    app = FastAPI(
        title="cloudtuner",
        version=__version__,
        summary="A self-hosted control plane for fine-tuning jobs.",
        description=(
            "Submit training jobs to Replicate, self-hosted GPU workers or this machine, and follow "
            "their status, logs and cost in one place. Errors are JSON: "
            '`{"detail": "<sentence>", "code": "<stable_code>"}`.'
        ),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.scheduler = scheduler
    app.state.storage = storage_endpoint
    install_error_handlers(app)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(WebhookFastPath)  # added last, so outermost: webhooks skip everything else
    _include_routes(app, ctx)
    return app


def _include_routes(app: FastAPI, ctx: ServiceContext) -> None:
    """Add every route, in the order they are matched."""
    # Busiest first, as routes are matched in order: submissions (which come in streams; their
    # plain route skips FastAPI's request handling, and the job routes below document them),
    # webhooks (whose deliveries the fast path answers before routing; the route documents them),
    # workers claiming and reporting as fast as their jobs end, then the job API. None of the job
    # routes can shadow a later one: the later /api/cloud/jobs/... routes have more path segments.
    app.router.routes.append(jobs.fast_submit_route())
    app.include_router(webhooks.router)
    worker_protocol.install(app, ctx)  # /api/worker/..., /api/admin/workers and the worker providers' store
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(user_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(artifact_routes.router)
    app.include_router(configs.router)
    app.include_router(provider_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(queue_routes.router)
    app.include_router(storage.router)
    app.router.routes.extend(storage.s3_routes())  # after the credentials API: its routes match first
    app.include_router(events.router)
    app.include_router(ui.router)  # the web UI at /, its assets and its job search


def app_from_environment() -> FastAPI:
    """Build the app from ``CLOUDTUNER_*`` variables: the factory ``cloudtuner server`` runs."""
    settings = Settings()
    logging.basicConfig(level=os.environ.get("CLOUDTUNER_LOG_LEVEL", "info").upper())
    return create_app(settings)
