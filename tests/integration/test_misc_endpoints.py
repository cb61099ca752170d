"""Endpoints a bad-input sweep found unserved, over HTTP against a real uzel on both engines:
third-party identifiers (administrative_contact.yaml and the requestToken endpoints of
registration.yaml / password_management.yaml), OpenID tokens (openid.yaml, server-server
openid.yaml), whois (admin.yaml), POST /login/get_token (login_token.yaml), the deprecated
GET /events/{eventId} (old_sync.yaml), /.well-known/matrix/support (support.yaml) and
GET /auth_metadata (oauth_server_metadata.yaml) on a server without OAuth 2.0.

uzel trusts no identity server and sends no email or SMS: homeserver/accounts/threepids.py says
which answer follows for each 3PID endpoint.
"""
from __future__ import annotations

import itertools
import uuid
from urllib.parse import quote

import pytest

from tests.integration.harness import api, db_execute, make_server_fixture, register_user

PW = "correct horse battery staple"
C = "/_matrix/client/v3"
GET_TOKEN = "/_matrix/client/v1/login/get_token"
USERINFO = "/_matrix/federation/v1/openid/userinfo"

server = make_server_fixture()
SUPPORT = {"support_contacts": [{"role": "m.role.admin", "matrix_id": "@admin:test.local",
                                 "email_address": "admin@example.org"},
                                {"role": "m.role.security", "email_address": "security@example.org"}],
           "support_page": "https://example.org/help"}
configured = make_server_fixture({"login_via_existing_session": {"enabled": True, "token_timeout": "90s"},
                                  "enable_ratelimiting": True, **SUPPORT})

_names = (f"misc{n}" for n in itertools.count())


def new_user(srv) -> tuple[str, str, str]:
    """(user_id, access_token, device_id) of a fresh account."""
    return register_user(srv.base_url, next(_names), PW)


def q(s: str) -> str:
    return quote(s, safe="")


def errcode(result) -> tuple[int, str | None]:
    status, body = result
    return status, (body or {}).get("errcode")


def password_auth(user_id: str, session: str) -> dict:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": PW, "session": session}


def uia_round(srv, path: str, token: str, user_id: str, body: dict):
    """POST ``body`` twice: the first answer must be the UIA 401 offering m.login.password, the
    second carries the password; returns the second answer."""
    status, first = api(srv.base_url, "POST", path, token, json=body)
    assert status == 401 and first["flows"] == [{"stages": ["m.login.password"]}], first
    return api(srv.base_url, "POST", path, token, json={**body, "auth": password_auth(user_id, first["session"])})


# --- third-party identifiers: listing and removing ---------------------------------------------

def test_new_account_has_no_threepids(server):
    _, token, _ = new_user(server)
    assert api(server.base_url, "GET", C + "/account/3pid", token) == (200, {"threepids": []})


def test_threepids_stored_by_an_admin_are_listed_and_deleted_with_no_support(server):
    user_id, token, _ = new_user(server)
    address = f"{user_id[1:].split(':')[0]}@example.org"
    db_execute(server, "INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at) "
                       "VALUES (?, ?, ?, ?, ?)", ("email", address, user_id, 1535176800000, 1535336848756))
    status, body = api(server.base_url, "GET", C + "/account/3pid", token)
    assert status == 200
    assert body == {"threepids": [{"medium": "email", "address": address, "validated_at": 1535176800000,
                                   "added_at": 1535336848756}]}
    # The address matches whatever its capitalisation (emails are stored canonicalised).
    status, body = api(server.base_url, "POST", C + "/account/3pid/delete", token,
                       json={"medium": "email", "address": address.upper()})
    assert (status, body) == (200, {"id_server_unbind_result": "no-support"})
    assert api(server.base_url, "GET", C + "/account/3pid", token) == (200, {"threepids": []})
    # Deleting an identifier the account does not have is no error (Synapse does the same).
    assert api(server.base_url, "POST", C + "/account/3pid/delete", token,
               json={"medium": "msisdn", "address": "447700900001"}) == (200, {"id_server_unbind_result": "no-support"})


def test_threepid_delete_and_unbind_check_their_bodies(server):
    _, token, _ = new_user(server)
    for path in ("/account/3pid/delete", "/account/3pid/unbind"):
        assert errcode(api(server.base_url, "POST", C + path, token, json={"address": "a@b.c"})) == (400, "M_MISSING_PARAM")
        assert errcode(api(server.base_url, "POST", C + path, token,
                           json={"medium": "fax", "address": "a@b.c"})) == (400, "M_INVALID_PARAM")
        assert errcode(api(server.base_url, "POST", C + path, token,
                           json={"medium": "email", "address": 7})) == (400, "M_BAD_JSON")
        assert errcode(api(server.base_url, "POST", C + path, token,
                           json={"medium": "email", "address": "a@b.c", "id_server": ["x"]})) == (400, "M_BAD_JSON")


def test_unbind_answers_no_support_without_a_trusted_identity_server(server):
    _, token, _ = new_user(server)
    body = {"medium": "email", "address": "someone@example.org", "id_server": "id.example.org"}
    assert api(server.base_url, "POST", C + "/account/3pid/unbind", token, json=body) == \
        (200, {"id_server_unbind_result": "no-support"})


def test_deactivation_deletes_the_accounts_threepids(server):
    user_id, token, _ = new_user(server)
    db_execute(server, "INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at) "
                       "VALUES (?, ?, ?, ?, ?)", ("msisdn", f"44{uuid.uuid4().int % 10**9}", user_id, 1, 2))
    assert uia_round(server, C + "/account/deactivate", token, user_id, {})[0] == 200
    assert db_execute(server, "SELECT COUNT(*) FROM user_threepids WHERE user_id = ?", (user_id,)) == [(0,)]


# --- third-party identifiers: adding and binding ------------------------------------------------

def test_3pid_add_runs_uia_then_finds_no_validated_session(server):
    user_id, token, _ = new_user(server)
    status, body = uia_round(server, C + "/account/3pid/add", token, user_id,
                             {"sid": "abc123987", "client_secret": "d0nt-T3ll"})
    assert (status, body["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    assert api(server.base_url, "GET", C + "/account/3pid", token) == (200, {"threepids": []})


@pytest.mark.parametrize("body, expected", [
    ({"client_secret": "d0nt-T3ll"}, "M_MISSING_PARAM"),
    ({"sid": "abc", "client_secret": "not allowed!"}, "M_INVALID_PARAM"),
    ({"sid": "", "client_secret": "d0nt-T3ll"}, "M_INVALID_PARAM"),
    ({"sid": 12, "client_secret": "d0nt-T3ll"}, "M_BAD_JSON"),
    ({"sid": "abc", "client_secret": "x" * 256}, "M_INVALID_PARAM"),
])
def test_3pid_add_checks_its_body_before_uia(server, body, expected):
    _, token, _ = new_user(server)
    assert errcode(api(server.base_url, "POST", C + "/account/3pid/add", token, json=body)) == (400, expected)


def test_deprecated_3pid_post_fails_with_threepid_auth_failed(server):
    _, token, _ = new_user(server)
    creds = {"id_server": "matrix.org", "id_access_token": "abc123_OpaqueString", "sid": "abc123987",
             "client_secret": "d0nt-T3ll"}
    assert errcode(api(server.base_url, "POST", C + "/account/3pid", token, json={"three_pid_creds": creds})) == \
        (403, "M_THREEPID_AUTH_FAILED")
    assert errcode(api(server.base_url, "POST", C + "/account/3pid", token, json={})) == (400, "M_MISSING_PARAM")
    assert errcode(api(server.base_url, "POST", C + "/account/3pid", token,
                       json={"three_pid_creds": "x"})) == (400, "M_BAD_JSON")


def test_3pid_bind_refuses_untrusted_identity_servers(server):
    _, token, _ = new_user(server)
    body = {"id_server": "example.org", "id_access_token": "abc123_OpaqueString", "sid": "abc123987",
            "client_secret": "d0nt-T3ll"}
    assert errcode(api(server.base_url, "POST", C + "/account/3pid/bind", token, json=body)) == \
        (400, "M_SERVER_NOT_TRUSTED")
    del body["id_access_token"]
    assert errcode(api(server.base_url, "POST", C + "/account/3pid/bind", token, json=body)) == \
        (400, "M_MISSING_PARAM")


@pytest.mark.parametrize("method, path", [
    ("GET", "/account/3pid"), ("POST", "/account/3pid"), ("POST", "/account/3pid/add"),
    ("POST", "/account/3pid/bind"), ("POST", "/account/3pid/unbind"), ("POST", "/account/3pid/delete"),
    ("GET", "/admin/whois/@x:test.local"), ("POST", "/user/@x:test.local/openid/request_token"),
    ("GET", "/events/$abc"),
])
def test_account_endpoints_need_an_access_token(server, method, path):
    assert errcode(api(server.base_url, method, C + path, json={} if method == "POST" else None)) == \
        (401, "M_MISSING_TOKEN")


# --- requestToken -------------------------------------------------------------------------------

EMAIL_BODY = {"client_secret": "monkeys_are_GREAT", "email": "alice@example.org", "send_attempt": 1,
              "next_link": "https://example.org/congratulations.html"}
MSISDN_BODY = {"client_secret": "monkeys_are_GREAT", "country": "GB", "phone_number": "07700900001",
               "send_attempt": 1}


@pytest.mark.parametrize("path, body, expected", [
    # administrative_contact.yaml: "M_THREEPID_MEDIUM_NOT_SUPPORTED: The homeserver does not
    # support adding email addresses" / "phone numbers".
    ("/account/3pid/email/requestToken", EMAIL_BODY, (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")),
    ("/account/3pid/msisdn/requestToken", MSISDN_BODY, (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")),
    # registration.yaml / password_management.yaml: 403 M_THREEPID_DENIED, "The homeserver does
    # not permit the address to be bound".
    ("/register/email/requestToken", EMAIL_BODY, (403, "M_THREEPID_DENIED")),
    ("/register/msisdn/requestToken", MSISDN_BODY, (403, "M_THREEPID_DENIED")),
    ("/account/password/email/requestToken", EMAIL_BODY, (403, "M_THREEPID_DENIED")),
    ("/account/password/msisdn/requestToken", MSISDN_BODY, (403, "M_THREEPID_DENIED")),
])
def test_request_token_is_refused_with_the_spec_code(server, path, body, expected):
    status, resp = api(server.base_url, "POST", C + path, json=body)  # no access token needed
    assert (status, resp["errcode"]) == expected
    assert isinstance(resp["error"], str)


@pytest.mark.parametrize("change, expected", [
    ({"client_secret": None}, "M_MISSING_PARAM"),
    ({"client_secret": "spaces are not allowed"}, "M_INVALID_PARAM"),
    ({"client_secret": 5}, "M_BAD_JSON"),
    ({"email": None}, "M_MISSING_PARAM"),
    ({"email": "not-an-address"}, "M_INVALID_PARAM"),
    ({"email": ["a@b.c"]}, "M_BAD_JSON"),
    ({"send_attempt": None}, "M_MISSING_PARAM"),
    ({"send_attempt": "1"}, "M_BAD_JSON"),
    ({"send_attempt": True}, "M_BAD_JSON"),
    ({"next_link": "javascript:alert(1)"}, "M_INVALID_PARAM"),
    ({"id_server": 3}, "M_BAD_JSON"),
])
@pytest.mark.parametrize("path", ["/register/email/requestToken", "/account/3pid/email/requestToken",
                                  "/account/password/email/requestToken"])
def test_email_request_token_checks_the_body_first(server, path, change, expected):
    body = {k: v for k, v in {**EMAIL_BODY, **change}.items() if v is not None}
    assert errcode(api(server.base_url, "POST", C + path, json=body)) == (400, expected)


@pytest.mark.parametrize("change, expected", [
    ({"country": None}, "M_MISSING_PARAM"),
    ({"country": "gb"}, "M_INVALID_PARAM"),
    ({"country": "GBR"}, "M_INVALID_PARAM"),
    ({"phone_number": None}, "M_MISSING_PARAM"),
    ({"phone_number": "call me"}, "M_INVALID_PARAM"),
    ({"phone_number": 7700900001}, "M_BAD_JSON"),
])
@pytest.mark.parametrize("path", ["/register/msisdn/requestToken", "/account/3pid/msisdn/requestToken",
                                  "/account/password/msisdn/requestToken"])
def test_msisdn_request_token_checks_the_body_first(server, path, change, expected):
    body = {k: v for k, v in {**MSISDN_BODY, **change}.items() if v is not None}
    assert errcode(api(server.base_url, "POST", C + path, json=body)) == (400, expected)


def test_request_token_refuses_non_json_bodies(server):
    status, body = api(server.base_url, "POST", C + "/register/email/requestToken", data=b"nope",
                       headers={"Content-Type": "application/json"})
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    assert errcode(api(server.base_url, "POST", C + "/account/3pid/msisdn/requestToken", json=[1])) == \
        (400, "M_BAD_JSON")


# --- OpenID ---------------------------------------------------------------------------------------

def test_openid_token_is_exchanged_for_the_user_id(server):
    user_id, token, _ = new_user(server)
    status, body = api(server.base_url, "POST", f"{C}/user/{q(user_id)}/openid/request_token", token, json={})
    assert status == 200
    assert set(body) == {"access_token", "token_type", "matrix_server_name", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["matrix_server_name"] == server.server_name
    assert body["expires_in"] == 3600
    assert api(server.base_url, "GET", USERINFO, params={"access_token": body["access_token"]}) == \
        (200, {"sub": user_id})
    # The OpenID token is good for nothing else (openid.yaml: "It cannot be used to ... call /sync").
    assert errcode(api(server.base_url, "GET", C + "/account/whoami", body["access_token"])) == \
        (401, "M_UNKNOWN_TOKEN")
    assert errcode(api(server.base_url, "POST", f"{C}/user/{q(user_id)}/openid/request_token",
                       body["access_token"], json={})) == (401, "M_UNKNOWN_TOKEN")


def test_openid_token_only_for_oneself(server):
    _, token, _ = new_user(server)
    other, _, _ = new_user(server)
    assert errcode(api(server.base_url, "POST", f"{C}/user/{q(other)}/openid/request_token", token, json={})) == \
        (403, "M_FORBIDDEN")


def test_openid_request_token_needs_a_json_object(server):
    user_id, token, _ = new_user(server)
    path = f"{C}/user/{q(user_id)}/openid/request_token"
    assert errcode(api(server.base_url, "POST", path, token, data=b"{", headers={"Content-Type": "application/json"})) \
        == (400, "M_NOT_JSON")
    assert errcode(api(server.base_url, "POST", path, token, json=["x"])) == (400, "M_BAD_JSON")


def test_userinfo_refuses_unknown_expired_and_missing_tokens(server):
    user_id, token, _ = new_user(server)
    assert api(server.base_url, "GET", USERINFO, params={"access_token": "uzo_unknown"}) == \
        (401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Access Token unknown or expired"})
    assert errcode(api(server.base_url, "GET", USERINFO)) == (401, "M_MISSING_TOKEN")
    # A client access token is not an OpenID token.
    assert errcode(api(server.base_url, "GET", USERINFO, params={"access_token": token})) == (401, "M_UNKNOWN_TOKEN")
    _, body = api(server.base_url, "POST", f"{C}/user/{q(user_id)}/openid/request_token", token, json={})
    db_execute(server, "UPDATE openid_tokens SET valid_until_ms = 1 WHERE user_id = ?", (user_id,))
    assert errcode(api(server.base_url, "GET", USERINFO, params={"access_token": body["access_token"]})) == \
        (401, "M_UNKNOWN_TOKEN")


def test_userinfo_refuses_tokens_of_deactivated_accounts(server):
    user_id, token, _ = new_user(server)
    _, body = api(server.base_url, "POST", f"{C}/user/{q(user_id)}/openid/request_token", token, json={})
    assert uia_round(server, C + "/account/deactivate", token, user_id, {})[0] == 200
    assert errcode(api(server.base_url, "GET", USERINFO, params={"access_token": body["access_token"]})) == \
        (401, "M_UNKNOWN_TOKEN")


def test_userinfo_is_served_on_the_openid_and_federation_resources_only():
    """Synapse's ``openid`` listener resource exposes just this endpoint (config/schema.py)."""
    from federation.api import openid as openid_api
    from homeserver.http.router import Router

    class FakeHs:
        def get(self, cls):
            return object()

    router = Router()
    openid_api.register_routes(FakeHs(), router)
    for resources in ({"openid"}, {"federation"}, {"openid", "client"}):
        assert router.match("GET", USERINFO, resources).route is not None
    assert router.match("GET", USERINFO, {"client", "keys", "media"}).route is None


# --- whois --------------------------------------------------------------------------------------

def test_whois_of_oneself_lists_devices_with_ip_time_and_user_agent(server):
    user_id, token, device_id = new_user(server)
    status, _ = api(server.base_url, "GET", C + "/account/whoami", token, headers={"User-Agent": "uzel-test/1.0"})
    assert status == 200
    status, body = api(server.base_url, "GET", f"{C}/admin/whois/{q(user_id)}", token,
                       headers={"User-Agent": "uzel-test/1.0"})
    assert status == 200
    assert body["user_id"] == user_id
    assert list(body["devices"]) == [device_id]
    [session] = body["devices"][device_id]["sessions"]
    [connection] = session["connections"]
    assert connection["ip"] == "127.0.0.1"
    assert connection["user_agent"] == "uzel-test/1.0"
    assert isinstance(connection["last_seen"], int) and connection["last_seen"] > 1_600_000_000_000


def test_whois_of_others_is_for_server_admins(server):
    user_id, token, _ = new_user(server)
    other, other_token, other_device = new_user(server)
    assert errcode(api(server.base_url, "GET", f"{C}/admin/whois/{q(other)}", token)) == (403, "M_FORBIDDEN")
    db_execute(server, "UPDATE users SET is_admin = ? WHERE user_id = ?", (True, user_id))
    status, body = api(server.base_url, "GET", f"{C}/admin/whois/{q(other)}", token)
    assert status == 200 and body["user_id"] == other and list(body["devices"]) == [other_device]
    assert api(server.base_url, "GET", f"{C}/admin/whois/{q('@nobody:test.local')}", token) == \
        (200, {"user_id": "@nobody:test.local", "devices": {}})
    assert errcode(api(server.base_url, "GET", f"{C}/admin/whois/{q('@x:elsewhere.example')}", token)) == \
        (400, "M_INVALID_PARAM")
    assert errcode(api(server.base_url, "GET", f"{C}/admin/whois/{q('not-a-user')}", token)) == \
        (400, "M_INVALID_PARAM")


# --- POST /login/get_token ----------------------------------------------------------------------

def test_get_token_is_unserved_when_disabled(server):
    _, token, _ = new_user(server)
    assert errcode(api(server.base_url, "POST", GET_TOKEN, token, json={})) == (404, "M_UNRECOGNIZED")
    _, body = api(server.base_url, "GET", C + "/capabilities", token)
    assert body["capabilities"]["m.get_login_token"] == {"enabled": False}
    _, body = api(server.base_url, "GET", C + "/login")
    assert {"type": "m.login.token", "get_login_token": False} in body["flows"]


def test_get_token_when_enabled_mints_a_single_use_login_token(configured):
    user_id, token, device_id = new_user(configured)
    _, body = api(configured.base_url, "GET", C + "/capabilities", token)
    assert body["capabilities"]["m.get_login_token"] == {"enabled": True}
    _, body = api(configured.base_url, "GET", C + "/login")
    assert {"type": "m.login.token", "get_login_token": True} in body["flows"]

    status, body = uia_round(configured, GET_TOKEN, token, user_id, {})
    assert status == 200, body
    assert set(body) == {"login_token", "expires_in_ms"} and body["expires_in_ms"] == 90_000
    login = {"type": "m.login.token", "token": body["login_token"]}
    status, resp = api(configured.base_url, "POST", C + "/login", json=login)
    assert status == 200 and resp["user_id"] == user_id and resp["device_id"] != device_id
    assert errcode(api(configured.base_url, "POST", C + "/login", json=login)) == (403, "M_FORBIDDEN")

    # At most one token a minute, counted after UIA (the UIA 401 is still offered).
    status, body = uia_round(configured, GET_TOKEN, token, user_id, {})
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")


def test_get_token_needs_a_token_and_a_password(configured):
    user_id, token, _ = new_user(configured)
    assert errcode(api(configured.base_url, "POST", GET_TOKEN, json={})) == (401, "M_MISSING_TOKEN")
    status, first = api(configured.base_url, "POST", GET_TOKEN, token, json={})
    assert status == 401
    bad = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
           "password": "wrong", "session": first["session"]}
    status, body = api(configured.base_url, "POST", GET_TOKEN, token, json={"auth": bad})
    assert (status, body["errcode"]) == (401, "M_FORBIDDEN") and "flows" in body


# --- GET /events/{eventId} ----------------------------------------------------------------------

def test_single_event_by_id_for_those_who_may_see_it(server):
    user_id, token, _ = new_user(server)
    _, stranger_token, _ = new_user(server)
    status, body = api(server.base_url, "POST", C + "/createRoom", token, json={"preset": "private_chat"})
    assert status == 200
    room_id = body["room_id"]
    content = {"msgtype": "m.text", "body": "hello"}
    status, body = api(server.base_url, "PUT", f"{C}/rooms/{q(room_id)}/send/m.room.message/t1", token, json=content)
    assert status == 200
    event_id = body["event_id"]

    status, event = api(server.base_url, "GET", f"{C}/events/{q(event_id)}", token)
    assert status == 200
    assert (event["event_id"], event["room_id"], event["sender"], event["type"], event["content"]) == \
        (event_id, room_id, user_id, "m.room.message", content)
    assert isinstance(event["origin_server_ts"], int)
    # The same event /rooms/{roomId}/event/{eventId} serves (but for its age).
    status, same = api(server.base_url, "GET", f"{C}/rooms/{q(room_id)}/event/{q(event_id)}", token)
    same["unsigned"].pop("age", None)
    event["unsigned"].pop("age", None)
    assert (status, same) == (200, event)

    assert errcode(api(server.base_url, "GET", f"{C}/events/{q(event_id)}", stranger_token)) == (404, "M_NOT_FOUND")
    assert errcode(api(server.base_url, "GET", f"{C}/events/{q('$unknownevent')}", token)) == (404, "M_NOT_FOUND")
    assert errcode(api(server.base_url, "GET", f"{C}/events/{q('not an id')}", token)) == (404, "M_NOT_FOUND")


# --- /.well-known/matrix/support ------------------------------------------------------------------

def test_support_well_known_is_404_when_not_configured(server):
    assert errcode(api(server.base_url, "GET", "/.well-known/matrix/support")) == (404, "M_NOT_FOUND")


def test_support_well_known_serves_the_configured_contacts(configured):
    assert api(configured.base_url, "GET", "/.well-known/matrix/support") == (200, {
        "contacts": [{"role": "m.role.admin", "matrix_id": "@admin:test.local", "email_address": "admin@example.org"},
                     {"role": "m.role.security", "email_address": "security@example.org"}],
        "support_page": "https://example.org/help"})


# --- GET /auth_metadata ---------------------------------------------------------------------------

def test_auth_metadata_says_oauth_is_not_supported(server):
    """client-server-api "Authentication API discovery": 404 M_UNRECOGNIZED when the OAuth 2.0
    API is not supported; the legacy API is (GET /login answers)."""
    _, token, _ = new_user(server)
    for t in (None, token):
        status, body = api(server.base_url, "GET", "/_matrix/client/v1/auth_metadata", t)
        assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    assert api(server.base_url, "GET", C + "/login")[0] == 200
