"""Two uzel processes federating on loopback (see test_federation_rooms.py): a room's history as
the other server sees it.

* /messages backfilling: a user of B joining a room of A late pages back to the room's creation
  and reads every message, in order; backfilled events change neither B's current state nor its
  forward extremities, nor show up in /sync as new; they are indexed for /relations and /search.
* Per-event history visibility for servers: with ``joined`` history, B (signing requests with
  its own key) cannot read events from before its user joined: /event 404, /state_ids 403,
  /backfill and /get_missing_events send them redacted; later events are served whole.
"""
from __future__ import annotations

import os

import pytest

from tests.integration.harness import ENGINES, api, register_user
from tests.integration.test_federation_rooms import Node, node_db, q, send_message, two_nodes, wait_for


@pytest.fixture(scope="module", params=ENGINES)
def nodes(request):
    with two_nodes(request.param, prefix="uzel-fedhist-") as out:
        yield out


@pytest.fixture(scope="module")
def users(nodes):
    a, b = nodes
    return {"alice": register_user(a.base_url, "alice"), "bob": register_user(b.base_url, "bob")}


def paginate_to_start(node: Node, token: str, room_id: str, limit: int = 7) -> list[dict]:
    """Every event /messages returns paging backwards from the end, oldest first."""
    events: list[dict] = []
    params = {"dir": "b", "limit": str(limit)}
    for _ in range(100):
        status, resp = api(node.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages", token,
                           params=params)
        assert status == 200, resp
        events.extend(resp["chunk"])
        if "end" not in resp:
            return list(reversed(events))
        params["from"] = resp["end"]
    raise AssertionError("pagination did not end")


def test_late_joiner_pages_back_to_the_room_start_through_backfill(nodes, users):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1],
                       {"preset": "public_chat", "name": "History"})
    assert status == 200, resp
    room = resp["room_id"]
    sent = [send_message(a, alice[1], room, f"message {i}") for i in range(30)]
    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.reaction/react1", alice[1],
                       {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent[5], "key": "+1"}})
    assert status == 200, resp
    reaction = resp["event_id"]

    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(room)}", bob[1], params={"server_name": a.name})
    assert status == 200, (resp, b.log()[-3000:])
    status, resp = api(b.base_url, "GET", "/_matrix/client/v3/sync", bob[1], params={"timeout": "0"})
    assert status == 200
    since = resp["next_batch"]

    events = paginate_to_start(b, bob[1], room)
    messages = [e["event_id"] for e in events if e["type"] == "m.room.message"]
    assert messages == sent, (len(messages), b.log()[-4000:])
    assert events[0]["type"] == "m.room.create"
    assert [e["content"]["body"] for e in events if e["type"] == "m.room.message"] == \
        [f"message {i}" for i in range(30)]
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob[0]

    # History only: nothing new for /sync, the same current state as A, and the next message of B
    # still builds on B's join (A accepts it).
    status, resp = api(b.base_url, "GET", "/_matrix/client/v3/sync", bob[1], params={"timeout": "0", "since": since})
    timeline = resp.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
    assert [e for e in timeline if e["event_id"] in sent] == []
    _, state_a = api(a.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room)}/state", alice[1])
    _, state_b = api(b.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room)}/state", bob[1])
    assert {e["event_id"] for e in state_a} == {e["event_id"] for e in state_b}
    from_b = send_message(b, bob[1], room, "read it all")
    wait_for("A receives B's message",
             lambda: api(a.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room)}/event/{q(from_b)}",
                         alice[1])[0] == 200, nodes=nodes)
    extremities = node_db(b, "SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room,))
    assert extremities == [(from_b,)]
    streams = node_db(b, f"SELECT stream_ordering FROM events WHERE event_id IN ({','.join('?' * 30)})", sent)
    assert len(streams) == 30 and all(s < 0 for (s,) in streams)
    # Backfilled history is indexed like live events: its relations and its text.
    status, resp = api(b.base_url, "GET", f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(sent[5])}", bob[1])
    assert status == 200 and [e["event_id"] for e in resp["chunk"]] == [reaction], resp
    status, resp = api(b.base_url, "POST", "/_matrix/client/v3/search", bob[1],
                       {"search_categories": {"room_events": {"search_term": "message 17", "order_by": "recent"}}})
    assert status == 200, resp
    assert sent[17] in [r["result"]["event_id"] for r in resp["search_categories"]["room_events"]["results"]], resp
    # Paging again is served locally: the same events.
    assert [e["event_id"] for e in paginate_to_start(b, bob[1], room, limit=50)][:len(events)] == \
        [e["event_id"] for e in events]


def signed_get(node_from: Node, node_to: Node, path: str, body=None, method: str = "GET"):
    """A federation request from ``node_from`` (signed with its own key) to ``node_to``."""
    import glob
    import json

    import requests

    from federation.request_auth import sign_request
    from homeserver.protocol import signing
    (key_path,) = glob.glob(os.path.join(node_from.data_dir, "*.signing.key"))
    key = signing.read_signing_keys(key_path)[0]
    headers = {"Authorization": sign_request(method, path, node_from.name, node_to.name, key, body)}
    resp = requests.request(method, node_to.base_url + path, headers=headers,
                            data=None if body is None else json.dumps(body), timeout=30)
    return resp.status_code, resp.json()


def test_servers_only_get_events_their_users_could_see(nodes, users):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {
        "preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]})
    assert status == 200, resp
    room = resp["room_id"]
    secret = send_message(a, alice[1], room, "before B joined")
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(room)}", bob[1], params={"server_name": a.name})
    assert status == 200, resp
    after = send_message(a, alice[1], room, "after B joined")
    wait_for("B has the later message",
             lambda: api(b.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room)}/event/{q(after)}", bob[1])[0] == 200,
             nodes=nodes)

    fed = "/_matrix/federation/v1"
    status, resp = signed_get(b, a, f"{fed}/event/{q(secret)}")
    assert status == 404, resp
    status, resp = signed_get(b, a, f"{fed}/event/{q(after)}")
    assert status == 200 and resp["pdus"][0]["content"]["body"] == "after B joined", resp
    status, resp = signed_get(b, a, f"{fed}/state_ids/{q(room)}?event_id={q(secret)}")
    assert status == 403, resp
    status, resp = signed_get(b, a, f"{fed}/state_ids/{q(room)}?event_id={q(after)}")
    assert status == 200 and resp["pdu_ids"], resp
    status, resp = signed_get(b, a, f"{fed}/backfill/{q(room)}?v={q(after)}&limit=20")
    assert status == 200, resp
    contents = {p["content"].get("body") for p in resp["pdus"] if p["type"] == "m.room.message"}
    assert contents == {"after B joined", None}, resp["pdus"]
    status, resp = signed_get(b, a, f"{fed}/get_missing_events/{q(room)}",
                              {"earliest_events": [], "latest_events": [after], "limit": 20}, method="POST")
    assert status == 200, resp
    secret_pdu = next(p for p in resp["events"] if p["type"] == "m.room.message")
    assert secret_pdu["content"] == {} and "hashes" in secret_pdu, secret_pdu

    # Bob pages back: the earlier message is not shown; B's copy of it (backfilled) is redacted.
    events = paginate_to_start(b, bob[1], room)
    assert secret not in [e["event_id"] for e in events]
    assert events[0]["type"] == "m.room.create"
    rows = node_db(b, "SELECT json FROM events WHERE event_id = ?", (secret,))
    assert rows and "before B joined" not in rows[0][0]
