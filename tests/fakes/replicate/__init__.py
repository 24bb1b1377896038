"""A faithful fake of Replicate's HTTP API for cloudtuner's tests.

It follows ``shared/reference/replicate-api.md``: auth, account, files, models/versions,
predictions, trainings, hardware, the webhook secret and signed webhooks, with switches for faults
and introspection under ``/_fake``.  Start it in-process with :class:`FakeReplicate`, or as a
process with :func:`spawn` / ``python -m tests.fakes.replicate --port N`` and drive it with
:class:`FakeReplicateRemote`.  It binds and contacts loopback addresses only.
"""

from .api import FakeControl, FakeReplicateRemote
from .catalog import TRAINER_NAME, TRAINER_OWNER, stable_version_id
from .config import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, FakeConfig
from .control import ControlError
from .faults import CREATE_RUN_PATHS
from .process import FakeProcess, spawn
from .server import FakeReplicate
from .webhooks import sign

TRAINER_VERSION = stable_version_id(f"{TRAINER_OWNER}/{TRAINER_NAME}:2")
"""Id of the newest seeded ``simpletuner/advanced-trainer`` version (stable across processes)."""

TRAINER_OLD_VERSION = stable_version_id(f"{TRAINER_OWNER}/{TRAINER_NAME}:1")
"""Id of the older seeded ``simpletuner/advanced-trainer`` version."""

__all__ = [
    "CREATE_RUN_PATHS",
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "TRAINER_OLD_VERSION",
    "TRAINER_VERSION",
    "ControlError",
    "FakeConfig",
    "FakeControl",
    "FakeProcess",
    "FakeReplicate",
    "FakeReplicateRemote",
    "sign",
    "spawn",
]
