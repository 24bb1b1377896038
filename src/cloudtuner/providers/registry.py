"""The providers this server can send jobs to, by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cloudtuner.core.errors import ConfigurationError, UnknownProviderError
from cloudtuner.providers.base import CloudTrainerService

ProviderFactory = Callable[[Any], CloudTrainerService]


class ProviderRegistry:
    """Providers by name. Built once at start; read-only afterwards."""

    def __init__(self, providers: Iterable[CloudTrainerService] = ()) -> None:
        self._providers: dict[str, CloudTrainerService] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: CloudTrainerService) -> None:
        """Register ``provider`` under its name.

        Raises:
            ConfigurationError: another provider already has that name.
        """
        name = provider.provider_name
        if name in self._providers:
            raise ConfigurationError(f"two providers are named {name!r}")
        self._providers[name] = provider

    def get(self, name: str) -> CloudTrainerService:
        """Return the provider called ``name``.

        Raises:
            UnknownProviderError: no provider has that name; the message lists those that exist.
        """
        provider = self._providers.get(name)
        if provider is None:
            known = ", ".join(sorted(self._providers)) or "none are configured"
            raise UnknownProviderError(f"Unknown provider {name!r}. Available providers: {known}.")
        return provider

    def find(self, name: str) -> CloudTrainerService | None:
        """Return the provider called ``name``, or None."""
        return self._providers.get(name)

    @property
    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._providers)

    def __iter__(self) -> Iterator[CloudTrainerService]:
        return iter(list(self._providers.values()))

    async def aclose(self) -> None:
        """Close every provider."""
        for provider in self._providers.values():
            await provider.aclose()


def load_plugin(import_string: str, settings: Any) -> CloudTrainerService:
    """Build a provider from a ``module:factory`` import string, calling ``factory(settings)``.

    Raises:
        ConfigurationError: the string is malformed, the import fails, or the factory does not
            return a CloudTrainerService.
    """
    module_name, _, attribute = import_string.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"provider plugin {import_string!r} must look like 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load provider plugin {import_string!r}: {exc}") from exc
    provider = factory(settings)
    if not isinstance(provider, CloudTrainerService):
        raise ConfigurationError(f"provider plugin {import_string!r} did not return a CloudTrainerService")
    return provider
