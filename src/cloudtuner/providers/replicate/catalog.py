"""Trainer versions and the webhook signing secret: small cached reads of Replicate's catalog.

* :class:`TrainerVersions` lists a model's versions newest first and resolves the version a
  profile runs (its pinned id, else the newest, cached for ``cache_seconds``).
* :class:`SigningSecret` holds the account's webhook secret (``GET /v1/webhooks/default/secret``,
  cached for ``cache_seconds``) and verifies deliveries with it; a signature that does not match
  is tried once more against a fresh secret, at most every ``refresh_seconds`` (the secret may have
  been rotated; the limit keeps forged calls from making cloudtuner call Replicate each time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cloudtuner.core.errors import ProviderRejectedError, ProviderUnavailableError
from cloudtuner.providers.replicate.client import ReplicateHTTP
from cloudtuner.providers.replicate.hardware import HardwareProfile
from cloudtuner.providers.replicate.mapping import parse_time
from cloudtuner.providers.replicate.options import TrainerVersion
from cloudtuner.providers.replicate.webhooks import (
    WebhookHeadersMissingError,
    WebhookSignatureMismatchError,
    parse_delivery,
)

WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class TrainerVersions:
    """Versions of trainer models, with a short cache of each model's newest."""

    def __init__(self, http: ReplicateHTTP, *, cache_seconds: float, max_pages: int) -> None:
        self._http = http
        self._cache_seconds = cache_seconds
        self._max_pages = max_pages
        self._newest: dict[str, tuple[str, float]] = {}

    async def list(self, model: str) -> list[TrainerVersion]:
        """Return the versions of ``model`` (``owner/name``), newest first.

        Raises:
            ProviderRejectedError: ``model`` is not ``owner/name``, or Replicate has no such model.
            ProviderAuthError, ProviderUnavailableError: as for every call.
        """
        if model.count("/") != 1 or not all(model.split("/")):
            raise ProviderRejectedError("A Replicate model must be named 'owner/name'.")
        versions: list[TrainerVersion] = []
        async for results, _more in self._http.pages(
            f"models/{model}/versions", max_pages=self._max_pages, action=f"list the versions of {model}"
        ):
            for item in results:
                if isinstance(item.get("id"), str):
                    cog = item.get("cog_version")
                    created = parse_time(item.get("created_at"))
                    versions.append(TrainerVersion(model, item["id"], created, cog if isinstance(cog, str) else None))
        return sorted(versions, key=lambda v: v.created_at.timestamp() if v.created_at else 0.0, reverse=True)

    async def reference(self, profile: HardwareProfile) -> str:
        """Return ``owner/name:<version id>`` for the profile's trainer: the pinned or newest version.

        Raises:
            ProviderRejectedError: the profile has no trainer model, or the model has no versions.
            ProviderAuthError, ProviderUnavailableError: as for every call.
        """
        model = profile.trainer_model
        if model is None:
            raise ProviderRejectedError(
                f"No SimpleTuner trainer model is published on Replicate for {profile.sku}; choose other "
                "hardware or configure a trainer model for it."
            )
        if profile.trainer_version:
            return f"{model}:{profile.trainer_version}"
        cached = self._newest.get(model)
        if cached is not None and cached[1] > time.monotonic():
            return f"{model}:{cached[0]}"
        versions = await self.list(model)
        if not versions:
            raise ProviderRejectedError(f"The Replicate model {model} has no versions to run.")
        self._newest[model] = (versions[0].id, time.monotonic() + self._cache_seconds)
        return f"{model}:{versions[0].id}"


class SigningSecret:
    """The account's webhook signing secret, cached, and verification of deliveries with it."""

    def __init__(self, http: ReplicateHTTP, *, cache_seconds: float, refresh_seconds: float) -> None:
        self._http = http
        self._cache_seconds = cache_seconds
        self._refresh_seconds = refresh_seconds
        self._value: tuple[str, float] | None = None
        self._last_forced = -refresh_seconds

    async def get(self, *, refresh: bool = False) -> str:
        """Return the ``whsec_...`` secret, from the cache unless ``refresh`` or expired.

        Raises:
            ProviderAuthError, ProviderUnavailableError: as for every call.
        """
        if not refresh and self._value is not None and self._value[1] > time.monotonic():
            return self._value[0]
        reply = await self._http.get_json("webhooks/default/secret", action="read the webhook signing secret")
        key = reply.get("key") if isinstance(reply, dict) else None
        if not isinstance(key, str) or not key:
            raise ProviderUnavailableError("Replicate sent no webhook signing secret.")
        self._value = (key, time.monotonic() + self._cache_seconds)
        return key

    async def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> tuple[str, dict[str, Any]]:
        """Verify a delivery and return its ``webhook-id`` and prediction object.

        Raises:
            WebhookSignatureError: headers missing, timestamp stale, or signature wrong.
            WebhookRejectedError: the body is not a prediction object.
            ProviderUnavailableError: the secret could not be fetched or is malformed.
        """
        if not all(headers.get(name) for name in WEBHOOK_HEADERS):
            raise WebhookHeadersMissingError()
        secret = await self.get()
        try:
            try:
                return parse_delivery(secret, headers, body, now=now)
            except WebhookSignatureMismatchError:
                if time.monotonic() - self._last_forced < self._refresh_seconds:
                    raise
                self._last_forced = time.monotonic()
                fresh = await self.get(refresh=True)
                if fresh == secret:
                    raise
                return parse_delivery(fresh, headers, body, now=now)
        except ValueError as exc:
            raise ProviderUnavailableError("Replicate's webhook signing secret is malformed.") from exc
