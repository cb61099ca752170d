"""An application service acting as one of its users (``?user_id=``, application-service-api.md
"Identity assertion") gets the answers the user's own token would: 401 M_USER_LOCKED (soft
logout) for a locked account, 403 M_USER_SUSPENDED on what suspension forbids (client-server-api
"Account suspension") while reads still work, and 403 M_USER_DEACTIVATED for a deactivated
account; lifting a lock or suspension takes effect at once."""
from __future__ import annotations

import pytest

from tests.integration.harness import api, db_execute
from tests.integration.test_appservices import AS_TOKEN, V3, as_user, env, ghost, human, ok, q, room_with_ghost, \
    send  # noqa: F401  (env: the module-scoped server + fake bridge fixture, one per engine)


@pytest.fixture(scope="module")
def admin(env):
    user_id, token = human(env, "boss")
    db_execute(env.server, "UPDATE users SET is_admin = ? WHERE user_id = ?", (True, user_id))
    return token


def set_flag(env, admin_token, flag, user_id, value) -> None:
    path = {"locked": "lock", "suspended": "suspend"}[flag]
    ok(api(env.base, "PUT", f"/_matrix/client/v1/admin/{path}/{q(user_id)}", admin_token, {flag: value}))


def test_locked_user_is_refused_when_an_appservice_acts_as_them(env, admin):
    g = ghost(env)
    ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g)))
    set_flag(env, admin, "locked", g, True)
    status, body = api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g))
    assert (status, body["errcode"], body.get("soft_logout")) == (401, "M_USER_LOCKED", True)
    # The service's own user is not affected.
    ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN))
    set_flag(env, admin, "locked", g, False)
    assert ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g)))["user_id"] == g


def test_suspended_user_may_read_but_not_send_through_an_appservice(env, admin):
    room_id, _, g = room_with_ghost(env)
    set_flag(env, admin, "suspended", g, True)
    ok(api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g)))
    ok(api(env.base, "GET", f"{V3}/rooms/{q(room_id)}/messages", AS_TOKEN, params={**as_user(g), "dir": "b"}))
    status, body = api(env.base, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/s1", AS_TOKEN,
                       {"msgtype": "m.text", "body": "hi"}, params=as_user(g))
    assert (status, body["errcode"]) == (403, "M_USER_SUSPENDED")
    status, body = api(env.base, "POST", f"{V3}/createRoom", AS_TOKEN, {}, params=as_user(g))
    assert (status, body["errcode"]) == (403, "M_USER_SUSPENDED")
    set_flag(env, admin, "suspended", g, False)
    send(env, AS_TOKEN, room_id, "back", params=as_user(g))


def test_deactivated_user_is_refused_when_an_appservice_acts_as_them(env):
    g = ghost(env)
    db_execute(env.server, "UPDATE users SET deactivated = ? WHERE user_id = ?", (True, g))
    status, body = api(env.base, "GET", f"{V3}/account/whoami", AS_TOKEN, params=as_user(g))
    assert (status, body["errcode"]) == (403, "M_USER_DEACTIVATED")
