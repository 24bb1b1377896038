"""The artifacts registry: every file delivered for a job, with its size, SHA-256, place and time.

Key contracts:

- **Local deliveries** (the built-in S3 endpoint) are recorded as they happen: :class:`ArtifactRecorder`
  is the endpoint's ``StorageObserver`` for ``<default bucket>/jobs/<job id>/``, so a PutObject,
  CopyObject or CompleteMultipartUpload there is in the registry before the client gets its reply,
  and a DeleteObject takes the row out. Writes to the folder of a job that does not exist are
  stored but not recorded.
- **Remote deliveries** (an external S3 bucket, the Hugging Face Hub) are recorded when the job ends,
  from a listing of the job's folder or repository (``services.deliveries``); that listing also runs
  for local deliveries and records anything the recorder missed.
- A file delivered again (same job, destination and place) updates its row: one row per file.
- Rows go with their job (``ON DELETE CASCADE``); the files stay where they were delivered unless
  the delete asks otherwise (:func:`delete_local_files`).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import ArtifactNotFoundError, ArtifactNotLocalError, JobNotFoundError
from cloudtuner.core.ids import is_sortable_id
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.db.tables import ArtifactRow, JobDeliveryRow, JobRow
from cloudtuner.schemas.artifacts import Artifact, ArtifactKind, ArtifactListResponse, DeliveryState, DeliveryStatus
from cloudtuner.schemas.publishing import PublishingDestination
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.publishing import job_folder
from cloudtuner.storage import FilesystemObjectStore, ObjectRemoved, ObjectWritten, S3Error
from cloudtuner.storage.objects import OpenObject

log = logging.getLogger(__name__)

JOBS_FOLDER = "jobs/"
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".pkl", ".tar"})
SAMPLE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm", ".wav", ".mp3"})
CONFIG_SUFFIXES = frozenset({".json", ".yaml", ".yml", ".toml"})
SAMPLE_FOLDERS = frozenset({"samples", "sample", "validation", "validation_images", "images"})


@dataclass(frozen=True)
class FoundFile:
    """A file found at a destination, to record: ``path`` inside the job's folder, ``location`` whole."""

    path: str
    location: str
    size_bytes: int
    delivered_at: datetime
    sha256: str | None = None
    etag: str | None = None
    content_type: str | None = None


def artifact_kind(path: str) -> ArtifactKind:
    """Return what a delivered file is, judged from its path inside the job's folder."""
    pure = PurePosixPath(path)
    parts = [part.lower() for part in pure.parts[:-1]]
    name, suffix = pure.name.lower(), pure.suffix.lower()
    if name == "readme.md":
        return ArtifactKind.MODEL_CARD
    if any(part.startswith("checkpoint") for part in parts):
        return ArtifactKind.CHECKPOINT
    if suffix in WEIGHT_SUFFIXES:
        return ArtifactKind.WEIGHTS
    if suffix in SAMPLE_SUFFIXES or any(part in SAMPLE_FOLDERS for part in parts):
        return ArtifactKind.SAMPLE
    if suffix in CONFIG_SUFFIXES:
        return ArtifactKind.CONFIG
    return ArtifactKind.OTHER


def location_hash(destination: str, location: str) -> str:
    """Return the key that makes a file's row unique within its job."""
    return hashlib.sha256(f"{destination}\n{location}".encode()).hexdigest()


def job_of_key(ctx: ServiceContext, bucket: str, key: str) -> tuple[str, str] | None:
    """Return ``(job id, path inside the job's folder)`` for a key of the built-in endpoint, or None."""
    if bucket != ctx.settings.storage_default_bucket or not key.startswith(JOBS_FOLDER):
        return None
    job_id, slash, path = key[len(JOBS_FOLDER) :].partition("/")
    if not slash or not path or not is_sortable_id(job_id):
        return None
    return job_id, path


def local_location(bucket: str, key: str) -> str:
    """Return the location of an object of the built-in endpoint."""
    return f"s3://{bucket}/{key}"


# --- writing ------------------------------------------------------------------------------------


async def record_files(
    ctx: ServiceContext, job_id: str, destination: str, files: list[FoundFile], *, session: AsyncSession | None = None
) -> int:
    """Record ``files`` delivered by ``job_id`` to ``destination`` (insert, or update the same place).

    Returns how many were recorded: none if the job does not exist (any more).
    """
    if not files:
        return 0
    if session is None:
        async with ctx.db.transaction() as own:
            return await record_files(ctx, job_id, destination, files, session=own)
    exists = (await session.execute(select(JobRow.id).where(JobRow.id == job_id))).first()
    if exists is None:
        return 0
    now = ctx.clock.now()
    table = ArtifactRow.__table__
    for found in files:
        values: dict[str, Any] = {
            "job_id": job_id,
            "destination": destination,
            "location_hash": location_hash(destination, found.location),
            "location": found.location,
            "path": found.path,
            "kind": artifact_kind(found.path).value,
            "size_bytes": found.size_bytes,
            "sha256": found.sha256,
            "etag": found.etag,
            "content_type": found.content_type or mimetypes.guess_type(found.path)[0],
            "delivered_at": found.delivered_at,
            "recorded_at": now,
        }
        # Both dialects' INSERTs have excluded and on_conflict_do_update; the declared return type does not.
        statement: Any = ctx.db.dialect.insert(table).values(values)  # type: ignore[arg-type]
        changed = {name: statement.excluded[name] for name in values if name not in ("job_id", "location_hash")}
        if found.sha256 is None:
            # A listing that does not tell the hash keeps the one recorded when the file was written.
            del changed["sha256"]
        await session.execute(statement.on_conflict_do_update(index_elements=["job_id", "location_hash"], set_=changed))
    return len(files)


async def forget_file(ctx: ServiceContext, job_id: str, destination: str, location: str) -> None:
    """Remove the row of a file that was deleted from its destination."""
    async with ctx.db.transaction() as session:
        await session.execute(
            delete(ArtifactRow).where(
                ArtifactRow.job_id == job_id, ArtifactRow.location_hash == location_hash(destination, location)
            )
        )


class ArtifactRecorder:
    """The built-in endpoint's ``StorageObserver``: records what is written under ``jobs/<job id>/``.

    A PutObject's SHA-256 comes computed from the upload; for other writes (multipart, copy) the
    file is read once, in a worker thread, before the reply.
    """

    def __init__(self, ctx: ServiceContext, store: FilesystemObjectStore) -> None:
        """Record into ``ctx``'s database what is written to ``store``."""
        self._ctx = ctx
        self._store = store

    def tracks(self, bucket: str, key: str) -> bool:
        """Return True for keys in a job's folder of the default bucket."""
        return job_of_key(self._ctx, bucket, key) is not None

    async def object_written(self, event: ObjectWritten) -> None:
        """Record the object as an artifact of its job (local destination)."""
        info = event.info
        found = job_of_key(self._ctx, info.bucket, info.key)
        if found is None:
            return
        job_id, path = found
        sha256 = event.sha256
        if sha256 is None:
            try:
                current, sha256 = await self._store.sha256_of(info.bucket, info.key)
            except S3Error:
                return  # deleted meanwhile: nothing to record
            if current.etag != info.etag:
                return  # replaced meanwhile: the newer write records itself
        file = FoundFile(
            path=path,
            location=local_location(info.bucket, info.key),
            size_bytes=info.size,
            delivered_at=info.last_modified,
            sha256=sha256,
            etag=info.etag,
            content_type=info.content_type,
        )
        if not await record_files(self._ctx, job_id, PublishingDestination.LOCAL.value, [file]):
            log.info("stored %s/%s for job %s, which does not exist: not recorded", info.bucket, info.key, job_id)

    async def object_removed(self, event: ObjectRemoved) -> None:
        """Take a deleted object out of its job's artifacts."""
        found = job_of_key(self._ctx, event.bucket, event.key)
        if found is not None:
            location = local_location(event.bucket, event.key)
            await forget_file(self._ctx, found[0], PublishingDestination.LOCAL.value, location)


# --- reading ------------------------------------------------------------------------------------


def _check_can_view(principal: Principal, job_id: str, owner_id: str) -> None:
    if principal.can(Permission.JOB_VIEW_ALL) or (owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN)):
        return
    raise JobNotFoundError(f"No job has the id {job_id!r}.")


def artifact_view(row: ArtifactRow, publishing: dict[str, Any] | None = None) -> Artifact:
    """Return the wire form of an artifact row (``publishing``: its job's stored settings, for links)."""
    destination = PublishingDestination(row.destination)
    download_url = web_url = None
    if destination is PublishingDestination.LOCAL:
        download_url = f"/api/cloud/jobs/{row.job_id}/artifacts/{row.id}/download"
    elif destination is PublishingDestination.HUGGINGFACE and row.location.startswith("hf://"):
        repo_and_path = row.location.removeprefix("hf://")
        owner, _, rest = repo_and_path.partition("/")
        name, _, path = rest.partition("/")
        web_url = f"https://huggingface.co/{owner}/{name}/blob/main/{path}"
    elif destination is PublishingDestination.S3 and publishing and publishing.get("s3_public_base_url"):
        bucket_and_key = row.location.removeprefix("s3://")
        key = bucket_and_key.partition("/")[2]
        web_url = f"{str(publishing['s3_public_base_url']).rstrip('/')}/{key}"
    return Artifact(
        id=row.id,
        job_id=row.job_id,
        destination=destination,
        kind=ArtifactKind(row.kind),
        path=row.path,
        location=row.location,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        etag=row.etag,
        content_type=row.content_type,
        delivered_at=row.delivered_at,
        download_url=download_url,
        web_url=web_url,
    )


async def load_artifacts(session: AsyncSession, job_id: str, publishing: dict[str, Any] | None) -> list[Artifact]:
    """Return a job's artifacts, by path, inside the caller's session."""
    rows = await session.scalars(
        select(ArtifactRow).where(ArtifactRow.job_id == job_id).order_by(ArtifactRow.path, ArtifactRow.id)
    )
    return [artifact_view(row, publishing) for row in rows]


def delivery_view(row: JobDeliveryRow, location: str | None) -> DeliveryStatus:
    """Return the wire form of a job's delivery row."""
    return DeliveryStatus(
        destination=row.destination,
        state=DeliveryState(row.state),
        location=location,
        reported=row.reported,
        error=row.error,
        attempts=row.attempts,
        finished_at=row.finished_at,
    )


def delivery_location(ctx: ServiceContext, destination: str, publishing: dict[str, Any] | None, job_id: str) -> str:
    """Return the folder or repository a job delivers to, as a location."""
    if destination == PublishingDestination.HUGGINGFACE.value and publishing:
        return f"hf://{publishing.get('hub_model_id')}"
    if destination == PublishingDestination.S3.value and publishing:
        return f"s3://{publishing.get('s3_bucket')}/{job_folder(publishing, job_id)}/"
    return local_location(ctx.settings.storage_default_bucket, f"{JOBS_FOLDER}{job_id}/")


async def list_artifacts(ctx: ServiceContext, principal: Principal, job_id: str) -> ArtifactListResponse:
    """Return the files a job delivered and the state of its delivery.

    Raises:
        JobNotFoundError: no such job the caller may see.
    """
    async with ctx.db.read() as session:
        job = (
            await session.execute(select(JobRow.owner_id, JobRow.publishing).where(JobRow.id == job_id))
        ).one_or_none()
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        _check_can_view(principal, job_id, job.owner_id)
        artifacts = await load_artifacts(session, job_id, job.publishing)
        delivery = await session.get(JobDeliveryRow, job_id)
        status = None
        if delivery is not None:
            status = delivery_view(delivery, delivery_location(ctx, delivery.destination, job.publishing, job_id))
    return ArtifactListResponse(
        job_id=job_id,
        artifacts=artifacts,
        total_bytes=sum(a.size_bytes for a in artifacts),
        delivery=status,
    )


async def open_local_artifact(
    ctx: ServiceContext, principal: Principal, job_id: str, artifact_id: int, store: FilesystemObjectStore
) -> tuple[Artifact, OpenObject]:
    """Return a local artifact and its file opened for reading; the caller streams or closes it.

    Raises:
        JobNotFoundError: no such job the caller may see.
        ArtifactNotFoundError: the job has no such artifact, or its file is gone.
        ArtifactNotLocalError: the artifact was delivered elsewhere (S3, the Hub).
    """
    async with ctx.db.read() as session:
        job = (await session.execute(select(JobRow.owner_id).where(JobRow.id == job_id))).one_or_none()
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        _check_can_view(principal, job_id, job.owner_id)
        row = await session.get(ArtifactRow, artifact_id)
        if row is None or row.job_id != job_id:
            raise ArtifactNotFoundError(f"Job {job_id} has no artifact {artifact_id}.")
        artifact = artifact_view(row)
    if artifact.destination is not PublishingDestination.LOCAL:
        raise ArtifactNotLocalError(
            f"Artifact {artifact_id} was delivered to {artifact.location}; fetch it from there.",
            location=artifact.location,
        )
    bucket, _, key = artifact.location.removeprefix("s3://").partition("/")
    try:
        opened = await store.open_object(bucket, key)
    except S3Error:
        raise ArtifactNotFoundError(f"The file of artifact {artifact_id} is no longer on this server.") from None
    return artifact, opened


async def delete_local_files(ctx: ServiceContext, store: FilesystemObjectStore, job_id: str) -> int:
    """Delete the job's folder of the built-in endpoint (``jobs/<job id>/``); return how many files.

    Call after the job is deleted: nothing records the deletions.
    """
    try:
        return await store.delete_prefix(ctx.settings.storage_default_bucket, f"{JOBS_FOLDER}{job_id}/")
    except S3Error:
        return 0
