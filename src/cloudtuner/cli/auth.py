"""`cloudtuner login|logout|whoami`, `keys`, `users`, `audit` (over HTTP) and `admin` (on the server).

`login` saves the session token in the user's config dir (mode 0600, see
``client.credentials``); every later command sends it, unless ``--api-key`` or
``CLOUDTUNER_API_KEY`` gives a key. `admin` is the exception to "the CLI only talks HTTP": it
writes to the server's store, through ``cloudtuner.api.admin_cli``, loaded by its import string.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cloudtuner.cli.common import (
    ApiKeyOption,
    CommandError,
    JsonOption,
    UrlOption,
    ago,
    client,
    console,
    err_console,
    print_json,
)
from cloudtuner.client import accounts, credentials
from cloudtuner.client.http import ClientError
from cloudtuner.core.errors import CloudtunerError

ADMIN_MODULE = "cloudtuner.api.admin_cli"
"""Where `cloudtuner admin` finds its commands; imported by name only (it is server code)."""

PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (for scripts) instead of asking.")
]

keys_app = typer.Typer(help="Your API keys (stk_...) for scripts and CI.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles (needs user.manage).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of every change (needs audit.view).", no_args_is_help=True)
admin_app = typer.Typer(
    help="Run on the server's machine: manage users in its store directly (e.g. the first admin).",
    no_args_is_help=True,
)


def read_password(from_stdin: bool, *, confirm: bool = False, prompt: str = "Password") -> str:
    """Return a password from stdin (one line, its newline removed) or asked on the terminal.

    Raises:
        CommandError: stdin is empty, or there is no terminal to ask on.
    """
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise CommandError("No password on stdin.")
        return password
    if not sys.stdin.isatty():
        raise CommandError("There is no terminal to ask for the password on: pass it on stdin with --password-stdin.")
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


# --- signing in ---------------------------------------------------------------------------------


def login(
    url: UrlOption = None,
    username: Annotated[str | None, typer.Option("--username", "-u", help="Your username.")] = None,
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Sign in to a server and save the session for the commands that follow."""
    if username is None:
        if not sys.stdin.isatty():
            raise CommandError("Give --username (there is no terminal to ask on).")
        username = typer.prompt("Username")
    password = read_password(password_stdin)
    with client(url, None) as api:
        reply = accounts.login(api, username, password)
        server = api.url
    try:
        path = credentials.save_token(server, reply.session_token, reply.user.username)
    except (OSError, credentials.CredentialsFileError) as exc:
        raise CommandError(f"Signed in, but the session could not be saved: {exc}") from None
    console.print(
        f"Logged in to {server} as {reply.user.username} ({reply.user.role}). Session saved in {path}; "
        f"it lasts until {reply.expires_at:%Y-%m-%d %H:%M} UTC."
    )


def logout(url: UrlOption = None) -> None:
    """Sign out: end the saved session on the server and forget it here."""
    with client(url, None) as api:
        server = api.url
        try:
            token = credentials.load_token(server)
        except credentials.CredentialsFileError as exc:
            raise CommandError(str(exc)) from None
        if token is None:
            console.print(f"Not logged in to {server}.")
            return
        try:
            accounts.logout(api)
        except ClientError as exc:
            if exc.status != 401:  # an expired session is as good as ended
                raise
    credentials.forget_token(server)
    console.print(f"Logged out of {server}.")


def whoami(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Show who the server takes you for and what you may do."""
    with client(url, api_key) as api:
        reply = accounts.who_am_i(api)
    if as_json:
        print_json(reply)
        return
    if reply.user is None:
        console.print("Single-user mode: every local request may do everything.")
        return
    how = f"API key {reply.api_key.name} ({reply.api_key.prefix}...)" if reply.api_key else reply.via
    console.print(f"{reply.user.username} ({reply.user.role}) via {how}")
    console.print("permissions: " + ", ".join(reply.permissions))


# --- API keys -----------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    name: str,
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="A permission for the key (repeat), e.g. job.submit, job.view.own."),
    ],
    expires_days: Annotated[float | None, typer.Option(help="Days until the key stops working.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; the key is printed (alone on stdout) this once."""
    with client(url, api_key) as api:
        reply = accounts.create_api_key(api, name, scope, expires_days)
    if as_json:
        print_json(reply)
        return
    sys.stdout.write(reply.key + "\n")
    expiry = f"until {reply.expires_at:%Y-%m-%d}" if reply.expires_at else "until revoked"
    err_console.print(f"API key {reply.name} ({reply.id}), {expiry}: {', '.join(reply.scoped_permissions)}")
    if reply.dropped_permissions:
        err_console.print(f"Not granted (you do not hold them): {', '.join(reply.dropped_permissions)}")
    err_console.print("Store it now: it is not shown again.")


@keys_app.command("list")
def list_keys(
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's keys (needs user.manage).")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your API keys (never the keys themselves)."""
    with client(url, api_key) as api:
        reply = accounts.list_api_keys(api, all_users=all_users)
    if as_json:
        print_json(reply)
        return
    if not reply.api_keys:
        console.print("No API keys. Create one with `cloudtuner keys create NAME --scope job.submit`.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("ID", "NAME", "PREFIX", "OWNER", "STATUS", "SCOPES", "LAST USED", "EXPIRES"):
        table.add_column(column)
    for key in reply.api_keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix,
            key.owner,
            key.status.value,
            ", ".join(key.scoped_permissions),
            ago(key.last_used_at) if key.last_used_at else "never",
            f"{key.expires_at:%Y-%m-%d}" if key.expires_at else "-",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(key_id: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Revoke an API key: it stops working at once."""
    with client(url, api_key) as api:
        reply = accounts.revoke_api_key(api, key_id)
    console.print(f"Revoked API key {reply.api_key.name} ({reply.api_key.id}).")


# --- users --------------------------------------------------------------------------------------


@users_app.command("list")
def list_users(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List users with their roles."""
    with client(url, api_key) as api:
        reply = accounts.list_users(api)
    if as_json:
        print_json(reply)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("USERNAME", "ROLE", "TEAM", "ACTIVE", "LOCKED", "LAST LOGIN"):
        table.add_column(column)
    for user in reply.users:
        table.add_row(
            user.username,
            user.role,
            user.team or "-",
            "yes" if user.active else "no",
            "yes" if user.locked else "",
            ago(user.last_login_at),
        )
    console.print(table)


@users_app.command("create")
def create_user(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, researcher, lead or admin.")] = "researcher",
    team: Annotated[str | None, typer.Option(help="The user's team (per-team queue limits).")] = None,
    password_stdin: PasswordStdinOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a user with a password (asked, or read with --password-stdin)."""
    password = read_password(password_stdin, confirm=True)
    with client(url, api_key) as api:
        reply = accounts.create_user(api, username, password, role, team)
    in_team = f" in team {reply.user.team}" if reply.user.team else ""
    console.print(f"Created {reply.user.role} {reply.user.username}{in_team}.")


@users_app.command("update")
def update_user(
    username: str,
    role: Annotated[str | None, typer.Option(help="A new role.")] = None,
    team: Annotated[str | None, typer.Option(help="A new team.")] = None,
    no_team: Annotated[bool, typer.Option("--no-team", help="Take the user out of their team.")] = False,
    active: Annotated[bool | None, typer.Option("--enable/--disable", help="Let the user in, or not.")] = None,
    unlock: Annotated[bool, typer.Option(help="Lift a lockout after failed sign-ins.")] = False,
    set_password: Annotated[bool, typer.Option("--set-password", help="Set a new password (asked).")] = False,
    password_stdin: PasswordStdinOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Change a user's role or team, enable or disable them, unlock them or set their password."""
    if team is not None and no_team:
        raise CommandError("Give --team or --no-team, not both.")
    changes: dict[str, Any] = {}
    if role is not None:
        changes["role"] = role
    if team is not None or no_team:
        changes["team"] = team
    if active is not None:
        changes["active"] = active
    if unlock:
        changes["unlock"] = True
    if set_password or password_stdin:
        changes["password"] = read_password(password_stdin, confirm=True, prompt="New password")
    if not changes:
        raise CommandError(
            "Nothing to change: give --role, --team/--no-team, --enable/--disable, --unlock or --set-password."
        )
    with client(url, api_key) as api:
        reply = accounts.update_user(api, username, changes)
    user = reply.user
    team_text = f"team {user.team}" if user.team else "no team"
    console.print(f"{user.username}: {user.role}, {team_text}, {'active' if user.active else 'disabled'}.")


@users_app.command("delete")
def delete_user(
    username: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a user with their sessions and API keys (their jobs stay)."""
    if not yes and not typer.confirm(f"Delete user {username} and their API keys?"):
        raise typer.Exit(1)
    with client(url, api_key) as api:
        accounts.delete_user(api, username)
    console.print(f"Deleted user {username}.")


# --- audit --------------------------------------------------------------------------------------


@audit_app.command("list")
def list_audit(
    limit: Annotated[int, typer.Option(help="How many entries.")] = 50,
    actor: Annotated[str | None, typer.Option(help="Only this username's.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. submit_job, login.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest audit entries."""
    with client(url, api_key) as api:
        reply = accounts.list_audit(api, limit=limit, actor=actor, action=action)
    if as_json:
        print_json(reply)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("SEQ", "WHEN (UTC)", "ACTOR", "VIA", "ACTION", "TARGET", "FROM", "OUTCOME"):
        table.add_column(column)
    for entry in reply.entries:
        table.add_row(
            str(entry.seq),
            f"{entry.at:%Y-%m-%d %H:%M:%S}",
            entry.actor_name,
            entry.via,
            entry.action,
            entry.target,
            entry.source_ip or "-",
            f"{entry.outcome} {entry.status or ''}".strip(),
        )
    console.print(table)


@audit_app.command("verify")
def verify_audit(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Check the audit log's hash chain; exit 1 if it is broken."""
    with client(url, api_key) as api:
        reply = accounts.verify_audit(api)
    if as_json:
        print_json(reply)
    if not reply.valid:
        where = f" at entry {reply.broken_at}" if reply.broken_at else ""
        raise CommandError(f"The audit log is broken{where}: {reply.problem}")
    if not as_json:
        span = f"entries {reply.first_seq}-{reply.head_seq}" if reply.checked else "no entries"
        console.print(f"Audit log intact: {reply.checked} checked ({span}); head hash {reply.head_hash}.")


# --- admin (on the server's machine) ------------------------------------------------------------


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The server's data dir.", show_default="~/.cloudtuner or CLOUDTUNER_DATA_DIR"),
]


def _admin(function: str, *args: Any) -> str:
    try:
        result: str = getattr(importlib.import_module(ADMIN_MODULE), function)(*args)
    except CloudtunerError as exc:
        raise CommandError(exc.message) from None
    return result


@admin_app.command("create")
def admin_create(
    username: str,
    password_stdin: PasswordStdinOption = False,
    data_dir: DataDirOption = None,
    role: Annotated[str, typer.Option(help="The new user's role.")] = "admin",
) -> None:
    """Create an admin (the first one switches the server to multi-user mode)."""
    password = read_password(password_stdin, confirm=True)
    console.print(_admin("create_admin", username, password, data_dir, role))


@admin_app.command("reset-password")
def admin_reset_password(
    username: str, password_stdin: PasswordStdinOption = False, data_dir: DataDirOption = None
) -> None:
    """Set a user's password and unlock them (when no admin can sign in)."""
    password = read_password(password_stdin, confirm=True, prompt="New password")
    console.print(_admin("reset_password", username, password, data_dir))


def register(app: typer.Typer) -> None:
    """Add these commands to the `cloudtuner` app."""
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(admin_app, name="admin")
