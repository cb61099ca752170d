"""AccountsStore on SQLite and PostgreSQL, and the token life cycle of AuthService over it
(expiry, refresh rotation, cache invalidation) with a controllable clock."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import reactor

from homeserver.accounts import tokens
from homeserver.accounts.auth import AuthService
from homeserver.accounts.registration import create_user_sync
from homeserver.http.errors import MatrixError
from homeserver.storage.accounts_store import AccountsStore

NOW = 1_700_000_000_000


class FakeHS:
    """What the accounts services need of a HomeServer, with a settable clock."""

    def __init__(self, db, **config):
        self.db = db
        self.hostname = "test.local"
        self.reactor = reactor
        self.now = NOW
        self.config = SimpleNamespace(**{"bcrypt_rounds": 4, "refreshable_access_token_lifetime_ms": 300_000,
                                         **config})
        self._instances = {}

    def clock_ms(self) -> int:
        return self.now

    def get(self, cls):
        if cls not in self._instances:
            self._instances[cls] = cls(self)
        return self._instances[cls]


class FakeRequest:
    def __init__(self, token=None, query_token=None):
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.query = {"access_token": [query_token]} if query_token else {}
        self.requester = None
        self.client_ip = "127.0.0.1"
        self.twisted = SimpleNamespace(authenticated_entity=None)

    def header(self, name):
        return self.headers.get(name)

    def args(self, name):
        return self.query.get(name, [])


@pytest.fixture
def store(database):
    return AccountsStore(SimpleNamespace(db=database))


@pytest.fixture
def hs(database):
    return FakeHS(database)


# --- users and profiles ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_create_user_writes_user_and_profile(store):
    assert await store.create_user("@alice:test.local", "hash", NOW, displayname="alice", is_admin=True)
    user = await store.get_user("@alice:test.local")
    assert (user.password_hash, user.creation_ts, user.is_admin, user.is_guest, user.deactivated) == \
        ("hash", NOW, True, False, False)
    assert await store.get_profile("@alice:test.local") == ("alice", None)


@pytest_twisted.ensureDeferred
async def test_create_user_refuses_taken_id(store):
    assert await store.create_user("@bob:test.local", "h1", NOW)
    assert not await store.create_user("@bob:test.local", "h2", NOW)
    assert (await store.get_user("@bob:test.local")).password_hash == "h1"


@pytest_twisted.ensureDeferred
async def test_case_insensitive_lookup_finds_existing_user(store):
    await store.create_user("@Carol:test.local", None, NOW)
    assert await store.find_users_case_insensitive("@carol:TEST.local") == ["@Carol:test.local"]
    assert await store.user_exists("@Carol:test.local")
    assert not await store.user_exists("@carol:test.local")


@pytest_twisted.ensureDeferred
async def test_deactivate_user_forgets_password_and_tokens(store):
    await store.create_user("@dan:test.local", "hash", NOW)
    await store.add_access_token("t1", "@dan:test.local", "D1", NOW)
    await store.add_refresh_token("r1", "@dan:test.local", "D1", NOW)
    assert await store.deactivate_user("@dan:test.local") == ["t1"]
    user = await store.get_user("@dan:test.local")
    assert user.deactivated and user.password_hash is None
    assert await store.get_access_token("t1") is None
    assert await store.rotate_refresh_token("r1", "r2", "t2", NOW, None) is None


def test_create_user_sync_works_without_a_running_server(database):
    user_id = create_user_sync(database, "test.local", "Admin", "secret", True, rounds=4)
    assert user_id == "@admin:test.local"
    row = database.run_sync("check", lambda t: t.execute(
        "SELECT is_admin, password_hash FROM users WHERE user_id = ?", (user_id,)).fetchone())
    assert bool(row[0]) and row[1].startswith("$2")
    with pytest.raises(ValueError):
        create_user_sync(database, "test.local", "admin", "x", False, rounds=4)
    with pytest.raises(ValueError):
        create_user_sync(database, "test.local", "bad name", "x", False, rounds=4)


# --- devices -----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_add_device_creates_once_and_keeps_first_name(store):
    assert await store.add_device("@u:test.local", "DEV", "Phone", NOW)
    assert not await store.add_device("@u:test.local", "DEV", "Other", NOW)
    device = await store.get_device("@u:test.local", "DEV")
    assert (device.display_name, device.created_ts) == ("Phone", NOW)


@pytest_twisted.ensureDeferred
async def test_device_rename_and_last_seen(store):
    await store.add_device("@u:test.local", "DEV", None, NOW)
    assert await store.set_device_display_name("@u:test.local", "DEV", "Laptop")
    assert not await store.set_device_display_name("@u:test.local", "NOPE", "x")
    await store.update_last_seen([("@u:test.local", "DEV", NOW + 5, "10.0.0.1", "curl")])
    [device] = await store.get_devices("@u:test.local")
    assert (device.display_name, device.last_seen_ts, device.last_seen_ip, device.last_seen_user_agent) == \
        ("Laptop", NOW + 5, "10.0.0.1", "curl")


@pytest_twisted.ensureDeferred
async def test_delete_devices_removes_their_tokens_only(store):
    await store.create_user("@u:test.local", None, NOW)
    for d in ("A", "B"):
        await store.add_device("@u:test.local", d, None, NOW)
        await store.add_access_token("tok" + d, "@u:test.local", d, NOW)
    existed, revoked = await store.delete_devices("@u:test.local", ["A", "GONE"])
    assert (existed, revoked) == (["A"], ["tokA"])
    assert await store.get_access_token("tokA") is None
    assert (await store.get_access_token("tokB")).device_id == "B"
    assert [d.device_id for d in await store.get_devices("@u:test.local")] == ["B"]


# --- tokens ------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_access_token_lookup_joins_user_flags(store):
    await store.create_user("@g:test.local", None, NOW, is_guest=True)
    await store.add_access_token("tg", "@g:test.local", "D", NOW, NOW + 10)
    record = await store.get_access_token("tg")
    assert (record.user_id, record.device_id, record.valid_until_ms, record.is_guest, record.used) == \
        ("@g:test.local", "D", NOW + 10, True, False)


@pytest_twisted.ensureDeferred
async def test_delete_tokens_for_user_keeps_the_excepted_one(store):
    await store.create_user("@u:test.local", None, NOW)
    for t in ("t1", "t2", "t3"):
        await store.add_access_token(t, "@u:test.local", "D" + t, NOW)
    revoked = await store.delete_access_tokens_for_user("@u:test.local", except_token_hash="t2")
    assert sorted(revoked) == ["t1", "t3"]
    assert await store.get_access_token("t2") is not None


@pytest_twisted.ensureDeferred
async def test_refresh_rotation_keeps_old_token_until_successor_is_used(store):
    await store.create_user("@u:test.local", None, NOW)
    await store.add_refresh_token("r1", "@u:test.local", "D", NOW)
    await store.add_access_token("a1", "@u:test.local", "D", NOW, NOW + 100, "r1")
    assert await store.rotate_refresh_token("r1", "r2", "a2", NOW, NOW + 100) == ("@u:test.local", "D", [])
    assert await store.get_access_token("a1") is not None  # still usable
    # Refreshing r1 again replaces the unused successor r2/a2.
    user, device, revoked = await store.rotate_refresh_token("r1", "r3", "a3", NOW, NOW + 100)
    assert revoked == ["a2"] and await store.get_access_token("a2") is None
    # Using a3 revokes r1 and the access token issued with it.
    assert await store.mark_access_token_used("a3") == ["a1"]
    assert await store.rotate_refresh_token("r1", "r4", "a4", NOW, None) is None
    assert (await store.get_access_token("a3")).used


@pytest_twisted.ensureDeferred
async def test_login_token_is_single_use_and_expires(store):
    await store.add_login_token("l1", "@u:test.local", NOW + 1000)
    await store.add_login_token("l2", "@u:test.local", NOW - 1)
    assert await store.consume_login_token("l1", NOW) == "@u:test.local"
    assert await store.consume_login_token("l1", NOW) is None
    assert await store.consume_login_token("l2", NOW) is None
    assert await store.consume_login_token("unknown", NOW) is None


# --- registration tokens -----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_registration_token_counts_pending_and_completed_uses(store):
    assert await store.create_registration_token("tok", uses_allowed=2)
    assert not await store.create_registration_token("tok")
    assert await store.reserve_registration_token("tok", NOW)
    assert await store.reserve_registration_token("tok", NOW)
    assert not await store.reserve_registration_token("tok", NOW)  # two pending fill it
    await store.finish_registration_token("tok", used=False)
    record = await store.get_registration_token("tok")
    assert (record.pending, record.completed, record.is_valid(NOW)) == (1, 0, True)
    await store.finish_registration_token("tok", used=True)
    record = await store.get_registration_token("tok")
    assert (record.pending, record.completed) == (0, 1)


@pytest_twisted.ensureDeferred
async def test_registration_token_expires(store):
    await store.create_registration_token("old", expiry_time=NOW)
    assert not (await store.get_registration_token("old")).is_valid(NOW)
    assert not await store.reserve_registration_token("old", NOW)
    assert not await store.reserve_registration_token("missing", NOW)


# --- AuthService over the store ----------------------------------------------------------------

async def _user_with_token(hs, *, with_refresh=False, guest=False):
    store = hs.get(AccountsStore)
    await store.create_user("@u:test.local", None, NOW, is_guest=guest)
    await store.add_device("@u:test.local", "DEV", None, NOW)
    return await hs.get(AuthService).issue_tokens("@u:test.local", "DEV", with_refresh=with_refresh)


@pytest_twisted.ensureDeferred
async def test_get_requester_reads_bearer_header_and_query_param(hs):
    issued = await _user_with_token(hs)
    auth = hs.get(AuthService)
    for request in (FakeRequest(issued["access_token"]), FakeRequest(query_token=issued["access_token"])):
        requester = await auth.get_requester(request)
        assert (requester.user_id, requester.device_id, requester.is_guest) == ("@u:test.local", "DEV", False)
        assert requester.access_token_id == tokens.hash_token(issued["access_token"])
        assert request.requester is requester and request.twisted.authenticated_entity == "@u:test.local"


@pytest_twisted.ensureDeferred
async def test_missing_and_unknown_tokens_are_401(hs):
    auth = hs.get(AuthService)
    with pytest.raises(MatrixError) as e:
        await auth.get_requester(FakeRequest())
    assert (e.value.code, e.value.errcode) == (401, "M_MISSING_TOKEN")
    with pytest.raises(MatrixError) as e:
        await auth.get_requester(FakeRequest("uzt_nonsense"))
    assert (e.value.code, e.value.errcode, e.value.extra["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", False)


@pytest_twisted.ensureDeferred
async def test_expired_token_is_soft_logout_unless_allowed(hs):
    issued = await _user_with_token(hs, with_refresh=True)
    auth = hs.get(AuthService)
    assert await auth.get_requester(FakeRequest(issued["access_token"]))
    hs.now += issued["expires_in_ms"]
    with pytest.raises(MatrixError) as e:
        await auth.get_requester(FakeRequest(issued["access_token"]))
    assert (e.value.errcode, e.value.extra["soft_logout"]) == ("M_UNKNOWN_TOKEN", True)
    assert await auth.get_requester(FakeRequest(issued["access_token"]), allow_expired=True)


@pytest_twisted.ensureDeferred
async def test_refresh_gives_a_working_token_and_revokes_the_old_pair_on_use(hs):
    issued = await _user_with_token(hs, with_refresh=True)
    auth = hs.get(AuthService)
    await auth.get_requester(FakeRequest(issued["access_token"]))  # cached
    new = await auth.refresh(issued["refresh_token"])
    assert new["refresh_token"] != issued["refresh_token"]
    assert (await auth.get_requester(FakeRequest(new["access_token"]))).device_id == "DEV"
    with pytest.raises(MatrixError) as e:  # old access token revoked, and dropped from the cache
        await auth.get_requester(FakeRequest(issued["access_token"]))
    assert e.value.errcode == "M_UNKNOWN_TOKEN"
    with pytest.raises(MatrixError) as e:
        await auth.refresh(issued["refresh_token"])
    assert (e.value.code, e.value.errcode, e.value.extra["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", False)


@pytest_twisted.ensureDeferred
async def test_revoked_token_leaves_the_cache(hs):
    issued = await _user_with_token(hs)
    auth = hs.get(AuthService)
    requester = await auth.get_requester(FakeRequest(issued["access_token"]))
    await auth.revoke_token(requester.access_token_id)
    with pytest.raises(MatrixError):
        await auth.get_requester(FakeRequest(issued["access_token"]))


@pytest_twisted.ensureDeferred
async def test_guest_token_needs_allow_guest(hs):
    issued = await _user_with_token(hs, guest=True)
    auth = hs.get(AuthService)
    with pytest.raises(MatrixError) as e:
        await auth.get_requester(FakeRequest(issued["access_token"]))
    assert (e.value.code, e.value.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    assert (await auth.get_requester(FakeRequest(issued["access_token"]), allow_guest=True)).is_guest


@pytest_twisted.ensureDeferred
async def test_locked_account_gets_user_locked_until_cache_invalidated(hs):
    issued = await _user_with_token(hs)
    auth = hs.get(AuthService)
    await auth.get_requester(FakeRequest(issued["access_token"]))
    await hs.get(AccountsStore).set_locked("@u:test.local", True)
    auth.invalidate_user("@u:test.local")
    with pytest.raises(MatrixError) as e:
        await auth.get_requester(FakeRequest(issued["access_token"]))
    assert (e.value.code, e.value.errcode, e.value.extra["soft_logout"]) == (401, "M_USER_LOCKED", True)
    assert await auth.get_requester(FakeRequest(issued["access_token"]), allow_locked=True)


@pytest_twisted.ensureDeferred
async def test_token_resolvers_answer_for_appservice_tokens(hs):
    from homeserver.accounts.auth import Requester
    auth = hs.get(AuthService)
    service = SimpleNamespace(id="bridge")

    async def resolver(request, token):
        return Requester("@bridge:test.local", None, None, app_service=service) if token == "as_token" else None
    auth.token_resolvers.append(resolver)
    requester = await auth.get_requester(FakeRequest("as_token"))
    assert requester.app_service is service and requester.device_id is None


@pytest_twisted.ensureDeferred
async def test_locked_account_cannot_log_in(hs):
    from homeserver.accounts.login import LoginService
    from homeserver.accounts.passwords import hash_password_sync
    store = hs.get(AccountsStore)
    await store.create_user("@locked:test.local", hash_password_sync("pw", 4), NOW)
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "locked"}, "password": "pw"}
    assert (await hs.get(LoginService).login(dict(body), "127.0.0.1"))["user_id"] == "@locked:test.local"
    await store.set_locked("@locked:test.local", True)
    with pytest.raises(MatrixError) as e:
        await hs.get(LoginService).login(dict(body), "127.0.0.1")
    assert (e.value.code, e.value.errcode, e.value.extra["soft_logout"]) == (401, "M_USER_LOCKED", True)
