"""The Replicate provider: SimpleTuner's trainer models run as Replicate predictions.

Public pieces: :class:`ReplicateProvider` (the provider), :class:`ReplicateOptions` (tuning),
:mod:`.hardware` (profiles, prices, trainer models and overrides) and :mod:`.webhooks`
(signature verification and payload mapping, pure).
"""

from cloudtuner.providers.replicate.hardware import (
    DEFAULT_HARDWARE,
    DEFAULT_PROFILES,
    HardwareCatalog,
    HardwareOverride,
    HardwareProfile,
)
from cloudtuner.providers.replicate.options import ReplicateOptions, TrainerVersion
from cloudtuner.providers.replicate.provider import ReplicateProvider
from cloudtuner.providers.replicate.retries import CreateThrottle, RetryPolicy, Timeouts, Timing

__all__ = [
    "DEFAULT_HARDWARE",
    "DEFAULT_PROFILES",
    "CreateThrottle",
    "HardwareCatalog",
    "HardwareOverride",
    "HardwareProfile",
    "ReplicateOptions",
    "ReplicateProvider",
    "RetryPolicy",
    "Timeouts",
    "Timing",
    "TrainerVersion",
]
