"""The Replicate provider: SimpleTuner's trainer run as Replicate predictions.

A job becomes one prediction of the trainer model of its hardware profile (``POST /v1/predictions``
with ``{"version": "<owner>/<model>:<version id>", "input": {...}}``), its datasets one uploaded
file (reused while Replicate holds one with the same sha256). Status, logs, progress and cost are
read from the prediction; the mapping is shared with webhook payloads (:mod:`.mapping`).

**Creating a run is never repeated blindly.** ``run_job`` sends the create call once. A timeout,
a dropped connection or a 5xx on that call raise ``ProviderUnavailableError``: the run may exist,
and the scheduler asks :meth:`ReplicateProvider.find_job_by_reference` before sending again. A 429
(Replicate's rate limit) raises it with ``create_outcome: NOTHING_CREATED``: nothing was made, so
the scheduler puts the job back in the queue without counting the attempt, and the next create
call of any job waits for the ``Retry-After`` it gave, at most
``ReplicateOptions.create_throttle.max_wait_seconds``.

**What find_job_by_reference guarantees** (see :mod:`.reconcile` for the rules):

* A run created by ``run_job`` for a job is found, in any process and after a restart, when the
  job had a webhook URL that Replicate shows back, or when its tracker run name is the default
  ``cloudtuner-<job id>`` (no ``tracker_run_name`` in the request or the config), as long as
  Replicate still shows the run's input (API predictions lose it an hour after they finish).
* Otherwise (a run name chosen by the user, no webhook shown) it is found by its exact
  ``config_json`` text in the process that attempted it, or in any process when the caller passes
  the job's ``RunRequest``.
* ``None`` is returned only after every trainer prediction created since the attempt (the dispatch
  time, else the job id's own creation time, less a minute of clock skew) was read and none could
  be the job's. If one might be but cannot be told apart (no expected text known, or its input
  removed), or the list could not be read far enough, ``ProviderUnavailableError`` is raised.
  So it is, in the process that sent it, while a create call that got no reply (a read timeout, a
  dropped connection) is younger than ``ReplicateOptions.create_settle_seconds``: Replicate may
  still be making that run, as when it answers a slow create after the client gave up.
* Two identical submissions (same config, same user-chosen run name, no webhook) whose creates
  both lost their reply are interchangeable: each finds one of the two runs, never both the same
  one within a process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from cloudtuner.core.clock import Clock, SystemClock
from cloudtuner.core.errors import ConfigurationError, ProviderRejectedError, ProviderUnavailableError
from cloudtuner.providers.base import (
    CloudJobInfo,
    CloudJobStatus,
    CloudTrainerService,
    ProviderCapabilities,
    RunRequest,
    WebhookEvent,
)
from cloudtuner.providers.replicate.catalog import SigningSecret, TrainerVersions
from cloudtuner.providers.replicate.client import NOT_R8_NOTE, OUTCOME_UNKNOWN, ReplicateHTTP, decode_json
from cloudtuner.providers.replicate.hardware import (
    DEFAULT_PROFILES,
    HardwareCatalog,
    HardwareOverride,
    HardwareProfile,
)
from cloudtuner.providers.replicate.inputs import build_body, config_text
from cloudtuner.providers.replicate.mapping import prediction_to_info, reference_of
from cloudtuner.providers.replicate.network import tls_verification
from cloudtuner.providers.replicate.options import ReplicateOptions, TrainerVersion
from cloudtuner.providers.replicate.reconcile import (
    CLOCK_SKEW,
    AttemptBook,
    Search,
    aware,
    job_id_time,
    scan_predictions,
)
from cloudtuner.providers.replicate.retries import Timing
from cloudtuner.providers.replicate.uploads import find_reusable_file, upload_archive
from cloudtuner.settings import Settings

SECRET_REFRESH_SECONDS = 300.0
"""A bad signature refetches the webhook secret at most this often (it may have been rotated)."""

DATASET_EXTRACT_ROOT = "/src/datasets"
"""Where the trainer is taken to unpack the uploaded archive (Cog's working directory is /src).

Not confirmed against the live trainer; see docs/dev/providers.md.
"""


class ReplicateProvider(CloudTrainerService):
    """Runs jobs on Replicate; see the module docstring for the guarantees."""

    def __init__(
        self,
        settings: Settings,
        token_source: Callable[[], Awaitable[str | None]],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        hardware_overrides: Mapping[str, HardwareOverride] | None = None,
        options: ReplicateOptions | None = None,
        clock: Clock | None = None,
        timing: Timing | None = None,
    ) -> None:
        """Build the provider. ``token_source`` is awaited on every call for the current token.

        From ``settings``: the API URL, the CA bundle, the timeouts (unless ``options`` is given,
        which then wins) and the hardware overrides (unless ``hardware_overrides`` is given).
        Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
        ``NO_PROXY``) unless ``transport`` is given. ``timing`` replaces waits, monotonic time and
        jitter (tests); its ``now`` defaults to ``clock``.

        Raises:
            ConfigurationError: an override or the default hardware names an unknown profile, an
                override is malformed, the CA bundle is unusable, or a proxy in the environment
                cannot be used. Each message says what to fix.
        """
        self.options = options or ReplicateOptions.from_settings(settings)
        if hardware_overrides is None:
            hardware_overrides = overrides_from_settings(settings)
        self.catalog = HardwareCatalog(overrides=hardware_overrides, default=self.options.default_hardware)
        self._settings = settings
        self._clock: Clock = clock or SystemClock()
        self._http = ReplicateHTTP(
            settings.replicate_api_url,
            token_source,
            transport=transport,
            timeouts=self.options.timeouts,
            retry=self.options.retry,
            create_throttle=self.options.create_throttle,
            verify=tls_verification(settings.replicate_ca_bundle),
            timing=timing or Timing(now=self._clock.now),
        )
        self._book = AttemptBook()
        self._versions = TrainerVersions(
            self._http, cache_seconds=self.options.version_cache_seconds, max_pages=self.options.list_max_pages
        )
        self._secret = SigningSecret(
            self._http, cache_seconds=self.options.secret_cache_seconds, refresh_seconds=SECRET_REFRESH_SECONDS
        )

    # --- identity -------------------------------------------------------------------------------

    @property
    def provider_name(self) -> str:
        """Return ``replicate``."""
        return "replicate"

    @property
    def capabilities(self) -> ProviderCapabilities:
        """Return cost tracking, live logs, webhooks, cancel, dataset uploads up to 100 MiB, and delivery
        to the Hub or S3 (the trainer's inputs); its runs reach this server only at its public URL."""
        return ProviderCapabilities(
            cost_tracking=True,
            live_logs=True,
            webhooks=True,
            cancel=True,
            uploads_datasets=True,
            max_upload_bytes=self.options.max_upload_bytes,
            dataset_extract_root=DATASET_EXTRACT_ROOT,
            publishes_to=frozenset({"huggingface", "s3"}),
            reaches_server=False,
        )

    @property
    def hardware_profiles(self) -> list[HardwareProfile]:
        """Return the hardware choices with their prices and trainer models."""
        return self.catalog.profiles

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    # --- account and catalog --------------------------------------------------------------------

    async def validate_credentials(self) -> dict[str, Any]:
        """Check the token with ``GET /v1/account`` and return the account fields.

        A token that does not start with ``r8_`` is still tried (Replicate documents no other
        format rule); if Replicate accepts it, the result carries a ``warnings`` entry saying so.

        Raises:
            ProviderAuthError: no token ("REPLICATE_API_TOKEN not set" and how to set one), or
                Replicate refused it ("Invalid token" and what to check).
            ProviderUnavailableError: Replicate could not be asked.
        """
        token = await self._http.token()
        account = await self._http.get_json("account", action="validate the Replicate token")
        if not isinstance(account, dict):
            raise ProviderUnavailableError("Replicate sent an unexpected reply to GET /v1/account.")
        result: dict[str, Any] = {
            key: account.get(key) for key in ("type", "username", "name", "github_url", "avatar_url") if key in account
        }
        if not token.startswith("r8_"):
            result["warnings"] = [f"{NOT_R8_NOTE} Replicate accepted it, but its tokens normally do."]
        return result

    async def list_versions(self, model: str | None = None) -> list[TrainerVersion]:
        """Return the versions of ``model`` (``owner/name``; default: the default profile's trainer), newest first.

        Raises:
            ProviderRejectedError: ``model`` is not ``owner/name``, or Replicate has no such model.
            ProviderAuthError, ProviderUnavailableError: as for every call.
        """
        name = model or self.catalog.default.trainer_model
        if name is None:
            raise ProviderRejectedError("The default hardware has no trainer model; name one.")
        return await self._versions.list(name)

    async def webhook_secret(self, *, refresh: bool = False) -> str:
        """Return the account's webhook signing secret (``whsec_...``), cached for an hour.

        ``refresh`` fetches it again.

        Raises:
            ProviderAuthError, ProviderUnavailableError: as for every call.
        """
        return await self._secret.get(refresh=refresh)

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        """Verify a Replicate webhook (Standard Webhooks signature, 5 minute freshness) and map it.

        A signature that does not match is checked once more against a freshly fetched secret (it
        may have been rotated), at most every 5 minutes. The event's ``logs`` are the prediction's
        whole log.

        Raises:
            WebhookSignatureError: headers missing, timestamp stale, or signature wrong (HTTP 401).
            WebhookRejectedError: the body is not a prediction object.
            ProviderUnavailableError: the secret could not be fetched or is malformed; the
                delivery should be retried later (Replicate retries the terminal one).
        """
        event_id, payload = await self._secret.verify(headers, body, now)
        logs = payload.get("logs")
        return WebhookEvent(
            event_id=event_id,
            info=self.job_info_from_prediction(payload, inputs=False),
            logs=logs if isinstance(logs, str) else None,
        )

    def job_info_from_prediction(self, payload: dict[str, Any], *, inputs: bool = True) -> CloudJobInfo:
        """Map a prediction object (a webhook body) with this provider's prices and clock.

        ``inputs=False`` leaves the run's config and dataloader out of the metadata (see
        ``prediction_to_info``): a webhook applies to a job that has them already.

        Raises:
            ValueError: ``payload`` is not a prediction object.
        """
        owner = self._book.owner_of(str(payload.get("id", "")))
        return prediction_to_info(payload, catalog=self.catalog, now=self._clock.now(), reference=owner, inputs=inputs)

    # --- runs -----------------------------------------------------------------------------------

    async def run_job(self, request: RunRequest) -> CloudJobInfo:
        """Upload the datasets (unless Replicate holds them), then create the job's prediction once.

        Raises:
            ProviderRejectedError: unknown hardware, no trainer for it, an archive over the limit,
                insufficient credit (402), or any other refusal; no run exists.
            ProviderAuthError: no token or a refused one; no run exists.
            ProviderUnavailableError: the outcome is unknown; the run may exist.
        """
        started = self._clock.now()
        dispatched = aware(request.dispatched_at)
        self._book.begin(request.job_id, config_text(request), min(dispatched, started) if dispatched else started)
        profile = self.catalog.get(request.hardware)
        version_ref = await self._versions.reference(profile)
        images_url = await self._images_url(request, started)
        hf_token = self._settings.hf_token.get_secret_value() if self._settings.hf_token else None
        body = build_body(request, version_ref=version_ref, images_url=images_url, default_hf_token=hf_token)
        try:
            response = await self._http.request(
                "POST",
                "predictions",
                retry=False,
                creates=True,
                json_body=body,
                read_timeout=self.options.create_timeout_seconds,
                action="create the training run",
            )
        except ProviderUnavailableError as exc:
            if exc.context.get("create_outcome") == OUTCOME_UNKNOWN:
                self._book.unsettled(request.job_id, self._http.timing.monotonic() + self.options.create_settle_seconds)
            raise
        assert response is not None
        reply = decode_json(response, "create the training run")
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
            raise ProviderUnavailableError("Replicate accepted the run but its reply had no prediction id.")
        self._book.created(request.job_id, reply["id"])
        return prediction_to_info(reply, catalog=self.catalog, now=self._clock.now(), reference=request.job_id)

    async def _images_url(self, request: RunRequest, now: datetime) -> str | None:
        archive = request.dataset_archive
        if archive is None:
            return None
        limit = self.options.max_upload_bytes
        if archive.size_bytes > limit:
            raise ProviderRejectedError(
                f"The dataset archive is {archive.size_bytes:,} bytes, {archive.size_bytes - limit:,} bytes over "
                f"Replicate's upload limit of {limit:,} bytes (100 MiB). Make the datasets smaller."
            )
        reused = await find_reusable_file(
            self._http,
            archive,
            now=now,
            margin=self.options.file_reuse_margin,
            max_pages=self.options.file_list_max_pages,
        )
        if reused is not None:
            if request.report_progress is not None:
                await request.report_progress("uploading", archive.size_bytes, archive.size_bytes)
            return reused
        return await upload_archive(self._http, archive, max_bytes=limit, report=request.report_progress)

    async def find_job_by_reference(self, job_id: str, request: RunRequest | None = None) -> CloudJobInfo | None:
        """Return the prediction made for ``job_id``, or None as a promise that there is none.

        ``request`` (optional) is the job's run request; with it the run is recognised by its
        config text even without this process's memory. See the module docstring.

        Raises:
            ProviderUnavailableError: Replicate could not be asked, could not be read far enough,
                or holds a run that might be the job's but cannot be told apart.
            ProviderAuthError: no token or a refused one.
        """
        attempt = self._book.get(job_id)
        if attempt is not None and attempt.prediction_id is not None:
            return await self.get_job_status(attempt.prediction_id)
        if attempt is not None:
            expected: str | None = attempt.config_text
            not_before: datetime | None = attempt.not_before
        else:
            expected = config_text(request) if request is not None else None
            not_before = aware(request.dispatched_at if request is not None else None) or job_id_time(job_id)
        window = not_before - CLOCK_SKEW if not_before is not None else None
        search = Search(job_id, expected, self.catalog.trainer_models, window, self._book)
        complete = await scan_predictions(self._http, search, max_pages=self.options.reference_max_pages)
        found = search.best()
        if found is not None:
            self._book.created(job_id, found["id"])
            return prediction_to_info(found, catalog=self.catalog, now=self._clock.now(), reference=job_id)
        if not complete:
            raise ProviderUnavailableError(
                f"Could not read all Replicate runs since job {job_id} was dispatched; cannot tell whether it has one."
            )
        if search.unknown:
            raise ProviderUnavailableError(
                f"Replicate holds {len(search.unknown)} trainer run(s) created since job {job_id} was dispatched "
                "that cannot be matched to a job; cannot tell whether one of them is this job's."
            )
        if attempt is not None and attempt.settles_at is not None:
            remaining = attempt.settles_at - self._http.timing.monotonic()
            if remaining > 0:
                raise ProviderUnavailableError(
                    f"The call that created job {job_id}'s run got no reply, and Replicate may still be making "
                    f"the run; whether it has one can be told in {remaining:.0f} s."
                )
        return None

    async def get_job_status(self, provider_job_id: str) -> CloudJobInfo:
        """Return the prediction's state, progress (from its logs), cost and outcome.

        An unknown prediction comes back FAILED with an error saying so.

        Raises:
            ProviderUnavailableError: Replicate could not be asked.
            ProviderAuthError: no token or a refused one.
        """
        payload = await self._http.find_json(_prediction_path(provider_job_id), action="read the training run")
        owner = self._book.owner_of(provider_job_id)
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            return CloudJobInfo(
                provider_job_id=provider_job_id,
                status=CloudJobStatus.FAILED,
                reference=owner,
                error=f"Replicate has no prediction {provider_job_id} (it may have been deleted).",
            )
        return prediction_to_info(payload, catalog=self.catalog, now=self._clock.now(), reference=owner, inputs=False)

    async def get_job_logs(self, provider_job_id: str) -> str:
        """Return the prediction's whole log so far ("" when none, or for an unknown prediction).

        Raises:
            ProviderUnavailableError: Replicate could not be asked.
            ProviderAuthError: no token or a refused one.
        """
        payload = await self._http.find_json(_prediction_path(provider_job_id), action="read the training logs")
        logs = payload.get("logs") if isinstance(payload, dict) else None
        return logs if isinstance(logs, str) else ""

    async def cancel_job(self, provider_job_id: str) -> bool:
        """Cancel the prediction (``POST /v1/predictions/{id}/cancel``); False if Replicate does not know it.

        Cancelling a finished prediction is harmless and returns True.

        Raises:
            ProviderUnavailableError: Replicate could not be asked.
            ProviderAuthError: no token or a refused one.
        """
        response = await self._http.request(
            "POST",
            f"{_prediction_path(provider_job_id)}/cancel",
            retry=True,
            allow_not_found=True,
            action="cancel the training run",
        )
        return response is not None

    async def list_jobs(self, limit: int = 50) -> list[CloudJobInfo]:
        """Return up to ``limit`` predictions of the trainer models, newest first.

        ``reference`` is the job id when the prediction shows it (webhook URL or a
        ``cloudtuner-<id>`` run name) or this process made the run.

        Raises:
            ProviderUnavailableError: Replicate could not be asked.
            ProviderAuthError: no token or a refused one.
        """
        found: list[CloudJobInfo] = []
        if limit <= 0:
            return found
        models = self.catalog.trainer_models
        now = self._clock.now()
        async for results, _more in self._http.pages(
            "predictions", max_pages=self.options.list_max_pages, action="list training runs"
        ):
            for prediction in results:
                if prediction.get("model") not in models or not isinstance(prediction.get("id"), str):
                    continue
                found.append(
                    prediction_to_info(prediction, catalog=self.catalog, now=now, reference=self._reference(prediction))
                )
                if len(found) >= limit:
                    return found
        return found

    def _reference(self, prediction: dict[str, Any]) -> str | None:
        shown = reference_of(prediction)
        if shown is not None:
            return shown
        owner = self._book.owner_of(str(prediction["id"]))
        if owner is not None:
            return owner
        run_input = prediction.get("input")
        text = run_input.get("config_json") if isinstance(run_input, dict) else None
        return self._book.pending_job_for(text) if isinstance(text, str) else None


def overrides_from_settings(settings: Settings) -> dict[str, HardwareOverride]:
    """Return the hardware overrides of ``CLOUDTUNER_REPLICATE_HARDWARE`` (SKU -> override).

    Raises:
        ConfigurationError: an override is malformed; the message names the variable and the SKU.
    """
    known = [profile.sku for profile in DEFAULT_PROFILES]
    overrides: dict[str, HardwareOverride] = {}
    for sku, data in settings.replicate_hardware.items():
        name = sku.strip().lower()
        if name not in known:
            raise ConfigurationError(
                f"CLOUDTUNER_REPLICATE_HARDWARE names unknown hardware {sku!r}; known: {', '.join(known)}."
            )
        try:
            overrides[name] = HardwareOverride.from_dict(data)
        except ConfigurationError as exc:
            raise ConfigurationError(f"CLOUDTUNER_REPLICATE_HARDWARE, {sku!r}: {exc.message}") from None
    return overrides


def _prediction_path(prediction_id: str) -> str:
    """Return the API path of a prediction; the id is quoted so it can never name another resource."""
    return f"predictions/{quote(prediction_id, safe='')}"
