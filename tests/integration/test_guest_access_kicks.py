"""Guests leave a room whose m.room.guest_access stops being "can_join" (modules/guest_access.md
"Server behaviour"; Synapse makes local guests leave by their own leave event with
``"kind": "guest"``), joined and invited guests alike; regular members stay."""
from __future__ import annotations

import time
from urllib.parse import quote

from tests.integration.harness import api, make_server_fixture, register_user

V3 = "/_matrix/client/v3"
server = make_server_fixture({"allow_guest_access": True}, engines=("sqlite",))


def q(s: str) -> str:
    return quote(s, safe="")


def guest(base: str) -> tuple[str, str]:
    status, body = api(base, "POST", V3 + "/register", params={"kind": "guest"}, json={})
    assert status == 200, body
    return body["user_id"], body["access_token"]


def member(base: str, token: str, room: str, user_id: str) -> dict:
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/state/m.room.member/{q(user_id)}", token)
    assert status == 200, body
    return body


def wait_membership(base, token, room, user_id, want, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        content = member(base, token, room, user_id)
        if content.get("membership") == want or time.monotonic() > deadline:
            return content
        time.sleep(0.1)


def set_guest_access(base, token, room, value) -> None:
    status, body = api(base, "PUT", f"{V3}/rooms/{q(room)}/state/m.room.guest_access/", token, {"guest_access": value})
    assert status == 200, body


def test_guests_leave_when_guest_access_becomes_forbidden(server):
    base = server.base_url
    alice = register_user(base, "alice")
    bob = register_user(base, "bob")
    status, body = api(base, "POST", V3 + "/createRoom", alice[1], {"preset": "public_chat", "initial_state": [
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}]})
    room = body["room_id"]
    assert api(base, "POST", f"{V3}/join/{q(room)}", bob[1])[0] == 200
    joined_guest, guest_token = guest(base)
    status, body = api(base, "POST", f"{V3}/join/{q(room)}", guest_token)
    assert status == 200, body
    assert member(base, alice[1], room, joined_guest)["kind"] == "guest"
    invited_guest, _ = guest(base)
    assert api(base, "POST", f"{V3}/rooms/{q(room)}/invite", alice[1], {"user_id": invited_guest})[0] == 200

    set_guest_access(base, alice[1], room, "forbidden")

    assert wait_membership(base, alice[1], room, joined_guest, "leave") == {"membership": "leave", "kind": "guest"}
    assert wait_membership(base, alice[1], room, invited_guest, "leave")["membership"] == "leave"
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/state/m.room.member/{q(joined_guest)}", alice[1])
    assert api(base, "GET", f"{V3}/rooms/{q(room)}/state/m.room.member/{q(bob[0])}", alice[1])[1]["membership"] == "join"
    # Guests may not come back, and a later can_join lets them in again.
    assert api(base, "POST", f"{V3}/join/{q(room)}", guest_token)[0] == 403
    set_guest_access(base, alice[1], room, "can_join")
    assert api(base, "POST", f"{V3}/join/{q(room)}", guest_token)[0] == 200
    time.sleep(0.5)
    assert member(base, alice[1], room, joined_guest)["membership"] == "join"


def test_guest_access_event_without_can_join_content_counts_as_forbidden(server):
    base = server.base_url
    alice = register_user(base, "alice2")
    status, body = api(base, "POST", V3 + "/createRoom", alice[1], {"preset": "public_chat", "initial_state": [
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}]})
    room = body["room_id"]
    g, token = guest(base)
    assert api(base, "POST", f"{V3}/join/{q(room)}", token)[0] == 200
    set_guest_access(base, alice[1], room, None)
    assert wait_membership(base, alice[1], room, g, "leave")["membership"] == "leave"
