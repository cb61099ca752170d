"""Presence reaches servers that newly share a room (server-server-api.md "Presence", as
Synapse): when a user of B joins a room of A, B learns the presence the users of A in the room
had set before, and A learns the presence the user of B had set before joining; a server that
does not share the room learns nothing."""
from __future__ import annotations

from tests.integration.harness import api, register_user
from tests.integration.test_federation_rooms import q, two_nodes, wait_for

V3 = "/_matrix/client/v3"


def set_presence(node, user, presence, status_msg) -> None:
    status, body = api(node.base_url, "PUT", f"{V3}/presence/{q(user[0])}/status", user[1],
                       {"presence": presence, "status_msg": status_msg})
    assert status == 200, body


def presence_of(node, token, user_id) -> dict:
    status, body = api(node.base_url, "GET", f"{V3}/presence/{q(user_id)}/status", token)
    return body if status == 200 else {}


def test_joining_a_remote_room_exchanges_the_presence_set_before():
    with two_nodes("sqlite", prefix="uzel-presence-") as nodes:
        a, b = nodes
        alice = register_user(a.base_url, "alice")
        carol = register_user(a.base_url, "carol")
        bob = register_user(b.base_url, "bob")
        set_presence(a, alice, "online", "at A")
        set_presence(a, carol, "unavailable", "carol, elsewhere")
        set_presence(b, bob, "unavailable", "bob here")
        status, body = api(a.base_url, "POST", V3 + "/createRoom", alice[1], {"preset": "public_chat"})
        room = body["room_id"]
        status, body = api(b.base_url, "POST", f"{V3}/join/{q(room)}", bob[1], params={"server_name": a.name})
        assert status == 200, body

        # B learns Alice's presence (Carol is in no room with Bob: nothing about her).
        got = wait_for("B learns alice's presence",
                       lambda: (p := presence_of(b, bob[1], alice[0])).get("status_msg") == "at A" and p, nodes=nodes)
        assert got["presence"] == "online"
        assert presence_of(b, bob[1], carol[0]).get("status_msg") is None
        # A learns Bob's presence.
        got = wait_for("A learns bob's presence",
                       lambda: (p := presence_of(a, alice[1], bob[0])).get("status_msg") == "bob here" and p,
                       nodes=nodes)
        assert got["presence"] == "unavailable"
