"""Rooms over real HTTP: creation, membership, sending, state, events, members, redactions,
upgrades, reports, timestamp look-ups and initialSync (client-server-api "Rooms", "Room
membership", "Sending events to a room", "Redactions", modules/room_upgrades.md,
modules/report_content.md, modules/history_visibility.md)."""
from __future__ import annotations

import itertools
import time
import uuid
from urllib.parse import quote

import pytest

from tests.integration.harness import api, db_execute, make_server_fixture, register_user

V3 = "/_matrix/client/v3"

server = make_server_fixture()
limited = make_server_fixture({"enable_ratelimiting": True,
                               "rc_registration": {"per_second": 100, "burst_count": 1000},
                               "rc_message": {"per_second": 0.001, "burst_count": 3},
                               "rc_joins": {"local": {"per_second": 0.001, "burst_count": 2},
                                            "remote": {"per_second": 0.001, "burst_count": 2}},
                               "rc_invites": {"per_room": {"per_second": 0.001, "burst_count": 2},
                                              "per_user": {"per_second": 10, "burst_count": 100},
                                              "per_issuer": {"per_second": 10, "burst_count": 100}}},
                              engines=("sqlite",))

_n = itertools.count()


def user(srv, name="u"):
    user_id, token, _ = register_user(srv.base_url, f"{name}{next(_n)}")
    return user_id, token


def q(s: str) -> str:
    return quote(s, safe="")


def create(srv, token, **body):
    status, resp = api(srv.base_url, "POST", V3 + "/createRoom", token, json=body)
    assert status == 200, resp
    return resp["room_id"]


def send(srv, token, room_id, body=None, event_type="m.room.message", txn=None):
    txn = txn or uuid.uuid4().hex
    return api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/send/{q(event_type)}/{txn}", token,
               json=body if body is not None else {"msgtype": "m.text", "body": "hi"})


def state(srv, token, room_id, event_type, state_key="", **params):
    return api(srv.base_url, "GET", f"{V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", token,
               params=params or None)


def put_state(srv, token, room_id, event_type, content, state_key=""):
    return api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", token,
               json=content)


def member_op(srv, token, room_id, op, body=None):
    return api(srv.base_url, "POST", f"{V3}/rooms/{q(room_id)}/{op}", token, json=body if body is not None else {})


def join(srv, token, room_id_or_alias, **params):
    return api(srv.base_url, "POST", f"{V3}/join/{q(room_id_or_alias)}", token, json={}, params=params or None)


def get_event(srv, token, room_id, event_id):
    return api(srv.base_url, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}", token)


# --- createRoom --------------------------------------------------------------------------------

def test_create_room_with_every_field_sets_the_state(server):
    alice, at = user(server, "alice")
    bob, _ = user(server, "bob")
    name = f"pub{next(_n)}"
    room = create(server, at, visibility="public", room_alias_name=name, name="The Pub", topic="Beer",
                  invite=[bob], room_version="10", creation_content={"m.federate": False},
                  initial_state=[{"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}},
                                 {"type": "org.example.custom", "state_key": "k", "content": {"a": 1}}],
                  preset="public_chat", is_direct=True, power_level_content_override={"kick": 75})
    assert room.startswith("!")
    assert state(server, at, room, "m.room.name") == (200, {"name": "The Pub"})
    assert state(server, at, room, "m.room.topic")[1]["topic"] == "Beer"
    assert state(server, at, room, "m.room.join_rules")[1] == {"join_rule": "public"}
    assert state(server, at, room, "m.room.guest_access")[1] == {"guest_access": "can_join"}
    assert state(server, at, room, "org.example.custom", "k")[1] == {"a": 1}
    assert state(server, at, room, "m.room.canonical_alias")[1] == {"alias": f"#{name}:test.local"}
    create_content = state(server, at, room, "m.room.create")[1]
    assert create_content["room_version"] == "10" and create_content["m.federate"] is False
    pl = state(server, at, room, "m.room.power_levels")[1]
    assert pl["kick"] == 75 and pl["users"][alice] == 100
    invite = state(server, at, room, "m.room.member", bob)[1]
    assert invite["membership"] == "invite" and invite["is_direct"] is True
    status, resp = api(server.base_url, "GET", f"{V3}/directory/room/{q('#' + name + ':test.local')}")
    assert status == 200 and resp["room_id"] == room
    status, resp = api(server.base_url, "GET", f"{V3}/directory/list/room/{q(room)}")
    assert status == 200 and resp["visibility"] == "public"


def test_create_room_defaults_to_private_chat_in_the_default_version(server):
    _, at = user(server)
    room = create(server, at)
    assert state(server, at, room, "m.room.join_rules")[1] == {"join_rule": "invite"}
    assert state(server, at, room, "m.room.history_visibility")[1] == {"history_visibility": "shared"}
    assert state(server, at, room, "m.room.create")[1]["room_version"] == "12"


def test_create_room_creator_member_event_carries_profile(server):
    alice, at = user(server)
    api(server.base_url, "PUT", f"{V3}/profile/{q(alice)}/displayname", at, json={"displayname": "Alice A"})
    room = create(server, at)
    assert state(server, at, room, "m.room.member", alice)[1] == {"membership": "join", "displayname": "Alice A"}


def test_create_room_with_taken_alias_is_room_in_use(server):
    _, at = user(server)
    name = f"taken{next(_n)}"
    create(server, at, room_alias_name=name)
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", at, json={"room_alias_name": name})
    assert status == 400 and resp["errcode"] == "M_ROOM_IN_USE"


@pytest.mark.parametrize("body,errcode", [
    ({"room_version": "999"}, "M_UNSUPPORTED_ROOM_VERSION"),
    ({"room_version": 5}, "M_BAD_JSON"),
    ({"name": 5}, "M_BAD_JSON"),
    ({"topic": ["x"]}, "M_BAD_JSON"),
    ({"invite": "@a:test.local"}, "M_BAD_JSON"),
    ({"invite": [5]}, "M_BAD_JSON"),
    ({"invite": ["not-a-user"]}, "M_INVALID_PARAM"),
    ({"visibility": "sideways"}, "M_INVALID_PARAM"),
    ({"visibility": 1}, "M_BAD_JSON"),
    ({"preset": "party"}, "M_INVALID_PARAM"),
    ({"is_direct": "yes"}, "M_BAD_JSON"),
    ({"creation_content": []}, "M_BAD_JSON"),
    ({"power_level_content_override": "x"}, "M_BAD_JSON"),
    ({"initial_state": {}}, "M_BAD_JSON"),
    ({"initial_state": [{"type": "m.room.name"}]}, "M_BAD_JSON"),
    ({"initial_state": [{"type": "m.room.create", "content": {}}]}, "M_INVALID_ROOM_STATE"),
    ({"room_alias_name": "a:b"}, "M_INVALID_PARAM"),
    ({"room_alias_name": 7}, "M_BAD_JSON"),
    ({"room_version": "10", "name": "x", "power_level_content_override": {"events": {"m.room.name": 101}}},
     "M_INVALID_ROOM_STATE"),
    ({"invite_3pid": [{"id_server": "id.example", "id_access_token": "t", "medium": "email",
                       "address": "a@example.org"}]}, "M_SERVER_NOT_TRUSTED"),
])
def test_create_room_bad_input(server, body, errcode):
    _, at = user(server)
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", at, json=body)
    assert status == 400 and resp["errcode"] == errcode, resp


def test_create_room_not_json_and_unauthenticated(server):
    _, at = user(server)
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", at, data=b"{nope")
    assert status == 400 and resp["errcode"] == "M_NOT_JSON"
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", at, json=[1])
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", json={})
    assert status == 401 and resp["errcode"] == "M_MISSING_TOKEN"


def test_create_room_huge_body_is_too_large(server):
    _, at = user(server)
    status, resp = api(server.base_url, "POST", V3 + "/createRoom", at, json={"name": "x" * 70000})
    assert status == 413 and resp["errcode"] == "M_TOO_LARGE"


def test_trusted_private_chat_gives_invitees_creator_power(server):
    alice, at = user(server)
    bob, _ = user(server)
    room = create(server, at, preset="trusted_private_chat", invite=[bob], room_version="11")
    assert state(server, at, room, "m.room.power_levels")[1]["users"][bob] == 100
    room12 = create(server, at, preset="trusted_private_chat", invite=[bob])
    assert bob in state(server, at, room12, "m.room.create")[1]["additional_creators"]


# --- membership --------------------------------------------------------------------------------

def test_join_public_room_by_id_and_alias_then_leave_and_forget(server):
    _, at = user(server)
    bob, bt = user(server)
    name = f"joinme{next(_n)}"
    room = create(server, at, preset="public_chat", room_alias_name=name)
    assert join(server, bt, f"#{name}:test.local") == (200, {"room_id": room})
    assert api(server.base_url, "GET", V3 + "/joined_rooms", bt) == (200, {"joined_rooms": [room]})
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/forget", bt, json={})
    assert status == 400 and resp["errcode"] == "M_UNKNOWN"
    assert member_op(server, bt, room, "leave") == (200, {})
    assert api(server.base_url, "GET", V3 + "/joined_rooms", bt) == (200, {"joined_rooms": []})
    assert member_op(server, bt, room, "leave") == (200, {})  # leaving again is a no-op
    assert member_op(server, bt, room, "forget") == (200, {})
    assert member_op(server, bt, room, "join") == (200, {"room_id": room})


def test_join_invite_only_room_needs_invite(server):
    _, at = user(server)
    bob, bt = user(server)
    room = create(server, at)
    status, resp = member_op(server, bt, room, "join")
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    assert member_op(server, at, room, "invite", {"user_id": bob}) == (200, {})
    assert member_op(server, at, room, "invite", {"user_id": bob}) == (200, {})  # already invited
    assert member_op(server, bt, room, "join") == (200, {"room_id": room})
    status, resp = member_op(server, at, room, "invite", {"user_id": bob})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"


def test_join_unknown_room_and_alias_is_not_found(server):
    _, bt = user(server)
    status, resp = join(server, bt, "!nothere:test.local")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = join(server, bt, "!nothere:elsewhere.example", via="elsewhere.example")
    # No server in via can be reached: nobody can help with the join.
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = join(server, bt, "#nothere:test.local")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = join(server, bt, "nonsense")
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    status, resp = member_op(server, bt, "!nothere:test.local", "join")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"


def test_invite_requires_user_id_and_permission(server):
    _, at = user(server)
    bob, bt = user(server)
    carol, ct = user(server)
    room = create(server, at, preset="public_chat")
    status, resp = member_op(server, at, room, "invite", {})
    assert status == 400 and resp["errcode"] == "M_MISSING_PARAM"
    status, resp = member_op(server, at, room, "invite", {"user_id": 5})
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"
    status, resp = member_op(server, at, room, "invite", {"user_id": "bob"})
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    # A non-member cannot invite; a member below the invite level (public_chat: 50) neither.
    status, resp = member_op(server, bt, room, "invite", {"user_id": carol})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    join(server, bt, room)
    status, resp = member_op(server, bt, room, "invite", {"user_id": carol})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = member_op(server, at, room, "invite", {"id_server": "id.example", "medium": "email",
                                                          "address": "c@example.org"})
    assert status == 400 and resp["errcode"] == "M_SERVER_NOT_TRUSTED"


def test_invite_carries_stripped_state_and_profile(server):
    _, at = user(server)
    bob, bt = user(server)
    api(server.base_url, "PUT", f"{V3}/profile/{q(bob)}/displayname", bt, json={"displayname": "Bobby"})
    room = create(server, at, name="Invited here")
    member_op(server, at, room, "invite", {"user_id": bob, "reason": "come"})
    status, ev = state(server, at, room, "m.room.member", bob, format="event")
    assert status == 200
    assert ev["content"] == {"membership": "invite", "displayname": "Bobby", "reason": "come"}
    stripped = {e["type"]: e for e in ev["unsigned"]["invite_room_state"]}
    assert stripped["m.room.name"]["content"] == {"name": "Invited here"}
    assert "m.room.create" in stripped


def test_kick_ban_unban(server):
    alice, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat")
    join(server, bt, room)
    status, resp = member_op(server, bt, room, "kick", {"user_id": alice})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"  # below the kick level
    assert member_op(server, at, room, "kick", {"user_id": bob, "reason": "out"}) == (200, {})
    assert state(server, at, room, "m.room.member", bob)[1] == {"membership": "leave", "reason": "out"}
    status, resp = member_op(server, at, room, "kick", {"user_id": bob})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"  # not in the room
    join(server, bt, room)
    assert member_op(server, at, room, "ban", {"user_id": bob, "reason": "spam"}) == (200, {})
    assert state(server, at, room, "m.room.member", bob)[1] == {"membership": "ban", "reason": "spam"}
    status, resp = member_op(server, bt, room, "join")
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = member_op(server, bt, room, "unban", {"user_id": bob})
    assert status == 403
    assert member_op(server, at, room, "unban", {"user_id": bob}) == (200, {})
    status, resp = member_op(server, at, room, "unban", {"user_id": bob})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"  # not banned
    assert member_op(server, bt, room, "join") == (200, {"room_id": room})
    status, resp = member_op(server, at, room, "ban", {})
    assert status == 400 and resp["errcode"] == "M_MISSING_PARAM"
    status, resp = member_op(server, at, room, "ban", {"user_id": bob, "reason": 3})
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"


def test_knock_on_knock_room_then_invite(server):
    _, at = user(server)
    bob, bt = user(server)
    room = create(server, at, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    status, resp = api(server.base_url, "POST", f"{V3}/knock/{q(room)}", bt, json={"reason": "let me in"})
    assert (status, resp) == (200, {"room_id": room})
    assert state(server, at, room, "m.room.member", bob)[1]["membership"] == "knock"
    member_op(server, at, room, "invite", {"user_id": bob})
    assert member_op(server, bt, room, "join") == (200, {"room_id": room})
    status, resp = api(server.base_url, "POST", f"{V3}/knock/{q(room)}", bt, json={})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"


def test_knock_refused_on_invite_room_old_version_and_unknown_room(server):
    _, at = user(server)
    _, bt = user(server)
    room = create(server, at)
    status, resp = api(server.base_url, "POST", f"{V3}/knock/{q(room)}", bt, json={})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    old = create(server, at, room_version="6",
                 initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "public"}}])
    status, resp = api(server.base_url, "POST", f"{V3}/knock/{q(old)}", bt, json={})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = api(server.base_url, "POST", f"{V3}/knock/{q('!nope:test.local')}", bt, json={})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"


def test_restricted_room_join_via_allowed_room(server):
    alice, at = user(server)
    bob, bt = user(server)
    space = create(server, at, preset="public_chat")
    room = create(server, at, room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    status, resp = member_op(server, bt, room, "join")
    assert status == 403
    join(server, bt, space)
    assert member_op(server, bt, room, "join") == (200, {"room_id": room})
    content = state(server, at, room, "m.room.member", bob)[1]
    assert content["join_authorised_via_users_server"] == alice


def test_profile_change_updates_member_events(server):
    alice, at = user(server)
    room = create(server, at)
    api(server.base_url, "PUT", f"{V3}/profile/{q(alice)}/displayname", at, json={"displayname": "New Name"})
    assert state(server, at, room, "m.room.member", alice)[1]["displayname"] == "New Name"


def test_members_and_joined_members(server):
    alice, at = user(server)
    bob, bt = user(server)
    carol, ct = user(server)
    api(server.base_url, "PUT", f"{V3}/profile/{q(bob)}/displayname", bt, json={"displayname": "B"})
    room = create(server, at, preset="public_chat")
    join(server, bt, room)
    member_op(server, at, room, "invite", {"user_id": carol})
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at)
    assert status == 200
    assert {e["state_key"]: e["content"]["membership"] for e in resp["chunk"]} == \
        {alice: "join", bob: "join", carol: "invite"}
    assert all(e["type"] == "m.room.member" and e["room_id"] == room for e in resp["chunk"])
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"membership": "invite"})
    assert [e["state_key"] for e in resp["chunk"]] == [carol]
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"not_membership": "join"})
    assert [e["state_key"] for e in resp["chunk"]] == [carol]
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at,
                       params={"membership": "join", "not_membership": "invite"})
    assert {e["state_key"] for e in resp["chunk"]} == {alice, bob}
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"membership": "x"})
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/joined_members", at)
    assert status == 200 and resp["joined"] == {alice: {"display_name": alice[1:].split(":")[0]},
                                                    bob: {"display_name": "B"}}
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/joined_members", ct)
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    _, dt = user(server)
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", dt)
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q('!unknown:test.local')}/members", at)
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"


def test_members_of_departed_user_are_those_at_their_leave(server):
    alice, at = user(server)
    bob, bt = user(server)
    carol, ct = user(server)
    room = create(server, at, preset="public_chat")
    join(server, bt, room)
    member_op(server, bt, room, "leave")
    join(server, ct, room)
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", bt)
    assert status == 200
    assert {e["state_key"] for e in resp["chunk"]} == {alice, bob}
    put_state(server, at, room, "m.room.name", {"name": "after"})
    status, resp = state(server, bt, room, "m.room.name")
    assert status == 404
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/state", bt)
    assert status == 200 and "m.room.name" not in {e["type"] for e in resp}


# --- sending, state ----------------------------------------------------------------------------

def test_send_is_idempotent_per_txn_and_shows_transaction_id(server):
    _, at = user(server)
    room = create(server, at)
    status, first = send(server, at, room, txn="t1")
    assert status == 200 and first["event_id"].startswith("$")
    assert send(server, at, room, txn="t1") == (200, first)
    status, other = send(server, at, room, event_type="m.other", txn="t1")
    assert status == 200 and other["event_id"] != first["event_id"]
    status, ev = get_event(server, at, room, first["event_id"])
    assert status == 200
    assert ev["content"] == {"msgtype": "m.text", "body": "hi"} and ev["room_id"] == room
    assert ev["unsigned"]["transaction_id"] == "t1" and ev["unsigned"]["age"] >= 0


def test_send_errors(server):
    _, at = user(server)
    _, bt = user(server)
    room = create(server, at)
    status, resp = send(server, bt, room)
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = send(server, at, "!unknown:test.local")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = send(server, at, "not-a-room")
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    status, resp = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/x1", at, data=b"[]")
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"
    status, resp = send(server, at, room, {"body": "x" * 70000})
    assert status == 413 and resp["errcode"] == "M_TOO_LARGE"
    status, resp = send(server, at, room, event_type="x" * 300)
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    status, resp = send(server, at, room, {"n": 1.5})
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"


def test_put_state_and_get_state(server):
    alice, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat")
    status, resp = put_state(server, at, room, "m.room.topic", {"topic": "t1"})
    assert status == 200
    assert put_state(server, at, room, "m.room.topic", {"topic": "t1"}) == (200, resp)  # unchanged: same event
    status, resp2 = put_state(server, at, room, "m.room.topic", {"topic": "t2"})
    assert resp2 != resp
    status, ev = state(server, at, room, "m.room.topic", format="event")
    assert ev["event_id"] == resp2["event_id"] and ev["unsigned"]["prev_content"] == {"topic": "t1"}
    assert ev["unsigned"]["replaces_state"] == resp["event_id"]
    # the trailing slash and the empty state key are the same
    status, content = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/state/m.room.topic", at)
    assert (status, content) == (200, {"topic": "t2"})
    status, resp = put_state(server, at, room, "org.example", {"k": 1}, state_key="sk")
    assert state(server, at, room, "org.example", "sk") == (200, {"k": 1})
    status, all_state = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/state", at)
    types = {(e["type"], e["state_key"]) for e in all_state}
    assert {("m.room.create", ""), ("m.room.topic", ""), ("org.example", "sk"), ("m.room.member", alice)} <= types
    join(server, bt, room)
    status, resp = put_state(server, bt, room, "m.room.topic", {"topic": "nope"})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = put_state(server, at, room, "org.example", {"k": 1}, state_key=bob)
    assert status == 403  # state keys starting with @ belong to that user
    status, resp = state(server, at, room, "m.room.nothing")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = state(server, at, room, "m.room.topic", format="bad")
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    _, ct = user(server)
    status, resp = state(server, ct, room, "m.room.topic")
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = state(server, at, "!unknown:test.local", "m.room.topic")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = put_state(server, at, room, "m.room.topic", {"topic": "x"}, state_key="k" * 300)
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"


def test_put_member_state_changes_membership(server):
    _, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat")
    status, _ = put_state(server, bt, room, "m.room.member", {"membership": "join", "displayname": "Via State"},
                          state_key=bob)
    assert status == 200
    assert state(server, at, room, "m.room.member", bob)[1] == {"membership": "join", "displayname": "Via State"}
    status, _ = put_state(server, at, room, "m.room.member", {"membership": "ban"}, state_key=bob)
    assert status == 200
    status, resp = put_state(server, at, room, "m.room.member", {"membership": "dance"}, state_key=bob)
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"


def test_canonical_alias_must_point_to_room(server):
    _, at = user(server)
    name = f"canon{next(_n)}"
    room = create(server, at, room_alias_name=name)
    other = create(server, at)
    status, resp = put_state(server, at, other, "m.room.canonical_alias", {"alias": f"#{name}:test.local"})
    assert status == 400 and resp["errcode"] == "M_BAD_ALIAS"
    status, resp = put_state(server, at, other, "m.room.canonical_alias", {"alias": "bad"})
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    assert put_state(server, at, room, "m.room.canonical_alias", {"alias": f"#{name}:test.local",
                                                                  "alt_aliases": []})[0] == 200


# --- events and visibility ---------------------------------------------------------------------

def test_get_event_errors(server):
    _, at = user(server)
    _, bt = user(server)
    room = create(server, at)
    other = create(server, at)
    _, sent = send(server, at, room)
    status, resp = get_event(server, at, room, "$doesnotexist")
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = get_event(server, at, other, sent["event_id"])
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = get_event(server, bt, room, sent["event_id"])
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = get_event(server, at, "!unknown:test.local", sent["event_id"])
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"


def test_history_visibility_joined_hides_earlier_events(server):
    _, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    _, before = send(server, at, room)
    join(server, bt, room)
    _, after = send(server, at, room)
    assert get_event(server, bt, room, before["event_id"])[0] == 404
    assert get_event(server, bt, room, after["event_id"])[0] == 200
    member_op(server, bt, room, "leave")
    _, later = send(server, at, room)
    assert get_event(server, bt, room, after["event_id"])[0] == 200  # seen while joined: still visible
    assert get_event(server, bt, room, later["event_id"])[0] == 404


def test_history_visibility_shared_and_world_readable(server):
    _, at = user(server)
    _, bt = user(server)
    _, ct = user(server)
    room = create(server, at, preset="public_chat")
    _, before = send(server, at, room)
    assert get_event(server, bt, room, before["event_id"])[0] == 404  # never joined
    join(server, bt, room)
    assert get_event(server, bt, room, before["event_id"])[0] == 200  # shared: joined later
    put_state(server, at, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    _, open_ev = send(server, at, room)
    assert get_event(server, ct, room, open_ev["event_id"])[0] == 200
    assert get_event(server, ct, room, before["event_id"])[0] == 404
    assert api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/state", ct)[0] == 200


# --- redactions --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["5", "10", "11", "12"])
def test_redaction_is_applied_when_serving(server, version):
    _, at = user(server)
    room = create(server, at, room_version=version)
    _, sent = send(server, at, room, {"msgtype": "m.text", "body": "secret"})
    status, red = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(sent['event_id'])}/r1", at,
                      json={"reason": "oops"})
    assert status == 200
    status2, again = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(sent['event_id'])}/r1", at,
                         json={"reason": "oops"})
    assert (status2, again) == (200, red)
    status, ev = get_event(server, at, room, sent["event_id"])
    assert status == 200 and ev["content"] == {}
    because = ev["unsigned"]["redacted_because"]
    assert because["event_id"] == red["event_id"] and because["content"]["reason"] == "oops"
    assert because["redacts"] == sent["event_id"]
    status, rev = get_event(server, at, room, red["event_id"])
    assert rev["redacts"] == sent["event_id"] and rev["unsigned"]["transaction_id"] == "r1"


def test_redaction_via_send_moves_redacts_for_old_versions(server):
    _, at = user(server)
    room = create(server, at, room_version="10")
    _, sent = send(server, at, room)
    status, red = send(server, at, room, {"redacts": sent["event_id"], "reason": "x"}, event_type="m.room.redaction")
    assert status == 200
    status, rev = get_event(server, at, room, red["event_id"])
    assert rev["redacts"] == sent["event_id"] and "redacts" not in rev["content"]
    assert get_event(server, at, room, sent["event_id"])[1]["content"] == {}


def test_redacting_others_needs_power(server):
    _, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat")
    join(server, bt, room)
    _, alice_msg = send(server, at, room)
    _, bob_msg = send(server, bt, room)
    status, resp = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(alice_msg['event_id'])}/x", bt,
                       json={})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, _ = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(bob_msg['event_id'])}/x", bt, json={})
    assert status == 200
    status, _ = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(bob_msg['event_id'])}/y", at, json={})
    assert status == 200
    status, resp = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/notanid/z", at, json={})
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"
    status, resp = api(server.base_url, "PUT", f"{V3}/rooms/{q(room)}/redact/{q(bob_msg['event_id'])}/w", at,
                       json={"reason": 5})
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"


# --- upgrades ----------------------------------------------------------------------------------

def test_room_upgrade_tombstones_old_room_and_copies_state(server):
    alice, at = user(server)
    bob, bt = user(server)
    name = f"upg{next(_n)}"
    room = create(server, at, room_version="10", preset="public_chat", name="Old", topic="T", room_alias_name=name)
    join(server, bt, room)
    member_op(server, at, room, "ban", {"user_id": f"@spammer:test.local"})
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/upgrade", bt, json={"new_version": "11"})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/upgrade", at, json={"new_version": "11"})
    assert status == 200
    new = resp["replacement_room"]
    tomb = state(server, at, room, "m.room.tombstone")[1]
    assert tomb["replacement_room"] == new
    create_content = state(server, at, new, "m.room.create")[1]
    assert create_content["room_version"] == "11" and create_content["predecessor"]["room_id"] == room
    assert state(server, at, new, "m.room.name")[1] == {"name": "Old"}
    assert state(server, at, new, "m.room.join_rules")[1] == {"join_rule": "public"}
    assert state(server, at, new, "m.room.member", "@spammer:test.local")[1]["membership"] == "ban"
    old_pl = state(server, at, room, "m.room.power_levels")[1]
    assert old_pl["events_default"] >= 50 and old_pl["invite"] >= 50
    assert api(server.base_url, "GET", f"{V3}/directory/room/{q('#' + name + ':test.local')}")[1]["room_id"] == new
    assert join(server, bt, new)[0] == 200


def test_room_upgrade_to_v12_and_bad_input(server):
    alice, at = user(server)
    bob, _ = user(server)
    room = create(server, at, room_version="11")
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/upgrade", at,
                       json={"new_version": "12", "additional_creators": [bob]})
    assert status == 200
    new = resp["replacement_room"]
    content = state(server, at, new, "m.room.create")[1]
    assert content["additional_creators"] == [bob] and content["predecessor"]["room_id"] == room
    assert alice not in state(server, at, new, "m.room.power_levels")[1].get("users", {})
    for body, code in (({}, "M_MISSING_PARAM"), ({"new_version": 12}, "M_BAD_JSON"),
                       ({"new_version": "99"}, "M_UNSUPPORTED_ROOM_VERSION"),
                       ({"new_version": "12", "additional_creators": "x"}, "M_BAD_JSON")):
        status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(new)}/upgrade", at, json=body)
        assert status == 400 and resp["errcode"] == code, (body, resp)
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(new)}/upgrade", at, json={"new_version": "11"})
    assert status == 200
    back = resp["replacement_room"]
    users = state(server, at, back, "m.room.power_levels")[1]["users"]
    assert users[alice] == 100 and users[bob] == 100  # the v12 creators keep their power
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q('!unknown:test.local')}/upgrade", at,
                       json={"new_version": "12"})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"


# --- reports -----------------------------------------------------------------------------------

def test_reports(server):
    alice, at = user(server)
    _, bt = user(server)
    room = create(server, at)
    _, sent = send(server, at, room)
    eid = q(sent["event_id"])
    assert api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report/{eid}", at,
               json={"reason": "bad", "score": -100}) == (200, {})
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report/{eid}", bt, json={"reason": "x"})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report/{q('$nope')}", at, json={})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report/{eid}", at, json={"reason": 1})
    assert status == 400 and resp["errcode"] == "M_BAD_JSON"
    assert api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report", bt, json={"reason": ""}) == (200, {})
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q('!nope:test.local')}/report", bt, json={"reason": "x"})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    status, resp = api(server.base_url, "POST", f"{V3}/rooms/{q(room)}/report", bt, json={})
    assert status == 400 and resp["errcode"] == "M_MISSING_PARAM"
    assert api(server.base_url, "POST", f"{V3}/users/{q(alice)}/report", bt, json={"reason": "rude"}) == (200, {})
    status, resp = api(server.base_url, "POST", f"{V3}/users/{q('@ghost:test.local')}/report", bt, json={"reason": "x"})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    rows = db_execute(server, "SELECT kind, reason FROM content_reports WHERE reporter IN (?, ?)", (alice, alice))
    assert ("event", "bad") in rows


# --- timestamp_to_event, initialSync -----------------------------------------------------------

def test_timestamp_to_event(server):
    _, at = user(server)
    _, bt = user(server)
    room = create(server, at)
    _, first = send(server, at, room)
    time.sleep(0.01)
    mid = int(time.time() * 1000)
    time.sleep(0.01)
    _, second = send(server, at, room)
    path = f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event"
    status, resp = api(server.base_url, "GET", path, at, params={"ts": mid, "dir": "f"})
    assert status == 200 and resp["event_id"] == second["event_id"] and resp["origin_server_ts"] >= mid
    status, resp = api(server.base_url, "GET", path, at, params={"ts": mid, "dir": "b"})
    assert status == 200 and resp["event_id"] == first["event_id"]
    status, resp = api(server.base_url, "GET", path, at, params={"ts": mid + 10**9, "dir": "f"})
    assert status == 404 and resp["errcode"] == "M_NOT_FOUND"
    for params, code in (({"dir": "f"}, "M_MISSING_PARAM"), ({"ts": "x", "dir": "f"}, "M_INVALID_PARAM"),
                         ({"ts": mid, "dir": "up"}, "M_INVALID_PARAM"), ({"ts": mid}, "M_MISSING_PARAM")):
        status, resp = api(server.base_url, "GET", path, at, params=params)
        assert status == 400 and resp["errcode"] == code
    status, resp = api(server.base_url, "GET", path, bt, params={"ts": mid, "dir": "f"})
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"


def test_initial_sync_of_a_room(server):
    alice, at = user(server)
    room = create(server, at, name="IS")
    _, sent = send(server, at, room)
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/initialSync", at)
    assert status == 200
    assert resp["room_id"] == room and resp["membership"] == "join" and resp["visibility"] == "private"
    assert resp["messages"]["chunk"][-1]["event_id"] == sent["event_id"]
    assert resp["messages"]["start"].startswith("t") and resp["messages"]["end"].startswith("t")
    assert {"m.room.name", "m.room.create"} <= {e["type"] for e in resp["state"]}
    _, bt = user(server)
    assert api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/initialSync", bt)[0] == 403


# --- rate limits -------------------------------------------------------------------------------

def test_rate_limits_return_limit_exceeded(limited):
    _, at = user(limited)
    room = create(limited, at)
    codes = [send(limited, at, room)[0] for _ in range(4)]
    assert codes[-1] == 429
    status, resp = send(limited, at, room)
    assert resp["errcode"] == "M_LIMIT_EXCEEDED" and resp["retry_after_ms"] > 0

    _, ot = user(limited)
    public = create(limited, ot, preset="public_chat")
    others = [user(limited)[1] for _ in range(1)]
    _, jt = user(limited)
    statuses = []
    for _ in range(3):
        statuses.append(member_op(limited, jt, public, "join")[0])
        member_op(limited, jt, public, "leave")
    assert statuses[-1] == 429 and others

    _, it = user(limited)
    inv_room = create(limited, it)
    results = [member_op(limited, it, inv_room, "invite", {"user_id": user(limited)[0]})[0] for _ in range(3)]
    assert results[:2] == [200, 200] and results[2] == 429


def test_members_at_a_stream_token(server):
    alice, at = user(server)
    bob, bt = user(server)
    room = create(server, at, preset="public_chat")
    _, sent = send(server, at, room)
    (pos,), = db_execute(server, "SELECT stream_ordering FROM events WHERE event_id = ?", (sent["event_id"],))
    join(server, bt, room)
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"at": f"s{pos}"})
    assert status == 200 and {e["state_key"] for e in resp["chunk"]} == {alice}
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"at": f"t5_{pos}"})
    assert status == 200 and {e["state_key"] for e in resp["chunk"]} == {alice}
    status, resp = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/members", at, params={"at": "garbage"})
    assert status == 400 and resp["errcode"] == "M_INVALID_PARAM"


guests = make_server_fixture({"allow_guest_access": True}, engines=("sqlite",))


def _guest(srv):
    status, resp = api(srv.base_url, "POST", V3 + "/register", params={"kind": "guest"}, json={})
    assert status == 200, resp
    return resp["user_id"], resp["access_token"]


def test_guests_join_only_rooms_with_guest_access(guests):
    _, at = user(guests)
    _, gt = _guest(guests)
    closed = create(guests, at, preset="public_chat")
    status, resp = member_op(guests, gt, closed, "join")
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN"
    open_room = create(guests, at, preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}])
    assert member_op(guests, gt, open_room, "join") == (200, {"room_id": open_room})
    assert send(guests, gt, open_room)[0] == 200
    status, resp = api(guests.base_url, "POST", V3 + "/createRoom", gt, json={})
    assert status == 403 and resp["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
