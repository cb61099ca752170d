"""The seams between services, over real HTTP on both engines: relation checks on send
(modules/event_annotations.md, modules/threading.md), bundled aggregations on the endpoints that
serve events ("Aggregations of child events"), capabilities ("m.profile_fields capability"),
what deactivation and device deletion take with them (account_deactivation.yaml, "Device
management", modules/push.md), profiles in member events ("m.room.member") and the r0 paths."""
from __future__ import annotations

import itertools
import uuid
from urllib.parse import quote

from tests.integration.harness import api, db_execute, login, make_server_fixture, register_user

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


# --- 4. deactivation ---------------------------------------------------------------------------

PUSHER = {"kind": "http", "app_id": "org.example.app", "app_display_name": "App",
          "device_display_name": "Phone", "lang": "en", "data": {"url": "https://push.example/_matrix/push/v1/notify"}}


def set_pusher(srv, token, pushkey):
    status, resp = api(srv.base_url, "POST", V3 + "/pushers/set", token, json=dict(PUSHER, pushkey=pushkey))
    assert status == 200, resp


def pushers(srv, token):
    status, resp = api(srv.base_url, "GET", V3 + "/pushers", token)
    assert status == 200, resp
    return sorted(p["pushkey"] for p in resp["pushers"])


def stored_pushkeys(srv, user_id):
    return sorted(r[0] for r in db_execute(srv, "SELECT pushkey FROM pushers WHERE user_id = ?", (user_id,)))


def password_auth(user_id, session=None):
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PW}
    if session is not None:
        auth["session"] = session
    return auth


def deactivate(srv, token, user_id, **body):
    status, resp = api(srv.base_url, "POST", V3 + "/account/deactivate", token, json=dict(body))
    assert status == 401, resp
    status, resp = api(srv.base_url, "POST", V3 + "/account/deactivate", token,
                       json=dict(body, auth=password_auth(user_id, resp["session"])))
    assert status == 200, resp


def directory_search(srv, token, term):
    status, resp = api(srv.base_url, "POST", V3 + "/user_directory/search", token, json={"search_term": term})
    assert status == 200, resp
    return [r["user_id"] for r in resp["results"]]


def deactivation_setup(srv, name):
    """Alice's public room which Bob joined, her private room he is invited to, Bob's profile
    and a pusher; returns (alice_token, bob_id, bob_token, joined_room, invite_room)."""
    _, alice = user(srv, "alice")
    bob_id, bob = user(srv, "bob")
    set_profile(srv, bob, bob_id, "displayname", name)
    set_profile(srv, bob, bob_id, "avatar_url", "mxc://test.local/bobface")
    set_profile(srv, bob, bob_id, "m.tz", "Europe/Prague")
    joined = create(srv, alice, preset="public_chat")
    join(srv, bob, joined)
    invited = create(srv, alice, invite=[bob_id])
    set_pusher(srv, bob, f"bob-{uuid.uuid4().hex}")
    assert directory_search(srv, alice, name) == [bob_id]
    return alice, bob_id, bob, joined, invited


def test_deactivation_leaves_rooms_rejects_invites_and_drops_directory_entry_and_pushers(server):
    name = f"Bobby{uuid.uuid4().hex[:8]}"
    alice, bob_id, bob, joined, invited = deactivation_setup(server, name)
    # A pusher not tied to any device (as an appservice token would set) goes too.
    db_execute(server, "UPDATE pushers SET device_id = NULL WHERE user_id = ?", (bob_id,))
    deactivate(server, bob, bob_id)
    for room in (joined, invited):
        status, content = member_event(server, alice, room, bob_id)
        assert status == 200 and content["membership"] == "leave", (room, content)
    status, members = api(server.base_url, "GET", f"{V3}/rooms/{q(joined)}/joined_members", alice)
    assert bob_id not in members["joined"]
    assert directory_search(server, alice, name) == []
    assert directory_search(server, alice, bob_id) == []
    assert db_execute(server, "SELECT user_id FROM user_directory WHERE user_id = ?", (bob_id,)) == []
    assert stored_pushkeys(server, bob_id) == []
    # Without erase the profile stays.
    status, profile = api(server.base_url, "GET", f"{V3}/profile/{q(bob_id)}", alice)
    assert status == 200 and profile.get("displayname") == name


def test_deactivation_with_erase_empties_the_profile(server):
    name = f"Erased{uuid.uuid4().hex[:8]}"
    alice, bob_id, bob, joined, _ = deactivation_setup(server, name)
    deactivate(server, bob, bob_id, erase=True)
    status, profile = api(server.base_url, "GET", f"{V3}/profile/{q(bob_id)}", alice)
    assert (status, profile) == (200, {})  # m.tz went with displayname and avatar_url
    status, content = member_event(server, alice, joined, bob_id)
    assert content["membership"] == "leave" and "displayname" not in content


# --- 5. devices take their pushers with them ---------------------------------------------------

def test_logout_and_device_deletion_remove_that_devices_pushers(server):
    user_id, token = user(server, "dev")
    local = user_id[1:].split(":")[0]
    other = login(server.base_url, local, PW)
    third = login(server.base_url, local, PW)
    set_pusher(server, token, "first")
    set_pusher(server, other["access_token"], "second")
    set_pusher(server, third["access_token"], "third")
    assert pushers(server, third["access_token"]) == ["first", "second", "third"]
    assert api(server.base_url, "POST", V3 + "/logout", token, json={}) == (200, {})
    assert pushers(server, third["access_token"]) == ["second", "third"]
    path = f"{V3}/devices/{q(other['device_id'])}"
    status, resp = api(server.base_url, "DELETE", path, third["access_token"], json={})
    assert status == 401
    status, resp = api(server.base_url, "DELETE", path, third["access_token"],
                       json={"auth": password_auth(user_id, resp["session"])})
    assert status == 200, resp
    assert pushers(server, third["access_token"]) == ["third"]


# --- 6. profiles in member events --------------------------------------------------------------

def test_member_events_carry_the_profile(server):
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    set_profile(server, alice, alice_id, "displayname", "Alice A")
    set_profile(server, alice, alice_id, "avatar_url", "mxc://test.local/alice")
    set_profile(server, bob, bob_id, "displayname", "Bob B")
    room = create(server, alice, invite=[bob_id])
    status, creator = member_event(server, alice, room, alice_id)
    assert status == 200
    assert (creator["membership"], creator["displayname"], creator["avatar_url"]) == \
        ("join", "Alice A", "mxc://test.local/alice")
    status, invite = member_event(server, alice, room, bob_id)
    assert (invite["membership"], invite["displayname"]) == ("invite", "Bob B")
    join(server, bob, room)
    status, joined = member_event(server, alice, room, bob_id)
    assert (joined["membership"], joined["displayname"]) == ("join", "Bob B") and "avatar_url" not in joined


# --- 7. r0 paths -------------------------------------------------------------------------------

def test_r0_login_and_common_endpoints_answer(server):
    user_id, _ = user(server, "legacy")
    local = user_id[1:].split(":")[0]
    status, resp = api(server.base_url, "POST", R0 + "/login",
                       json={"type": "m.login.password", "user": local, "password": PW})
    assert status == 200 and resp["user_id"] == user_id, resp
    token = resp["access_token"]
    assert api(server.base_url, "GET", R0 + "/login")[0] == 200
    assert api(server.base_url, "GET", R0 + "/account/whoami", token)[1]["user_id"] == user_id
    assert api(server.base_url, "GET", R0 + "/capabilities", token)[0] == 200
    status, created = api(server.base_url, "POST", R0 + "/createRoom", token, json={})
    assert status == 200
    room = created["room_id"]
    status, sent = api(server.base_url, "PUT", f"{R0}/rooms/{q(room)}/send/m.room.message/t1", token,
                       json={"msgtype": "m.text", "body": "r0"})
    assert status == 200
    status, synced = api(server.base_url, "GET", R0 + "/sync", token, params={"timeout": "0"})
    assert status == 200 and room in synced["rooms"]["join"]
    assert api(server.base_url, "GET", f"{R0}/rooms/{q(room)}/event/{q(sent['event_id'])}", token)[0] == 200
    assert api(server.base_url, "GET", f"{R0}/profile/{q(user_id)}", token)[0] == 200
    assert api(server.base_url, "POST", R0 + "/logout", token, json={}) == (200, {})
