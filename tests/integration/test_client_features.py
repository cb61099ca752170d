"""Per-user client features over HTTP against a real uzel: filters, account data, tags, push
rules, pushers, profiles, presence and TURN credentials (client-server-api "Filtering",
"Client Config", "Room Tagging", "Push Notifications", "Profiles", "Presence", "Voice over IP";
data/api/client-server/{filter,account-data,tags,pushrules,pusher,profile,presence,voip}.yaml)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote

import pytest

from tests.integration.harness import api, make_server_fixture, register_user

TURN = {"turn_uris": ["turn:turn.test.local:3478?transport=udp", "turns:turn.test.local:5349"],
        "turn_shared_secret": "s3cret", "turn_user_lifetime": "2h"}
server = make_server_fixture({"allow_guest_access": True, **TURN})
no_presence = make_server_fixture({"presence": {"enabled": False}, "turn_allow_guests": False,
                                   "allow_guest_access": True, **TURN}, engines=("sqlite",))

C = "/_matrix/client/v3"
ROOM = "!someroom:test.local"


def q(s: str) -> str:
    return quote(s, safe="")


@pytest.fixture(scope="module")
def alice(server):
    return register_user(server.base_url, "alice")


@pytest.fixture(scope="module")
def bob(server):
    return register_user(server.base_url, "bob")


def call(server, method, path, token, body=None, **params):
    return api(server.base_url, method, C + path, token, body, params=params or None)


def errcode(result):
    status, body = result
    return status, (body or {}).get("errcode")


# --- filters -----------------------------------------------------------------------------------

SPEC_FILTER = {
    "room": {"state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
             "timeline": {"limit": 10, "types": ["m.room.message"], "not_rooms": ["!726s6s6q:example.com"],
                          "not_senders": ["@spam:example.com"]},
             "ephemeral": {"types": ["m.receipt", "m.typing"], "not_rooms": ["!726s6s6q:example.com"],
                           "not_senders": ["@spam:example.com"]}},
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client", "event_fields": ["type", "content", "sender"],
}


def test_filter_upload_and_download_round_trips(server, alice):
    user_id, token, _ = alice
    status, body = call(server, "POST", f"/user/{q(user_id)}/filter", token, SPEC_FILTER)
    assert status == 200 and isinstance(body["filter_id"], str) and not body["filter_id"].startswith("{")
    status, got = call(server, "GET", f"/user/{q(user_id)}/filter/{body['filter_id']}", token)
    assert (status, got) == (200, SPEC_FILTER)
    status, second = call(server, "POST", f"/user/{q(user_id)}/filter", token, {})
    assert status == 200 and second["filter_id"] != body["filter_id"]


def test_filter_errors(server, alice, bob):
    user_id, token, _ = alice
    assert errcode(call(server, "POST", f"/user/{q(user_id)}/filter", token,
                        {"room": {"timeline": {"limit": "ten"}}})) == (400, "M_BAD_JSON")
    assert errcode(call(server, "POST", f"/user/{q(user_id)}/filter", token,
                        {"room": {"timeline": {"limit": 0}}})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", f"/user/{q(user_id)}/filter", token,
                        {"event_format": "xml"})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", f"/user/{q(bob[0])}/filter", token, {})) == (403, "M_FORBIDDEN")
    _, made = call(server, "POST", f"/user/{q(user_id)}/filter", token, {})
    assert errcode(call(server, "GET", f"/user/{q(bob[0])}/filter/{made['filter_id']}", token)) == (403, "M_FORBIDDEN")
    assert errcode(call(server, "GET", f"/user/{q(bob[0])}/filter/{made['filter_id']}", bob[1])) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", f"/user/{q(user_id)}/filter/99999", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", f"/user/{q(user_id)}/filter/nonsense", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "POST", f"/user/{q(user_id)}/filter", None, {})) == (401, "M_MISSING_TOKEN")


# --- account data ----------------------------------------------------------------------------------

def test_global_account_data_set_get_replace(server, alice):
    user_id, token, _ = alice
    path = f"/user/{q(user_id)}/account_data/org.example.config"
    assert errcode(call(server, "GET", path, token)) == (404, "M_NOT_FOUND")
    assert call(server, "PUT", path, token, {"custom_account_data_key": "custom_config_value"}) == (200, {})
    assert call(server, "GET", path, token) == (200, {"custom_account_data_key": "custom_config_value"})
    assert call(server, "PUT", path, token, {"v": 2}) == (200, {})
    assert call(server, "GET", path, token) == (200, {"v": 2})


def test_room_account_data_is_separate_from_global(server, alice):
    user_id, token, _ = alice
    room_path = f"/user/{q(user_id)}/rooms/{q(ROOM)}/account_data/org.example.room"
    assert errcode(call(server, "GET", room_path, token)) == (404, "M_NOT_FOUND")
    assert call(server, "PUT", room_path, token, {"r": 1}) == (200, {})
    assert call(server, "GET", room_path, token) == (200, {"r": 1})
    assert errcode(call(server, "GET", f"/user/{q(user_id)}/account_data/org.example.room", token)) == (
        404, "M_NOT_FOUND")


def test_account_data_errors(server, alice, bob):
    user_id, token, _ = alice
    other = f"/user/{q(bob[0])}/account_data/org.example.x"
    assert errcode(call(server, "PUT", other, token, {})) == (403, "M_FORBIDDEN")
    assert errcode(call(server, "GET", other, token)) == (403, "M_FORBIDDEN")
    for data_type in ("m.fully_read", "m.push_rules"):
        assert errcode(call(server, "PUT", f"/user/{q(user_id)}/account_data/{data_type}", token, {})) == (
            405, "M_BAD_JSON")
        assert errcode(call(server, "PUT", f"/user/{q(user_id)}/rooms/{q(ROOM)}/account_data/{data_type}",
                            token, {})) == (405, "M_BAD_JSON")
    bad_room = f"/user/{q(user_id)}/rooms/{q('@notaroomid:example.org')}/account_data/org.example.x"
    assert errcode(call(server, "PUT", bad_room, token, {})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "GET", bad_room, token)) == (400, "M_INVALID_PARAM")
    status, body = api(server.base_url, "PUT", f"{C}/user/{q(user_id)}/account_data/org.example.x", token,
                       data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = api(server.base_url, "PUT", f"{C}/user/{q(user_id)}/account_data/org.example.x", token,
                       data=b"{not json", headers={"Content-Type": "application/json"})
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")


def test_push_rules_are_readable_as_account_data(server, alice):
    user_id, token, _ = alice
    status, body = call(server, "GET", f"/user/{q(user_id)}/account_data/m.push_rules", token)
    assert status == 200
    assert body["global"]["override"][0]["rule_id"] == ".m.rule.master"


# --- tags --------------------------------------------------------------------------------------------

def test_tags_put_get_delete(server, alice):
    user_id, token, _ = alice
    base = f"/user/{q(user_id)}/rooms/{q(ROOM)}/tags"
    assert call(server, "GET", base, token) == (200, {"tags": {}})
    assert call(server, "PUT", f"{base}/m.favourite", token, {"order": 0.25}) == (200, {})
    assert call(server, "PUT", f"{base}/u.work", token, {}) == (200, {})
    assert call(server, "GET", base, token) == (200, {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}})
    # tags are the room's m.tag account data
    assert call(server, "GET", f"/user/{q(user_id)}/rooms/{q(ROOM)}/account_data/m.tag", token) == (
        200, {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}})
    assert call(server, "DELETE", f"{base}/m.favourite", token) == (200, {})
    assert call(server, "DELETE", f"{base}/never.set", token) == (200, {})
    assert call(server, "GET", base, token) == (200, {"tags": {"u.work": {}}})


def test_tag_errors(server, alice, bob):
    user_id, token, _ = alice
    assert errcode(call(server, "GET", f"/user/{q(bob[0])}/rooms/{q(ROOM)}/tags", token)) == (403, "M_FORBIDDEN")
    assert errcode(call(server, "PUT", f"/user/{q(bob[0])}/rooms/{q(ROOM)}/tags/t", token, {})) == (
        403, "M_FORBIDDEN")
    base = f"/user/{q(user_id)}/rooms/{q(ROOM)}/tags"
    assert errcode(call(server, "PUT", f"{base}/{'x' * 256}", token, {})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{base}/t", token, {"order": "first"})) == (400, "M_BAD_JSON")


# --- push rules --------------------------------------------------------------------------------------

PR = "/pushrules/global"


def test_pushrules_default_ruleset(server, bob):
    _, token, _ = bob
    status, body = call(server, "GET", "/pushrules/", token)
    assert status == 200 and set(body) == {"global"}
    ruleset = body["global"]
    assert set(ruleset) == {"override", "content", "room", "sender", "underride"}
    assert [r["rule_id"] for r in ruleset["underride"]][0] == ".m.rule.call"
    assert call(server, "GET", f"{PR}/", token) == (200, ruleset)
    status, master = call(server, "GET", f"{PR}/override/.m.rule.master", token)
    assert status == 200 and master["enabled"] is False and master["default"] is True


def test_pushrules_create_order_and_delete(server, alice):
    _, token, _ = alice
    cake = {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}]}
    assert call(server, "PUT", f"{PR}/content/SSByZWFsbHkgbGlrZSBjYWtl", token, cake) == (200, {})
    lie = {"pattern": "cake*lie", "actions": ["notify"]}
    assert call(server, "PUT", f"{PR}/content/U3BvbmdlIGNha2UgaXMgYmVzdA", token, lie,
                before="SSByZWFsbHkgbGlrZSBjYWtl") == (200, {})
    status, rule = call(server, "GET", f"{PR}/content/SSByZWFsbHkgbGlrZSBjYWtl", token)
    assert (status, rule) == (200, {"rule_id": "SSByZWFsbHkgbGlrZSBjYWtl", "default": False, "enabled": True,
                                    "pattern": "cake", "actions": cake["actions"]})
    _, ruleset = call(server, "GET", f"{PR}/", token)
    assert [r["rule_id"] for r in ruleset["content"]] == ["U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl"]
    beer = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                           {"kind": "room_member_count", "is": "<=10"}],
            "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}]}
    assert call(server, "PUT", f"{PR}/override/U2VlIHlvdSBpbiBUaGUgRHVrZQ", token, beer) == (200, {})
    _, ruleset = call(server, "GET", f"{PR}/", token)
    assert [r["rule_id"] for r in ruleset["override"]][:2] == [".m.rule.master", "U2VlIHlvdSBpbiBUaGUgRHVrZQ"]
    room_rule = f"{PR}/room/{q('!dj234r78wl45Gh4D:matrix.org')}"
    assert call(server, "PUT", room_rule, token, {"actions": []}) == (200, {})
    assert call(server, "GET", room_rule, token) == (200, {"rule_id": "!dj234r78wl45Gh4D:matrix.org",
                                                           "default": False, "enabled": True, "actions": []})
    assert call(server, "DELETE", room_rule, token) == (200, {})
    assert errcode(call(server, "GET", room_rule, token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "DELETE", room_rule, token)) == (404, "M_NOT_FOUND")


def test_pushrules_enabled_and_actions(server, alice):
    _, token, _ = alice
    assert call(server, "GET", f"{PR}/override/.m.rule.master/enabled", token) == (200, {"enabled": False})
    assert call(server, "PUT", f"{PR}/override/.m.rule.master/enabled", token, {"enabled": True}) == (200, {})
    assert call(server, "GET", f"{PR}/override/.m.rule.master/enabled", token) == (200, {"enabled": True})
    assert call(server, "PUT", f"{PR}/override/.m.rule.master/enabled", token, {"enabled": False}) == (200, {})
    actions = ["notify", {"set_tweak": "highlight"}]
    assert call(server, "PUT", f"{PR}/underride/.m.rule.message/actions", token, {"actions": actions}) == (200, {})
    assert call(server, "GET", f"{PR}/underride/.m.rule.message/actions", token) == (200, {"actions": actions})
    assert call(server, "PUT", f"{PR}/sender/{q('@spambot:matrix.org')}", token, {"actions": []}) == (200, {})
    assert call(server, "PUT", f"{PR}/sender/{q('@spambot:matrix.org')}/enabled", token,
                {"enabled": False}) == (200, {})
    _, rule = call(server, "GET", f"{PR}/sender/{q('@spambot:matrix.org')}", token)
    assert rule["enabled"] is False
    # PUT on an existing rule replaces its parameters and keeps its enabled state
    assert call(server, "PUT", f"{PR}/sender/{q('@spambot:matrix.org')}", token, {"actions": ["notify"]}) == (200, {})
    _, rule = call(server, "GET", f"{PR}/sender/{q('@spambot:matrix.org')}", token)
    assert rule["actions"] == ["notify"] and rule["enabled"] is False


def test_pushrules_errors(server, alice):
    _, token, _ = alice
    assert errcode(call(server, "GET", f"{PR}/override/nope", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", f"{PR}/underride/.m.rule.master", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", f"{PR}/bogus/x", token)) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/.my.rule", token, {"actions": []})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/a%5Cb", token, {"actions": []})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/a%2Fb", token, {"actions": []})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/x", token, {})) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/x", token, {"actions": ["boom"]})) == (400, "M_BAD_JSON")
    assert errcode(call(server, "PUT", f"{PR}/content/x", token, {"actions": []})) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/x", token, {"actions": []}, before="missing")) == (
        400, "M_UNKNOWN")
    assert errcode(call(server, "PUT", f"{PR}/override/x", token, {"actions": []}, after=".m.rule.master")) == (
        400, "M_UNKNOWN")
    assert errcode(call(server, "DELETE", f"{PR}/override/.m.rule.master", token)) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "DELETE", f"{PR}/override/nope", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "PUT", f"{PR}/override/nope/enabled", token, {"enabled": True})) == (
        404, "M_NOT_FOUND")
    assert errcode(call(server, "PUT", f"{PR}/override/.m.rule.nope/enabled", token, {"enabled": True})) == (
        404, "M_NOT_FOUND")
    assert errcode(call(server, "PUT", f"{PR}/override/.m.rule.master/enabled", token, {"enabled": "yes"})) == (
        400, "M_BAD_JSON")
    assert errcode(call(server, "PUT", f"{PR}/override/.m.rule.master/enabled", token, {})) == (
        400, "M_MISSING_PARAM")
    assert errcode(call(server, "PUT", f"{PR}/override/nope/actions", token, {"actions": []})) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "PUT", f"{PR}/override/.m.rule.master/actions", token, {"actions": "x"})) == (
        400, "M_BAD_JSON")
    assert errcode(call(server, "GET", f"{PR}/override/nope/actions", token)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", "/pushrules/", None)) == (401, "M_MISSING_TOKEN")


# --- pushers -----------------------------------------------------------------------------------------

PUSHER = {"app_display_name": "Mat Rix", "app_id": "com.example.app.ios", "append": False,
          "data": {"format": "event_id_only", "url": "https://push-gateway.location.here/_matrix/push/v1/notify"},
          "device_display_name": "iPhone 9", "kind": "http", "lang": "en", "profile_tag": "xxyyzz",
          "pushkey": "APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8"}


def test_pushers_set_list_delete(server):
    _, token, _ = register_user(server.base_url, "pushy")
    assert call(server, "GET", "/pushers", token) == (200, {"pushers": []})
    assert call(server, "POST", "/pushers/set", token, PUSHER) == (200, {})
    status, body = call(server, "GET", "/pushers", token)
    expected = {k: v for k, v in PUSHER.items() if k != "append"}
    assert (status, body) == (200, {"pushers": [expected]})
    assert call(server, "POST", "/pushers/set", token, dict(PUSHER, lang="de")) == (200, {})
    _, body = call(server, "GET", "/pushers", token)
    assert [p["lang"] for p in body["pushers"]] == ["de"]
    assert call(server, "POST", "/pushers/set", token, {"kind": None, "app_id": PUSHER["app_id"],
                                                        "pushkey": PUSHER["pushkey"]}) == (200, {})
    assert call(server, "GET", "/pushers", token) == (200, {"pushers": []})


def test_pusher_errors(server, alice):
    _, token, _ = alice
    status, body = call(server, "POST", "/pushers/set", token, {k: v for k, v in PUSHER.items()
                                                               if k not in ("lang", "data")})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM") and "lang" in body["error"] and "data" in body["error"]
    assert errcode(call(server, "POST", "/pushers/set", token, {"kind": "http"})) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token, dict(PUSHER, data={}))) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token,
                        dict(PUSHER, data={"url": "https://gw.example/other/path"}))) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token, dict(PUSHER, kind="carrier-pigeon"))) == (
        400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token, dict(PUSHER, app_id="a" * 65))) == (
        400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token, dict(PUSHER, pushkey="k" * 513))) == (
        400, "M_INVALID_PARAM")
    assert errcode(call(server, "POST", "/pushers/set", token, dict(PUSHER, data="x"))) == (400, "M_BAD_JSON")


# --- profiles ----------------------------------------------------------------------------------------

def test_profile_defaults_and_displayname_avatar(server):
    user_id, token, _ = register_user(server.base_url, "carol")
    status, profile = call(server, "GET", f"/profile/{q(user_id)}", None)
    assert status == 200 and profile.get("displayname") == "carol"
    assert call(server, "PUT", f"/profile/{q(user_id)}/displayname", token, {"displayname": "Carol C."}) == (200, {})
    assert call(server, "GET", f"/profile/{q(user_id)}/displayname", None) == (200, {"displayname": "Carol C."})
    assert call(server, "PUT", f"/profile/{q(user_id)}/avatar_url", token,
                {"avatar_url": "mxc://test.local/abc"}) == (200, {})
    assert call(server, "GET", f"/profile/{q(user_id)}", token) == (
        200, {"displayname": "Carol C.", "avatar_url": "mxc://test.local/abc"})
    assert call(server, "DELETE", f"/profile/{q(user_id)}/avatar_url", token) == (200, {})
    assert errcode(call(server, "GET", f"/profile/{q(user_id)}/avatar_url", token)) == (404, "M_NOT_FOUND")
    assert call(server, "DELETE", f"/profile/{q(user_id)}/avatar_url", token) == (200, {})  # already gone


def test_profile_custom_fields_and_timezone(server):
    user_id, token, _ = register_user(server.base_url, "dave")
    assert call(server, "PUT", f"/profile/{q(user_id)}/m.tz", token, {"m.tz": "Europe/Prague"}) == (200, {})
    value = {"nested": [1, True, None, "x"]}
    assert call(server, "PUT", f"/profile/{q(user_id)}/org.example.custom", token,
                {"org.example.custom": value}) == (200, {})
    assert call(server, "PUT", f"/profile/{q(user_id)}/org.example.null", token,
                {"org.example.null": None}) == (200, {})
    assert call(server, "GET", f"/profile/{q(user_id)}/org.example.custom", None) == (
        200, {"org.example.custom": value})
    _, profile = call(server, "GET", f"/profile/{q(user_id)}", None)
    assert profile["m.tz"] == "Europe/Prague" and profile["org.example.null"] is None
    assert call(server, "DELETE", f"/profile/{q(user_id)}/org.example.custom", token) == (200, {})
    assert errcode(call(server, "GET", f"/profile/{q(user_id)}/org.example.custom", None)) == (404, "M_NOT_FOUND")


def test_profile_errors(server, alice, bob):
    user_id, token, _ = alice
    me = f"/profile/{q(user_id)}"
    assert errcode(call(server, "GET", "/profile/%40nobody%3Atest.local", None)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "GET", "/profile/%40nobody%3Atest.local/displayname", None)) == (404, "M_NOT_FOUND")
    assert errcode(call(server, "PUT", f"/profile/{q(bob[0])}/displayname", token, {"displayname": "x"})) == (
        403, "M_FORBIDDEN")
    assert errcode(call(server, "DELETE", f"/profile/{q(bob[0])}/displayname", token)) == (403, "M_FORBIDDEN")
    assert errcode(call(server, "PUT", f"{me}/displayname", token, {})) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "PUT", f"{me}/displayname", token, {"displayname": "a", "x": 1})) == (
        400, "M_BAD_JSON")
    assert errcode(call(server, "PUT", f"{me}/displayname", token, {"displayname": 5})) == (400, "M_BAD_JSON")
    assert errcode(call(server, "PUT", f"{me}/displayname", token, {"displayname": "x" * 257})) == (
        400, "M_BAD_JSON")
    assert errcode(call(server, "PUT", f"{me}/avatar_url", token, {"avatar_url": "https://x/y"})) == (
        400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", f"{me}/NotValid", token, {"NotValid": 1})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "GET", f"{me}/nodots", token)) == (400, "M_INVALID_PARAM")
    long_key = "org.example." + "k" * 250
    assert errcode(call(server, "PUT", f"{me}/{long_key}", token, {long_key: 1})) == (400, "M_KEY_TOO_LARGE")
    big = "x" * 40000
    assert call(server, "PUT", f"{me}/org.example.big1", token, {"org.example.big1": big}) == (200, {})
    assert errcode(call(server, "PUT", f"{me}/org.example.big2", token, {"org.example.big2": big})) == (
        400, "M_PROFILE_TOO_LARGE")
    assert call(server, "DELETE", f"{me}/org.example.big1", token) == (200, {})
    assert errcode(call(server, "PUT", f"{me}/displayname", None, {"displayname": "x"})) == (401, "M_MISSING_TOKEN")


def test_guest_may_only_change_displayname(server):
    status, body = api(server.base_url, "POST", f"{C}/register", json={}, params={"kind": "guest"})
    assert status == 200, body
    guest, token = body["user_id"], body["access_token"]
    assert call(server, "PUT", f"/profile/{q(guest)}/displayname", token, {"displayname": "Guest"}) == (200, {})
    assert errcode(call(server, "PUT", f"/profile/{q(guest)}/avatar_url", token,
                        {"avatar_url": "mxc://test.local/a"})) == (403, "M_FORBIDDEN")
    assert call(server, "GET", "/voip/turnServer", token)[0] == 200  # turn_allow_guests defaults to true


# --- presence ----------------------------------------------------------------------------------------

def test_presence_set_and_get_own(server, alice):
    user_id, token, _ = alice
    path = f"/presence/{q(user_id)}/status"
    assert call(server, "PUT", path, token, {"presence": "online", "status_msg": "I am here."}) == (200, {})
    status, body = call(server, "GET", path, token)
    assert status == 200
    assert body["presence"] == "online" and body["status_msg"] == "I am here."
    assert body["currently_active"] is True and 0 <= body["last_active_ago"] < 60_000
    assert call(server, "PUT", path, token, {"presence": "unavailable"}) == (200, {})
    status, body = call(server, "GET", path, token)
    assert body["presence"] == "unavailable" and "status_msg" not in body and "currently_active" not in body


def test_sending_a_message_makes_the_sender_online(server):
    user_id, token, _ = register_user(server.base_url, "sender" + str(int(time.time() * 1000)), "pw-sender-1")
    path = f"/presence/{q(user_id)}/status"
    assert call(server, "PUT", path, token, {"presence": "unavailable"}) == (200, {})
    status, room = call(server, "POST", "/createRoom", token, {})
    assert status == 200, room
    status, _ = call(server, "PUT", f"/rooms/{q(room['room_id'])}/send/m.room.message/t1", token,
                     {"msgtype": "m.text", "body": "hi"})
    assert status == 200
    status, body = call(server, "GET", path, token)
    assert body["presence"] == "online" and body["currently_active"] is True


def test_presence_errors(server, alice, bob):
    user_id, token, _ = alice
    path = f"/presence/{q(user_id)}/status"
    assert errcode(call(server, "PUT", f"/presence/{q(bob[0])}/status", token, {"presence": "online"})) == (
        403, "M_FORBIDDEN")
    assert errcode(call(server, "PUT", path, token, {})) == (400, "M_MISSING_PARAM")
    assert errcode(call(server, "PUT", path, token, {"presence": "busy"})) == (400, "M_INVALID_PARAM")
    assert errcode(call(server, "PUT", path, token, {"presence": "online", "status_msg": 3})) == (400, "M_BAD_JSON")
    # bob shares no room with alice
    assert errcode(call(server, "GET", f"/presence/{q(bob[0])}/status", token)) == (403, "M_FORBIDDEN")
    assert errcode(call(server, "GET", "/presence/%40nobody%3Atest.local/status", token)) == (404, "M_NOT_FOUND")


def test_presence_disabled_accepts_and_reports_offline(no_presence):
    user_id, token, _ = register_user(no_presence.base_url, "erin")
    path = f"{C}/presence/{q(user_id)}/status"
    assert api(no_presence.base_url, "PUT", path, token, {"presence": "online"}) == (200, {})
    assert api(no_presence.base_url, "GET", path, token) == (200, {"presence": "offline"})


# --- VoIP ----------------------------------------------------------------------------------------------

def test_turn_server_credentials_follow_the_coturn_rest_scheme(server, alice):
    user_id, token, _ = alice
    before = int(time.time())
    status, body = call(server, "GET", "/voip/turnServer", token)
    assert status == 200
    assert body["uris"] == TURN["turn_uris"] and body["ttl"] == 7200
    expiry, _, name = body["username"].partition(":")
    assert name == user_id and before + 7200 - 5 <= int(expiry) <= int(time.time()) + 7200 + 5
    mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()


def test_turn_server_refuses_guests_when_configured(no_presence):
    status, body = api(no_presence.base_url, "POST", f"{C}/register", json={}, params={"kind": "guest"})
    assert status == 200, body
    assert errcode(api(no_presence.base_url, "GET", f"{C}/voip/turnServer", body["access_token"])) == (
        403, "M_FORBIDDEN")
    _, token, _ = register_user(no_presence.base_url, "frank")
    assert api(no_presence.base_url, "GET", f"{C}/voip/turnServer", token)[0] == 200
