"""What every service function needs, built once by the app and passed down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cloudtuner.core.clock import Clock, SystemClock
from cloudtuner.db.engine import Database
from cloudtuner.providers.registry import ProviderRegistry
from cloudtuner.services.access import UserPresence
from cloudtuner.services.audit import AuditLog
from cloudtuner.services.config_history import ConfigHistory
from cloudtuner.services.group_commit import GroupCommit
from cloudtuner.services.job_inserts import JobInserter
from cloudtuner.services.job_updates import JobUpdates
from cloudtuner.services.secrets import SecretStore
from cloudtuner.settings import Settings


@dataclass
class ServiceContext:
    """The store, secrets, providers, clock and settings, plus the dispatcher's wake-up."""

    settings: Settings
    db: Database
    providers: ProviderRegistry
    config_history: ConfigHistory
    secrets: SecretStore
    clock: Clock = field(default_factory=SystemClock)
    dispatch_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    job_inserter: JobInserter = field(init=False)
    job_updates: JobUpdates = field(init=False)
    audit: AuditLog = field(init=False)
    """Where changes are recorded (``services.audit``)."""
    user_presence: UserPresence = field(default_factory=UserPresence)
    """Whether users exist: single-user or multi-user mode (``services.access``)."""
    settings_cache: dict[str, tuple[float, asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)
    """Settings documents read recently (see ``services.settings_documents``)."""
    webhook_deliveries: GroupCommit[Any, Any] | None = None
    """The writer of verified webhook deliveries, made by ``services.webhooks`` on first use."""

    def __post_init__(self) -> None:
        self.job_inserter = JobInserter(self.db, self.clock)
        self.job_updates = JobUpdates(self.db)
        self.audit = AuditLog(self.db, self.clock)

    def wake_dispatcher(self) -> None:
        """Tell this process's dispatcher that a job may be ready to start."""
        self.dispatch_wakeup.set()
