"""Roles and scopes, the audit hash, reading credentials from headers, the CLI's token file."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.requests import Request

from cloudtuner.api.auth_request import read_credentials
from cloudtuner.api.errors import status_for
from cloudtuner.client import credentials
from cloudtuner.core import errors
from cloudtuner.core.permissions import ALL_PERMISSIONS, Permission
from cloudtuner.core.roles import Role, parse_role, parse_scopes, permissions_for
from cloudtuner.services.audit import entry_hash, outcome_for
from cloudtuner.services.auth import csrf_token_for
from cloudtuner.services.users import check_new_password, normalize_username


def test_roles() -> None:
    viewer, researcher, lead = (permissions_for(r) for r in (Role.VIEWER, Role.RESEARCHER, Role.LEAD))
    assert permissions_for(Role.ADMIN) == ALL_PERMISSIONS
    assert all(Permission.ACCOUNT_MANAGE in p for p in (viewer, researcher, lead))
    assert Permission.JOB_VIEW_ALL in viewer and Permission.JOB_SUBMIT not in viewer
    assert not {p for p in researcher if p.value.endswith(".all")}
    assert researcher < lead and {Permission.JOB_CANCEL_ALL, Permission.JOB_VIEW_ALL} <= lead
    assert not {Permission.USER_MANAGE, Permission.PROVIDER_MANAGE, Permission.AUDIT_VIEW} & lead
    assert parse_role(" Lead ") is Role.LEAD
    with pytest.raises(errors.InvalidScopeError, match="viewer, researcher, lead, admin"):
        parse_role("owner")


def test_scopes() -> None:
    assert parse_scopes(["job.submit", "JOB.VIEW.OWN"]) == {Permission.JOB_SUBMIT, Permission.JOB_VIEW_OWN}
    assert parse_scopes(["config.*"]) == {Permission.CONFIG_VIEW, Permission.CONFIG_EDIT}
    assert parse_scopes(["*"]) == ALL_PERMISSIONS
    for bad in ("job.fly", "nothing.*", ""):
        with pytest.raises(errors.InvalidScopeError, match=r"job\.submit"):
            parse_scopes([bad])


def test_audit_hash() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    fields = {"seq": 1, "at": at, "action": "login", "detail": {"b": 1, "a": [1, 2]}}
    digest = entry_hash("0" * 64, fields)
    assert len(digest) == 64 and digest == entry_hash("0" * 64, dict(fields))
    assert digest == entry_hash("0" * 64, {**fields, "at": at.astimezone(timezone(timedelta(hours=9)))})
    assert digest != entry_hash("1" * 64, fields)
    assert digest != entry_hash("0" * 64, {**fields, "action": "logout"})
    assert [outcome_for(s) for s in (200, 202, 401, 403, 404, 409, 429, 500)] == [
        "success",
        "success",
        "denied",
        "denied",
        "failed",
        "failed",
        "failed",
        "error",
    ]


def test_usernames_passwords_csrf() -> None:
    assert normalize_username("  Alice.Smith@Lab ") == "alice.smith@lab"
    for bad in ("", "-x", "a b", "x" * 65, "émile"):
        with pytest.raises(errors.InvalidUsernameError):
            normalize_username(bad)
    with pytest.raises(errors.WeakPasswordError):
        check_new_password("7chars!")
    check_new_password("8 chars!")
    assert csrf_token_for("sess_a") == csrf_token_for("sess_a") != csrf_token_for("sess_b")


def test_auth_error_statuses() -> None:
    assert status_for(errors.InvalidCredentialsError()) == 401
    assert status_for(errors.InvalidTokenError()) == 401
    assert status_for(errors.LoginThrottledError()) == 429
    assert status_for(errors.CsrfTokenError()) == 403
    assert status_for(errors.AccountDisabledError()) == 403
    assert status_for(errors.SingleUserModeError()) == 409
    assert status_for(errors.LastAdminError()) == 409
    assert status_for(errors.ApiKeyNotFoundError()) == 404


def request_with(*headers: tuple[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_reading_credentials() -> None:
    key = "stk_" + "k" * 43
    assert read_credentials(request_with(("Authorization", f"Bearer {key}"))).token == key
    assert read_credentials(request_with(("Authorization", basic("ci", key)))).token == key
    assert read_credentials(request_with(("Authorization", basic("ci", "sess_x")))).token == "sess_x"
    assert read_credentials(request_with(("Authorization", basic("me", "hunter2")))).token is None
    assert read_credentials(request_with(("Authorization", "Basic !!!"))).token is None
    assert read_credentials(request_with(("X-API-Key", key))).token == key
    header_wins = read_credentials(request_with(("Authorization", "Bearer sess_a"), ("X-API-Key", key)))
    assert header_wins.token == "sess_a"
    cookie = read_credentials(request_with(("Cookie", "cloudtuner_session=sess_c"), ("X-CSRF-Token", "t")))
    assert (cookie.token, cookie.cookie_token, cookie.csrf_token) == (None, "sess_c", "t")


def test_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert credentials.load_token("http://127.0.0.1:8001") is None
    path = credentials.save_token("HTTP://127.0.0.1:8001/", "sess_one", "alice")
    assert path == tmp_path / "cfg" / "cloudtuner" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.load_token("http://127.0.0.1:8001") == "sess_one"
    credentials.save_token("http://127.0.0.1:9000", "sess_two", "bob")
    assert credentials.load_token("http://127.0.0.1:8001") == "sess_one"
    assert credentials.forget_token("http://127.0.0.1:8001") and not credentials.forget_token("http://127.0.0.1:8001")
    assert credentials.load_token("http://127.0.0.1:9000") == "sess_two"
    path.chmod(0o644)
    with pytest.raises(credentials.CredentialsFileError, match="chmod 600"):
        credentials.load_token("http://127.0.0.1:9000")
