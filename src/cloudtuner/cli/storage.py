"""`cloudtuner storage credentials ...`: access keys of the server's built-in S3 endpoint."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cloudtuner.cli.common import ApiKeyOption, JsonOption, UrlOption, ago, client, console, err_console, print_json
from cloudtuner.schemas.storage import (
    RevokeStorageCredentialResponse,
    StorageCredential,
    StorageCredentialCreatedResponse,
    StorageCredentialKind,
    StorageCredentialListResponse,
)

CREDENTIALS_PATH = "/api/cloud/storage/credentials"

app = typer.Typer(help="The server's built-in S3-compatible storage endpoint.", no_args_is_help=True)
credentials_app = typer.Typer(help="Access keys of the storage endpoint.", no_args_is_help=True)
app.add_typer(credentials_app, name="credentials")

STATUS_STYLES = {"active": "green", "expired": "yellow", "revoked": "dim"}


def _scope(credential: StorageCredential) -> str:
    if credential.bucket is None and credential.prefix is None:
        return "everything"
    return f"s3://{credential.bucket or '*'}/{credential.prefix or ''}"


def _until(credential: StorageCredential) -> str:
    if credential.expires_at is not None:
        return f"{credential.expires_at:%Y-%m-%d %H:%M} UTC"
    if credential.kind is StorageCredentialKind.JOB:
        return "job end + grace"
    return "until revoked"


@credentials_app.command()
def create(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    bucket: Annotated[str | None, typer.Option(help="Limit the key to this bucket.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Limit the key to keys starting with this, e.g. models/.")] = None,
    name: Annotated[str | None, typer.Option(help="A note to recognise the key by.")] = None,
    expires_days: Annotated[
        float | None, typer.Option("--expires-days", help="Days until the key stops working.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an access key; its secret is printed once and cannot be shown again."""
    body: dict[str, Any] = {"bucket": bucket, "prefix": prefix, "name": name, "expires_days": expires_days}
    with client(url, api_key) as api:
        reply = StorageCredentialCreatedResponse.model_validate(
            api.request("POST", CREDENTIALS_PATH, json={k: v for k, v in body.items() if v is not None})
        )
    if as_json:
        print_json(reply)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("Access key id", reply.access_key_id),
        ("Secret access key", reply.secret_access_key),
        ("Endpoint URL", reply.endpoint_url),
        ("Scope", _scope(reply)),
        ("Expires", _until(reply)),
    ):
        table.add_row(label, value)
    console.print(table)
    err_console.print("[yellow]Save the secret now: it is not shown again.[/]")
    console.print(
        "\nFor the aws CLI and boto3:\n"
        f"  export AWS_ACCESS_KEY_ID={reply.access_key_id}\n"
        f"  export AWS_SECRET_ACCESS_KEY={reply.secret_access_key}\n"
        f"  export AWS_ENDPOINT_URL_S3={reply.endpoint_url}\n"
        f"  export AWS_DEFAULT_REGION={reply.region}",
        soft_wrap=True,
    )


@credentials_app.command("list")
def list_credentials(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    kind: Annotated[StorageCredentialKind | None, typer.Option(help="Only admin keys, or only jobs' keys.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also revoked and expired keys.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many keys.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """List access keys, newest first (never their secrets)."""
    params: dict[str, Any] = {"limit": limit, "all": "true" if show_all else "false"}
    if kind is not None:
        params["kind"] = kind.value
    with client(url, api_key) as api:
        reply = StorageCredentialListResponse.model_validate(api.request("GET", CREDENTIALS_PATH, params=params))
    if as_json:
        print_json(reply)
        return
    if not reply.credentials:
        console.print("No storage keys. Create one with `cloudtuner storage credentials create`.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("ACCESS KEY ID", "KIND", "STATUS", "NAME / JOB", "SCOPE", "EXPIRES", "AGE"):
        table.add_column(column, no_wrap=column in ("ACCESS KEY ID", "STATUS"))
    for credential in reply.credentials:
        status = credential.status.value
        table.add_row(
            credential.access_key_id,
            credential.kind.value,
            f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]",
            credential.name or credential.job_id or "-",
            _scope(credential),
            _until(credential),
            ago(credential.created_at),
        )
    console.print(table)


@credentials_app.command()
def revoke(
    access_key_id: Annotated[str, typer.Argument(help="The access key id to revoke.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an access key; requests signed with it are refused within seconds."""
    with client(url, api_key) as api:
        reply = RevokeStorageCredentialResponse.model_validate(
            api.request("DELETE", f"{CREDENTIALS_PATH}/{access_key_id}")
        )
    if as_json:
        print_json(reply)
    else:
        console.print(f"Revoked storage key {reply.credential.access_key_id}.")
