"""Settings: names from SPEC.md, secrets hidden, URLs normalised."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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


CA_VARIABLES = ("CLOUDTUNER_REPLICATE_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def test_replicate_network_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CA_VARIABLES, "CLOUDTUNER_REPLICATE_HARDWARE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.replicate_ca_bundle is None
    assert settings.replicate_connect_timeout_seconds == 5.0
    assert settings.replicate_timeout_seconds == 30.0
    assert settings.replicate_hardware == {}


def test_replicate_network_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    bundles = {name: tmp_path / f"{name}.pem" for name in CA_VARIABLES}
    for path in bundles.values():
        path.write_text("pem")
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_CONNECT_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_TIMEOUT_SECONDS", "90")
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_HARDWARE", '{"gpu-h100": {"version": "abc"}}')
    # The cloudtuner name wins, then REQUESTS_CA_BUNDLE, then SSL_CERT_FILE.
    for name in reversed(CA_VARIABLES):
        monkeypatch.setenv(name, str(bundles[name]))
        assert Settings().replicate_ca_bundle == bundles[name]
    settings = Settings()
    assert (settings.replicate_connect_timeout_seconds, settings.replicate_timeout_seconds) == (2.0, 90.0)
    assert settings.replicate_hardware == {"gpu-h100": {"version": "abc"}}
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_CA_BUNDLE", " ")
    assert Settings().replicate_ca_bundle is None  # blank: no bundle of cloudtuner's choosing


def test_replicate_ca_bundle_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "proxy-ca.pem").write_text("pem")
    monkeypatch.setenv("CLOUDTUNER_REPLICATE_CA_BUNDLE", "~/proxy-ca.pem")
    assert Settings().replicate_ca_bundle == tmp_path / "proxy-ca.pem"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CLOUDTUNER_REPLICATE_CA_BUNDLE", "/nonexistent/ca.pem", "CA bundle for Replicate, /nonexistent/ca.pem, does"),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem", "SSL_CERT_FILE"),
        ("CLOUDTUNER_REPLICATE_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("CLOUDTUNER_REPLICATE_CONNECT_TIMEOUT_SECONDS", "abc", "valid number"),
        ("CLOUDTUNER_REPLICATE_HARDWARE", "{gpu-l40s: 1}", "CLOUDTUNER_REPLICATE_HARDWARE is not valid JSON"),
        ("CLOUDTUNER_REPLICATE_HARDWARE", '["gpu-l40s"]', "valid dictionary"),
    ],
)
def test_replicate_network_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
