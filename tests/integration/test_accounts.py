"""Accounts and sessions over real HTTP: registration, login, tokens, UIA, account management,
devices, capabilities and shared-secret registration (client-server-api "Client Authentication",
"Account registration and management", "Device management", "Capabilities negotiation")."""
from __future__ import annotations

import hashlib
import itertools

import pytest

from homeserver.accounts.shared_secret import compute_mac
from tests.integration.harness import api, db_execute, login, make_server_fixture, register_user

V3 = "/_matrix/client/v3"
PW = "correct horse battery staple"

server = make_server_fixture()
token_server = make_server_fixture({"registration_requires_token": True, "allow_guest_access": True,
                                    "registration_shared_secret": None}, engines=("sqlite",))
closed_server = make_server_fixture({
    "enable_registration": False, "enable_ratelimiting": True,
    "rc_login": {"address": {"per_second": 100, "burst_count": 100},
                 "account": {"per_second": 100, "burst_count": 100},
                 "failed_attempts": {"per_second": 0.001, "burst_count": 2}},
}, engines=("sqlite",))

_names = (f"user{n}" for n in itertools.count())


def new_user(srv, password=PW, **kwargs):
    name = next(_names)
    user_id, token, device_id = register_user(srv.base_url, name, password, **kwargs)
    return name, user_id, token, device_id


def password_auth(user_id, password=PW, session=None):
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
    if session is not None:
        auth["session"] = session
    return auth


# --- registration ------------------------------------------------------------------------------

def test_register_without_auth_offers_dummy_flow_and_session(server):
    status, body = api(server.base_url, "POST", V3 + "/register", json={"username": "flows", "password": PW})
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(body["session"], str) and body["params"] == {} and body["completed"] == []
    assert "errcode" not in body


def test_register_with_dummy_auth_returns_account_and_tokens(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "reggie", "password": PW, "auth": {"type": "m.login.dummy"}})
    assert status == 200
    assert body["user_id"] == "@reggie:test.local" and body["home_server"] == "test.local"
    assert body["access_token"] and body["device_id"]
    assert "refresh_token" not in body and "expires_in_ms" not in body
    status, who = api(server.base_url, "GET", V3 + "/account/whoami", body["access_token"])
    assert (status, who) == (200, {"user_id": "@reggie:test.local", "device_id": body["device_id"], "is_guest": False})


def test_register_second_round_reuses_parameters_of_the_first(server):
    status, first = api(server.base_url, "POST", V3 + "/register", json={"username": "twostep", "password": PW})
    assert status == 401
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"auth": {"type": "m.login.dummy", "session": first["session"]}})
    assert status == 200 and body["user_id"] == "@twostep:test.local"
    assert login(server.base_url, "twostep", PW)["user_id"] == "@twostep:test.local"
    # The session is spent once the account exists.
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"auth": {"type": "m.login.dummy", "session": first["session"]}})
    assert status == 400


def test_register_unknown_session_is_rejected(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "nosess", "password": PW, "auth": {"type": "m.login.dummy", "session": "x"}})
    assert status == 400 and body["errcode"] == "M_UNKNOWN"


def test_register_lowercases_the_username(server):
    user_id, _, _ = register_user(server.base_url, "MixedCase", PW)
    assert user_id == "@mixedcase:test.local"


def test_register_taken_username_is_refused_before_auth(server):
    register_user(server.base_url, "taken", PW)
    status, body = api(server.base_url, "POST", V3 + "/register", json={"username": "taken", "password": PW})
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "TAKEN", "password": PW, "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")


@pytest.mark.parametrize("username", ["has space", "_underscore", "12345", "x" * 250, "émile", "a:b", ""])
def test_register_invalid_username_is_m_invalid_username(server, username):
    status, body = api(server.base_url, "POST", V3 + "/register", json={"username": username, "password": PW})
    assert (status, body["errcode"]) == (400, "M_INVALID_USERNAME")


def test_register_rejects_badly_typed_fields(server):
    for body in ({"username": 5, "password": PW}, {"username": "typed", "password": 5},
                 {"username": "typed", "password": PW, "inhibit_login": "yes"},
                 {"username": "typed", "password": PW, "device_id": 7}):
        status, resp = api(server.base_url, "POST", V3 + "/register", json=body)
        assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), body
    status, resp = api(server.base_url, "POST", V3 + "/register", data=b"not json",
                       headers={"Content-Type": "application/json"})
    assert (status, resp["errcode"]) == (400, "M_NOT_JSON")
    status, resp = api(server.base_url, "POST", V3 + "/register", json=[1])
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


def test_register_without_password_fails_after_auth(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "nopass", "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


def test_register_without_username_generates_a_user_id(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"password": PW, "auth": {"type": "m.login.dummy"}})
    assert status == 200 and body["user_id"].endswith(":test.local")


def test_register_inhibit_login_returns_no_token(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "inhibited", "password": PW, "inhibit_login": True,
                             "auth": {"type": "m.login.dummy"}})
    assert (status, body) == (200, {"user_id": "@inhibited:test.local", "home_server": "test.local"})
    assert login(server.base_url, "inhibited", PW)["user_id"] == "@inhibited:test.local"


def test_register_uses_given_device_id_and_display_name(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "devreg", "password": PW, "device_id": "MYDEVICE",
                             "initial_device_display_name": "Jungle Phone", "auth": {"type": "m.login.dummy"}})
    assert status == 200 and body["device_id"] == "MYDEVICE"
    status, device = api(server.base_url, "GET", V3 + "/devices/MYDEVICE", body["access_token"])
    assert status == 200 and device["display_name"] == "Jungle Phone"


def test_register_with_refresh_token(server):
    status, body = api(server.base_url, "POST", V3 + "/register",
                       json={"username": "refreshreg", "password": PW, "refresh_token": True,
                             "auth": {"type": "m.login.dummy"}})
    assert status == 200 and body["refresh_token"] and body["expires_in_ms"] > 0


def test_guest_registration_refused_when_guests_disabled(server):
    status, body = api(server.base_url, "POST", V3 + "/register", params={"kind": "guest"}, json={})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_register_available(server):
    register_user(server.base_url, "occupied", PW)
    assert api(server.base_url, "GET", V3 + "/register/available", params={"username": "freename"}) == \
        (200, {"available": True})
    status, body = api(server.base_url, "GET", V3 + "/register/available", params={"username": "occupied"})
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")
    status, body = api(server.base_url, "GET", V3 + "/register/available", params={"username": "bad name"})
    assert (status, body["errcode"]) == (400, "M_INVALID_USERNAME")
    status, body = api(server.base_url, "GET", V3 + "/register/available")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


def test_registration_token_validity_without_tokens(server):
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert api(server.base_url, "GET", path, params={"token": "nope"}) == (200, {"valid": False})
    status, body = api(server.base_url, "GET", path)
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


# --- request authentication --------------------------------------------------------------------

def test_missing_and_unknown_tokens(server):
    status, body = api(server.base_url, "GET", V3 + "/account/whoami")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", "uzt_not_a_token")
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", False)
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", headers={"Authorization": "Basic abc"})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


def test_access_token_query_parameter_is_accepted(server):
    _, user_id, token, _ = new_user(server)
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", params={"access_token": token})
    assert status == 200 and body["user_id"] == user_id


# --- login -------------------------------------------------------------------------------------

def test_get_login_flows(server):
    status, body = api(server.base_url, "GET", V3 + "/login")
    assert status == 200
    assert {f["type"] for f in body["flows"]} == {"m.login.password", "m.login.token"}


def test_password_login_by_localpart_user_id_legacy_field_and_case(server):
    name, user_id, _, _ = new_user(server)
    for ident in ({"identifier": {"type": "m.id.user", "user": name}},
                  {"identifier": {"type": "m.id.user", "user": user_id}},
                  {"identifier": {"type": "m.id.user", "user": name.upper()}},
                  {"user": name}):
        status, body = api(server.base_url, "POST", V3 + "/login",
                           json={"type": "m.login.password", "password": PW, **ident})
        assert status == 200, ident
        assert body["user_id"] == user_id and body["access_token"] and body["device_id"]
        assert body["home_server"] == "test.local"


def test_login_with_bad_credentials_is_forbidden(server):
    name, user_id, _, _ = new_user(server)
    for user, password in ((name, "wrong"), ("nobody_here", PW), (f"@{name}:other.example", PW)):
        status, body = api(server.base_url, "POST", V3 + "/login",
                           json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                                 "password": password})
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), user


def test_login_malformed_requests(server):
    cases = [
        ({"type": "m.login.magic"}, 400, "M_UNKNOWN"),
        ({"password": PW, "identifier": {"type": "m.id.user", "user": "x"}}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": PW}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": PW, "identifier": {"type": "m.id.weird"}}, 400, "M_UNKNOWN"),
        ({"type": "m.login.password", "password": PW,
          "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "password": PW, "medium": "email", "address": "a@b.c"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "password": PW, "identifier": {"type": "m.id.user", "user": 3}},
         400, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "password": PW, "user": "x", "device_id": 3}, 400, "M_INVALID_PARAM"),
        ({"type": "m.login.token"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.token", "token": "uzl_bogus"}, 403, "M_FORBIDDEN"),
    ]
    for body, status, errcode in cases:
        got_status, got = api(server.base_url, "POST", V3 + "/login", json=body)
        assert (got_status, got["errcode"]) == (status, errcode), body


def test_login_with_existing_device_id_reuses_the_device(server):
    name, user_id, token, device_id = new_user(server)
    again = login(server.base_url, name, PW, device_id=device_id, initial_device_display_name="ignored")
    assert again["device_id"] == device_id
    status, body = api(server.base_url, "GET", V3 + "/devices", again["access_token"])
    assert [d["device_id"] for d in body["devices"]] == [device_id]
    assert "display_name" not in body["devices"][0]


def test_login_token_logs_in_once(server):
    _, user_id, _, _ = new_user(server)
    raw = "uzl_integrationtesttoken" + user_id.strip("@:.")
    db_execute(server, "INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (?, ?, ?)",
               (hashlib.sha256(raw.encode()).hexdigest(), user_id, 2**52))
    status, body = api(server.base_url, "POST", V3 + "/login", json={"type": "m.login.token", "token": raw})
    assert status == 200 and body["user_id"] == user_id
    status, body = api(server.base_url, "POST", V3 + "/login", json={"type": "m.login.token", "token": raw})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


# --- refresh tokens ----------------------------------------------------------------------------

def test_refresh_rotates_tokens_and_revokes_the_old_pair_on_use(server):
    name, _, _, _ = new_user(server)
    first = login(server.base_url, name, PW, refresh_token=True)
    assert first["refresh_token"] and first["expires_in_ms"] > 0
    status, second = api(server.base_url, "POST", V3 + "/refresh", json={"refresh_token": first["refresh_token"]})
    assert status == 200 and set(second) == {"access_token", "refresh_token", "expires_in_ms"}
    # The old access token keeps working until the new one is used...
    assert api(server.base_url, "GET", V3 + "/account/whoami", first["access_token"])[0] == 200
    status, who = api(server.base_url, "GET", V3 + "/account/whoami", second["access_token"])
    assert status == 200 and who["device_id"] == first["device_id"]
    # ...then the old pair is gone.
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", first["access_token"])
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = api(server.base_url, "POST", V3 + "/refresh", json={"refresh_token": first["refresh_token"]})
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", False)


def test_refresh_errors(server):
    status, body = api(server.base_url, "POST", V3 + "/refresh", json={})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = api(server.base_url, "POST", V3 + "/refresh", json={"refresh_token": "uzr_unknown"})
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_expired_access_token_is_soft_logged_out(server):
    name, _, _, _ = new_user(server)
    session = login(server.base_url, name, PW, refresh_token=True)
    token_hash = hashlib.sha256(session["access_token"].encode()).hexdigest()
    db_execute(server, "UPDATE access_tokens SET valid_until_ms = 1 WHERE token_hash = ?", (token_hash,))
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", session["access_token"])
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)
    status, fresh = api(server.base_url, "POST", V3 + "/refresh", json={"refresh_token": session["refresh_token"]})
    assert status == 200
    assert api(server.base_url, "GET", V3 + "/account/whoami", fresh["access_token"])[0] == 200
    # An expired session may still log out.
    other = login(server.base_url, name, PW, refresh_token=True)
    db_execute(server, "UPDATE access_tokens SET valid_until_ms = 1 WHERE token_hash = ?",
               (hashlib.sha256(other["access_token"].encode()).hexdigest(),))
    assert api(server.base_url, "POST", V3 + "/logout", other["access_token"], json={}) == (200, {})
    assert api(server.base_url, "GET", V3 + f"/devices/{other['device_id']}", fresh["access_token"])[0] == 404


# --- logout ------------------------------------------------------------------------------------

def test_logout_revokes_the_token_and_deletes_its_device(server):
    name, user_id, token, device_id = new_user(server)
    other = login(server.base_url, name, PW)
    assert api(server.base_url, "POST", V3 + "/logout", token, json={}) == (200, {})
    status, body = api(server.base_url, "GET", V3 + "/account/whoami", token)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = api(server.base_url, "GET", V3 + "/devices", other["access_token"])
    assert [d["device_id"] for d in body["devices"]] == [other["device_id"]]


def test_logout_all_revokes_every_token(server):
    name, _, token, _ = new_user(server)
    other = login(server.base_url, name, PW)
    assert api(server.base_url, "POST", V3 + "/logout/all", token, json={}) == (200, {})
    for t in (token, other["access_token"]):
        assert api(server.base_url, "GET", V3 + "/account/whoami", t)[0] == 401
    fresh = login(server.base_url, name, PW)
    status, body = api(server.base_url, "GET", V3 + "/devices", fresh["access_token"])
    assert [d["device_id"] for d in body["devices"]] == [fresh["device_id"]]


def test_logout_needs_a_token(server):
    status, body = api(server.base_url, "POST", V3 + "/logout", json={})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


# --- password change ---------------------------------------------------------------------------

def test_password_change_through_uia(server):
    name, user_id, token, _ = new_user(server)
    other = login(server.base_url, name, PW)
    status, body = api(server.base_url, "POST", V3 + "/account/password", token, json={"new_password": "n3w"})
    assert status == 401 and body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    status, body = api(server.base_url, "POST", V3 + "/account/password", token,
                       json={"new_password": "n3w", "auth": password_auth(user_id, "wrong", session)})
    assert (status, body["errcode"], body["session"]) == (401, "M_FORBIDDEN", session)
    assert body["flows"] == [{"stages": ["m.login.password"]}] and body["completed"] == []
    status, body = api(server.base_url, "POST", V3 + "/account/password", token,
                       json={"new_password": "n3w", "auth": password_auth(user_id, PW, session)})
    assert (status, body) == (200, {})
    # This token survives; the other device is logged out (logout_devices defaults to true).
    assert api(server.base_url, "GET", V3 + "/account/whoami", token)[0] == 200
    assert api(server.base_url, "GET", V3 + "/account/whoami", other["access_token"])[0] == 401
    status, body = api(server.base_url, "POST", V3 + "/login",
                       json={"type": "m.login.password", "user": name, "password": PW})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert login(server.base_url, name, "n3w")["user_id"] == user_id


def test_password_change_can_keep_other_devices(server):
    name, user_id, token, _ = new_user(server)
    other = login(server.base_url, name, PW)
    status, _ = api(server.base_url, "POST", V3 + "/account/password", token,
                    json={"new_password": "n3w", "logout_devices": False, "auth": password_auth(name)})
    assert status == 200
    assert api(server.base_url, "GET", V3 + "/account/whoami", other["access_token"])[0] == 200


def test_password_change_errors(server):
    _, user_id, token, _ = new_user(server)
    status, body = api(server.base_url, "POST", V3 + "/account/password", json={"new_password": "x"})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = api(server.base_url, "POST", V3 + "/account/password", token,
                       json={"auth": password_auth(user_id)})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = api(server.base_url, "POST", V3 + "/account/password", token, json={"new_password": 12})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_uia_password_stage_refuses_another_users_credentials(server):
    _, _, token, _ = new_user(server)
    _, other_id, _, _ = new_user(server)
    status, body = api(server.base_url, "POST", V3 + "/account/password", token,
                       json={"new_password": "x", "auth": password_auth(other_id)})
    assert (status, body["errcode"]) == (401, "M_FORBIDDEN")


def test_uia_session_cannot_be_used_by_another_user(server):
    _, _, token_a, _ = new_user(server)
    _, _, token_b, _ = new_user(server)
    _, body = api(server.base_url, "POST", V3 + "/account/password", token_a, json={"new_password": "x"})
    status, body = api(server.base_url, "POST", V3 + "/account/password", token_b,
                       json={"new_password": "x", "auth": {"type": "m.login.dummy", "session": body["session"]}})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_uia_stage_not_offered_is_unrecognized(server):
    _, _, token, _ = new_user(server)
    status, body = api(server.base_url, "POST", V3 + "/account/password", token,
                       json={"new_password": "x", "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (401, "M_UNRECOGNIZED")
    assert body["flows"] == [{"stages": ["m.login.password"]}]


# --- deactivation ------------------------------------------------------------------------------

def test_deactivate_account(server):
    name, user_id, token, _ = new_user(server)
    status, body = api(server.base_url, "POST", V3 + "/account/deactivate", token, json={})
    assert status == 401 and body["flows"] == [{"stages": ["m.login.password"]}]
    status, body = api(server.base_url, "POST", V3 + "/account/deactivate", token,
                       json={"auth": password_auth(user_id, PW, body["session"])})
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    assert api(server.base_url, "GET", V3 + "/account/whoami", token)[0] == 401
    status, body = api(server.base_url, "POST", V3 + "/login",
                       json={"type": "m.login.password", "user": name, "password": PW})
    assert (status, body["errcode"]) == (403, "M_USER_DEACTIVATED")
    status, body = api(server.base_url, "GET", V3 + "/register/available", params={"username": name})
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")


def test_deactivate_errors(server):
    _, _, token, _ = new_user(server)
    status, body = api(server.base_url, "POST", V3 + "/account/deactivate", json={})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = api(server.base_url, "POST", V3 + "/account/deactivate", token, json={"erase": "yes"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# --- devices -----------------------------------------------------------------------------------

def test_list_get_and_rename_devices(server):
    name, _, token, device_id = new_user(server)
    other = login(server.base_url, name, PW, initial_device_display_name="Laptop")
    status, body = api(server.base_url, "GET", V3 + "/devices", token)
    assert status == 200
    by_id = {d["device_id"]: d for d in body["devices"]}
    assert set(by_id) == {device_id, other["device_id"]}
    assert by_id[other["device_id"]]["display_name"] == "Laptop"
    assert by_id[device_id]["last_seen_ip"] == "127.0.0.1" and by_id[device_id]["last_seen_ts"] > 0
    assert api(server.base_url, "PUT", V3 + f"/devices/{device_id}", token, json={"display_name": "Phone"}) == \
        (200, {})
    status, device = api(server.base_url, "GET", V3 + f"/devices/{device_id}", token)
    assert status == 200 and device["display_name"] == "Phone" and device["device_id"] == device_id
    # Without display_name nothing changes.
    assert api(server.base_url, "PUT", V3 + f"/devices/{device_id}", token, json={}) == (200, {})
    assert api(server.base_url, "GET", V3 + f"/devices/{device_id}", token)[1]["display_name"] == "Phone"


def test_device_errors(server):
    _, _, token, device_id = new_user(server)
    _, _, other_token, other_device = new_user(server)
    status, body = api(server.base_url, "GET", V3 + "/devices/NOSUCHDEV", token)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = api(server.base_url, "GET", V3 + f"/devices/{other_device}", token)  # not ours
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = api(server.base_url, "PUT", V3 + "/devices/NOSUCHDEV", token, json={"display_name": "x"})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = api(server.base_url, "PUT", V3 + f"/devices/{device_id}", token, json={"display_name": 5})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = api(server.base_url, "GET", V3 + "/devices")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


def test_delete_device_through_uia(server):
    name, user_id, token, device_id = new_user(server)
    other = login(server.base_url, name, PW)
    path = V3 + f"/devices/{other['device_id']}"
    status, body = api(server.base_url, "DELETE", path, token)  # no body at all
    assert status == 401 and body["flows"] == [{"stages": ["m.login.password"]}]
    status, body = api(server.base_url, "DELETE", path, token, json={"auth": password_auth(user_id, "bad",
                                                                                          body["session"])})
    assert (status, body["errcode"]) == (401, "M_FORBIDDEN")
    status, body = api(server.base_url, "DELETE", path, token, json={"auth": password_auth(user_id, PW,
                                                                                          body["session"])})
    assert (status, body) == (200, {})
    assert api(server.base_url, "GET", V3 + "/account/whoami", other["access_token"])[0] == 401
    assert api(server.base_url, "GET", path, token)[0] == 404
    # Deleting a device that is already gone succeeds.
    status, _ = api(server.base_url, "DELETE", path, token, json={"auth": password_auth(user_id)})
    assert status == 200


def test_delete_devices_in_bulk(server):
    name, user_id, token, device_id = new_user(server)
    a, b = login(server.base_url, name, PW), login(server.base_url, name, PW)
    status, body = api(server.base_url, "POST", V3 + "/delete_devices", token,
                       json={"devices": [a["device_id"], b["device_id"]]})
    assert status == 401
    status, body = api(server.base_url, "POST", V3 + "/delete_devices", token,
                       json={"devices": [a["device_id"], b["device_id"]],
                             "auth": password_auth(user_id, PW, body["session"])})
    assert (status, body) == (200, {})
    status, body = api(server.base_url, "GET", V3 + "/devices", token)
    assert [d["device_id"] for d in body["devices"]] == [device_id]
    status, body = api(server.base_url, "POST", V3 + "/delete_devices", token, json={})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = api(server.base_url, "POST", V3 + "/delete_devices", token, json={"devices": [1]})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


# --- capabilities ------------------------------------------------------------------------------

def test_capabilities(server):
    _, _, token, _ = new_user(server)
    status, body = api(server.base_url, "GET", V3 + "/capabilities", token)
    assert status == 200
    caps = body["capabilities"]
    assert caps["m.room_versions"] == {"default": "12", "available": {str(n): "stable" for n in range(1, 13)}}
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == caps["m.get_login_token"] == {"enabled": False}
    assert api(server.base_url, "GET", V3 + "/capabilities")[0] == 401


# --- shared-secret registration ----------------------------------------------------------------

ADMIN_REGISTER = "/_synapse/admin/v1/register"


def _shared_secret_body(srv, username, password=PW, admin=False, nonce=None, mac=None):
    if nonce is None:
        status, body = api(srv.base_url, "GET", ADMIN_REGISTER)
        assert status == 200
        nonce = body["nonce"]
    return {"nonce": nonce, "username": username, "password": password, "admin": admin,
            "mac": mac or compute_mac(srv.shared_secret, nonce, username, password, admin)}


def test_shared_secret_registration_creates_admin(server):
    body = _shared_secret_body(server, "bossy", admin=True)
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=body)
    assert status == 200
    assert resp["user_id"] == "@bossy:test.local" and resp["home_server"] == "test.local"
    assert resp["access_token"] and resp["device_id"]
    assert api(server.base_url, "GET", V3 + "/account/whoami", resp["access_token"])[0] == 200
    [(is_admin,)] = db_execute(server, "SELECT is_admin FROM users WHERE user_id = ?", ("@bossy:test.local",))
    assert bool(is_admin)
    # The nonce was single-use.
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=body)
    assert (status, resp["errcode"], resp["error"]) == (400, "M_UNKNOWN", "unrecognised nonce")


def test_shared_secret_registration_errors(server):
    body = _shared_secret_body(server, "macuser", mac="00" * 20)
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=body)
    assert (status, resp["errcode"], resp["error"]) == (403, "M_UNKNOWN", "HMAC incorrect")
    body = _shared_secret_body(server, "macuser", admin=True)
    body["admin"] = False  # the MAC covers the admin flag
    assert api(server.base_url, "POST", ADMIN_REGISTER, json=body)[0] == 403
    body = _shared_secret_body(server, "macuser")
    del body["mac"]
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=body)
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json={"username": "x"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    register_user(server.base_url, "sstaken", PW)
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=_shared_secret_body(server, "sstaken"))
    assert (status, resp["errcode"]) == (400, "M_USER_IN_USE")
    status, resp = api(server.base_url, "POST", ADMIN_REGISTER, json=_shared_secret_body(server, "bad name"))
    assert (status, resp["errcode"]) == (400, "M_INVALID_USERNAME")


# --- token-only registration and guests --------------------------------------------------------

def _add_registration_token(srv, token, uses_allowed=None, expiry_time=None):
    db_execute(srv, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)",
               (token, uses_allowed, expiry_time))


def test_registration_token_flow(token_server):
    base = token_server.base_url
    _add_registration_token(token_server, "onetime", uses_allowed=1)
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert api(base, "GET", validity, params={"token": "onetime"}) == (200, {"valid": True})
    status, body = api(base, "POST", V3 + "/register", json={"username": "tokenuser", "password": PW})
    assert status == 401 and body["flows"] == [{"stages": ["m.login.registration_token"]}]
    session = body["session"]
    status, body = api(base, "POST", V3 + "/register", json={
        "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session}})
    assert (status, body["errcode"], body["session"]) == (401, "M_UNAUTHORIZED", session)
    status, body = api(base, "POST", V3 + "/register", json={
        "auth": {"type": "m.login.dummy", "session": session}})
    assert (status, body["errcode"]) == (401, "M_UNRECOGNIZED")
    status, body = api(base, "POST", V3 + "/register", json={
        "auth": {"type": "m.login.registration_token", "token": "onetime", "session": session}})
    assert status == 200 and body["user_id"] == "@tokenuser:test.local"
    # Used up: no longer valid, and a second registration is refused.
    assert api(base, "GET", validity, params={"token": "onetime"}) == (200, {"valid": False})
    status, body = api(base, "POST", V3 + "/register", json={
        "username": "tokenuser2", "password": PW, "auth": {"type": "m.login.registration_token", "token": "onetime"}})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    [(pending, completed)] = db_execute(token_server, "SELECT pending, completed FROM registration_tokens "
                                                      "WHERE token = 'onetime'")
    assert (pending, completed) == (0, 1)


def test_expired_registration_token_is_invalid(token_server):
    _add_registration_token(token_server, "expired", expiry_time=1)
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert api(token_server.base_url, "GET", path, params={"token": "expired"}) == (200, {"valid": False})


def test_guest_registration(token_server):
    base = token_server.base_url
    status, body = api(base, "POST", V3 + "/register", params={"kind": "guest"},
                       json={"username": "ignored", "initial_device_display_name": "Guest phone"})
    assert status == 200
    assert body["user_id"].endswith(":test.local") and body["user_id"] != "@ignored:test.local"
    token = body["access_token"]
    status, who = api(base, "GET", V3 + "/account/whoami", token)
    assert status == 200 and who["is_guest"] is True and who["device_id"] == body["device_id"]
    status, err = api(base, "GET", V3 + "/devices", token)
    assert (status, err["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    assert api(base, "GET", V3 + "/capabilities", token)[0] == 200
    assert api(base, "POST", V3 + "/logout", token, json={})[0] == 200


def test_shared_secret_registration_disabled_without_secret(token_server):
    status, body = api(token_server.base_url, "GET", ADMIN_REGISTER)
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")


# --- closed registration and rate limits --------------------------------------------------------

def test_closed_registration_is_forbidden(closed_server):
    base = closed_server.base_url
    status, body = api(base, "POST", V3 + "/register",
                       json={"username": "closed", "password": PW, "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = api(base, "GET", V3 + "/register/available", params={"username": "closed"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = api(base, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity",
                       params={"token": "x"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_failed_logins_are_rate_limited(closed_server):
    base = closed_server.base_url
    status, _ = api(base, "POST", ADMIN_REGISTER, json=_shared_secret_body(closed_server, "limited"))
    assert status == 200
    bad = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "limited"}, "password": "no"}
    assert [api(base, "POST", V3 + "/login", json=bad)[0] for _ in range(2)] == [403, 403]
    status, body = api(base, "POST", V3 + "/login", json=bad)
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED") and body["retry_after_ms"] > 0
