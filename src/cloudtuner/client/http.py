"""A typed HTTP client of the cloudtuner server, used by the CLI and the worker.

It imports only the wire schemas, never server-side code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from cloudtuner.client import credentials
from cloudtuner.schemas.artifacts import ArtifactListResponse
from cloudtuner.schemas.configs import (
    ConfigHistoryResponse,
    SavedConfigListResponse,
    SavedConfigResponse,
)
from cloudtuner.schemas.jobs import (
    CancelJobResponse,
    DeleteJobResponse,
    JobListResponse,
    JobLogsResponse,
    JobResponse,
    PreviewResponse,
    SubmitJobResponse,
    SyncResponse,
)

DEFAULT_URL = "http://127.0.0.1:8001"

ModelT = TypeVar("ModelT", bound=BaseModel)


class ClientError(Exception):
    """A request to the server failed; ``str()`` is a sentence for the user."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}


class ServerUnreachableError(ClientError):
    """The server did not answer at all."""


def _saved_token(url: str) -> str | None:
    """Return the session token `cloudtuner login` saved for ``url``, or None.

    Raises:
        ClientError: the credentials file cannot be used (readable by others, corrupt).
    """
    try:
        return credentials.load_token(url)
    except credentials.CredentialsFileError as exc:
        raise ClientError(str(exc)) from None


class CloudtunerClient:
    """Talks to one cloudtuner server. Use as a context manager, or call :meth:`close`."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        """Talk to ``url`` (else CLOUDTUNER_URL, else the local default), authenticated by
        ``api_key``, else CLOUDTUNER_API_KEY, else the session `cloudtuner login` saved for it."""
        self.url = (url or os.environ.get("CLOUDTUNER_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("CLOUDTUNER_API_KEY") or _saved_token(self.url)
        headers = {"User-Agent": "cloudtuner-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send a request and return the JSON reply.

        Raises:
            ServerUnreachableError: nothing answered at the server's address.
            ClientError: the server answered with an error; the message is its ``detail``.
        """
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(f"The cloudtuner server at {self.url} did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"Cannot reach the cloudtuner server at {self.url}: is `cloudtuner server` running? "
                "Point at another server with --url or CLOUDTUNER_URL."
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            if isinstance(body, dict) and isinstance(body.get("detail"), str):
                raise ClientError(body["detail"], status=response.status_code, code=body.get("code"), body=body)
            raise ClientError(
                f"The server answered {response.status_code} {response.reason_phrase}.", status=response.status_code
            )
        if not isinstance(body, dict):
            raise ClientError(f"The server at {self.url} did not answer with JSON; is it a cloudtuner server?")
        return body

    def _get(self, model: type[ModelT], path: str, **kwargs: Any) -> ModelT:
        return model.model_validate(self.request("GET", path, **kwargs))

    # --- jobs -----------------------------------------------------------------------------------

    def submit_job(self, provider: str, body: dict[str, Any]) -> SubmitJobResponse:
        """Submit a job (the body of POST /api/cloud/jobs/submit)."""
        reply = self.request("POST", "/api/cloud/jobs/submit", params={"provider": provider}, json=body)
        return SubmitJobResponse.model_validate(reply)

    def preview_job(self, provider: str, body: dict[str, Any]) -> PreviewResponse:
        """Return what submitting ``body`` would upload, and whether it needs consent."""
        reply = self.request("POST", "/api/cloud/jobs/preview", params={"provider": provider}, json=body)
        return PreviewResponse.model_validate(reply)

    def list_jobs(
        self,
        *,
        limit: int = 50,
        statuses: list[str] | None = None,
        provider: str | None = None,
        cursor: str | None = None,
        sync_active: bool = False,
    ) -> JobListResponse:
        """Return one page of jobs, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if statuses:
            params["status"] = ",".join(statuses)
        if provider:
            params["provider"] = provider
        if cursor:
            params["cursor"] = cursor
        if sync_active:
            params["sync_active"] = "true"
        return self._get(JobListResponse, "/api/cloud/jobs", params=params)

    def get_job(self, job_id: str) -> JobResponse:
        """Return one job in full."""
        return self._get(JobResponse, f"/api/cloud/jobs/{job_id}")

    def get_logs(self, job_id: str, *, offset: int = 0, tail: int | None = None) -> JobLogsResponse:
        """Return a job's log from ``offset`` (or its last ``tail`` lines)."""
        params: dict[str, Any] = {"offset": offset}
        if tail is not None:
            params["tail"] = tail
        return self._get(JobLogsResponse, f"/api/cloud/jobs/{job_id}/logs", params=params)

    def cancel_job(self, job_id: str) -> CancelJobResponse:
        """Cancel a job."""
        return CancelJobResponse.model_validate(self.request("POST", f"/api/cloud/jobs/{job_id}/cancel"))

    def delete_job(self, job_id: str) -> DeleteJobResponse:
        """Delete a finished job."""
        return DeleteJobResponse.model_validate(self.request("DELETE", f"/api/cloud/jobs/{job_id}"))

    def sync_jobs(self) -> SyncResponse:
        """Sync active jobs and import unknown runs from the providers."""
        return SyncResponse.model_validate(self.request("POST", "/api/cloud/jobs/sync"))

    def list_artifacts(self, job_id: str) -> ArtifactListResponse:
        """Return the files a job delivered and the state of its delivery."""
        return self._get(ArtifactListResponse, f"/api/cloud/jobs/{job_id}/artifacts")

    @contextlib.contextmanager
    def stream(self, path: str, *, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """Open a streamed GET of ``path`` (read it with ``iter_bytes``); raise as :meth:`request` does.

        Raises:
            ServerUnreachableError: nothing answered at the server's address.
            ClientError: the server answered with an error (its ``detail``).
        """
        try:
            with self._http.stream("GET", path, headers=headers) as response:
                if response.is_error:
                    response.read()
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    if isinstance(body, dict) and isinstance(body.get("detail"), str):
                        raise ClientError(body["detail"], status=response.status_code, code=body.get("code"), body=body)
                    raise ClientError(
                        f"The server answered {response.status_code} {response.reason_phrase}.",
                        status=response.status_code,
                    )
                yield response
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(f"The cloudtuner server at {self.url} did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"The download from the cloudtuner server at {self.url} broke off.") from exc

    # --- configs --------------------------------------------------------------------------------

    def list_configs(self) -> SavedConfigListResponse:
        """Return every saved config."""
        return self._get(SavedConfigListResponse, "/api/configs")

    def get_config(self, name: str) -> SavedConfigResponse:
        """Return a saved config."""
        return self._get(SavedConfigResponse, f"/api/configs/{name}")

    def put_config(
        self, name: str, config: dict[str, Any], dataloader: list[dict[str, Any]], description: str | None = None
    ) -> SavedConfigResponse:
        """Create or replace a saved config."""
        body = {"config": config, "dataloader_config": dataloader, "description": description}
        return SavedConfigResponse.model_validate(self.request("PUT", f"/api/configs/{name}", json=body))

    def delete_config(self, name: str) -> None:
        """Delete a saved config."""
        self.request("DELETE", f"/api/configs/{name}")

    def config_history(self, name: str) -> ConfigHistoryResponse:
        """Return a config's saved versions."""
        return self._get(ConfigHistoryResponse, f"/api/configs/{name}/history")

    def health(self) -> dict[str, Any]:
        """Return the server's health reply."""
        return self.request("GET", "/api/health")
