"""Accounts, login/logout, roles, the failed-login limiter and the admin CLI (real SQLite, NiceGUI
user simulation)."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
from argon2 import PasswordHasher
from auth_helpers import PASSWORD
from nicegui import ui
from nicegui.testing.user_simulation import user_simulation
from typer.testing import CliRunner

from fleet_server.auth import accounts as auth
from fleet_server.auth.accounts import admin_only, create_user, safe_redirect_target
from fleet_server.auth.ratelimit import LoginRateLimiter
from fleet_server.cli.admin import first_run_admin
from fleet_server.cli.main import app as cli_app
from fleet_server.dashboard import register_pages
from fleet_server.state import FleetState
from fleet_server.store.models import AuditEvent, User


class FakeClock:
    """Seconds, advanced by hand."""

    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


def audit_actions(actor: str | None = None) -> list[str]:
    q = AuditEvent.select().order_by(AuditEvent.id)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    return [e.action for e in q]


def fleet() -> FleetState:
    state = FleetState()
    state.load_from_db()
    return state


async def test_unauthenticated_page_redirects_to_login(db):
    async with user_simulation() as user:
        register_pages(fleet())
        r = await user.http_client.get("/audit?page=2", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login?redirect_to=%2Faudit%3Fpage%3D2"
        await user.open("/")
        await user.should_see("Log in")
        await user.should_not_see("ClawFleet dashboard")


async def test_healthz_is_public_and_api_needs_login(db, log_in):
    async with user_simulation() as user:
        register_pages(fleet())
        r = await user.http_client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"ok": True}
        for path in ("/api/v1/whoami", "/api/v1/anything"):
            r = await user.http_client.get(path, follow_redirects=False)
            assert r.status_code == 401 and r.json() == {"error": "login required"}
        r = await user.http_client.post("/", follow_redirects=False)
        assert r.status_code == 401
        await log_in(user)
        r = await user.http_client.get("/api/v1/whoami")
        assert r.status_code == 200 and r.json() == {"username": "admin", "role": "admin"}
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


async def test_wrong_password_shows_error_and_is_audited(db, login_form):
    create_user("alice", PASSWORD, role="viewer")
    async with user_simulation() as user:
        register_pages(fleet())
        await login_form(user, "alice", "not the password")
        await user.should_see("wrong username or password", retries=50)
        await login_form(user, "nobody", "whatever password")
        await user.should_see("wrong username or password", retries=50)
        r = await user.http_client.get("/", follow_redirects=False)
        assert r.status_code == 303
    assert audit_actions("alice") == ["login_failed"]
    assert audit_actions("nobody") == ["login_failed"]
    row = AuditEvent.get(AuditEvent.actor == "alice")
    assert "not the password" not in row.detail


async def test_right_password_reaches_overview_then_logout_ends_session(db, login_form):
    create_user("alice", PASSWORD, role="viewer")
    async with user_simulation() as user:
        register_pages(fleet())
        await user.open("/login")
        cookie_before = user.http_client.cookies.get("session")
        assert cookie_before
        await login_form(user, "Alice ", PASSWORD, path="/login?redirect_to=%2F")
        await user.should_see("alice (viewer)", retries=50)
        await user.should_see("clawfleet-server device add NAME")  # the overview's empty fleet
        cookie_after = user.http_client.cookies.get("session")
        assert cookie_after and cookie_after != cookie_before  # new session id at login (no fixation)
        assert User.get(User.username == "alice").last_login_ms is not None

        # the pre-login cookie does not carry the login
        async with httpx.AsyncClient(transport=user.http_client._transport, base_url="http://test",
                                     cookies={"session": cookie_before}) as other:
            assert (await other.get("/", follow_redirects=False)).status_code == 303

        [button] = user.find(marker="logout").elements
        form = button.parent_slot.parent
        assert (form.tag, form.props["method"], form.props["action"]) == ("form", "post", "/logout")
        r = await user.http_client.get("/logout", follow_redirects=False)  # a link or <img> elsewhere
        assert r.status_code == 405
        r = await user.http_client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert r.status_code == 403
        # a client without Sec-Fetch-* headers (an old browser, a script): only with this site's Origin/Referer
        for headers in ({}, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"},
                        {"Origin": "null"}):
            r = await user.http_client.post("/logout", headers=headers, follow_redirects=False)
            assert r.status_code == 403, headers
        assert (await user.http_client.get("/", follow_redirects=False)).status_code == 200  # still logged in
        r = await user.http_client.post("/logout", headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://test"},
                                        follow_redirects=False)  # what the "Log out" button sends
        assert r.status_code == 303 and r.headers["location"] == "/login"
        r = await user.http_client.get("/", follow_redirects=False)
        assert r.status_code == 303
    assert audit_actions("alice") == ["login", "logout"]


async def test_login_redirects_only_to_local_paths(db, login_form):
    create_user("admin", PASSWORD, role="admin")
    async with user_simulation() as user:
        register_pages(fleet())
        await login_form(user, "admin", PASSWORD, path="/login?redirect_to=%2F%2Fevil.example%2Fx")
        await user.should_see("admin (admin)", retries=50)
        assert user.back_history[-1].endswith("&redirect_to=%2F")  # /login/finish was sent to "/"
        await user.should_see("clawfleet-server device add NAME")
    assert safe_redirect_target("/audit?page=2") == "/audit?page=2"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil.example", "evil", "", None, "/login",
                "/logout", "/x\r\nSet-Cookie: a=b"):
        assert safe_redirect_target(bad) == "/", bad


async def test_rate_limit_locks_after_five_failures(db, login_form):
    create_user("bob", PASSWORD, role="admin")
    clock = FakeClock()
    async with user_simulation() as user:
        register_pages(fleet(), limiter=LoginRateLimiter(max_failures=5, base_delay_s=30, clock=clock))
        for _ in range(4):
            await login_form(user, "bob", "wrong password!")
            await user.should_see("wrong username or password", retries=50)
        await login_form(user, "bob", "wrong password!")
        await user.should_see("too many failed attempts; try again in 30 seconds", retries=50)
        clock.t += 10
        await login_form(user, "bob", PASSWORD)  # right password, still locked
        await user.should_see("too many failed attempts; try again in 20 seconds", retries=50)
        clock.t += 20
        await login_form(user, "bob", PASSWORD)
        await user.should_see("bob (admin)", retries=50)
    assert audit_actions("bob") == ["login_failed"] * 5 + ["login_locked", "login"]


async def test_viewer_cannot_see_admin_content_or_run_admin_actions(db, log_in):
    ran = []

    @admin_only
    def dangerous() -> None:
        ran.append(True)

    async with user_simulation() as user:
        register_pages(fleet())

        @ui.page("/test-admin-action")
        def page() -> None:
            ui.button("Do it", on_click=dangerous)

        await log_in(user, "vera", role="viewer")
        await user.should_not_see("Audit log")
        await user.open("/audit")
        await user.should_see("admins only")
        await user.should_not_see(ui.table)
        await user.open("/test-admin-action")
        user.find("Do it").click()
        await user.should_see("admins only")
        assert ran == []


async def test_disabled_user_and_changed_password_end_sessions(db, log_in):
    async with user_simulation() as user:
        register_pages(fleet())
        await log_in(user, "walt", role="viewer")
        assert (await user.http_client.get("/", follow_redirects=False)).status_code == 200
        auth.set_disabled("walt", True)
        assert (await user.http_client.get("/", follow_redirects=False)).status_code == 303
        auth.set_disabled("walt", False)
        await log_in(user, "walt", role="viewer")
        auth.set_password("walt", "another long password")
        assert (await user.http_client.get("/", follow_redirects=False)).status_code == 303


def test_passwords_are_stored_as_argon2id_and_rehashed_on_login(db):
    user = create_user("grace", PASSWORD, role="admin")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert PasswordHasher().verify(user.password_hash, PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    User.update(password_hash=weak).where(User.username == "grace").execute()
    assert auth.check_credentials("grace", PASSWORD).username == "grace"
    stored = User.get(User.username == "grace").password_hash
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert auth.check_credentials("grace", "wrong") is None
    with pytest.raises(auth.AuthError, match="at least 12"):
        create_user("henry", "short")
    with pytest.raises(auth.AuthError, match="exists"):
        create_user("GRACE", PASSWORD)
    with pytest.raises(auth.AuthError, match="usernames"):
        create_user("../x", PASSWORD)


def test_first_run_creates_admin_and_prints_password_once(db, capsys):
    first_run_admin()
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    assert len(password) >= 16
    assert "clawfleet-server admin set-password admin" in out
    admin = User.get(User.username == "admin")
    assert admin.role == "admin" and auth.verify_password(admin.password_hash, password)
    first_run_admin()
    assert capsys.readouterr().out == ""
    assert [(e.action, e.target) for e in AuditEvent.select()] == [("user.create", "admin")]


def test_first_run_password_can_go_to_a_private_file(db, tmp_path, capsys):
    target = tmp_path / "admin-password"
    first_run_admin(target)
    out = capsys.readouterr().out
    password = target.read_text().strip()
    assert password and password not in out and str(target) in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert auth.check_credentials("admin", password).username == "admin"
    first_run_admin(tmp_path / "second")  # an account exists: no file, nothing printed
    assert not (tmp_path / "second").exists() and capsys.readouterr().out == ""


def test_session_files_are_private(tmp_path):
    from nicegui.persistence.file_persistent_dict import FilePersistentDict
    from nicegui.storage import Storage

    old_path, old_umask = Storage.path, os.umask(0o022)
    try:
        (tmp_path / "sessions").mkdir(mode=0o755)
        (tmp_path / "sessions" / "storage-user-old.json").write_text("{}")
        auth.configure_session_storage(tmp_path)
        assert stat.S_IMODE((tmp_path / "sessions" / "storage-user-old.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "sessions").stat().st_mode) == 0o700
        d = FilePersistentDict(Storage.path / "storage-user-new.json", encoding="utf-8")  # as NiceGUI makes them
        d["username"] = "alice"  # written at once (no event loop running here)
        assert stat.S_IMODE((tmp_path / "sessions" / "storage-user-new.json").stat().st_mode) == 0o600
    finally:
        Storage.path = old_path
        os.umask(old_umask)


def test_session_secret_is_created_once_with_mode_0600(tmp_path):
    secret = auth.session_secret(tmp_path)
    assert len(secret) == 64 and auth.session_secret(tmp_path) == secret
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "session-secret").stat().st_mode) == 0o600
    assert auth.session_cookie_options(https_only=True)["https_only"] is True


def test_admin_cli_create_list_set_password_disable(tmp_path):
    runner = CliRunner()
    dd = ["--data-dir", str(tmp_path)]
    r = runner.invoke(cli_app, ["admin", "create", "ops", "--role", "admin", "--password-stdin", *dd],
                      input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "user ops created (admin)" in r.output and PASSWORD not in r.output
    r = runner.invoke(cli_app, ["admin", "create", "eve", *dd], input="a long password 1\na long password 1\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["admin", "create", "ops", "--password-stdin", *dd], input=PASSWORD + "\n")
    assert r.exit_code == 2 and "exists already" in r.output
    r = runner.invoke(cli_app, ["admin", "create", "x", "--password-stdin", *dd], input="short\n")
    assert r.exit_code == 2 and "at least 12" in r.output
    r = runner.invoke(cli_app, ["admin", "set-password", "eve", "--password-stdin", *dd], input="new long password\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["admin", "disable", "eve", *dd])
    assert r.exit_code == 0 and "user eve disabled" in r.output
    r = runner.invoke(cli_app, ["admin", "list", *dd])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["eve", "viewer", "disabled"]
    assert lines[1].split()[:3] == ["ops", "admin", "active"] and "never" in lines[1]
    assert auth.check_credentials("eve", "new long password") is None  # disabled
    assert auth.check_credentials("ops", PASSWORD).username == "ops"
    events = [(e.actor.startswith("cli:"), e.action, e.target) for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert events == [(True, "user.create", "ops"), (True, "user.create", "eve"),
                      (True, "user.set_password", "eve"), (True, "user.disable", "eve")]
