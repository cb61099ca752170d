"""The seams between services, over real HTTP on both engines: relation checks on send
(modules/event_annotations.md, modules/threading.md), bundled aggregations on the endpoints that
serve events ("Aggregations of child events"), capabilities ("m.profile_fields capability"),
what deactivation and device deletion take with them (account_deactivation.yaml, "Device
management", modules/push.md), profiles in member events ("m.room.member") and the r0 paths."""
from __future__ import annotations

import itertools
import uuid
from urllib.parse import quote

from tests.integration.harness import api, make_server_fixture, register_user

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
PW = "correct horse battery staple"

server = make_server_fixture()
_n = itertools.count()


def user(srv, name="w"):
    local = f"{name}{next(_n)}"
    user_id, token, device_id = register_user(srv.base_url, local, PW)
    return user_id, token


def q(s: str) -> str:
    return quote(s, safe="")


def create(srv, token, **body):
    status, resp = api(srv.base_url, "POST", V3 + "/createRoom", token, json=body)
    assert status == 200, resp
    return resp["room_id"]


def send_raw(srv, token, room_id, content, event_type="m.room.message", txn_id=None):
    return api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/send/{q(event_type)}/{txn_id or uuid.uuid4().hex}",
               token, json=content)


def send(srv, token, room_id, content=None, event_type="m.room.message"):
    status, resp = send_raw(srv, token, room_id, content or {"msgtype": "m.text", "body": "hi"}, event_type)
    assert status == 200, resp
    return resp["event_id"]


def reaction(parent, key):
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}}


def thread_reply(root, body="in thread"):
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def join(srv, token, room_id):
    status, resp = api(srv.base_url, "POST", f"{V3}/join/{q(room_id)}", token, json={})
    assert status == 200, resp


def set_profile(srv, token, user_id, key, value):
    status, resp = api(srv.base_url, "PUT", f"{V3}/profile/{q(user_id)}/{key}", token, json={key: value})
    assert status == 200, resp


def member_event(srv, token, room_id, user_id):
    return api(srv.base_url, "GET", f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}", token)


# --- 1. relations on send ----------------------------------------------------------------------

def test_repeated_reaction_with_the_same_key_is_m_duplicate_annotation(server):
    _, token = user(server)
    room = create(server, token, preset="public_chat")
    parent = send(server, token, room)
    send(server, token, room, reaction(parent, "👍"), "m.reaction")
    status, body = send_raw(server, token, room, reaction(parent, "👍"), "m.reaction")
    assert (status, body["errcode"]) == (400, "M_DUPLICATE_ANNOTATION")
    # Another key, or another user with the same key, is fine.
    send(server, token, room, reaction(parent, "🎉"), "m.reaction")
    other_id, other = user(server)
    join(server, other, room)
    send(server, other, room, reaction(parent, "👍"), "m.reaction")


def test_retransmitted_reaction_returns_the_first_event(server):
    _, token = user(server)
    room = create(server, token)
    parent = send(server, token, room)
    first = send_raw(server, token, room, reaction(parent, "x"), "m.reaction", txn_id="same-txn")
    again = send_raw(server, token, room, reaction(parent, "x"), "m.reaction", txn_id="same-txn")
    assert first[0] == again[0] == 200 and first[1]["event_id"] == again[1]["event_id"]


def test_annotation_without_a_key_is_m_invalid_param(server):
    _, token = user(server)
    room = create(server, token)
    parent = send(server, token, room)
    status, body = send_raw(server, token, room, {"m.relates_to": {"rel_type": "m.annotation",
                                                                   "event_id": parent}}, "m.reaction")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_thread_rooted_at_an_event_with_a_relation_is_refused(server):
    _, token = user(server)
    room = create(server, token)
    root = send(server, token, room)
    reply = send(server, token, room, thread_reply(root))
    status, body = send_raw(server, token, room, thread_reply(reply, "nested"))
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")
    # A thread rooted at a plain message is fine.
    send(server, token, room, thread_reply(root, "second"))


# --- 2. bundled aggregations -------------------------------------------------------------------

def test_event_endpoint_bundles_thread_edit_and_reference(server):
    user_id, token = user(server)
    room = create(server, token)
    root = send(server, token, room, {"msgtype": "m.text", "body": "root"})
    latest = send(server, token, room, thread_reply(root))
    edit = send(server, token, room, {"msgtype": "m.text", "body": "* edited",
                                      "m.new_content": {"msgtype": "m.text", "body": "edited"},
                                      "m.relates_to": {"rel_type": "m.replace", "event_id": root}})
    ref = send(server, token, room, {"msgtype": "m.text", "body": "ref",
                                     "m.relates_to": {"rel_type": "m.reference", "event_id": root}})
    status, event = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/event/{q(root)}", token)
    assert status == 200, event
    relations = event["unsigned"]["m.relations"]
    assert relations["m.thread"]["latest_event"]["event_id"] == latest
    assert relations["m.thread"]["count"] == 1 and relations["m.thread"]["current_user_participated"] is True
    assert relations["m.replace"]["event_id"] == edit
    assert relations["m.reference"] == {"chunk": [{"event_id": ref}]}
    # An event without children has no bundle.
    status, plain = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/event/{q(ref)}", token)
    assert status == 200 and "m.relations" not in plain.get("unsigned", {})


def test_messages_context_and_initial_sync_bundle_aggregations(server):
    _, token = user(server)
    room = create(server, token)
    root = send(server, token, room, {"msgtype": "m.text", "body": "root"})
    latest = send(server, token, room, thread_reply(root))
    status, page = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/messages", token,
                       params={"dir": "b", "limit": "10"})
    assert status == 200
    served = {e["event_id"]: e for e in page["chunk"]}
    assert served[root]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == latest
    status, ctx = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/context/{q(root)}", token)
    assert status == 200
    assert ctx["event"]["unsigned"]["m.relations"]["m.thread"]["count"] == 1
    status, initial = api(server.base_url, "GET", f"{V3}/rooms/{q(room)}/initialSync", token)
    assert status == 200
    served = {e["event_id"]: e for e in initial["messages"]["chunk"]}
    assert served[root]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == latest


# --- 3. capabilities ---------------------------------------------------------------------------

def test_capabilities_advertise_profile_fields(server):
    _, token = user(server)
    status, body = api(server.base_url, "GET", V3 + "/capabilities", token)
    assert status == 200
    caps = body["capabilities"]
    assert caps["m.profile_fields"] == {"enabled": True}
    assert caps["m.set_displayname"] == caps["m.set_avatar_url"] == {"enabled": True}
