"""What the server itself asks of the Hugging Face Hub: list a repository, push one file, check
and set its visibility. Plain HTTP (httpx) against ``HF_ENDPOINT`` (https://huggingface.co by
default), the Hub API that ``huggingface_hub`` speaks:

- ``GET /api/models/{repo}`` (``private``), ``PUT /api/models/{repo}/settings`` (``{"visibility": ...}``);
- ``GET /api/models/{repo}/tree/main?recursive=true`` (pages by the ``Link: <...>; rel="next"`` header;
  files carry ``size``, the git ``oid`` and, when stored with LFS, ``lfs.oid``: their SHA-256);
- ``POST /api/models/{repo}/commit/main`` with an NDJSON body: a ``header`` line (summary) and one
  ``file`` line per file (base64 content), for small files such as the model card.

Errors: :class:`HubError` (message without the token; ``status`` when the Hub answered).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_PAGES = 100


class HubError(Exception):
    """A Hub request failed; ``status`` is the HTTP status when the Hub answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub repository: ``sha256`` is known for LFS files, ``oid`` is the git blob id."""

    path: str
    size: int
    oid: str | None
    sha256: str | None


@dataclass
class HubClient:
    """Talks to one Hub endpoint with one token. Use as an async context manager."""

    endpoint: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"User-Agent": "cloudtuner"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._http = httpx.AsyncClient(
                base_url=self.endpoint.rstrip("/"),
                headers=headers,
                timeout=self.timeout,
                transport=self.transport,
                trust_env=True,
            )
        return self._http

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client().request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise HubError(
                f"Cannot reach the Hugging Face Hub at {self.endpoint} to {what}: {type(exc).__name__}."
            ) from None
        if response.status_code >= 300:
            detail = ""
            try:
                body = response.json()
                detail = str(body.get("error") or body.get("detail") or "") if isinstance(body, dict) else ""
            except ValueError:
                pass
            raise HubError(
                f"The Hugging Face Hub refused to {what} ({response.status_code}{': ' + detail if detail else ''}).",
                status=response.status_code,
            )
        return response

    @staticmethod
    def _repo(repo_id: str) -> str:
        return "/".join(quote(part, safe="") for part in repo_id.split("/"))

    async def is_private(self, repo_id: str) -> bool | None:
        """Return whether the repository is private (None if the Hub does not say).

        Raises:
            HubError: no such repository (404), no access, or the Hub is unreachable.
        """
        reply = (await self._request("GET", f"/api/models/{self._repo(repo_id)}", f"read {repo_id}")).json()
        if not isinstance(reply, dict):
            return None
        private = reply.get("private")
        if isinstance(private, bool):
            return private
        visibility = reply.get("visibility")
        return visibility != "public" if isinstance(visibility, str) else None

    async def set_private(self, repo_id: str, private: bool) -> None:
        """Make the repository private or public.

        Raises:
            HubError: refused or unreachable.
        """
        await self._request(
            "PUT",
            f"/api/models/{self._repo(repo_id)}/settings",
            f"change {repo_id}'s visibility",
            json={"visibility": "private" if private else "public"},
        )

    async def list_files(self, repo_id: str, revision: str = "main") -> list[HubFile]:
        """Return every file of the repository at ``revision``, by path.

        Raises:
            HubError: no such repository, refused, or unreachable.
        """
        url: str | None = f"/api/models/{self._repo(repo_id)}/tree/{quote(revision, safe='')}"
        params: dict[str, str] | None = {"recursive": "true"}
        files: list[HubFile] = []
        for _page in range(MAX_PAGES):
            if url is None:
                break
            response = await self._request("GET", url, f"list {repo_id}", params=params)
            entries = response.json()
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict) or entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else None
                files.append(
                    HubFile(
                        path=str(entry.get("path")),
                        size=int((lfs or {}).get("size") or entry.get("size") or 0),
                        oid=entry.get("oid") if isinstance(entry.get("oid"), str) else None,
                        sha256=str(lfs["oid"]) if lfs and isinstance(lfs.get("oid"), str) else None,
                    )
                )
            url = response.links.get("next", {}).get("url")
            params = None
        return sorted(files, key=lambda item: item.path)

    async def put_file(self, repo_id: str, path: str, content: bytes, summary: str) -> str | None:
        """Commit one small file (``path``) to the repository's main branch; return the commit id.

        Raises:
            HubError: refused (no write access, no such repository) or unreachable.
        """
        lines = [
            {"key": "header", "value": {"summary": summary, "description": ""}},
            {
                "key": "file",
                "value": {"content": base64.b64encode(content).decode(), "path": path, "encoding": "base64"},
            },
        ]
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        response = await self._request(
            "POST",
            f"/api/models/{self._repo(repo_id)}/commit/main",
            f"commit {path} to {repo_id}",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        reply = response.json()
        commit = reply.get("commitOid") if isinstance(reply, dict) else None
        return commit if isinstance(commit, str) else None
