"""The provider's network settings: proxies from the environment, the CA bundle, timeouts, start-up checks.

TLS tests run the fake Replicate over HTTPS on 127.0.0.1 with a certificate from a CA made in the
test; proxy tests route calls through a forwarding proxy on 127.0.0.1 (``proxy.py``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from cloudtuner.api.app import create_app
from cloudtuner.core.errors import ConfigurationError, ProviderUnavailableError
from cloudtuner.providers.base import CloudJobStatus
from cloudtuner.providers.replicate import ReplicateOptions, ReplicateProvider, Timeouts
from cloudtuner.settings import Settings
from tests.e2e.harness import clean_env, cli_command, free_port
from tests.fakes.replicate import FakeReplicate
from tests.support.waiting import wait_until
from tests.unit.replicate.timing import FakeTime

from .certs import PKI, make_pki
from .conftest import FAST, OPTIONS, Tokens, run_request
from .proxy import LoopbackProxy

NETWORK_VARIABLES = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CLOUDTUNER_REPLICATE_CA_BUNDLE",
)  # fmt: skip


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without any proxy or CA bundle variables (this machine may set some)."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


Build = Callable[..., ReplicateProvider]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    """Build a provider for ``url`` from settings read from the environment now; closed afterwards."""
    made: list[ReplicateProvider] = []

    def make(url: str, token: str, **settings: Any) -> ReplicateProvider:
        options = settings.pop("options", OPTIONS)
        provider = ReplicateProvider(
            Settings(data_dir=tmp_path / "data", replicate_api_url=url, **settings), Tokens(token), options=options
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


# --- CA bundle ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[FakeReplicate]:
    with FakeReplicate(FAST, ssl_certfile=str(pki.cert), ssl_keyfile=str(pki.key)) as fake:
        yield fake


@pytest.fixture
def tls_fake(tls_server: FakeReplicate) -> FakeReplicate:
    tls_server.reset()
    assert tls_server.base_url.startswith("https://127.0.0.1:")
    return tls_server


async def test_tls_fails_without_the_ca_bundle(env: pytest.MonkeyPatch, tls_fake: FakeReplicate, build: Build) -> None:
    provider = build(tls_fake.base_url, tls_fake.token)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as caught:
        await provider.validate_credentials()
    message = caught.value.message
    assert "TLS certificate could not be verified" in message
    assert "CLOUDTUNER_REPLICATE_CA_BUNDLE" in message
    assert tls_fake.token not in message
    assert time.monotonic() - started < 2.0  # not retried: it will not verify on a second try either
    assert tls_fake.requests() == []  # no request got past the handshake


@pytest.mark.parametrize("variable", ["CLOUDTUNER_REPLICATE_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
async def test_tls_works_with_the_ca_bundle(
    env: pytest.MonkeyPatch, tls_fake: FakeReplicate, build: Build, pki: PKI, variable: str
) -> None:
    env.setenv(variable, str(pki.ca))
    provider = build(tls_fake.base_url, tls_fake.token)
    account = await provider.validate_credentials()
    assert account["username"] == "cloudtuner-test"
    info = await provider.run_job(run_request())
    assert (await provider.get_job_status(info.provider_job_id)).provider_job_id == info.provider_job_id
    assert [r["path"] for r in tls_fake.requests(method="POST")] == ["/v1/predictions"]


async def test_the_cloudtuner_setting_wins_over_the_standard_variables(
    env: pytest.MonkeyPatch, tls_fake: FakeReplicate, build: Build, pki: PKI, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other", label="another")
    env.setenv("SSL_CERT_FILE", str(other.ca))
    env.setenv("REQUESTS_CA_BUNDLE", str(other.ca))
    with pytest.raises(ProviderUnavailableError, match="could not be verified"):
        await build(tls_fake.base_url, tls_fake.token).validate_credentials()
    env.setenv("CLOUDTUNER_REPLICATE_CA_BUNDLE", str(pki.ca))
    assert (await build(tls_fake.base_url, tls_fake.token).validate_credentials())["username"]


async def test_a_bundle_of_another_ca_is_not_trusted(
    env: pytest.MonkeyPatch, tls_fake: FakeReplicate, build: Build, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other", label="another")
    env.setenv("CLOUDTUNER_REPLICATE_CA_BUNDLE", str(other.ca))
    with pytest.raises(ProviderUnavailableError, match="could not be verified"):
        await build(tls_fake.base_url, tls_fake.token).validate_credentials()


def test_a_missing_ca_bundle_is_refused_by_the_settings(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("SSL_CERT_FILE", str(tmp_path / "nowhere.pem"))
    with pytest.raises(ValidationError, match=r"CA bundle for Replicate, .*nowhere\.pem, does not exist"):
        Settings(data_dir=tmp_path)


@pytest.mark.parametrize("content", [b"", b"127.0.0.1 localhost\n", b"-----BEGIN CERTIFICATE-----\nnope\n"])
def test_a_ca_bundle_without_certificates_stops_the_start(
    env: pytest.MonkeyPatch, tmp_path: Path, content: bytes
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(content)
    env.setenv("CLOUDTUNER_REPLICATE_CA_BUNDLE", str(bundle))
    with pytest.raises(ConfigurationError, match=r"CA bundle for Replicate .*bundle\.pem.* is not a PEM file"):
        create_app(Settings(data_dir=tmp_path / "data"))


def test_the_server_refuses_to_start_with_an_unusable_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate\n")
    for value, expected in [
        (str(tmp_path / "missing.pem"), "does not exist"),
        (str(bundle), "is not a PEM file of CA certificates"),
    ]:
        completed = subprocess.run(
            [*cli_command(), "server", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
            env=clean_env(CLOUDTUNER_REPLICATE_CA_BUNDLE=value),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 2, completed
        lines = completed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], completed.stderr


# --- proxies ----------------------------------------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[LoopbackProxy]:
    server = await LoopbackProxy().start()
    yield server
    await server.stop()


async def test_calls_go_through_the_proxy_from_the_environment(
    env: pytest.MonkeyPatch, fake: FakeReplicate, build: Build, proxy: LoopbackProxy
) -> None:
    env.setenv("HTTP_PROXY", proxy.url)
    provider = build(fake.base_url, fake.token)
    await provider.validate_credentials()
    info = await provider.run_job(run_request())
    status = await provider.get_job_status(info.provider_job_id)
    assert status.status in (CloudJobStatus.STARTING, CloudJobStatus.RUNNING, CloudJobStatus.COMPLETED)
    targets = [(seen.method, seen.target) for seen in proxy.seen]
    assert ("GET", f"{fake.base_url}/account") in targets
    assert ("POST", f"{fake.base_url}/predictions") in targets
    assert ("GET", f"{fake.base_url}/predictions/{info.provider_job_id}") in targets
    # Every call the fake saw came through the proxy, with the token passed on.
    assert len(fake.requests()) == len(proxy.seen)
    assert all(seen.headers["authorization"] == f"Bearer {fake.token}" for seen in proxy.seen)


async def test_no_proxy_bypasses_the_proxy(
    env: pytest.MonkeyPatch, fake: FakeReplicate, build: Build, proxy: LoopbackProxy
) -> None:
    env.setenv("HTTP_PROXY", proxy.url)
    env.setenv("NO_PROXY", "127.0.0.1")
    await build(fake.base_url, fake.token).validate_credentials()
    assert proxy.seen == []
    assert len(fake.requests(method="GET", path="/v1/account")) == 1


async def test_proxy_credentials_from_the_proxy_url(env: pytest.MonkeyPatch, fake: FakeReplicate, build: Build) -> None:
    proxy = await LoopbackProxy(credentials=("squid", "s3cret-pw")).start()
    try:
        env.setenv("HTTP_PROXY", proxy.url)
        with pytest.raises(ProviderUnavailableError, match=r"asks for credentials \(HTTP 407\)") as caught:
            await build(fake.base_url, fake.token).validate_credentials()
        assert fake.requests() == []
        assert "http://user:password@host:port" in caught.value.message

        env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://squid:s3cret-pw@"))
        assert (await build(fake.base_url, fake.token).validate_credentials())["username"] == "cloudtuner-test"
        assert len(fake.requests(method="GET", path="/v1/account")) == 1
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HTTPS_PROXY", "ftp://squid:hunter2@proxy.invalid:21", "ftp://proxy.invalid:21"),
        ("ALL_PROXY", "gopher://squid:hunter2@proxy.invalid", "gopher://proxy.invalid"),
    ],
)
def test_an_unusable_proxy_stops_the_start_without_showing_its_password(
    env: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        create_app(Settings(data_dir=tmp_path / "data"))
    message = caught.value.message
    assert "cannot be used for Replicate" in message and expected in message
    assert "hunter2" not in message and "squid" not in message


def test_a_socks_proxy_without_socksio_says_what_to_install(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: SOCKS proxies work")
    env.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match="socksio"):
        create_app(Settings(data_dir=tmp_path / "data"))


# --- timeouts -----------------------------------------------------------------------------------------


def test_timeouts_come_from_the_settings(fake: FakeReplicate, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, replicate_connect_timeout_seconds=2.5, replicate_timeout_seconds=45.0)
    options = ReplicateOptions.from_settings(settings)
    assert options.timeouts == Timeouts(connect=2.5, read=45.0)
    assert options.create_timeout_seconds == 45.0
    defaults = ReplicateOptions.from_settings(Settings(data_dir=tmp_path))
    assert (defaults.timeouts.connect, defaults.timeouts.read, defaults.create_timeout_seconds) == (5.0, 30.0, 30.0)
    for bad in ({"replicate_timeout_seconds": 0}, {"replicate_connect_timeout_seconds": -1}):
        with pytest.raises(ValidationError, match="greater than 0"):
            Settings(data_dir=tmp_path, **bad)


async def test_a_create_reply_slower_than_the_timeout_makes_one_run(
    env: pytest.MonkeyPatch, fake: FakeReplicate, build: Build
) -> None:
    """Replicate makes the run after the client gave up: the search waits for it, not a second create."""
    provider = build(fake.base_url, fake.token, replicate_timeout_seconds=0.3, options=None)
    assert provider.options.timeouts.read == provider.options.create_timeout_seconds == 0.3
    fake.slow_next(2.0, method="POST", path="/v1/predictions")
    request = run_request()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match=r"did not answer in time \(ReadTimeout\)"):
        await provider.run_job(request)
    assert time.monotonic() - started < 1.5
    assert fake.count_runs() == 0  # not yet: the fake is still "working" on it
    with pytest.raises(ProviderUnavailableError, match="may still be making the run"):
        await provider.find_job_by_reference(request.job_id, request)

    async def runs() -> int:
        return fake.count_runs()

    await wait_until(runs, lambda n: n == 1, timeout=10)
    found = await provider.find_job_by_reference(request.job_id, request)
    assert found is not None and found.reference == request.job_id
    assert fake.count_runs() == 1
    assert len(fake.requests(method="POST", path="/v1/predictions")) == 1


async def test_an_unreachable_proxy_or_host_says_what_to_check(
    env: pytest.MonkeyPatch, fake: FakeReplicate, tmp_path: Path
) -> None:
    clock = FakeTime()
    dead = f"http://127.0.0.1:{free_port()}"
    for url, proxy in [(fake.base_url, dead), (f"{dead}/v1", None)]:
        if proxy:
            env.setenv("HTTP_PROXY", proxy)
        else:
            env.delenv("HTTP_PROXY")
        provider = ReplicateProvider(
            Settings(data_dir=tmp_path, replicate_api_url=url), Tokens(fake.token), options=OPTIONS, timing=clock.timing
        )
        try:
            with pytest.raises(ProviderUnavailableError) as caught:
                await provider.validate_credentials()
        finally:
            await provider.aclose()
        message = caught.value.message
        assert "Could not reach Replicate (ConnectError)" in message
        assert f"can reach {urlsplit(url).netloc}, and HTTPS_PROXY, HTTP_PROXY or ALL_PROXY and NO_PROXY" in message
    assert fake.requests() == []
    assert len(clock.sleeps) == 2 * (OPTIONS.retry.attempts - 1)  # retried, without waiting for real
