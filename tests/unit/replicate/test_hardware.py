"""The hardware table, overrides and lookups."""

from __future__ import annotations

import pytest

from cloudtuner.core.errors import ConfigurationError, ProviderRejectedError
from cloudtuner.providers.replicate.hardware import (
    DEFAULT_HARDWARE,
    DEFAULT_PROFILES,
    HardwareCatalog,
    HardwareOverride,
)
from cloudtuner.providers.replicate.provider import overrides_from_settings
from cloudtuner.settings import Settings


def test_table_prices_and_trainers() -> None:
    table = {p.sku: p for p in DEFAULT_PROFILES}
    assert DEFAULT_HARDWARE == "gpu-l40s"
    l40s = table["gpu-l40s"]
    assert (l40s.gpu_model, l40s.gpu_count, l40s.vram_gib, l40s.price_per_second) == ("L40S", 1, 48, 0.000975)
    assert l40s.trainer_model == "simpletuner/advanced-trainer"
    assert l40s.price_per_hour == pytest.approx(3.51)
    assert table["gpu-h100"].trainer_model == "simpletuner/advanced-trainer-h100"
    assert table["gpu-8x-l40s"].trainer_model == "simpletuner/advanced-trainer-l40s-x8"
    assert table["gpu-h100-4x"].total_vram_gib == 320
    assert table["gpu-a100-large"].price_per_second == 0.0014
    assert not table["gpu-a100-large"].available
    # Multi-GPU prices are the single-GPU price times the count, as on the pricing page.
    for profile in DEFAULT_PROFILES:
        single = next(p for p in DEFAULT_PROFILES if p.gpu_model == profile.gpu_model and p.gpu_count == 1)
        assert profile.price_per_second == pytest.approx(single.price_per_second * profile.gpu_count)
    assert len({p.trainer_model for p in DEFAULT_PROFILES if p.trainer_model}) == 8


def test_lookup_and_unknown_hardware() -> None:
    catalog = HardwareCatalog()
    assert catalog.get(None).sku == "gpu-l40s"
    assert catalog.get(" GPU-H100 ").sku == "gpu-h100"
    with pytest.raises(ProviderRejectedError) as caught:
        catalog.get("gpu-t4")
    assert "gpu-t4" in caught.value.message
    assert "gpu-l40s" in caught.value.message and "gpu-h100-8x" in caught.value.message
    assert catalog.for_model("simpletuner/advanced-trainer-h100-x2") is not None
    assert catalog.for_model("other/model") is None
    assert "simpletuner/advanced-trainer" in catalog.trainer_models
    assert catalog.default.to_dict()["available"] is True


def test_overrides() -> None:
    catalog = HardwareCatalog(
        overrides={
            "gpu-l40s": HardwareOverride(version="b" * 64),
            "gpu-a100-large": HardwareOverride.from_dict({"model": "me/trainer-a100", "price_per_second": 0.0015}),
        }
    )
    assert catalog.get("gpu-l40s").trainer_version == "b" * 64
    a100 = catalog.get("gpu-a100-large")
    assert (a100.trainer_model, a100.price_per_second, a100.available) == ("me/trainer-a100", 0.0015, True)
    assert catalog.for_model("me/trainer-a100") == a100
    repinned = HardwareOverride(model="me/other").apply(catalog.get("gpu-l40s"))
    assert repinned.trainer_version is None


@pytest.mark.parametrize(
    "data",
    [{"modle": "x/y"}, {"model": "no-slash"}, {"model": "a/b:c"}, {"price_per_second": -1}, {"price_per_second": True}],
)
def test_bad_overrides(data: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        HardwareOverride.from_dict(data)


def test_override_or_default_for_unknown_hardware() -> None:
    with pytest.raises(ConfigurationError):
        HardwareCatalog(overrides={"gpu-x": HardwareOverride(model="a/b")})
    with pytest.raises(ConfigurationError):
        HardwareCatalog(default="gpu-x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"gpu-tpu": {"version": "x"}},
            "CLOUDTUNER_REPLICATE_HARDWARE names unknown hardware 'gpu-tpu'; known: gpu-l40s",
        ),
        ({"gpu-l40s": {"modle": "a/b"}}, "CLOUDTUNER_REPLICATE_HARDWARE, 'gpu-l40s': Unknown .* key.*modle"),
        ({"gpu-h100": {"model": "no-owner"}}, "CLOUDTUNER_REPLICATE_HARDWARE, 'gpu-h100': .*'owner/name'"),
        ({"gpu-h100": {"price_per_second": -1}}, "non-negative"),
    ],
)
def test_overrides_from_settings_say_what_is_wrong(data: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        overrides_from_settings(Settings(replicate_hardware=data))


def test_overrides_from_settings() -> None:
    overrides = overrides_from_settings(
        Settings(replicate_hardware={" GPU-H100 ": {"version": "v1"}, "gpu-a100-large": {"model": "me/trainer"}})
    )
    assert overrides == {
        "gpu-h100": HardwareOverride(version="v1"),
        "gpu-a100-large": HardwareOverride(model="me/trainer"),
    }
    catalog = HardwareCatalog(overrides=overrides)
    assert catalog.get("gpu-h100").trainer_version == "v1"
    assert catalog.get("gpu-a100-large").available
