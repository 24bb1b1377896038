"""Where a job's trained model goes: checked at submit, sealed in the job, handed out at dispatch.

Key contracts:

- **At submit** (:func:`seal_publishing`): the ``publishing`` field is resolved to one
  destination (``huggingface``, ``s3``, ``local`` or ``none``; see ``schemas.publishing``), checked
  (a Hub repository id and a token, an S3 bucket with its keys, a public URL for local download)
  and checked against what the provider can deliver to (``capabilities.publishes_to``). A
  submission that could not be delivered is refused with a 4xx and a stable code
  (``invalid_publishing``, ``publishing_unsupported``, ``public_url_required``), never lost later.
- **Stored** in ``jobs.publishing`` without any secret in the clear: ``hf_token``, ``s3_access_key``
  and ``s3_secret_key`` are encrypted with the server's key (``SecretStore.box``) under ``sealed``.
  Replies show :func:`publishing_view`, which names the stored secrets and never shows them.
- **At dispatch** (:func:`delivery_target`): the provider gets a ``DeliveryTarget`` with the secrets
  opened; local download gets the server's public URL and the job's own storage key. A job that
  asked for nothing is delivered locally when the server has a public URL then and the provider
  can deliver there (the seeds' "download only" mode).
- :func:`note_delivery` (inside the dispatch transaction) records the job's ``job_deliveries`` row
  on its first attempt, which the delivery loop (``services.deliveries``) works from once it ends.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import InvalidPublishingError, PublicUrlRequiredError, PublishingUnsupportedError
from cloudtuner.db.batched_inserts import add_row
from cloudtuner.db.tables import JobDeliveryRow, JobRow
from cloudtuner.providers.base import CloudTrainerService, DeliveryTarget, HubDelivery, S3Delivery
from cloudtuner.schemas.artifacts import DeliveryState
from cloudtuner.schemas.publishing import PublishingDestination, PublishingRequest, PublishingView
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.settings_documents import public_url
from cloudtuner.services.storage_credentials import JobStorageCredentials, storage_endpoint_url
from cloudtuner.storage import S3Error
from cloudtuner.storage.keys import validate_bucket_name, validate_key

AUTO = "auto"
"""The delivery of a job that asked for none: local download when the server has a public URL."""

SEALED = "sealed"
SECRET_FIELDS = ("hf_token", "s3_access_key", "s3_secret_key")
_HUB_FIELDS = ("hub_model_id",)
_S3_FIELDS = ("s3_endpoint_url", "s3_bucket", "s3_base_path", "s3_region", "s3_public_base_url")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
DEFAULT_S3_REGION = "us-east-1"


# --- at submit ----------------------------------------------------------------------------------


def _destination_of(request: PublishingRequest) -> PublishingDestination | None:
    """Return the destination a request asks for, or None for "the server decides" (auto)."""
    if request.destination is not None:
        if request.destination is PublishingDestination.HUGGINGFACE and request.push_to_hub is False:
            return PublishingDestination.NONE
        return request.destination
    if request.push_to_hub is False:
        return PublishingDestination.NONE
    if request.hub_model_id:
        return PublishingDestination.HUGGINGFACE
    if any(getattr(request, name) for name in (*_S3_FIELDS, "s3_access_key", "s3_secret_key")):
        return PublishingDestination.S3
    return None


def _hub_from_config(config: dict[str, Any]) -> PublishingRequest | None:
    """Return a Hub request for a config that pushes to the Hub itself (``--push_to_hub``)."""
    push = config.get("--push_to_hub")
    repo = config.get("--hub_model_id")
    if push in (True, "true", "True", "1", 1) and isinstance(repo, str) and repo.strip():
        private = config.get("--model_card_private", True)
        return PublishingRequest(
            destination=PublishingDestination.HUGGINGFACE,
            hub_model_id=repo.strip(),
            private=private not in (False, "false", "False", "0", 0),
        )
    return None


def _check_capability(provider: CloudTrainerService, destination: PublishingDestination) -> None:
    needed = "huggingface" if destination is PublishingDestination.HUGGINGFACE else "s3"
    if needed not in provider.capabilities.publishes_to:
        raise PublishingUnsupportedError(
            f"The {provider.provider_name} provider cannot deliver trained models to "
            f"{'the Hugging Face Hub' if needed == 'huggingface' else 'S3 storage'}; choose another "
            "publishing destination, or none.",
            destination=destination.value,
        )


def _check_hub(ctx: ServiceContext, request: PublishingRequest) -> None:
    if request.hub_model_id is None:
        raise InvalidPublishingError(
            "Publishing to the Hugging Face Hub needs hub_model_id: the repository, such as username/my-lora."
        )
    if not _REPO_ID.match(request.hub_model_id) or ".." in request.hub_model_id:
        raise InvalidPublishingError(
            f"{request.hub_model_id!r} is not a Hugging Face repository id: use owner/name with letters, "
            "digits, '-', '_' and '.', such as username/my-lora."
        )
    if request.hf_token is None and ctx.settings.hf_token is None:
        raise InvalidPublishingError(
            "Publishing to the Hugging Face Hub needs a token with write access: set HF_TOKEN where the "
            "server runs, or send publishing.hf_token."
        )


def _check_s3(request: PublishingRequest) -> None:
    if request.s3_bucket is None:
        raise InvalidPublishingError("Publishing to S3 needs s3_bucket: the bucket to upload the model to.")
    try:
        validate_bucket_name(request.s3_bucket)
    except S3Error:
        raise InvalidPublishingError(
            f"{request.s3_bucket!r} is not a valid bucket name: use 3 to 63 lower-case letters, digits, '.' and '-'."
        ) from None
    for name in ("s3_endpoint_url", "s3_public_base_url"):
        url = getattr(request, name)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidPublishingError(f"{name} must be a URL starting with https:// (or http://), not {url!r}.")
    if request.s3_base_path is not None:
        try:
            validate_key(request.s3_base_path.strip("/") + "/x")
        except S3Error:
            raise InvalidPublishingError(
                f"{request.s3_base_path!r} is not a usable folder: use a relative path such as 'models/flux', "
                "without '..' parts or control characters."
            ) from None
    if request.s3_access_key is None or request.s3_secret_key is None:
        raise InvalidPublishingError(
            "Publishing to S3 needs s3_access_key and s3_secret_key: the trainer runs on the provider's "
            "machines, which have no credentials of yours."
        )


def _stray_fields(request: PublishingRequest, destination: PublishingDestination) -> list[str]:
    allowed: set[str] = set()
    if destination is PublishingDestination.HUGGINGFACE:
        allowed = {*_HUB_FIELDS, "hf_token"}
    elif destination is PublishingDestination.S3:
        allowed = {*_S3_FIELDS, "s3_access_key", "s3_secret_key"}
    every = (*_HUB_FIELDS, "hf_token", *_S3_FIELDS, "s3_access_key", "s3_secret_key")
    return [name for name in every if getattr(request, name) is not None and name not in allowed]


async def seal_publishing(
    ctx: ServiceContext,
    provider: CloudTrainerService,
    request: PublishingRequest | None,
    config: dict[str, Any],
) -> dict[str, Any] | None:
    """Check a submission's publishing settings and return what the job stores (secrets sealed).

    None means the submission asked for nothing: the server decides at dispatch (local download
    when it has a public URL). A config with ``--push_to_hub`` and ``--hub_model_id`` and no
    ``publishing`` publishes to the Hub.

    Raises:
        InvalidPublishingError: a field is missing or malformed, or belongs to another destination.
        PublishingUnsupportedError: the provider cannot deliver to the destination.
        PublicUrlRequiredError: local download, but the server has no public URL the provider could use.
    """
    if request is None:
        request = _hub_from_config(config)
        if request is None:
            return None
    destination = _destination_of(request)
    if destination is None:
        return None
    stray = _stray_fields(request, destination)
    if stray:
        raise InvalidPublishingError(
            f"publishing.{stray[0]} does not apply to the destination {destination.value!r}; "
            "send only the fields of the one destination."
        )
    stored: dict[str, Any] = {"destination": destination.value}
    if destination is PublishingDestination.NONE:
        return stored
    _check_capability(provider, destination)
    if destination is PublishingDestination.HUGGINGFACE:
        _check_hub(ctx, request)
        stored.update(hub_model_id=request.hub_model_id, private=request.private)
    elif destination is PublishingDestination.S3:
        _check_s3(request)
        stored.update({name: getattr(request, name) for name in _S3_FIELDS if getattr(request, name) is not None})
        if request.s3_base_path is not None:
            stored["s3_base_path"] = request.s3_base_path.strip("/") or None
    elif not provider.capabilities.reaches_server and not await public_url(ctx):
        raise PublicUrlRequiredError()
    box = ctx.secrets.box
    sealed = {
        name: box.encrypt(secret.get_secret_value())
        for name in SECRET_FIELDS
        if (secret := getattr(request, name)) is not None
    }
    if sealed:
        stored[SEALED] = sealed
    return stored


# --- views --------------------------------------------------------------------------------------


def requested_destination(stored: dict[str, Any] | None) -> str:
    """Return the destination a job asked for: ``huggingface``, ``s3``, ``local``, ``none`` or ``auto``.

    Jobs stored before publishing was checked (a bare ``hub_model_id`` or ``s3_bucket``) count as
    the destination their fields name.
    """
    if not stored:
        return AUTO
    destination = stored.get("destination")
    if isinstance(destination, str) and destination in PublishingDestination.__members__.values():
        return destination
    if stored.get("hub_model_id") and stored.get("push_to_hub", True) is not False:
        return PublishingDestination.HUGGINGFACE.value
    if stored.get("s3_bucket"):
        return PublishingDestination.S3.value
    return AUTO


def job_folder(stored: dict[str, Any], job_id: str) -> str:
    """Return the folder (no trailing slash) a job delivers to in its S3 bucket: ``<base>/<job id>``."""
    base = str(stored.get("s3_base_path") or "").strip("/")
    return f"{base}/{job_id}" if base else job_id


def publishing_view(stored: dict[str, Any] | None, job_id: str) -> PublishingView | None:
    """Return a job's publishing settings for replies: no secret, only which ones are stored."""
    if not stored:
        return None
    destination = PublishingDestination(
        requested_destination(stored) if requested_destination(stored) != AUTO else PublishingDestination.NONE
    )
    sealed = stored.get(SEALED)
    view = PublishingView(
        destination=destination,
        stored_secrets=sorted(sealed) if isinstance(sealed, dict) else [],
    )
    if destination is PublishingDestination.HUGGINGFACE:
        view.hub_model_id = stored.get("hub_model_id")
        view.private = bool(stored.get("private", True))
    elif destination is PublishingDestination.S3:
        view.s3_endpoint_url = stored.get("s3_endpoint_url")
        view.s3_bucket = stored.get("s3_bucket")
        view.s3_base_path = job_folder(stored, job_id)
        view.s3_region = stored.get("s3_region")
        view.s3_public_base_url = stored.get("s3_public_base_url")
    return view


# --- at dispatch --------------------------------------------------------------------------------


def unseal(ctx: ServiceContext, stored: dict[str, Any], name: str) -> str | None:
    """Return the secret ``name`` of a job's publishing settings, decrypted (None if not stored).

    Raises:
        ConfigurationError: it cannot be decrypted (the server's key changed).
    """
    sealed = stored.get(SEALED)
    if isinstance(sealed, dict) and isinstance(sealed.get(name), str):
        return ctx.secrets.box.decrypt(sealed[name])
    legacy = stored.get(name)  # a job stored before secrets were sealed
    return legacy if isinstance(legacy, str) and legacy else None


def server_url(ctx: ServiceContext) -> str:
    """Return the URL this server listens on (a wildcard address as loopback), for providers whose
    runs reach it directly."""
    host = ctx.settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached through loopback here
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{ctx.settings.port}"


def local_target(job_id: str, base_url: str, credentials: JobStorageCredentials) -> DeliveryTarget:
    """Return the delivery to this server's built-in endpoint at ``base_url`` with the job's own key."""
    return DeliveryTarget(
        destination=PublishingDestination.LOCAL.value,
        s3=S3Delivery(
            bucket=credentials.bucket,
            prefix=credentials.prefix.rstrip("/") or f"jobs/{job_id}",
            endpoint_url=storage_endpoint_url(base_url),
            region=DEFAULT_S3_REGION,
            access_key_id=credentials.access_key_id,
            secret_access_key=credentials.secret_access_key,
        ),
    )


def delivery_target(
    ctx: ServiceContext,
    provider: CloudTrainerService,
    job_id: str,
    stored: dict[str, Any] | None,
    *,
    credentials: JobStorageCredentials | None,
    base_url: str | None,
) -> DeliveryTarget | None:
    """Return where a dispatched job's run delivers, with its secrets opened, or None for nowhere.

    ``base_url`` is the server's public URL now (or None: then, for a provider whose runs reach the
    server by themselves, the address it listens on); ``credentials`` the job's storage key issued
    for this attempt. An ``auto`` job is delivered locally when both are there and the provider
    can deliver to S3. A local job whose public URL was removed since it was submitted gets None.

    Raises:
        ConfigurationError: a sealed secret cannot be decrypted (the server's key changed).
    """
    destination = requested_destination(stored)
    publishes_to = provider.capabilities.publishes_to
    if base_url is None and provider.capabilities.reaches_server:
        base_url = server_url(ctx)
    if destination in (AUTO, PublishingDestination.LOCAL.value):
        if credentials is None or base_url is None or "s3" not in publishes_to:
            return None
        return local_target(job_id, base_url, credentials)
    assert stored is not None
    if destination == PublishingDestination.HUGGINGFACE.value and "huggingface" in publishes_to:
        token = unseal(ctx, stored, "hf_token")
        if token is None and ctx.settings.hf_token is not None:
            token = ctx.settings.hf_token.get_secret_value()
        return DeliveryTarget(
            destination=destination,
            hub=HubDelivery(
                repo_id=str(stored["hub_model_id"]), token=token, private=bool(stored.get("private", True))
            ),
        )
    if destination == PublishingDestination.S3.value and "s3" in publishes_to:
        return DeliveryTarget(
            destination=destination,
            s3=S3Delivery(
                bucket=str(stored["s3_bucket"]),
                prefix=job_folder(stored, job_id),
                endpoint_url=stored.get("s3_endpoint_url"),
                region=stored.get("s3_region"),
                access_key_id=unseal(ctx, stored, "s3_access_key"),
                secret_access_key=unseal(ctx, stored, "s3_secret_key"),
                public_base_url=stored.get("s3_public_base_url"),
            ),
        )
    return None


def note_delivery(session: AsyncSession, job: JobRow, *, now: datetime) -> None:
    """Record the job's delivery row inside the transaction of its first dispatch (the caller
    calls this once per job: a job requeued and dispatched again keeps the row of its first).

    Awaits nothing (for ``JobUpdates``). Jobs that deliver nowhere get no row.
    """
    destination = requested_destination(job.publishing)
    if destination == PublishingDestination.NONE.value:
        return
    add_row(
        session,
        JobDeliveryRow,
        {
            "job_id": job.id,
            "destination": destination,
            "state": DeliveryState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": None,
            "lease_token": None,
            "lease_expires_at": None,
            "reported": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        },
    )
