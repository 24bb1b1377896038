"""The one error tree of cloudtuner.

Every error a user can cause or meet derives from :class:`CloudtunerError`. Each class has a
stable ``code`` (snake_case, part of the API contract) and its default message as its docstring.
The HTTP status each class maps to is decided in one place, ``cloudtuner.api.errors``; nothing
below the API layer knows about HTTP.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CloudtunerError(Exception):
    """Something went wrong in cloudtuner."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or _docstring_message(type(self))
        self.context = context
        super().__init__(self.message)


def _docstring_message(cls: type) -> str:
    doc = (cls.__doc__ or cls.__name__).strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


# --- the request is wrong (4xx) -----------------------------------------------------------------


class InvalidRequestError(CloudtunerError):
    """The request is not valid."""

    code = "invalid_request"


class InvalidJSONError(InvalidRequestError):
    """The request body is not valid JSON."""

    code = "invalid_json"


class UnsupportedMediaTypeError(InvalidRequestError):
    """The request body must be JSON, sent with the header Content-Type: application/json."""

    code = "unsupported_media_type"


class UnknownProviderError(InvalidRequestError):
    """No provider has that name."""

    code = "unknown_provider"


class MissingDataloaderError(InvalidRequestError):
    """An inline config needs a dataloader_config: a list of datasets, as in multidatabackend.json."""

    code = "missing_dataloader"


class InvalidConfigError(InvalidRequestError):
    """The training config is not valid."""

    code = "invalid_config"


class InvalidCursorError(InvalidRequestError):
    """The cursor is not one this server handed out; start again without a cursor."""

    code = "invalid_cursor"


class UploadConsentRequiredError(CloudtunerError):
    """This job uploads local datasets to the provider: review the upload summary, then submit again
    with "upload_consent": true (or set the consent mode to always_allow in the Cloud settings)."""

    code = "upload_consent_required"


class UploadsDisabledError(CloudtunerError):
    """Uploading local datasets is turned off (consent mode never_upload): use datasets the provider
    can reach (S3, Hugging Face), run on a self-hosted worker, or change the mode in the Cloud settings."""

    code = "uploads_disabled"


class SpendingLimitExceededError(CloudtunerError):
    """This job would go over a spending limit whose action is block; it was not submitted.

    HTTP 402 Payment Required: the request is valid and may succeed later (when the period resets,
    the limit is raised or other jobs finish under their estimates), but not by sending it again
    now. Not 409, which clients read as an idempotency conflict, nor 429, which they retry.
    """

    code = "spending_limit_exceeded"


class WebhookRejectedError(CloudtunerError):
    """The webhook's signature is missing, stale or wrong; it was ignored."""

    code = "webhook_rejected"


class WebhookSourceForbiddenError(CloudtunerError):
    """Webhooks are not accepted from this address (see webhook_allowed_ips in the provider settings)."""

    code = "webhook_source_forbidden"


class NotFoundError(CloudtunerError):
    """The thing asked for does not exist."""

    code = "not_found"


class JobNotFoundError(NotFoundError):
    """No job has that id."""

    code = "job_not_found"


class ConfigNotFoundError(NotFoundError):
    """No saved config has that name."""

    code = "config_not_found"


class ConflictError(CloudtunerError):
    """The request conflicts with the current state."""

    code = "conflict"


class IdempotencyKeyConflictError(ConflictError):
    """This idempotency_key was already used with a different request body."""

    code = "idempotency_key_conflict"


class JobAlreadyFinishedError(ConflictError):
    """The job has already finished, so it cannot be cancelled."""

    code = "job_already_finished"


class JobNotFinishedError(ConflictError):
    """Only a finished job (completed, failed or cancelled) can be deleted; cancel it first."""

    code = "job_not_finished"


class IllegalTransitionError(ConflictError):
    """That job cannot move to the requested state from the one it is in."""

    code = "illegal_transition"


class AuthenticationRequiredError(CloudtunerError):
    """Sign in or send an API key (Authorization: Bearer stk_...) to use this route."""

    code = "authentication_required"


class PermissionDeniedError(CloudtunerError):
    """You do not have permission to do that."""

    code = "permission_denied"


# --- a provider failed (the request may have been fine) -----------------------------------------


class ProviderError(CloudtunerError):
    """The training provider reported an error."""

    code = "provider_error"


class ProviderUnavailableError(ProviderError):
    """The training provider could not be reached or was overloaded; the call may be retried."""

    code = "provider_unavailable"


class ProviderRejectedError(ProviderError):
    """The training provider refused the request; sending it again will not help."""

    code = "provider_rejected"


class ProviderAuthError(ProviderError):
    """The training provider refused the credentials."""

    code = "provider_auth_failed"


# --- the server itself --------------------------------------------------------------------------


class ConfigurationError(CloudtunerError):
    """cloudtuner is not configured correctly."""

    code = "configuration_error"


# --- the built-in storage endpoint's credentials (4xx) -----------------------------------------


class StorageCredentialNotFoundError(NotFoundError):
    """No storage credential has that access key id."""

    code = "storage_credential_not_found"


class InvalidStorageScopeError(InvalidRequestError):
    """The bucket or prefix of the storage credential is not valid."""

    code = "invalid_storage_scope"


# --- delivery of trained models (4xx) -----------------------------------------------------------


class InvalidPublishingError(InvalidRequestError):
    """The publishing settings are not valid."""

    code = "invalid_publishing"


class PublishingUnsupportedError(InvalidRequestError):
    """This provider cannot deliver trained models to that destination."""

    code = "publishing_unsupported"


class PublicUrlRequiredError(InvalidRequestError):
    """Delivering the model back to this server needs its public URL, so that the provider can reach it:
    set CLOUDTUNER_PUBLIC_URL or the public URL in the Cloud settings (an ngrok or cloudflared tunnel
    will do), or publish to the Hugging Face Hub or an S3 bucket instead."""

    code = "public_url_required"


class ArtifactNotFoundError(NotFoundError):
    """The job has no such artifact."""

    code = "artifact_not_found"


class ArtifactNotLocalError(InvalidRequestError):
    """That artifact is not stored on this server; fetch it from where it was delivered."""

    code = "artifact_not_local"


# --- users, sessions and API keys ---------------------------------------------------------------


class InvalidCredentialsError(AuthenticationRequiredError):
    """The username or password is wrong."""

    code = "invalid_credentials"


class InvalidTokenError(AuthenticationRequiredError):
    """This session or API key is not valid (unknown, expired or revoked): sign in again or use another key."""

    code = "invalid_token"


class InvalidSetupTokenError(AuthenticationRequiredError):
    """This setup token is not valid (wrong, already used or expired): restart the server for a new one,
    printed in its log, or create the admin with `cloudtuner admin create`."""

    code = "invalid_setup_token"


class LoginThrottledError(CloudtunerError):
    """Too many failed sign-ins: wait before trying again, or ask an admin to unlock the account."""

    code = "too_many_login_attempts"


class CsrfTokenError(PermissionDeniedError):
    """A change made with the session cookie must send the X-CSRF-Token header given at sign-in."""

    code = "csrf_token_invalid"


class AccountDisabledError(PermissionDeniedError):
    """This account is disabled; ask an admin to enable it."""

    code = "account_disabled"


class InvalidScopeError(InvalidRequestError):
    """That is not a known permission or role."""

    code = "invalid_scope"


class InvalidUsernameError(InvalidRequestError):
    """A username is 1 to 64 characters: letters, digits and . _ @ - (it is kept in lower case)."""

    code = "invalid_username"


class WeakPasswordError(InvalidRequestError):
    """A password needs at least 8 characters."""

    code = "weak_password"


class UserNotFoundError(NotFoundError):
    """No user has that name."""

    code = "user_not_found"


class ApiKeyNotFoundError(NotFoundError):
    """No API key of yours has that id."""

    code = "api_key_not_found"


class SessionNotFoundError(NotFoundError):
    """No session of yours has that id."""

    code = "session_not_found"


class UserExistsError(ConflictError):
    """A user with that name already exists."""

    code = "user_exists"


class LastAdminError(ConflictError):
    """That would leave the server without an active admin; make another user admin first."""

    code = "last_admin"


class SingleUserModeError(ConflictError):
    """This server runs in single-user mode (no users yet): create an admin with `cloudtuner admin create` first."""

    code = "single_user_mode"


# --- workers ------------------------------------------------------------------------------------


class WorkerNotFoundError(NotFoundError):
    """No worker has that id or name."""

    code = "worker_not_found"


class WorkerNameTakenError(ConflictError):
    """Another worker already has that name."""

    code = "worker_name_taken"


class InvalidWorkerTokenError(AuthenticationRequiredError):
    """This worker token is not valid (unknown, rotated or revoked): ask an admin for the worker's current command."""

    code = "invalid_worker_token"


class WorkerLeaseLostError(ConflictError):
    """This worker no longer holds the job (its lease was lost, or the job was given to another worker)."""

    code = "worker_lease_lost"


# --- the queue ----------------------------------------------------------------------------------


class QueueFullError(CloudtunerError):
    """You have as many jobs waiting as the queue allows per user; submit again once some have started."""

    code = "queue_full"
