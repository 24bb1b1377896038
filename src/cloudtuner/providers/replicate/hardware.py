"""Replicate hardware profiles: the GPUs a job can ask for, their price, and the trainer that runs there.

On Replicate the hardware belongs to the *model*: each SimpleTuner trainer model is published for
one GPU shape (``simpletuner/advanced-trainer`` on one L40S, ``simpletuner/advanced-trainer-h100``
on one H100, and so on). A profile therefore ties a hardware SKU to the trainer model that runs on
it. Prices are Replicate's published per-second prices (reference section 7.2; mid-2025 to
mid-2026 figures). A100 profiles have no published SimpleTuner trainer; they can be used once an
override names a model (for example the user's own copy of the trainer on that hardware).

:class:`HardwareOverride` is a plain dataclass so that provider settings can be loaded into it:
``HardwareOverride.from_dict({"model": "me/trainer", "version": "<64 hex>", "price_per_second": 0.001})``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cloudtuner.core.errors import ConfigurationError, ProviderRejectedError

DEFAULT_HARDWARE = "gpu-l40s"
"""The profile used when a job names no hardware (the seeds' default GPU: L40S, 48 GB)."""

TRAINER_OWNER = "simpletuner"


@dataclass(frozen=True)
class HardwareProfile:
    """One hardware choice.

    ``vram_gib`` is per GPU; ``trainer_model`` is ``owner/name`` of the Replicate model that runs
    SimpleTuner on this hardware (None: none is published), ``trainer_version`` a pinned version id
    (None: the newest version).
    """

    sku: str
    name: str
    gpu_model: str
    gpu_count: int
    vram_gib: int
    price_per_second: float
    trainer_model: str | None
    trainer_version: str | None = None

    @property
    def total_vram_gib(self) -> int:
        """Return the VRAM of all GPUs together."""
        return self.vram_gib * self.gpu_count

    @property
    def price_per_hour(self) -> float:
        """Return the price of one hour, in US dollars."""
        return round(self.price_per_second * 3600, 4)

    @property
    def available(self) -> bool:
        """Return True if a trainer model is known for this hardware."""
        return self.trainer_model is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (for the hardware choices shown to users)."""
        return {
            **dataclasses.asdict(self),
            "total_vram_gib": self.total_vram_gib,
            "price_per_hour": self.price_per_hour,
            "available": self.available,
        }


def _trainer(suffix: str = "") -> str:
    return f"{TRAINER_OWNER}/advanced-trainer{suffix}"


DEFAULT_PROFILES: tuple[HardwareProfile, ...] = (
    HardwareProfile("gpu-l40s", "Nvidia L40S GPU", "L40S", 1, 48, 0.000975, _trainer()),
    HardwareProfile("gpu-2x-l40s", "2x Nvidia L40S GPU", "L40S", 2, 48, 0.001950, _trainer("-l40s-x2")),
    HardwareProfile("gpu-4x-l40s", "4x Nvidia L40S GPU", "L40S", 4, 48, 0.003900, _trainer("-l40s-x4")),
    HardwareProfile("gpu-8x-l40s", "8x Nvidia L40S GPU", "L40S", 8, 48, 0.007800, _trainer("-l40s-x8")),
    HardwareProfile("gpu-a100-large", "Nvidia A100 (80GB) GPU", "A100", 1, 80, 0.001400, None),
    HardwareProfile("gpu-a100-large-2x", "2x Nvidia A100 (80GB) GPU", "A100", 2, 80, 0.002800, None),
    HardwareProfile("gpu-a100-large-4x", "4x Nvidia A100 (80GB) GPU", "A100", 4, 80, 0.005600, None),
    HardwareProfile("gpu-a100-large-8x", "8x Nvidia A100 (80GB) GPU", "A100", 8, 80, 0.011200, None),
    HardwareProfile("gpu-h100", "Nvidia H100 GPU", "H100", 1, 80, 0.001525, _trainer("-h100")),
    HardwareProfile("gpu-h100-2x", "2x Nvidia H100 GPU", "H100", 2, 80, 0.003050, _trainer("-h100-x2")),
    HardwareProfile("gpu-h100-4x", "4x Nvidia H100 GPU", "H100", 4, 80, 0.006100, _trainer("-h100-x4")),
    HardwareProfile("gpu-h100-8x", "8x Nvidia H100 GPU", "H100", 8, 80, 0.012200, _trainer("-h100-x8")),
)
"""Replicate's GPU SKUs (pricing page names) with their published $/second and trainer models."""


@dataclass(frozen=True)
class HardwareOverride:
    """Changes to one profile: another trainer model, a pinned version, another price.

    Fields left None keep the profile's value.
    """

    model: str | None = None
    version: str | None = None
    price_per_second: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HardwareOverride:
        """Build an override from settings data.

        Raises:
            ConfigurationError: an unknown key, a model that is not ``owner/name``, or a price
                that is not a non-negative number.
        """
        unknown = sorted(set(data) - {"model", "version", "price_per_second"})
        if unknown:
            raise ConfigurationError(f"Unknown Replicate hardware override key(s): {', '.join(unknown)}.")
        model, version, price = data.get("model"), data.get("version"), data.get("price_per_second")
        if model is not None and (not isinstance(model, str) or model.count("/") != 1 or ":" in model):
            raise ConfigurationError("A Replicate trainer model must look like 'owner/name'.")
        if version is not None and (not isinstance(version, str) or not version.strip()):
            raise ConfigurationError("A pinned Replicate version must be a version id.")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise ConfigurationError("price_per_second must be a non-negative number of US dollars.")
        return cls(
            model=model,
            version=version.strip() if isinstance(version, str) else None,
            price_per_second=float(price) if price is not None else None,
        )

    def apply(self, profile: HardwareProfile) -> HardwareProfile:
        """Return ``profile`` with this override's fields set.

        A new model without a new version drops the profile's pinned version, which belonged to
        the old model.
        """
        model_changed = self.model is not None and self.model != profile.trainer_model
        return dataclasses.replace(
            profile,
            trainer_model=self.model if self.model is not None else profile.trainer_model,
            trainer_version=self.version
            if self.version is not None
            else (None if model_changed else profile.trainer_version),
            price_per_second=self.price_per_second if self.price_per_second is not None else profile.price_per_second,
        )


class HardwareCatalog:
    """The profiles in use: the defaults with overrides applied. Read-only once built."""

    def __init__(
        self,
        profiles: Iterable[HardwareProfile] = DEFAULT_PROFILES,
        overrides: Mapping[str, HardwareOverride] | None = None,
        *,
        default: str = DEFAULT_HARDWARE,
    ) -> None:
        """Build the catalog.

        Raises:
            ConfigurationError: an override or the default names a SKU that is not a profile.
        """
        table = {profile.sku: profile for profile in profiles}
        for sku, override in (overrides or {}).items():
            if sku not in table:
                raise ConfigurationError(
                    f"Replicate hardware override for unknown hardware {sku!r}; known: {', '.join(table)}."
                )
            table[sku] = override.apply(table[sku])
        if default not in table:
            raise ConfigurationError(f"Default Replicate hardware {default!r} is not one of: {', '.join(table)}.")
        self._profiles = table
        self.default_sku = default
        self._by_model: dict[str, HardwareProfile] = {}
        for profile in table.values():
            if profile.trainer_model is not None:
                self._by_model.setdefault(profile.trainer_model, profile)

    @property
    def profiles(self) -> list[HardwareProfile]:
        """Return every profile, in table order."""
        return list(self._profiles.values())

    @property
    def default(self) -> HardwareProfile:
        """Return the profile used when a job names no hardware."""
        return self._profiles[self.default_sku]

    @property
    def trainer_models(self) -> frozenset[str]:
        """Return the ``owner/name`` of every trainer model in use."""
        return frozenset(self._by_model)

    def find(self, sku: str | None) -> HardwareProfile | None:
        """Return the profile for ``sku`` (case and surrounding spaces ignored; None: default)."""
        if sku is None or not sku.strip():
            return self.default
        return self._profiles.get(sku.strip().lower())

    def get(self, sku: str | None) -> HardwareProfile:
        """Return the profile for ``sku`` (None: the default).

        Raises:
            ProviderRejectedError: no profile has that SKU; the message lists the known ones.
        """
        profile = self.find(sku)
        if profile is None:
            known = ", ".join(self._profiles)
            raise ProviderRejectedError(f"Replicate has no hardware profile {sku!r}. Choose one of: {known}.")
        return profile

    def for_model(self, model: str | None) -> HardwareProfile | None:
        """Return the profile whose trainer is ``model`` (``owner/name``), or None."""
        if model is None:
            return None
        return self._by_model.get(model)
