"""What crosses the wire for Cloud settings and provider settings."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from cloudtuner.schemas.costs import CostLimit, HardwarePrice, HardwarePriceOverride


class ConsentMode(StrEnum):
    """Whether local datasets may be uploaded to a provider."""

    ALWAYS_ASK = "always_ask"
    ALWAYS_ALLOW = "always_allow"
    NEVER_UPLOAD = "never_upload"


def check_public_url(value: str | None) -> str | None:
    """Return a public base URL without a trailing slash, or None for a blank one.

    Raises:
        ValueError: not an http(s) URL, or it has a path, query or fragment.
    """
    if value is None or not value.strip():
        return None
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL, such as https://abc123.ngrok.io")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("must be a base URL with no path: cloudtuner adds /api/webhooks/replicate itself")
    return value


def check_networks(values: list[str]) -> list[str]:
    """Return IP networks in canonical form (``34.82.0.0/16``).

    Raises:
        ValueError: one is not an IP address or CIDR range.
    """
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR range such as 34.82.0.0/16") from None
    return networks


def check_time_zone(value: str) -> str:
    """Return an IANA time zone name (``Europe/Berlin``, ``UTC``) that this machine knows.

    Raises:
        ValueError: no such time zone.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone; use an IANA name such as UTC or Europe/Berlin") from None
    return name


class CloudSettings(BaseModel):
    """Settings of the Cloud tab that apply to every provider."""

    upload_consent: ConsentMode = Field(
        default=ConsentMode.ALWAYS_ASK,
        description="always_ask: a submission that uploads local data needs upload_consent=true; "
        "always_allow: no confirmation; never_upload: local datasets are never uploaded.",
    )
    public_url: str | None = Field(
        default=None,
        description="Public base URL of this server (the seeds' Webhook URL); overrides CLOUDTUNER_PUBLIC_URL.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDR ranges) whose X-Forwarded-For is believed.",
    )
    effective_public_url: str | None = Field(
        default=None, description="The public URL in use: this setting, else CLOUDTUNER_PUBLIC_URL."
    )
    cost_limit: CostLimit | None = Field(
        default=None, description="The global spending limit, over every provider's jobs (see docs/dev/costs.md)."
    )
    time_zone: str = Field(
        default="UTC", description="IANA time zone of the spending limits' calendar periods and of daily metrics."
    )


class CloudSettingsUpdate(BaseModel):
    """A change to the Cloud settings; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    upload_consent: ConsentMode | None = None
    public_url: str | None = Field(default=None, validation_alias=AliasChoices("public_url", "webhook_url"))
    trusted_proxies: list[str] | None = None
    cost_limit: CostLimit | None = Field(default=None, description="The global spending limit; null removes it.")
    time_zone: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        return None if value is None else check_time_zone(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return check_public_url(value) if value is not None else None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_networks(value)


class ProviderSettings(BaseModel):
    """Settings of one provider."""

    webhook_allowed_ips: list[str] = Field(
        default_factory=list, description="If set, webhooks are accepted only from these IPs or CIDR ranges."
    )
    default_hardware: str | None = Field(default=None, description="Hardware used when a job names none.")
    cost_limit: CostLimit | None = Field(default=None, description="A spending limit on this provider's jobs.")
    hardware_prices: dict[str, HardwarePriceOverride] = Field(
        default_factory=dict,
        description="Prices (and new hardware profiles) by SKU; they win over the provider's published prices.",
    )


class ProviderSettingsUpdate(BaseModel):
    """A change to a provider's settings; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    webhook_allowed_ips: list[str] | None = None
    default_hardware: str | None = None
    cost_limit: CostLimit | None = Field(default=None, description="This provider's spending limit; null removes it.")
    hardware_prices: dict[str, HardwarePriceOverride] | None = Field(
        default=None, description="Replaces the whole price table of the settings; {} or null clears it."
    )

    @field_validator("hardware_prices")
    @classmethod
    def _skus(cls, value: dict[str, HardwarePriceOverride] | None) -> dict[str, HardwarePriceOverride] | None:
        if value is None:
            return None
        cleaned = {}
        for sku, override in value.items():
            name = sku.strip().lower()
            if not name or len(name) > 64:
                raise ValueError(f"{sku!r} is not a hardware SKU (1 to 64 characters, e.g. gpu-l40s)")
            cleaned[name] = override
        return cleaned

    @field_validator("webhook_allowed_ips")
    @classmethod
    def _ips(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_networks(value)


class TokenStatus(BaseModel):
    """Whether the provider has a token, and where it comes from; never the token itself."""

    configured: bool
    source: str | None = Field(default=None, description="saved (encrypted on this server) or environment.")


class ProviderSettingsResponse(BaseModel):
    """A provider's settings, token status and capabilities."""

    success: bool = True
    provider: str
    settings: ProviderSettings
    token: TokenStatus
    capabilities: dict[str, Any]
    hardware: list[HardwarePrice] = Field(
        default_factory=list, description="Hardware info: GPU type, count, VRAM and price of each profile."
    )


class SaveTokenRequest(BaseModel):
    """A provider API token to store encrypted on this server."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1,
        max_length=500,
        validation_alias=AliasChoices("token", "api_token", "api_key"),
        description="The token, e.g. r8_... for Replicate.",
    )

    @field_validator("token")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the token is blank")
        return value
