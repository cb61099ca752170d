"""/sync and ephemeral features over HTTP against a real uzel (client-server-api "Syncing",
"Filtering" lazy-loading, "Typing Notifications", "Receipts", "Fully read markers", "Receiving
notifications", "Send-to-Device messaging" in sync, legacy /events and /initialSync)."""
from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote

import pytest

from tests.integration.harness import api, make_server_fixture, register_user

server = make_server_fixture()

C = "/_matrix/client/v3"
_counter = [0]


def q(s: str) -> str:
    return quote(s, safe="")


def new_user(server, name: str):
    _counter[0] += 1
    return register_user(server.base_url, f"{name}{_counter[0]}")


def call(server, method, path, token, body=None, **params):
    return api(server.base_url, method, C + path, token, body, params=params or None)


def sync(server, token, **params) -> dict:
    if "filter" in params and isinstance(params["filter"], dict):
        params["filter"] = json.dumps(params["filter"])
    status, body = call(server, "GET", "/sync", token, **params)
    assert status == 200, body
    return body


def create_room(server, token, **body) -> str:
    status, resp = call(server, "POST", "/createRoom", token, {"preset": "public_chat", **body})
    assert status == 200, resp
    return resp["room_id"]


def join(server, token, room_id):
    status, resp = call(server, "POST", f"/rooms/{q(room_id)}/join", token, {})
    assert status == 200, resp


def send(server, token, room_id, body="hello", **content) -> str:
    _counter[0] += 1
    status, resp = call(server, "PUT", f"/rooms/{q(room_id)}/send/m.room.message/t{_counter[0]}", token,
                        {"msgtype": "m.text", "body": body, **content})
    assert status == 200, resp
    return resp["event_id"]


def timeline(body, room_id, section="join") -> list[dict]:
    return body["rooms"][section][room_id]["timeline"]["events"]


def bodies(events) -> list:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


@pytest.fixture(scope="module")
def pair(server):
    """Alice's public room that Bob joined."""
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1], name="Pair")
    join(server, bob[1], room)
    return alice, bob, room


# --- initial and incremental ---------------------------------------------------------------------

def test_initial_sync_shows_room_state_timeline_and_summary(server, pair):
    alice, bob, room = pair
    send(server, alice[1], room, "first")
    body = sync(server, bob[1])
    joined = body["rooms"]["join"][room]
    assert "first" in bodies(joined["timeline"]["events"])
    state_types = {e["type"] for e in joined["state"]["events"]} | {e["type"] for e in joined["timeline"]["events"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= state_types
    assert joined["summary"]["m.joined_member_count"] == 2
    assert all("room_id" not in e for e in joined["timeline"]["events"])
    assert body["next_batch"].startswith("s")
    assert "device_one_time_keys_count" in body


def test_incremental_sync_returns_only_what_is_new(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    assert sync(server, bob[1], since=since)["rooms"]["join"] == {}
    event_id = send(server, alice[1], room, "news")
    body = sync(server, bob[1], since=since)
    events = timeline(body, room)
    assert [e["event_id"] for e in events] == [event_id]
    assert body["rooms"]["join"][room]["timeline"]["limited"] is False
    assert body["rooms"]["join"][room]["state"]["events"] == []


def test_own_events_carry_the_transaction_id_for_the_sending_device(server, pair):
    alice, bob, room = pair
    since = sync(server, alice[1])["next_batch"]
    status, _ = call(server, "PUT", f"/rooms/{q(room)}/send/m.room.message/mytxn", alice[1],
                     {"msgtype": "m.text", "body": "tx"})
    assert status == 200
    events = timeline(sync(server, alice[1], since=since), room)
    assert events[-1]["unsigned"]["transaction_id"] == "mytxn"
    events = timeline(sync(server, bob[1], since=since), room)
    assert "transaction_id" not in events[-1].get("unsigned", {})


def test_long_poll_wakes_up_when_a_message_arrives(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    result = {}

    def poll():
        t0 = time.monotonic()
        result["body"] = sync(server, bob[1], since=since, timeout="20000")
        result["done"] = time.monotonic()
        result["elapsed"] = result["done"] - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    sent_at = time.monotonic()
    event_id = send(server, alice[1], room, "wake up")
    t.join(timeout=30)
    assert [e["event_id"] for e in timeline(result["body"], room)] == [event_id]
    assert result["done"] - sent_at < 1.0  # woken by the notifier, not the timeout
    assert result["elapsed"] >= 0.4


def test_long_poll_times_out_with_an_empty_response(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    t0 = time.monotonic()
    body = sync(server, bob[1], since=since, timeout="300")
    assert time.monotonic() - t0 >= 0.25
    assert body["rooms"]["join"] == {} and body["next_batch"]


def test_limited_timeline_has_prev_batch_that_messages_accepts(server):
    alice = new_user(server, "alice")
    room = create_room(server, alice[1])
    since = sync(server, alice[1])["next_batch"]
    sent = [send(server, alice[1], room, f"m{i}") for i in range(8)]
    body = sync(server, alice[1], since=since, filter={"room": {"timeline": {"limit": 3}}})
    tl = body["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is True and [e["event_id"] for e in tl["events"]] == sent[-3:]
    status, page = call(server, "GET", f"/rooms/{q(room)}/messages", alice[1], dir="b", limit="3",
                        **{"from": tl["prev_batch"]})
    if status == 404 and (page or {}).get("errcode") == "M_UNRECOGNIZED":
        pytest.skip("/messages not available")
    assert status == 200, page
    assert [e["event_id"] for e in page["chunk"]] == list(reversed(sent[2:5]))


def test_limited_incremental_sync_returns_the_state_changed_in_the_gap(server):
    alice = new_user(server, "alice")
    room = create_room(server, alice[1])
    since = sync(server, alice[1])["next_batch"]
    status, _ = call(server, "PUT", f"/rooms/{q(room)}/state/m.room.topic/", alice[1], {"topic": "gap topic"})
    assert status == 200
    for i in range(4):
        send(server, alice[1], room, f"m{i}")
    body = sync(server, alice[1], since=since, filter={"room": {"timeline": {"limit": 2}}})
    joined = body["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is True
    assert [e["content"] for e in joined["state"]["events"] if e["type"] == "m.room.topic"] == [{"topic": "gap topic"}]


def test_full_state_returns_the_whole_state_on_an_incremental_sync(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    body = sync(server, bob[1], since=since, full_state="true")
    types = {e["type"] for e in body["rooms"]["join"][room]["state"]["events"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels"} <= types


def test_use_state_after_gives_the_state_at_the_end_of_the_timeline(server):
    alice = new_user(server, "alice")
    room = create_room(server, alice[1], name="Before")
    body = sync(server, alice[1], use_state_after="true")
    joined = body["rooms"]["join"][room]
    assert "state" not in joined
    names = [e["content"]["name"] for e in joined["state_after"]["events"] if e["type"] == "m.room.name"]
    assert names == ["Before"]


# --- filters and lazy-loading -----------------------------------------------------------------------

def test_timeline_type_filter_and_stored_filter_id(server, pair):
    alice, bob, room = pair
    status, created = call(server, "POST", f"/user/{q(bob[0])}/filter", bob[1],
                           {"room": {"timeline": {"types": ["m.room.topic"]}}})
    assert status == 200
    since = sync(server, bob[1])["next_batch"]
    send(server, alice[1], room, "not a topic")
    call(server, "PUT", f"/rooms/{q(room)}/state/m.room.topic/", alice[1], {"topic": "t"})
    body = sync(server, bob[1], since=since, filter=created["filter_id"])
    assert [e["type"] for e in timeline(body, room)] == ["m.room.topic"]


def test_lazy_loading_sends_only_the_members_the_client_needs(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    carol = new_user(server, "carol")
    room = create_room(server, alice[1], name="Named")  # no heroes, whose members lazy-loading adds
    join(server, bob[1], room)
    join(server, carol[1], room)
    for i in range(3):
        send(server, bob[1], room, f"b{i}")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
    body = sync(server, carol[1], filter=lazy)
    members = {e["state_key"] for e in body["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {bob[0], carol[0]}
    # Without lazy-loading everyone is there.
    body = sync(server, carol[1], filter={"room": {"timeline": {"limit": 2}}})
    members = {e["state_key"] for e in body["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice[0], bob[0], carol[0]}


def test_lazy_loading_does_not_repeat_members_already_sent(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1])
    join(server, bob[1], room)
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    send(server, alice[1], room, "one")
    since = sync(server, bob[1], filter=lazy)["next_batch"]
    send(server, alice[1], room, "two")
    body = sync(server, bob[1], since=since, filter=lazy)
    assert body["rooms"]["join"][room]["state"]["events"] == []


# --- invite / leave -------------------------------------------------------------------------------

def test_invite_join_and_leave_sections(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1], preset="private_chat", name="Secret")
    since = sync(server, bob[1])["next_batch"]
    status, _ = call(server, "POST", f"/rooms/{q(room)}/invite", alice[1], {"user_id": bob[0]})
    assert status == 200
    body = sync(server, bob[1], since=since)
    invite = body["rooms"]["invite"][room]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "sender": alice[0], "content": {"name": "Secret"}} in invite
    assert invite[-1]["type"] == "m.room.member" and invite[-1]["content"]["membership"] == "invite"
    assert sync(server, bob[1])["rooms"]["invite"][room]

    since = body["next_batch"]
    join(server, bob[1], room)
    body = sync(server, bob[1], since=since)
    assert room in body["rooms"]["join"] and room not in body["rooms"]["invite"]
    # Newly joined: the whole state.
    joined = body["rooms"]["join"][room]
    types = {e["type"] for e in joined["state"]["events"] + joined["timeline"]["events"]}
    assert {"m.room.create", "m.room.name"} <= types

    since = body["next_batch"]
    status, _ = call(server, "POST", f"/rooms/{q(room)}/leave", bob[1], {})
    assert status == 200
    body = sync(server, bob[1], since=since)
    left = body["rooms"]["leave"][room]
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert room not in body["rooms"]["join"]
    # Initial syncs show left rooms only with include_leave.
    assert room not in sync(server, bob[1])["rooms"]["leave"]
    assert room in sync(server, bob[1], filter={"room": {"include_leave": True}})["rooms"]["leave"]
    # Messages after the leave are not shown.
    since = body["next_batch"]
    send(server, alice[1], room, "after leave")
    assert room not in sync(server, bob[1], since=since)["rooms"]["leave"]


def test_membership_change_of_others_updates_the_summary(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1])
    since = sync(server, alice[1])["next_batch"]
    join(server, bob[1], room)
    body = sync(server, alice[1], since=since)
    assert body["rooms"]["join"][room]["summary"]["m.joined_member_count"] == 2
    assert body["rooms"]["join"][room]["summary"]["m.heroes"] == [bob[0]]


# --- typing, receipts, read markers ----------------------------------------------------------------

def test_typing_notifications_reach_the_room_and_stop(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    status, _ = call(server, "PUT", f"/rooms/{q(room)}/typing/{q(alice[0])}", alice[1], {"typing": True, "timeout": 10000})
    assert status == 200
    body = sync(server, bob[1], since=since, timeout="5000")
    eph = body["rooms"]["join"][room]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": [alice[0]]}} in eph
    since = body["next_batch"]
    call(server, "PUT", f"/rooms/{q(room)}/typing/{q(alice[0])}", alice[1], {"typing": False})
    eph = sync(server, bob[1], since=since)["rooms"]["join"][room]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": []}} in eph


def test_typing_timeout_expires(server, pair):
    alice, bob, room = pair
    call(server, "PUT", f"/rooms/{q(room)}/typing/{q(alice[0])}", alice[1], {"typing": True, "timeout": 200})
    since = sync(server, bob[1])["next_batch"]
    body = sync(server, bob[1], since=since, timeout="3000")
    eph = body["rooms"]["join"][room]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": []}} in eph


def test_typing_errors(server, pair):
    alice, bob, room = pair
    outsider = new_user(server, "out")
    path = f"/rooms/{q(room)}/typing/{q(alice[0])}"
    assert call(server, "PUT", path, bob[1], {"typing": True})[0] == 403
    assert call(server, "PUT", path, alice[1], {"typing": "yes"})[1]["errcode"] == "M_BAD_JSON"
    status, body = call(server, "PUT", f"/rooms/{q(room)}/typing/{q(outsider[0])}", outsider[1], {"typing": True})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_receipts_public_private_and_threaded(server, pair):
    alice, bob, room = pair
    event_id = send(server, alice[1], room, "read me")
    since_a = sync(server, alice[1])["next_batch"]
    since_b = sync(server, bob[1])["next_batch"]
    assert call(server, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", bob[1], {})[0] == 200
    eph = sync(server, alice[1], since=since_a)["rooms"]["join"][room]["ephemeral"]["events"]
    receipt = next(e for e in eph if e["type"] == "m.receipt")
    assert bob[0] in receipt["content"][event_id]["m.read"]
    assert isinstance(receipt["content"][event_id]["m.read"][bob[0]]["ts"], int)

    since_a = sync(server, alice[1])["next_batch"]
    assert call(server, "POST", f"/rooms/{q(room)}/receipt/m.read.private/{q(event_id)}", bob[1], {})[0] == 200
    assert call(server, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", bob[1],
                {"thread_id": "main"})[0] == 200
    alice_view = sync(server, alice[1], since=since_a)["rooms"]["join"][room]["ephemeral"]["events"]
    content = next(e for e in alice_view if e["type"] == "m.receipt")["content"]
    assert "m.read.private" not in content.get(event_id, {})
    assert content[event_id]["m.read"][bob[0]]["thread_id"] == "main"
    bob_view = sync(server, bob[1], since=since_b)["rooms"]["join"][room]["ephemeral"]["events"]
    content = next(e for e in bob_view if e["type"] == "m.receipt")["content"]
    assert bob[0] in content[event_id]["m.read.private"]


def test_receipt_errors(server, pair):
    alice, bob, room = pair
    event_id = send(server, alice[1], room, "x")
    base = f"/rooms/{q(room)}/receipt"
    assert call(server, "POST", f"{base}/m.bogus/{q(event_id)}", bob[1], {})[1]["errcode"] == "M_INVALID_PARAM"
    assert call(server, "POST", f"{base}/m.read/{q(event_id)}", bob[1], {"thread_id": ""})[1]["errcode"] == "M_INVALID_PARAM"
    assert call(server, "POST", f"{base}/m.read/{q(event_id)}", bob[1], {"thread_id": 5})[0] == 400
    assert call(server, "POST", f"{base}/m.fully_read/{q(event_id)}", bob[1], {"thread_id": "main"})[0] == 400
    outsider = new_user(server, "out")
    assert call(server, "POST", f"{base}/m.read/{q(event_id)}", outsider[1], {})[0] == 403


def test_read_markers_set_fully_read_and_read_receipt(server, pair):
    alice, bob, room = pair
    first = send(server, alice[1], room, "a")
    second = send(server, alice[1], room, "b")
    since = sync(server, bob[1])["next_batch"]
    status, _ = call(server, "POST", f"/rooms/{q(room)}/read_markers", bob[1],
                     {"m.fully_read": second, "m.read": second})
    assert status == 200
    body = sync(server, bob[1], since=since)
    joined = body["rooms"]["join"][room]
    assert {"type": "m.fully_read", "content": {"event_id": second}} in joined["account_data"]["events"]
    assert any(e["type"] == "m.receipt" for e in joined["ephemeral"]["events"])
    # The marker never moves backwards.
    call(server, "POST", f"/rooms/{q(room)}/read_markers", bob[1], {"m.fully_read": first})
    status, content = call(server, "GET", f"/user/{q(bob[0])}/rooms/{q(room)}/account_data/m.fully_read", bob[1])
    assert (status, content) == (200, {"event_id": second})
    # m.fully_read through the receipt endpoint.
    third = send(server, alice[1], room, "c")
    assert call(server, "POST", f"/rooms/{q(room)}/receipt/m.fully_read/{q(third)}", bob[1], {})[0] == 200
    status, content = call(server, "GET", f"/user/{q(bob[0])}/rooms/{q(room)}/account_data/m.fully_read", bob[1])
    assert content == {"event_id": third}
    assert call(server, "POST", f"/rooms/{q(room)}/read_markers", bob[1], {"m.fully_read": 3})[0] == 400


# --- notification counts -----------------------------------------------------------------------------

def test_unread_counts_highlights_and_reset_by_receipt(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1])
    join(server, bob[1], room)
    send(server, alice[1], room, "one")
    last = send(server, alice[1], room, "hey bob", **{"m.mentions": {"user_ids": [bob[0]]}})
    counts = sync(server, bob[1])["rooms"]["join"][room]["unread_notifications"]
    assert counts == {"notification_count": 2, "highlight_count": 1}
    # The sender's own messages do not count for them.
    assert sync(server, alice[1])["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0
    since = sync(server, bob[1])["next_batch"]
    call(server, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(last)}", bob[1], {})
    body = sync(server, bob[1], since=since)
    assert body["rooms"]["join"][room]["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}


def test_unread_thread_notifications_are_split_per_thread(server):
    alice = new_user(server, "alice")
    bob = new_user(server, "bob")
    room = create_room(server, alice[1])
    join(server, bob[1], room)
    root = send(server, alice[1], room, "root")
    send(server, alice[1], room, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    flt = {"room": {"timeline": {"unread_thread_notifications": True}}}
    joined = sync(server, bob[1], filter=flt)["rooms"]["join"][room]
    assert joined["unread_notifications"]["notification_count"] == 1
    assert joined["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}
    # A threaded receipt clears only its thread.
    thread_event = timeline(sync(server, bob[1]), room)[-1]["event_id"]
    call(server, "POST", f"/rooms/{q(room)}/receipt/m.read/{q(thread_event)}", bob[1], {"thread_id": root})
    joined = sync(server, bob[1], filter=flt)["rooms"]["join"][room]
    assert joined["unread_notifications"]["notification_count"] == 1
    assert "unread_thread_notifications" not in joined or joined["unread_thread_notifications"] == {}


# --- account data, presence, to-device -----------------------------------------------------------

def test_account_data_and_presence_in_sync(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    call(server, "PUT", f"/user/{q(bob[0])}/account_data/org.example.cfg", bob[1], {"x": 1})
    call(server, "PUT", f"/user/{q(bob[0])}/rooms/{q(room)}/account_data/org.example.room", bob[1], {"y": 2})
    body = sync(server, bob[1], since=since)
    assert {"type": "org.example.cfg", "content": {"x": 1}} in body["account_data"]["events"]
    assert {"type": "org.example.room", "content": {"y": 2}} in body["rooms"]["join"][room]["account_data"]["events"]
    since = body["next_batch"]
    call(server, "PUT", f"/presence/{q(alice[0])}/status", alice[1], {"presence": "unavailable", "status_msg": "busy"})
    body = sync(server, bob[1], since=since, timeout="3000")
    presence = [e for e in body["presence"]["events"] if e["sender"] == alice[0]]
    assert presence and presence[-1]["content"]["presence"] == "unavailable"


def test_to_device_messages_are_delivered_once(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    status, _ = call(server, "PUT", "/sendToDevice/org.example.ping/txn1", alice[1],
                     {"messages": {bob[0]: {bob[2]: {"n": 1}}}})
    assert status == 200
    body = sync(server, bob[1], since=since, timeout="3000")
    assert body["to_device"]["events"] == [{"type": "org.example.ping", "sender": alice[0], "content": {"n": 1}}]
    # Syncing again from the same token repeats them (not acknowledged yet) ...
    assert sync(server, bob[1], since=since)["to_device"]["events"]
    # ... and from the next token they are gone.
    after = sync(server, bob[1], since=body["next_batch"])
    assert after["to_device"]["events"] == []
    assert sync(server, bob[1], since=since)["to_device"]["events"] == []


def test_device_lists_changed_when_a_room_member_adds_keys(server, pair):
    alice, bob, room = pair
    since = sync(server, bob[1])["next_batch"]
    import nacl.signing
    from signedjson.key import encode_verify_key_base64
    from signedjson.sign import sign_json

    signing_key = nacl.signing.SigningKey.generate()
    signing_key.alg, signing_key.version = "ed25519", alice[2]
    device_keys = {"user_id": alice[0], "device_id": alice[2], "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                   "keys": {f"curve25519:{alice[2]}": encode_verify_key_base64(
                                nacl.signing.SigningKey.generate().verify_key),
                            f"ed25519:{alice[2]}": encode_verify_key_base64(signing_key.verify_key)}}
    status, resp = call(server, "POST", "/keys/upload", alice[1],
                        {"device_keys": sign_json(device_keys, alice[0], signing_key)})
    assert status == 200, resp
    body = sync(server, bob[1], since=since, timeout="3000")
    assert alice[0] in body["device_lists"]["changed"]


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("params,errcode", [
    ({"filter": "{not json"}, "M_NOT_JSON"),
    ({"filter": json.dumps({"room": {"timeline": {"limit": "x"}}})}, "M_BAD_JSON"),
    ({"since": "garbage"}, "M_INVALID_PARAM"),
    ({"since": "s1_2"}, "M_INVALID_PARAM"),
    ({"timeout": "soon"}, "M_INVALID_PARAM"),
    ({"full_state": "yes"}, "M_INVALID_PARAM"),
    ({"set_presence": "busy"}, "M_INVALID_PARAM"),
])
def test_bad_sync_parameters_are_400(server, pair, params, errcode):
    status, body = call(server, "GET", "/sync", pair[1][1], **params)
    assert (status, body["errcode"]) == (400, errcode)


def test_unknown_filter_id_is_404_and_no_token_is_401(server, pair):
    status, body = call(server, "GET", "/sync", pair[1][1], filter="987654")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = call(server, "GET", "/sync", None)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


# --- legacy -----------------------------------------------------------------------------------------

def test_legacy_initial_sync_and_events(server, pair):
    alice, bob, room = pair
    status, body = call(server, "GET", "/initialSync", bob[1], limit="2")
    assert status == 200
    entry = next(r for r in body["rooms"] if r["room_id"] == room)
    assert entry["membership"] == "join" and len(entry["messages"]["chunk"]) <= 2
    assert any(e["type"] == "m.room.create" for e in entry["state"])
    status, page = call(server, "GET", "/events", bob[1], timeout="0", **{"from": body["end"]})
    assert status == 200 and page["chunk"] == []
    event_id = send(server, alice[1], room, "legacy")
    status, page = call(server, "GET", "/events", bob[1], timeout="3000", **{"from": page["end"]})
    assert status == 200
    assert [(e["event_id"], e["room_id"]) for e in page["chunk"] if e["type"] == "m.room.message"] == [(event_id, room)]
