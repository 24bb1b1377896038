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
