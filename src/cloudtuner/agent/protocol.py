"""The worker's side of the worker protocol: one method per ``/api/worker/...`` route."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx

from cloudtuner.schemas.workers import (
    AckResponse,
    ClaimResponse,
    HeartbeatResponse,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
)


class ServerRefusedError(Exception):
    """The server answered with an error status (the message is its ``detail``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _check(reply: httpx.Response) -> dict[str, Any]:
    if reply.status_code >= 400:
        try:
            detail = str(reply.json().get("detail"))
        except ValueError:
            detail = reply.text[:200]
        raise ServerRefusedError(reply.status_code, f"{reply.status_code}: {detail}")
    body: dict[str, Any] = reply.json()
    return body


class DatasetDownloadError(Exception):
    """The datasets' zip stopped before its end (the server packs it while sending it)."""


class WorkerClient:
    """HTTP calls to the server, authenticated by the worker token.

    Every method raises :class:`ServerRefusedError` for an error reply and ``httpx.HTTPError``
    when the server cannot be reached.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=True
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def register(self, request: RegisterWorkerRequest) -> RegisterWorkerResponse:
        """Register this worker."""
        reply = await self._http.post("/api/worker/register", json=request.model_dump(mode="json"))
        return RegisterWorkerResponse.model_validate(_check(reply))

    async def claim(self, wait_seconds: float) -> ClaimResponse:
        """Long-poll for a job."""
        reply = await self._http.post(
            "/api/worker/claim", json={"wait_seconds": wait_seconds}, timeout=wait_seconds + 30.0
        )
        return ClaimResponse.model_validate(_check(reply))

    async def heartbeat(self, job_id: str, lease_token: str, *, running: bool) -> HeartbeatResponse:
        """Extend the lease on a job."""
        reply = await self._http.post(
            f"/api/worker/jobs/{job_id}/heartbeat", json={"lease_token": lease_token, "running": running}
        )
        return HeartbeatResponse.model_validate(_check(reply))

    async def logs(self, job_id: str, lease_token: str, text: str) -> AckResponse:
        """Append log text to the job."""
        reply = await self._http.post(
            f"/api/worker/jobs/{job_id}/logs", json={"lease_token": lease_token, "text": text}
        )
        return AckResponse.model_validate(_check(reply))

    async def result(
        self, job_id: str, lease_token: str, status: str, *, error: str | None = None, exit_code: int | None = None
    ) -> AckResponse:
        """Report how the job ended."""
        body = {"lease_token": lease_token, "status": status, "error": error, "exit_code": exit_code}
        reply = await self._http.post(f"/api/worker/jobs/{job_id}/result", json=body)
        return AckResponse.model_validate(_check(reply))

    async def fetch_datasets(
        self, job_id: str, lease_token: str, destination: Path
    ) -> tuple[list[dict[str, Any]], str]:
        """Download the job's dataset zip to ``destination``; return (dataloader config, its extract root).

        Raises:
            DatasetDownloadError: the zip stopped part way (the server could not finish packing it).
        """
        url = f"/api/worker/jobs/{job_id}/datasets"
        async with self._http.stream("GET", url, params={"lease_token": lease_token}, timeout=600.0) as reply:
            if reply.status_code >= 400:
                await reply.aread()
                _check(reply)
            try:
                with destination.open("wb") as out:
                    async for chunk in reply.aiter_bytes():
                        out.write(chunk)
            except httpx.TransportError as exc:
                raise DatasetDownloadError(
                    f"The datasets' zip stopped before its end ({exc}). The server packs it while"
                    " sending it; its log says why it stopped (a dataset file changed, for example)."
                ) from exc
            dataloader = json.loads(base64.b64decode(reply.headers["x-cloudtuner-dataloader"]))
            return list(dataloader), reply.headers.get("x-cloudtuner-extract-root", "/datasets")
