"""Sessions: sign-in, cookies, CSRF, sign-out, lockout and rate limits, 401 versus 403."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

from sqlalchemy import select, update

from cloudtuner.db.tables import LoginThrottleRow, SessionRow
from tests.integration.auth.support import ADMIN, PASSWORD, Team, bearer
from tests.integration.conftest import inline_job


def set_cookies(reply_headers: list[tuple[str, str]]) -> dict[str, str]:
    """Return the Set-Cookie headers of a reply by cookie name."""
    found = {}
    for name, value in reply_headers:
        if name.lower() == "set-cookie":
            found[value.split("=", 1)[0]] = value
    return found


async def test_login_returns_a_bearer_token_and_sets_safe_cookies(team: Team) -> None:
    reply = await team.client.post("/api/auth/login", json={"username": "ADMIN", "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    token = body["session_token"]
    assert token.startswith("sess_") and body["user"]["username"] == ADMIN and body["user"]["role"] == "admin"
    assert "password" not in reply.text.lower().replace("password_", "")
    cookies = set_cookies(reply.headers.multi_items())
    session_cookie = cookies["cloudtuner_session"].lower()
    assert "httponly" in session_cookie and "samesite=lax" in session_cookie and "path=/" in session_cookie
    assert "secure" not in session_cookie  # plain http, no https public URL
    assert "httponly" not in cookies["cloudtuner_csrf"].lower()

    me = await team.client.get("/api/auth/me", headers=bearer(token))
    assert me.json()["via"] == "session" and me.json()["user"]["username"] == ADMIN

    async with team.ctx.db.read() as session:
        stored = (await session.scalars(select(SessionRow.token_hash))).all()
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored

    # Behind https (the public URL says so), the cookies are Secure.
    changed = await team.client.put(
        "/api/cloud/settings", headers=bearer(token), json={"public_url": "https://tuner.example.com"}
    )
    assert changed.status_code == 200, changed.text
    again = await team.client.post("/api/auth/login", json={"username": ADMIN, "password": PASSWORD})
    assert all("secure" in value.lower() for value in set_cookies(again.headers.multi_items()).values())
    team.client.cookies.clear()


async def test_cookie_sessions_need_the_csrf_header_for_changes(team: Team) -> None:
    reply = await team.client.post("/api/auth/login", json={"username": ADMIN, "password": PASSWORD})
    csrf = reply.json()["csrf_token"]
    assert team.client.cookies.get("cloudtuner_session")  # the browser keeps the cookie

    assert (await team.client.get("/api/cloud/jobs")).status_code == 200  # reads need no header
    forged = await team.client.post("/api/cloud/jobs/submit?provider=scripted", json=inline_job())
    assert forged.status_code == 403 and forged.json()["code"] == "csrf_token_invalid", forged.text
    wrong = await team.client.post(
        "/api/cloud/jobs/submit?provider=scripted", json=inline_job(), headers={"X-CSRF-Token": "0" * 64}
    )
    assert wrong.status_code == 403
    allowed = await team.client.post(
        "/api/cloud/jobs/submit?provider=scripted", json=inline_job(), headers={"X-CSRF-Token": csrf}
    )
    assert allowed.status_code == 202, allowed.text

    out = await team.client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200, out.text
    assert not team.client.cookies.get("cloudtuner_session")
    team.client.cookies.clear()


async def test_logout_and_session_list(team: Team) -> None:
    first = await team.login(ADMIN)
    second = await team.login(ADMIN)
    sessions = (await team.client.get("/api/auth/sessions", headers=bearer(first))).json()["sessions"]
    assert len(sessions) == 3  # the fixture's, and these two
    assert [s["current"] for s in sessions].count(True) == 1
    current = next(s for s in sessions if s["current"])

    assert (await team.client.post("/api/auth/logout", headers=bearer(first))).status_code == 200
    gone = await team.client.get("/api/auth/me", headers=bearer(first))
    assert gone.status_code == 401 and gone.json()["code"] == "invalid_token"

    # Ending another session by id.
    second_id = next(s["id"] for s in sessions if not s["current"] and s["id"] != current["id"])
    revoked = await team.client.delete(f"/api/auth/sessions/{second_id}", headers=bearer(team.admin_token))
    assert revoked.status_code == 200
    statuses = {
        token: (await team.client.get("/api/auth/me", headers=bearer(token))).status_code
        for token in (second, team.admin_token)
    }
    assert sorted(statuses.values()) == [200, 401]
    missing = await team.client.delete("/api/auth/sessions/nope", headers=bearer(team.admin_token))
    assert missing.status_code == 404


async def test_wrong_passwords_lock_the_account(quiet_team: Team) -> None:
    team = quiet_team
    await team.user("alice")
    for _ in range(2):
        wrong = await team.client.post("/api/auth/login", json={"username": "alice", "password": "nope-nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    locking = await team.client.post("/api/auth/login", json={"username": "alice", "password": "nope-nope"})
    assert locking.status_code == 429, locking.text
    locked = await team.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_login_attempts"
    assert int(locked.headers["Retry-After"]) > 60
    assert (await team.client.get("/api/users/alice", headers=bearer(team.admin_token))).json()["user"]["locked"]

    # Someone else is not affected; an admin lifts the lock.
    assert (
        await team.client.post("/api/auth/login", json={"username": ADMIN, "password": PASSWORD})
    ).status_code == 200
    team.client.cookies.clear()
    unlocked = await team.client.patch("/api/users/alice", headers=bearer(team.admin_token), json={"unlock": True})
    assert unlocked.status_code == 200 and not unlocked.json()["user"]["locked"]
    assert (await team.login("alice")).startswith("sess_")


async def test_failures_from_one_address_are_limited_across_usernames(quiet_team: Team) -> None:
    team = quiet_team
    statuses = []
    for index in range(7):
        reply = await team.client.post("/api/auth/login", json={"username": f"guess{index}", "password": "x" * 9})
        statuses.append(reply.status_code)
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429], statuses
    # The address is blocked even for a right password, and unknown users look like known ones.
    blocked = await team.client.post("/api/auth/login", json={"username": ADMIN, "password": PASSWORD})
    assert blocked.status_code == 429


async def test_401_without_credentials_403_without_permission(team: Team) -> None:
    anonymous = await team.client.get("/api/cloud/jobs")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_required"
    assert "cloudtuner login" in anonymous.json()["detail"]
    viewer = await team.user("vera", "viewer")
    assert (await team.client.get("/api/cloud/jobs", headers=bearer(viewer))).status_code == 200
    refused = await team.client.post(
        "/api/cloud/jobs/submit?provider=scripted", headers=bearer(viewer), json=inline_job()
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert "job.submit" in refused.json()["detail"]


async def test_password_change_signs_out_other_sessions(team: Team) -> None:
    here = await team.user("alice")
    elsewhere = await team.login("alice")
    weak = await team.client.post(
        "/api/auth/password", headers=bearer(here), json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 400 and weak.json()["code"] == "weak_password"
    wrong = await team.client.post(
        "/api/auth/password",
        headers=bearer(here),
        json={"current_password": "not it at all", "new_password": "a much longer one"},
    )
    assert wrong.status_code == 401
    changed = await team.client.post(
        "/api/auth/password",
        headers=bearer(here),
        json={"current_password": PASSWORD, "new_password": "a much longer one"},
    )
    assert changed.status_code == 200, changed.text
    assert (await team.client.get("/api/auth/me", headers=bearer(here))).status_code == 200
    assert (await team.client.get("/api/auth/me", headers=bearer(elsewhere))).status_code == 401
    old = await team.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401
    assert (await team.login("alice", "a much longer one")).startswith("sess_")


async def test_disabled_users_cannot_sign_in(team: Team) -> None:
    token = await team.user("alice")
    off = await team.client.patch("/api/users/alice", headers=bearer(team.admin_token), json={"active": False})
    assert off.status_code == 200 and off.json()["user"]["active"] is False
    assert (await team.client.get("/api/auth/me", headers=bearer(token))).status_code == 401
    refused = await team.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403 and refused.json()["code"] == "account_disabled"
    # A wrong password for a disabled account says only that the password is wrong.
    wrong = await team.client.post("/api/auth/login", json={"username": "alice", "password": "wrong password"})
    assert wrong.status_code == 401


async def test_housekeeping_deletes_ended_sessions_and_stale_counts(quiet_team: Team) -> None:
    team = quiet_team
    ended = await team.login(ADMIN)
    await team.client.post("/api/auth/logout", headers=bearer(ended))
    await team.client.post("/api/auth/login", json={"username": ADMIN, "password": "wrong password"})
    long_ago = team.ctx.clock.now() - timedelta(days=3)
    async with team.ctx.db.transaction() as session:
        await session.execute(update(SessionRow).where(SessionRow.revoked_at.is_not(None)).values(revoked_at=long_ago))
        await session.execute(update(LoginThrottleRow).values(window_started_at=long_ago))
    await team.running.scheduler.run_housekeeping_once()
    async with team.ctx.db.read() as session:
        sessions = (await session.scalars(select(SessionRow.id))).all()
        counts = (await session.scalars(select(LoginThrottleRow.key))).all()
    assert len(sessions) == 1 and counts == []
    assert (await team.client.get("/api/auth/me", headers=bearer(team.admin_token))).status_code == 200


async def test_guesses_sent_at_once_cannot_pass_the_limit(quiet_team: Team) -> None:
    team = quiet_team
    await team.user("alice")
    replies = await asyncio.gather(
        *(team.client.post("/api/auth/login", json={"username": "alice", "password": f"guess {i}"}) for i in range(8))
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses.count(401) <= 3 and set(statuses) <= {401, 429}, statuses
    locked = await team.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
