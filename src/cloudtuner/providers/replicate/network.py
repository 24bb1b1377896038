"""How the Replicate client reaches the API: the CAs it trusts and the proxies the environment sets.

Contracts:

* :func:`tls_verification` turns the configured CA bundle into what httpx verifies with, and
  refuses one that cannot be used with a ``ConfigurationError`` (the server does not start).
* Proxy URLs are shown only without their user and password (:func:`environment_proxies`).
* :func:`certificate_rejected` tells a TLS certificate that did not verify (not worth retrying)
  from other connection failures.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloudtuner.core.errors import ConfigurationError

CA_BUNDLE_VARIABLES = "CLOUDTUNER_REPLICATE_CA_BUNDLE, REQUESTS_CA_BUNDLE or SSL_CERT_FILE"
PROXY_VARIABLES = "HTTPS_PROXY, HTTP_PROXY or ALL_PROXY"


def tls_verification(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    """Return what verifies Replicate's TLS certificate: the CA bundle's context, or True for the default.

    ``ca_bundle`` is a PEM file (or a directory prepared with ``c_rehash``) holding every CA to
    trust; it replaces the default store. Without one, httpx uses ``SSL_CERT_DIR`` when set, else
    certifi's bundle.

    Raises:
        ConfigurationError: the bundle cannot be read or holds no certificate.
    """
    if ca_bundle is None:
        return True
    where = f"The CA bundle for Replicate ({ca_bundle}; from {CA_BUNDLE_VARIABLES})"
    try:
        if ca_bundle.is_dir():
            return ssl.create_default_context(capath=str(ca_bundle))
        context = ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist.") from exc
    except PermissionError as exc:
        raise ConfigurationError(f"{where} cannot be read by this user.") from exc
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(f"{where} is not a PEM file of CA certificates ({type(exc).__name__}).") from exc
    if not context.cert_store_stats().get("x509"):
        raise ConfigurationError(f"{where} holds no certificate.")
    return context


def environment_proxies() -> dict[str, str]:
    """Return the proxies the environment sets (``scheme -> URL``) with any user and password removed."""
    shown: dict[str, str] = {}
    for scheme, url in urllib.request.getproxies().items():
        if scheme == "no":
            continue
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = _safe_port(parts)
        shown[scheme] = f"{parts.scheme}://{parts.hostname or '?'}{f':{port}' if port else ''}"
    return shown


def _safe_port(parts: Any) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return None
    return port


def unusable_proxy_message(exc: Exception) -> str:
    """Return the message for a proxy httpx refused to use (``exc``), naming the proxies without passwords."""
    proxies = ", ".join(f"{scheme}={url}" for scheme, url in sorted(environment_proxies().items())) or "none found"
    reason = (
        "SOCKS proxies need the 'socksio' package (pip install 'httpx[socks]')"
        if isinstance(exc, ImportError)
        else "only http://, https://, socks5:// and socks5h:// proxy URLs work"
    )
    return (
        f"The proxy set in {PROXY_VARIABLES} cannot be used for Replicate ({proxies}): {reason}. "
        "Fix or unset the variable and start again."
    )


def certificate_rejected(exc: BaseException) -> bool:
    """Return whether ``exc`` (or an exception it was raised from) is a failed TLS certificate check."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
