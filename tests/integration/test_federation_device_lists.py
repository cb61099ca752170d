"""Remote device lists cached across two federating uzels (server-server-api.md "Device
Management"; end_to_end_encryption.md "Tracking the device list for a user").

Alice is on A, Bob on B; they share a room created on A. B fetches Alice's list once (GET
/user/devices) and answers Bob's /keys/query from it; Alice's new device reaches B as an
m.device_list_update applied in sequence (Bob's /sync lists her in device_lists.changed and his
next query shows the device, with no request to A); an update after a lost one (B's held
stream_id set back while B is stopped) makes B resync; with A stopped, B still answers. When Bob leaves the last
shared room, B drops the list and Bob's /sync reports Alice in device_lists.left.

Requests B makes to A are counted in A's access log. The module runs once per database engine."""
from __future__ import annotations

import pytest

from homeserver.protocol import signing
from tests.integration.harness import ENGINES, api, login, register_user, stop_server
from tests.integration.test_federation_rooms import Node, node_db, q, start, sync, two_nodes, wait_for

PW = "correct horse battery staple"
DEVICES_PATH = "GET /_matrix/federation/v1/user/devices/"
QUERY_PATH = "POST /_matrix/federation/v1/user/keys/query"


@pytest.fixture(scope="module", params=ENGINES)
def world(request):
    """Nodes A and B, Alice on A with device keys, Bob on B, both joined to a room on A."""
    with two_nodes(request.param, prefix="uzel-devlists-") as (a, b):
        alice = register_user(a.base_url, "alice", PW)
        bob = register_user(b.base_url, "bob", PW)
        upload_keys(a, alice[0], alice[1], alice[2])
        status, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {"preset": "public_chat"})
        assert status == 200, resp
        room_id = resp["room_id"]
        status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(room_id)}", bob[1],
                           params={"server_name": a.name})
        assert status == 200, (resp, b.log()[-3000:])
        yield {"a": a, "b": b, "alice": alice, "bob": bob, "room_id": room_id}


def upload_keys(node: Node, user_id: str, token: str, device_id: str) -> None:
    key = signing.generate_signing_key(device_id)
    keys = signing.sign_json(
        {"user_id": user_id, "device_id": device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
         "keys": {f"curve25519:{device_id}": "c" * 43, f"ed25519:{device_id}": signing.verify_key_base64(key)}},
        user_id, key)
    status, resp = api(node.base_url, "POST", "/_matrix/client/v3/keys/upload", token, {"device_keys": keys})
    assert status == 200, resp


def query(node: Node, token: str, user_id: str) -> dict:
    status, resp = api(node.base_url, "POST", "/_matrix/client/v3/keys/query", token, {"device_keys": {user_id: []}})
    assert status == 200, resp
    return resp


def count(node: Node, request_line: str) -> int:
    return node.log().count(request_line)


def held(b: Node, user_id: str) -> list[tuple]:
    return node_db(b, "SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = ?", (user_id,))


def test_first_query_fetches_the_list_once_then_the_cache_answers(world):
    a, b, alice, bob = world["a"], world["b"], world["alice"], world["bob"]
    before = count(a, DEVICES_PATH), count(a, QUERY_PATH)
    resp = query(b, bob[1], alice[0])
    assert list(resp["device_keys"][alice[0]]) == [alice[2]] and resp["failures"] == {}, resp
    assert (count(a, DEVICES_PATH), count(a, QUERY_PATH)) == (before[0] + 1, before[1])
    assert held(b, alice[0]) and not held(b, alice[0])[0][1]
    for _ in range(3):
        assert query(b, bob[1], alice[0])["device_keys"] == resp["device_keys"]
    assert (count(a, DEVICES_PATH), count(a, QUERY_PATH)) == (before[0] + 1, before[1])


def test_a_new_device_is_applied_from_the_edu_and_shown_in_sync_and_the_next_query(world):
    a, b, alice, bob = world["a"], world["b"], world["alice"], world["bob"]
    query(b, bob[1], alice[0])  # held
    (old_stream, _), = held(b, alice[0])
    since = sync(b, bob[1])["next_batch"]
    fetches = count(a, DEVICES_PATH), count(a, QUERY_PATH)
    second = login(a.base_url, "alice", PW, device_id="ALICE2")
    upload_keys(a, alice[0], second["access_token"], "ALICE2")
    wait_for("B applies Alice's new device", lambda: held(b, alice[0])[0][0] != old_stream, nodes=(a, b))
    wait_for("Bob's /sync lists Alice in device_lists.changed",
             lambda: alice[0] in sync(b, bob[1], since).get("device_lists", {}).get("changed", []), nodes=(a, b))
    wait_for("B's list has ALICE2's keys", lambda: "ALICE2" in query(b, bob[1], alice[0])["device_keys"][alice[0]],
             nodes=(a, b))
    status, resp = api(b.base_url, "GET", "/_matrix/client/v3/keys/changes", bob[1],
                       params={"from": since, "to": sync(b, bob[1])["next_batch"]})
    assert status == 200 and alice[0] in resp["changed"], resp
    # Applied in sequence from the EDUs: no request to A for it.
    assert (count(a, DEVICES_PATH), count(a, QUERY_PATH)) == fetches
    assert not held(b, alice[0])[0][1]


def test_an_update_after_a_missed_one_makes_b_resync(world):
    a, b, alice, bob = world["a"], world["b"], world["alice"], world["bob"]
    query(b, bob[1], alice[0])
    (stream, _), = held(b, alice[0])
    # As if B had missed the last update: its list one behind, and B restarted (nothing in memory).
    stop_server(b.proc)
    b.proc = None
    node_db(b, "UPDATE e2e_remote_device_lists SET stream_id = ? WHERE user_id = ?", (str(int(stream) - 1), alice[0]))
    start(b)
    fetches = count(a, DEVICES_PATH)
    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/devices/{q(alice[2])}", alice[1],
                       {"display_name": "renamed on A"})
    assert status == 200, resp
    wait_for("B resyncs Alice's list", lambda: count(a, DEVICES_PATH) > fetches, nodes=(a, b))

    def renamed():
        keys = query(b, bob[1], alice[0])["device_keys"][alice[0]].get(alice[2], {})
        return keys.get("unsigned", {}).get("device_display_name") == "renamed on A"
    wait_for("B shows the new display name", renamed, nodes=(a, b))
    (after, stale), = held(b, alice[0])
    assert not stale and int(after) == int(stream) + 1


def test_the_cache_answers_while_a_is_down_and_is_dropped_when_the_last_shared_room_goes(world):
    a, b, alice, bob, room_id = world["a"], world["b"], world["alice"], world["bob"], world["room_id"]
    expected = query(b, bob[1], alice[0])["device_keys"][alice[0]]
    assert set(expected) == {alice[2], "ALICE2"}
    stop_server(a.proc)
    a.proc = None
    try:
        resp = query(b, bob[1], alice[0])
        assert resp["device_keys"][alice[0]] == expected and resp["failures"] == {}, resp
    finally:
        start(a)
    since = sync(b, bob[1])["next_batch"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", bob[1], {})
    assert status == 200, resp
    wait_for("B drops Alice's list", lambda: not held(b, alice[0]), nodes=(a, b))
    assert alice[0] in sync(b, bob[1], since).get("device_lists", {}).get("left", [])
    # Not tracked any more: asked over federation, not cached.
    queries = count(a, QUERY_PATH)
    assert set(query(b, bob[1], alice[0])["device_keys"][alice[0]]) == {alice[2], "ALICE2"}
    assert count(a, QUERY_PATH) == queries + 1 and not held(b, alice[0])
