"""Settings: names from SPEC.md, secrets hidden, URLs normalised."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudtuner.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.port == 8001
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == (Path.home() / ".cloudtuner").resolve()
    assert settings.replicate_api_url == "https://api.replicate.com/v1"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{settings.data_dir / 'cloudtuner.db'}"
    assert settings.binds_loopback_only


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDTUNER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLOUDTUNER_DATABASE_URL", "postgresql://u@db/x")
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_API_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CLOUDTUNER_PUBLIC_URL", "https://abc.ngrok.io/")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_secret_value")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("CLOUDTUNER_PROVIDER_PLUGINS", "a.b:c, d.e:f")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.resolved_database_url == "postgresql+asyncpg://u@db/x"
    assert settings.replicate_api_url == "http://127.0.0.1:9/v1"
    assert settings.public_url == "https://abc.ngrok.io"
    assert settings.replicate_api_token is not None
    assert settings.replicate_api_token.get_secret_value() == "r8_secret_value"
    assert settings.provider_plugins == ["a.b:c", "d.e:f"]
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "r8_secret_value" not in shown
    assert "hf_secret_value" not in shown


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True), ("0.0.0.0", False),
     ("192.168.1.5", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert Settings(host=host).binds_loopback_only is loopback


def test_invalid_port_is_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings(port=70000)
