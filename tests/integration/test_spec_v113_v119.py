"""What the client-server API gained or changed in spec v1.13 … v1.19 (changelog/v1.13.md …
v1.19.md), over HTTP against a real uzel on both engines: account suspension and locking with the
v1.18 admin endpoints, invite blocking, the report endpoints, ``format=event`` on state, the
m.room.create event in stripped state, room summary / hierarchy fields, new capabilities,
redactions through /send, mutual rooms, and the advertised versions."""
from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest
import requests

from homeserver.accounts.shared_secret import compute_mac
from tests.integration.harness import api, make_server_fixture, register_user

server = make_server_fixture()

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
_names = itertools.count()
_txn = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


def user(server, name: str) -> tuple[str, str]:
    user_id, token, _ = register_user(server.base_url, f"{name}{next(_names)}")
    return user_id, token


def ok(result):
    status, body = result
    assert status == 200, body
    return body


def err(result) -> tuple[int, str | None]:
    status, body = result
    return status, (body or {}).get("errcode")


def make_admin(server, name: str) -> tuple[str, str]:
    """A server admin through the shared-secret registration API."""
    localpart = f"{name}{next(_names)}"
    _, body = api(server.base_url, "GET", "/_synapse/admin/v1/register")
    nonce, pw = body["nonce"], "admin password"
    resp = ok(api(server.base_url, "POST", "/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": localpart, "password": pw, "admin": True,
        "mac": compute_mac(server.shared_secret, nonce, localpart, pw, True)}))
    return resp["user_id"], resp["access_token"]


def create_room(server, token, **body) -> str:
    return ok(api(server.base_url, "POST", f"{V3}/createRoom", token, body))["room_id"]


def send(server, token, room_id, content=None, event_type="m.room.message"):
    return api(server.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/send/{event_type}/t{next(_txn)}", token,
               content if content is not None else {"msgtype": "m.text", "body": "hi"})


def set_state(server, token, room_id, event_type, content, state_key=""):
    return api(server.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", token, content)


def sync(server, token, **params) -> dict:
    return ok(api(server.base_url, "GET", f"{V3}/sync", token, params={"timeout": "0", **params}))


# =================================================================================================
# v1.18 admin endpoints (admin.yaml) and m.account_moderation
# =================================================================================================

@pytest.mark.parametrize("path", ["suspend", "lock"])
def test_moderation_endpoints_are_for_server_admins_only(server, path):
    target, _ = user(server, "target")
    _, plain = user(server, "plain")
    status, body = api(server.base_url, "GET", f"{V1}/admin/{path}/{q(target)}", plain)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Authorisation comes before the look-up: an unknown user is also 403 for non-admins.
    assert err(api(server.base_url, "PUT", f"{V1}/admin/{path}/{q('@nobody:' + server.server_name)}", plain,
                   {"suspended": True, "locked": True})) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "GET", f"{V1}/admin/{path}/{q(target)}")) == (401, "M_MISSING_TOKEN")


@pytest.mark.parametrize("path,flag", [("suspend", "suspended"), ("lock", "locked")])
def test_moderation_endpoints_check_the_target(server, path, flag):
    admin_id, admin = make_admin(server, "boss")
    other_admin_id, _ = make_admin(server, "boss")
    url = f"{V1}/admin/{path}/{{}}"
    assert err(api(server.base_url, "GET", url.format(q("@x:elsewhere.example")), admin)) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", url.format(q("not-a-user")), admin)) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", url.format(q(f"@nobody:{server.server_name}")), admin)) == \
        (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", url.format(q(other_admin_id)), admin)) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "PUT", url.format(q(other_admin_id)), admin, {flag: True})) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "PUT", url.format(q(admin_id)), admin, {flag: True})) == (403, "M_FORBIDDEN")
    assert ok(api(server.base_url, "GET", url.format(q(admin_id)), admin)) == {flag: False}
    target, _ = user(server, "target")
    assert err(api(server.base_url, "PUT", url.format(q(target)), admin, {})) == (400, "M_MISSING_PARAM")
    assert err(api(server.base_url, "PUT", url.format(q(target)), admin, {flag: "yes"})) == (400, "M_BAD_JSON")
    assert ok(api(server.base_url, "GET", url.format(q(target)), admin)) == {flag: False}
    # Deactivated users are "not found".
    gone, gone_token = user(server, "gone")
    api(server.base_url, "POST", f"{V3}/account/deactivate", gone_token,
        {"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": gone},
                  "password": "correct horse battery staple"}})
    assert err(api(server.base_url, "GET", url.format(q(gone)), admin)) == (404, "M_NOT_FOUND")


def test_account_moderation_capability_only_for_admins(server):
    _, admin = make_admin(server, "boss")
    _, plain = user(server, "plain")
    caps = ok(api(server.base_url, "GET", f"{V3}/capabilities", admin))["capabilities"]
    assert caps["m.account_moderation"] == {"suspend": True, "lock": True}
    caps = ok(api(server.base_url, "GET", f"{V3}/capabilities", plain))["capabilities"]
    assert "m.account_moderation" not in caps
    # v1.18 m.forget_forced_upon_leave: uzel does not forget rooms on leave.
    assert caps["m.forget_forced_upon_leave"] == {"enabled": False}
    assert caps["m.profile_fields"]["enabled"] is True  # v1.16


# =================================================================================================
# v1.13 "Account suspension" (M_USER_SUSPENDED), v1.12/v1.18 "Account locking" (M_USER_LOCKED)
# =================================================================================================

def test_suspended_user_can_read_leave_and_redact_own_events_but_not_write(server):
    _, admin = make_admin(server, "boss")
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    room = create_room(server, alice, preset="public_chat")
    other_room = create_room(server, alice, preset="public_chat")
    left_room = create_room(server, alice, preset="public_chat")
    invited_room = create_room(server, alice, preset="private_chat")
    for r in (room, left_room):
        ok(api(server.base_url, "POST", f"{V3}/join/{q(r)}", bob, {}))
    ok(api(server.base_url, "POST", f"{V3}/rooms/{q(invited_room)}/invite", alice, {"user_id": bob_id}))
    own = ok(send(server, bob, room))["event_id"]
    alices = ok(send(server, alice, room))["event_id"]

    assert ok(api(server.base_url, "PUT", f"{V1}/admin/suspend/{q(bob_id)}", admin, {"suspended": True})) == \
        {"suspended": True}
    assert ok(api(server.base_url, "GET", f"{V1}/admin/suspend/{q(bob_id)}", admin)) == {"suspended": True}
    suspended = (403, "M_USER_SUSPENDED")
    # Refused: messages, state, joins, knocks, invites, room creation, profile, others' redactions.
    assert err(send(server, bob, room)) == suspended
    assert err(set_state(server, bob, room, "m.room.topic", {"topic": "x"})) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/join/{q(other_room)}", bob, {})) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/rooms/{q(invited_room)}/join", bob, {})) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/knock/{q(other_room)}", bob, {})) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/invite", bob, {"user_id": alice_id})) == suspended
    assert err(set_state(server, bob, room, "m.room.member", {"membership": "invite"}, alice_id)) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/createRoom", bob, {})) == suspended
    assert err(api(server.base_url, "PUT", f"{V3}/profile/{q(bob_id)}/displayname", bob,
                   {"displayname": "Bobby"})) == suspended
    assert err(api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(alices)}/t{next(_txn)}", bob, {})) == \
        suspended
    assert err(send(server, bob, room, {"redacts": alices}, "m.room.redaction")) == suspended
    assert err(api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/upgrade", bob, {"new_version": "12"})) == \
        suspended
    # Allowed: reading, syncing, redacting their own events, leaving, rejecting invites.
    ok(api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/messages", bob, params={"dir": "b"}))
    assert room in sync(server, bob)["rooms"]["join"]
    ok(api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(own)}/t{next(_txn)}", bob, {}))
    ok(api(server.base_url, "POST", f"{V3}/rooms/{q(left_room)}/leave", bob, {}))
    ok(api(server.base_url, "POST", f"{V3}/rooms/{q(invited_room)}/leave", bob, {}))
    # A new session of a suspended user is suspended too.
    new_session = ok(api(server.base_url, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob_id},
        "password": "correct horse battery staple"}))["access_token"]
    assert err(send(server, new_session, room)) == suspended

    assert ok(api(server.base_url, "PUT", f"{V1}/admin/suspend/{q(bob_id)}", admin, {"suspended": False})) == \
        {"suspended": False}
    ok(send(server, bob, room))
    ok(send(server, new_session, room))


def test_locked_user_gets_soft_logout_until_unlocked_and_may_log_out(server):
    _, admin = make_admin(server, "boss")
    bob_id, bob = user(server, "bob")
    second = ok(api(server.base_url, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob_id},
        "password": "correct horse battery staple"}))["access_token"]
    ok(api(server.base_url, "GET", f"{V3}/account/whoami", bob))  # cached before the lock
    assert ok(api(server.base_url, "PUT", f"{V1}/admin/lock/{q(bob_id)}", admin, {"locked": True})) == {"locked": True}
    assert ok(api(server.base_url, "GET", f"{V1}/admin/lock/{q(bob_id)}", admin)) == {"locked": True}
    for path in ("/account/whoami", "/sync", "/capabilities"):
        status, body = api(server.base_url, "GET", V3 + path, bob)
        assert (status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    status, body = api(server.base_url, "POST", f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob_id},
        "password": "correct horse battery staple"})
    assert (status, body["errcode"]) == (401, "M_USER_LOCKED")
    ok(api(server.base_url, "POST", f"{V3}/logout", second, {}))  # logout stays allowed
    assert ok(api(server.base_url, "PUT", f"{V1}/admin/lock/{q(bob_id)}", admin, {"locked": False})) == \
        {"locked": False}
    # The session survived the lock; the logged-out one did not.
    assert ok(api(server.base_url, "GET", f"{V3}/account/whoami", bob))["user_id"] == bob_id
    assert err(api(server.base_url, "GET", f"{V3}/account/whoami", second)) == (401, "M_UNKNOWN_TOKEN")


# =================================================================================================
# v1.18 invite blocking (modules/invite_permission.md, MSC4380)
# =================================================================================================

def test_invite_blocking_refuses_invites_and_hides_existing_ones(server):
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    earlier = create_room(server, alice, preset="private_chat", invite=[bob_id])
    assert earlier in sync(server, bob)["rooms"]["invite"]
    config = f"{V3}/user/{q(bob_id)}/account_data/m.invite_permission_config"
    ok(api(server.base_url, "PUT", config, bob, {"default_action": "block"}))

    room = create_room(server, alice, preset="private_chat")
    blocked = (403, "M_INVITE_BLOCKED")
    assert err(api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/invite", alice, {"user_id": bob_id})) == blocked
    assert err(set_state(server, alice, room, "m.room.member", {"membership": "invite"}, bob_id)) == blocked
    assert err(api(server.base_url, "POST", f"{V3}/createRoom", alice, {"invite": [bob_id]})) == blocked
    rooms = sync(server, bob).get("rooms", {})
    assert earlier not in rooms.get("invite", {})
    # Other endpoints still show the invite event.
    member = ok(api(server.base_url, "GET", f"{V3}/rooms/{q(earlier)}/state/m.room.member/{q(bob_id)}", alice))
    assert member["membership"] == "invite"

    ok(api(server.base_url, "PUT", config, bob, {"default_action": "something else"}))  # unknown: not blocking
    ok(api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/invite", alice, {"user_id": bob_id}))
    invites = sync(server, bob)["rooms"]["invite"]
    assert earlier in invites and room in invites


# =================================================================================================
# v1.13 / v1.14 / v1.18 reporting
# =================================================================================================

def test_reports_reason_optional_for_events_and_score_ignored(server):
    _, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    room = create_room(server, alice, preset="public_chat")
    event_id = ok(send(server, alice, room))["event_id"]
    path = f"{V3}/rooms/{q(room)}/report/{q(event_id)}"
    assert ok(api(server.base_url, "POST", path, alice, {})) == {}  # v1.13: reason may be omitted
    assert ok(api(server.base_url, "POST", path, alice, {"reason": "x", "score": "junk"})) == {}  # v1.18
    assert ok(api(server.base_url, "POST", path, alice, {"reason": "x", "score": -100})) == {}
    assert ok(api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report", bob, {"reason": ""})) == {}  # v1.13
    assert ok(api(server.base_url, "POST", f"{V3}/users/{q(bob_id)}/report", alice, {"reason": "spam"})) == {}  # v1.14
    assert err(api(server.base_url, "POST", f"{V3}/users/{q('@nobody:' + server.server_name)}/report", alice,
                   {"reason": "x"})) == (404, "M_NOT_FOUND")


# =================================================================================================
# Rooms: v1.14 join via, v1.16 format=event and stripped m.room.create, v1.18 /send redactions,
# v1.19 unsigned.replaces_state
# =================================================================================================

def test_join_takes_via_and_still_accepts_the_removed_server_name(server):
    _, alice = user(server, "alice")
    _, bob = user(server, "bob")
    _, carol = user(server, "carol")
    room = create_room(server, alice, preset="public_chat")
    ok(api(server.base_url, "POST", f"{V3}/join/{q(room)}", bob, {}, params={"via": server.server_name}))
    ok(api(server.base_url, "POST", f"{V3}/join/{q(room)}", carol, {}, params={"server_name": server.server_name}))


def test_state_format_event_returns_the_whole_event_with_replaces_state(server):
    alice_id, alice = user(server, "alice")
    room = create_room(server, alice, name="first")
    first = ok(api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/state/m.room.name/", alice,
                   params={"format": "event"}))
    ok(set_state(server, alice, room, "m.room.name", {"name": "second"}))
    url = f"{V3}/rooms/{q(room)}/state/m.room.name/"
    assert ok(api(server.base_url, "GET", url, alice)) == {"name": "second"}
    assert ok(api(server.base_url, "GET", url, alice, params={"format": "content"})) == {"name": "second"}
    event = ok(api(server.base_url, "GET", url, alice, params={"format": "event"}))
    assert event["type"] == "m.room.name" and event["state_key"] == "" and event["sender"] == alice_id
    assert event["content"] == {"name": "second"} and event["room_id"] == room and "event_id" in event
    assert event["unsigned"]["replaces_state"] == first["event_id"]  # v1.19
    assert err(api(server.base_url, "GET", url, alice, params={"format": "pdu"})) == (400, "M_INVALID_PARAM")


def test_invite_and_knock_stripped_state_include_the_create_event(server):
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    _, carol = user(server, "carol")
    room = create_room(server, alice, preset="private_chat", invite=[bob_id])
    invite_state = sync(server, bob)["rooms"]["invite"][room]["invite_state"]["events"]
    create = [e for e in invite_state if e["type"] == "m.room.create"]
    assert len(create) == 1 and create[0]["sender"] == alice_id and create[0]["state_key"] == ""
    knock_room = create_room(server, alice, room_version="12")
    ok(set_state(server, alice, knock_room, "m.room.join_rules", {"join_rule": "knock"}))
    ok(api(server.base_url, "POST", f"{V3}/knock/{q(knock_room)}", carol, {}))
    knock_state = sync(server, carol)["rooms"]["knock"][knock_room]["knock_state"]["events"]
    assert any(e["type"] == "m.room.create" for e in knock_state)


def test_redaction_through_send(server):
    _, alice = user(server, "alice")
    room = create_room(server, alice, room_version="11")
    target = ok(send(server, alice, room))["event_id"]
    redaction = ok(send(server, alice, room, {"redacts": target, "reason": "oops"}, "m.room.redaction"))["event_id"]
    served = ok(api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/event/{q(target)}", alice))
    assert served["content"] == {} and served["unsigned"]["redacted_because"]["event_id"] == redaction
    old_room = create_room(server, alice, room_version="10")  # redacts at the top level before v11
    target = ok(send(server, alice, old_room))["event_id"]
    redaction = ok(send(server, alice, old_room, {"redacts": target}, "m.room.redaction"))["event_id"]
    event = ok(api(server.base_url, "GET", f"{V3}/rooms/{q(old_room)}/event/{q(redaction)}", alice))
    assert event["redacts"] == target
    assert err(send(server, alice, room, {}, "m.room.redaction")) == (400, "M_BAD_JSON")


# =================================================================================================
# v1.15 room summary and hierarchy fields, auth_metadata; v1.19 mutual rooms
# =================================================================================================

def test_room_summary_and_hierarchy_carry_room_version_encryption_and_allowed_rooms(server):
    _, alice = user(server, "alice")
    space = create_room(server, alice, preset="public_chat", creation_content={"type": "m.space"})
    child = create_room(server, alice, room_version="12", initial_state=[
        {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
        {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": [
            {"type": "m.room_membership", "room_id": space}]}}])
    ok(set_state(server, alice, space, "m.space.child", {"via": [server.server_name]}, child))
    summary = ok(api(server.base_url, "GET", f"{V1}/room_summary/{q(child)}", alice))
    assert summary["room_version"] == "12" and summary["encryption"] == "m.megolm.v1.aes-sha2"
    assert summary["allowed_room_ids"] == [space] and summary["join_rule"] == "restricted"
    rooms = ok(api(server.base_url, "GET", f"{V1}/rooms/{q(space)}/hierarchy", alice))["rooms"]
    entry = next(r for r in rooms if r["room_id"] == child)
    assert entry["room_version"] == "12" and entry["encryption"] == "m.megolm.v1.aes-sha2"
    assert entry["allowed_room_ids"] == [space]


def test_auth_metadata_says_there_is_no_oauth_api(server):
    assert err(api(server.base_url, "GET", f"{V1}/auth_metadata")) == (404, "M_UNRECOGNIZED")


def test_mutual_rooms_stable_endpoint(server):
    _, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    room = create_room(server, alice, preset="public_chat")
    create_room(server, alice)
    ok(api(server.base_url, "POST", f"{V3}/join/{q(room)}", bob, {}))
    body = ok(api(server.base_url, "GET", f"{V1}/mutual_rooms", alice, params={"user_id": bob_id}))
    assert body["joined"] == [room]


# =================================================================================================
# v1.13 CORS, v1.17 push rules without legacy mentions, /versions
# =================================================================================================

def test_cors_allows_the_spec_methods(server):
    resp = requests.options(f"{server.base_url}{V3}/sync", timeout=10)
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"} <= methods


def test_default_push_rules_have_no_legacy_mention_rules(server):
    _, alice = user(server, "alice")
    rules = ok(api(server.base_url, "GET", f"{V3}/pushrules/", alice))["global"]
    ids = {r["rule_id"] for kind in rules.values() for r in kind}
    assert not ids & {".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"}
    assert {".m.rule.is_user_mention", ".m.rule.is_room_mention"} <= ids


def test_versions_advertise_v1_13_to_v1_19(server):
    versions = ok(api(server.base_url, "GET", "/_matrix/client/versions"))["versions"]
    for minor in range(1, 20):
        assert f"v1.{minor}" in versions
