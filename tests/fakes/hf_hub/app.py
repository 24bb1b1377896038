"""The fake Hub's HTTP API: the parts of huggingface.co that ``huggingface_hub`` and cloudtuner use.

Model repositories only, one branch (``main``), state in memory:

- ``POST /api/repos/create`` (``name``, ``organization``, ``visibility``/``private``; 409 if it exists);
- ``GET /api/models/{owner}/{name}`` and ``.../revision/{rev}`` (``id``, ``private``, ``sha``, ``siblings``);
- ``PUT /api/models/{owner}/{name}/settings`` (``visibility`` or ``private``);
- ``POST /api/models/{owner}/{name}/preupload/{rev}``: ``lfs`` for weights-like files and anything
  over 10 MB, ``regular`` otherwise;
- ``POST /{owner}/{name}.git/info/lfs/objects/batch`` (basic transfer) with upload and verify actions
  served by this fake (``PUT /_lfs/{oid}`` checks the bytes' SHA-256, ``POST /_lfs/verify``);
- ``POST /api/models/{owner}/{name}/commit/{rev}``: NDJSON ``header``, ``file`` (base64),
  ``lfsFile`` (an uploaded oid), ``deletedFile``;
- ``GET /api/models/{owner}/{name}/tree/{rev}[/{path}]`` (``recursive``; ``lfs.oid`` is the SHA-256);
- ``GET /api/whoami-v2``, ``POST /api/validate-yaml``.

Every ``/api`` and ``.git`` request needs ``Authorization: Bearer <token>`` with a token of the
config (401 otherwise); a private repository is hidden (404) from a request without one.
``GET /_fake/repos`` shows the state, ``POST /_fake/reset`` clears it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".tar", ".zip")
LFS_SIZE = 10 * 1024 * 1024


@dataclass
class HubFile:
    """A file of a repository: its bytes (regular) or its LFS oid (sha256) and size."""

    path: str
    size: int
    sha256: str
    lfs: bool
    content: bytes = b""

    @property
    def git_oid(self) -> str:
        """The git blob id of the file (of its LFS pointer, for LFS files)."""
        data = self.content if not self.lfs else f"version lfs\noid sha256:{self.sha256}\nsize {self.size}\n".encode()
        return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    """A model repository."""

    repo_id: str
    private: bool
    files: dict[str, HubFile] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


@dataclass
class HubConfig:
    """Tokens accepted (each names the user it belongs to)."""

    tokens: dict[str, str] = field(default_factory=lambda: {"hf_fakeHubToken": "cloudtuner-test"})


class HubState:
    """Everything the fake remembers; thread-safe."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.lfs.clear()
            self.requests.clear()

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "repos": {
                    repo_id: {
                        "private": repo.private,
                        "commits": list(repo.commits),
                        "files": {
                            f.path: {"size": f.size, "sha256": f.sha256, "lfs": f.lfs} for f in repo.files.values()
                        },
                    }
                    for repo_id, repo in self.repos.items()
                },
                "requests": list(self.requests),
            }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"X-Error-Message": message})


def _user(state: HubState, request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return None
    return state.config.tokens.get(auth[7:].strip())


def _repo_id(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['name']}"


def build_app(state: HubState) -> Starlette:
    """Return the fake Hub's ASGI app over ``state``."""

    def find_repo(request: Request, *, write: bool = False) -> Repo | JSONResponse:
        user = _user(state, request)
        if write and user is None:
            return _error(401, "Invalid credentials in Authorization header")
        with state.lock:
            repo = state.repos.get(_repo_id(request))
        if repo is None or (repo.private and user is None):
            return _error(404, "Repository not found")
        return repo

    async def record(request: Request) -> None:
        with state.lock:
            state.requests.append({"method": request.method, "path": request.url.path})

    async def whoami(request: Request) -> Response:
        user = _user(state, request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        return JSONResponse({"type": "user", "name": user, "auth": {"accessToken": {"role": "write"}}})

    async def create_repo(request: Request) -> Response:
        await record(request)
        user = _user(state, request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        body = await request.json()
        owner = body.get("organization") or user
        repo_id = f"{owner}/{body['name']}"
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        with state.lock:
            if repo_id in state.repos:
                return JSONResponse(
                    {"error": "You already created this model repo", "url": f"{request.base_url}{repo_id}"},
                    status_code=409,
                )
            state.repos[repo_id] = Repo(repo_id=repo_id, private=private)
        return JSONResponse({"url": f"{str(request.base_url).rstrip('/')}/{repo_id}", "name": repo_id})

    async def model_info(request: Request) -> Response:
        repo = find_repo(request)
        if isinstance(repo, JSONResponse):
            return repo
        with state.lock:
            siblings = [{"rfilename": path} for path in sorted(repo.files)]
            return JSONResponse(
                {
                    "_id": hashlib.md5(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
                    "id": repo.repo_id,
                    "modelId": repo.repo_id,
                    "private": repo.private,
                    "sha": repo.sha,
                    "siblings": siblings,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
            )

    async def settings(request: Request) -> Response:
        await record(request)
        repo = find_repo(request, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        with state.lock:
            if "visibility" in body:
                repo.private = body["visibility"] != "public"
            elif "private" in body:
                repo.private = bool(body["private"])
        return JSONResponse({})

    async def preupload(request: Request) -> Response:
        repo = find_repo(request, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        files = []
        for item in body.get("files", []):
            path, size = str(item["path"]), int(item.get("size", 0))
            lfs = path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE
            existing = repo.files.get(path)
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.git_oid if existing else None,
                }
            )
        return JSONResponse({"files": files, "commitOid": repo.sha})

    async def lfs_batch(request: Request) -> Response:
        await record(request)
        repo = find_repo(request, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        base = str(request.base_url).rstrip("/")
        objects = []
        for item in body.get("objects", []):
            oid, size = str(item["oid"]), int(item["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            with state.lock:
                present = oid in state.lfs
            if not present:
                entry["actions"] = {
                    "upload": {"href": f"{base}/_lfs/{oid}", "header": {}},
                    "verify": {"href": f"{base}/_lfs/verify", "header": {}},
                }
            objects.append(entry)
        return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    async def lfs_put(request: Request) -> Response:
        await record(request)
        oid = request.path_params["oid"]
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != oid:
            return _error(400, "The uploaded content does not match its oid")
        with state.lock:
            state.lfs[oid] = data
        return Response(status_code=200)

    async def lfs_verify(request: Request) -> Response:
        body = await request.json()
        with state.lock:
            data = state.lfs.get(str(body.get("oid")))
        if data is None or len(data) != int(body.get("size", -1)):
            return _error(404, "Object not uploaded")
        return JSONResponse({})

    async def commit(request: Request) -> Response:
        await record(request)
        repo = find_repo(request, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        lines = [json.loads(line) for line in (await request.body()).decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return _error(400, "The commit needs a header line first")
        with state.lock:
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    data = base64.b64decode(value["content"])
                    path = value["path"]
                    repo.files[path] = HubFile(path, len(data), hashlib.sha256(data).hexdigest(), False, data)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in state.lfs:
                        return _error(400, f"LFS object {oid} was not uploaded")
                    repo.files[value["path"]] = HubFile(value["path"], int(value["size"]), oid, True)
                elif key == "deletedFile":
                    repo.files.pop(value["path"], None)
                else:
                    return _error(400, f"Unsupported commit operation {key!r}")
            oid = hashlib.sha1(json.dumps(lines).encode(), usedforsecurity=False).hexdigest()
            repo.commits.append(oid)
        url = f"{str(request.base_url).rstrip('/')}/{repo.repo_id}/commit/{oid}"
        return JSONResponse({"commitUrl": url, "commitOid": oid, "success": True, "pullRequestUrl": None})

    async def tree(request: Request) -> Response:
        repo = find_repo(request)
        if isinstance(repo, JSONResponse):
            return repo
        folder = request.path_params.get("path", "").strip("/")
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        with state.lock:
            for path in sorted(repo.files):
                if folder and not path.startswith(folder + "/"):
                    continue
                rest = path[len(folder) + 1 :] if folder else path
                if "/" in rest and not recursive:
                    folders.add((folder + "/" if folder else "") + rest.split("/", 1)[0])
                    continue
                item = repo.files[path]
                entry: dict[str, Any] = {"type": "file", "oid": item.git_oid, "size": item.size, "path": path}
                if item.lfs:
                    entry["lfs"] = {"oid": item.sha256, "size": item.size, "pointerSize": 134}
                entries.append(entry)
        entries = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)] + entries
        return JSONResponse(entries)

    async def validate_yaml(request: Request) -> Response:
        return JSONResponse({"errors": [], "warnings": []})

    async def fake_repos(request: Request) -> Response:
        return JSONResponse(state.dump())

    async def fake_reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    repo = "/api/models/{owner}/{name}"
    return Starlette(
        routes=[
            Route("/api/whoami-v2", whoami),
            Route("/api/repos/create", create_repo, methods=["POST"]),
            Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
            Route(repo, model_info),
            Route(repo + "/revision/{revision}", model_info),
            Route(repo + "/settings", settings, methods=["PUT"]),
            Route(repo + "/preupload/{revision}", preupload, methods=["POST"]),
            Route(repo + "/commit/{revision}", commit, methods=["POST"]),
            Route(repo + "/tree/{revision}", tree),
            Route(repo + "/tree/{revision}/{path:path}", tree),
            Route("/{owner}/{name}.git/info/lfs/objects/batch", lfs_batch, methods=["POST"]),
            Route("/_lfs/verify", lfs_verify, methods=["POST"]),
            Route("/_lfs/{oid}", lfs_put, methods=["PUT"]),
            Route("/_fake/repos", fake_repos),
            Route("/_fake/reset", fake_reset, methods=["POST"]),
        ]
    )
