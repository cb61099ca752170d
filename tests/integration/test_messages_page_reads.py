"""/messages pages read with what serving them needs in one transaction (HistoryStore.read_page):
transaction IDs, redactions and bundled aggregations must come out as when each was looked up on
its own, for pages served from the first read and for pages that scanned further (filters)
(client-server-api "Getting events for a room", "Transaction identifiers", "Redactions",
"Aggregations of child events"). Both engines."""
from __future__ import annotations

import itertools
import uuid

from tests.integration.harness import api, login, make_server_fixture, register_user
from tests.integration.test_history import V3, create, messages, q, redact, rel, send, text

server = make_server_fixture()
_n = itertools.count()
PASSWORD = "correct horse battery staple"


def send_txn(srv, token, room_id, body, txn_id):
    status, resp = api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/{q(txn_id)}",
                       token, json=body)
    assert status == 200, resp
    return resp["event_id"]


def test_messages_shows_transaction_id_only_to_the_device_that_sent_the_event(server):
    name = f"pr{next(_n)}"
    _, phone, _ = register_user(server.base_url, name, PASSWORD)
    laptop = login(server.base_url, name, PASSWORD)["access_token"]
    room = create(server, phone)
    from_phone = send_txn(server, phone, room, text("from the phone"), "txn-phone")
    from_laptop = send_txn(server, laptop, room, text("from the laptop"), "txn-laptop")

    for token, own, other, txn_id in ((phone, from_phone, from_laptop, "txn-phone"),
                                      (laptop, from_laptop, from_phone, "txn-laptop")):
        status, body = messages(server, token, room, dir="b", limit=50)
        assert status == 200, body
        served = {e["event_id"]: e for e in body["chunk"]}
        assert served[own]["unsigned"]["transaction_id"] == txn_id
        assert "transaction_id" not in served[other].get("unsigned", {})


def test_messages_scanning_past_filtered_events_still_applies_redactions_edits_and_txn_ids(server):
    name = f"ps{next(_n)}"
    _, token, _ = register_user(server.base_url, name, PASSWORD)
    room = create(server, token)
    original = send(server, token, room, text("original"))
    edit = send_txn(server, token, room, {**text("* edited"), "m.new_content": text("edited"),
                                          **rel("m.replace", original)}, "txn-edit")
    secret = send(server, token, room, text("secret"))
    redaction = redact(server, token, room, secret)
    for _ in range(6):  # newest: filtered out, so the page is found beyond the first read
        send(server, token, room, {"n": uuid.uuid4().hex}, event_type="org.example.noise")

    only_messages = {"types": ["m.room.message"]}
    status, body = messages(server, token, room, dir="b", limit=2, filter=only_messages)
    assert status == 200, body
    assert [e["event_id"] for e in body["chunk"]] == [secret, edit]
    assert body["chunk"][0]["content"] == {}
    assert body["chunk"][0]["unsigned"]["redacted_because"]["event_id"] == redaction
    assert body["chunk"][1]["unsigned"]["transaction_id"] == "txn-edit"

    status, body = messages(server, token, room, dir="b", limit=3, filter=only_messages)
    assert status == 200, body
    served = {e["event_id"]: e for e in body["chunk"]}
    assert served[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

    # The same events on a page served from its first read.
    status, body = messages(server, token, room, dir="b", limit=20)
    served = {e["event_id"]: e for e in body["chunk"]}
    assert served[secret]["unsigned"]["redacted_because"]["event_id"] == redaction
    assert served[edit]["unsigned"]["transaction_id"] == "txn-edit"
    assert served[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit


def set_ignored(srv, user_id, token, ignored):
    status, resp = api(srv.base_url, "PUT", f"{V3}/user/{q(user_id)}/account_data/m.ignored_user_list", token,
                       json={"ignored_users": {u: {} for u in ignored}})
    assert status == 200, resp


def test_messages_follows_changes_of_the_ignore_list_at_once(server):
    """modules/ignore_users.md: events of ignored users are not served; the ignore list is kept
    in memory, so ignoring and unignoring must take effect on the next request."""
    alice, a_tok, _ = register_user(server.base_url, f"pi{next(_n)}", PASSWORD)
    bob, b_tok, _ = register_user(server.base_url, f"pj{next(_n)}", PASSWORD)
    room = create(server, a_tok, preset="public_chat")
    status, resp = api(server.base_url, "POST", f"{V3}/join/{q(room)}", b_tok, json={})
    assert status == 200, resp
    from_bob = send(server, b_tok, room, text("from bob"))
    from_alice = send(server, a_tok, room, text("from alice"))

    def shown():
        status, body = messages(server, a_tok, room, dir="b", limit=50)
        assert status == 200, body
        return {e["event_id"] for e in body["chunk"]}

    assert {from_bob, from_alice} <= shown()
    set_ignored(server, alice, a_tok, [bob])
    assert from_bob not in shown() and from_alice in shown()
    set_ignored(server, alice, a_tok, [])
    assert from_bob in shown()
