"""Two uzel processes federating on loopback (plain HTTP between them through the
``federation_client_plain_http_destinations`` test switch): a room created on A, joined from B
(by ID and by alias), messages and state both ways, invites both ways (accepted and rejected),
leaving, profile and alias queries, and delivery to a server that was down for a while.

Server names are ``127.0.0.1:PORT``; each server only talks to the other over the real
server-server API (signed requests, /send transactions, make_join/send_join, ...). The module runs
once per database engine (SQLite, PostgreSQL)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests

from tests.integration.harness import ENGINES, REPO_ROOT, api, db_execute, free_port, register_user, stop_server, \
    write_config

WAIT_S = 30.0


@dataclass
class Node:
    name: str
    base_url: str
    data_dir: str
    config_path: str
    proc: subprocess.Popen | None = None

    def log(self) -> str:
        try:
            with open(os.path.join(self.data_dir, "uzel.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def _write(data_dir: str, port: int, peer_port: int, engine: str = "sqlite") -> str:
    path, _ = write_config(data_dir, port, engine, {
        "ip_range_whitelist": ["127.0.0.0/8"],
        "federation_client_plain_http_destinations": [f"127.0.0.1:{peer_port}"],
        "allow_public_rooms_over_federation": True,
    }, server_name=f"127.0.0.1:{port}")
    return path


def node_db(node: Node, sql: str, args=()) -> list[tuple]:
    """Run one SQL statement (``?`` placeholders) on the node's database, whichever engine its
    config names; returns the rows."""
    import types

    import yaml
    with open(node.config_path) as f:
        config = yaml.safe_load(f)
    return db_execute(types.SimpleNamespace(config=config), sql, tuple(args))


def start(node: Node) -> None:
    log = open(os.path.join(node.data_dir, "uzel.log"), "ab")
    node.proc = subprocess.Popen([sys.executable, "-m", "homeserver.cli", "run", "--config", node.config_path],
                                 cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while True:
        if node.proc.poll() is not None:
            raise RuntimeError(f"uzel exited during start-up:\n{node.log()[-4000:]}")
        try:
            if requests.get(node.base_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"uzel did not start:\n{node.log()[-4000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def two_nodes(engine: str, prefix: str = "uzel-fed-"):
    """Two uzel nodes federating with each other on loopback, each with its own database on
    ``engine``; stopped (by PID) and cleaned up on exit."""
    pa, pb = free_port(), free_port()
    out = []
    try:
        for port, peer in ((pa, pb), (pb, pa)):
            data_dir = tempfile.mkdtemp(prefix=prefix)
            node = Node(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", data_dir,
                        _write(data_dir, port, peer, engine))
            out.append(node)
            start(node)
        yield out
    finally:
        for node in out:
            if node.proc is not None:
                stop_server(node.proc)
            if os.environ.get("UZEL_KEEP_TEST_DIRS") != "1":
                shutil.rmtree(node.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=ENGINES)
def nodes(request):
    """Two nodes on one database engine (each its own database), for every engine."""
    with two_nodes(request.param) as out:
        yield out


@pytest.fixture(scope="module")
def users(nodes):
    a, b = nodes
    return {"alice": register_user(a.base_url, "alice"), "bob": register_user(b.base_url, "bob"),
            "carol": register_user(a.base_url, "carol"), "dan": register_user(b.base_url, "dan")}


def wait_for(what: str, fn, timeout: float = WAIT_S, nodes=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    logs = "\n".join(f"--- {n.name}\n{n.log()[-3000:]}" for n in nodes)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{logs}")


def q(s: str) -> str:
    return quote(s, safe="")


def send_message(node: Node, token: str, room_id: str, body: str) -> str:
    status, resp = api(node.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/"
                       f"{q(body)}{time.monotonic_ns()}", token, {"msgtype": "m.text", "body": body})
    assert status == 200, resp
    return resp["event_id"]


def has_event(node: Node, token: str, room_id: str, event_id: str) -> bool:
    status, _ = api(node.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}", token)
    return status == 200


def state_content(node: Node, token: str, room_id: str, etype: str, state_key: str = ""):
    status, resp = api(node.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{etype}/{q(state_key)}",
                       token)
    return resp if status == 200 else None


def joined(node: Node, token: str) -> list[str]:
    status, resp = api(node.base_url, "GET", "/_matrix/client/v3/joined_rooms", token)
    assert status == 200, resp
    return resp["joined_rooms"]


def members(node: Node, token: str, room_id: str) -> dict:
    status, resp = api(node.base_url, "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members", token)
    return resp.get("joined", {}) if status == 200 else {}


@pytest.fixture(scope="module")
def shared_room(nodes, users):
    """A public room created on A that Bob from B joined by ID (via A)."""
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1],
                       {"preset": "public_chat", "name": "Federated", "room_alias_name": "fed"})
    assert status == 200, resp
    room_id = resp["room_id"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(room_id)}", bob[1],
                       params={"server_name": a.name})
    assert status == 200, (resp, a.log()[-3000:], b.log()[-3000:])
    return room_id


def test_remote_user_joins_a_room_and_both_servers_see_the_membership(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    assert shared_room in joined(b, bob[1])
    wait_for("A sees Bob joined", lambda: bob[0] in members(a, alice[1], shared_room), nodes=nodes)
    assert set(members(b, bob[1], shared_room)) == {alice[0], bob[0]}
    assert state_content(b, bob[1], shared_room, "m.room.name") == {"name": "Federated"}


def test_messages_flow_both_ways(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    from_a = send_message(a, alice[1], shared_room, "hello from A")
    wait_for("B receives A's message", lambda: has_event(b, bob[1], shared_room, from_a), nodes=nodes)
    from_b = send_message(b, bob[1], shared_room, "hello from B")
    wait_for("A receives B's message", lambda: has_event(a, alice[1], shared_room, from_b), nodes=nodes)


def test_state_changes_converge(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(shared_room)}/state/m.room.topic/",
                       alice[1], {"topic": "set on A"})
    assert status == 200, resp
    wait_for("B sees the topic", lambda: state_content(b, bob[1], shared_room, "m.room.topic") == {"topic": "set on A"},
             nodes=nodes)
    # Bob (power 0) may not change the name: refused locally by B's auth check.
    status, resp = api(b.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(shared_room)}/state/m.room.name/",
                       bob[1], {"name": "hijacked"})
    assert status == 403, resp
    _, state_a = api(a.base_url, "GET", f"/_matrix/client/v3/rooms/{q(shared_room)}/state", alice[1])
    _, state_b = api(b.base_url, "GET", f"/_matrix/client/v3/rooms/{q(shared_room)}/state", bob[1])
    assert {e["event_id"] for e in state_a} == {e["event_id"] for e in state_b}


def test_join_by_remote_alias_and_profile_lookup(nodes, users, shared_room):
    a, b = nodes
    dan = users["dan"]
    status, resp = api(b.base_url, "GET", f"/_matrix/client/v3/directory/room/{q('#fed:' + a.name)}", dan[1])
    assert status == 200 and resp["room_id"] == shared_room and a.name in resp["servers"], resp
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q('#fed:' + a.name)}", dan[1])
    assert status == 200 and resp["room_id"] == shared_room, resp
    api(a.base_url, "PUT", f"/_matrix/client/v3/profile/{q(users['carol'][0])}/displayname", users["carol"][1],
        {"displayname": "Carol A."})
    status, resp = api(b.base_url, "GET", f"/_matrix/client/v3/profile/{q(users['carol'][0])}", dan[1])
    assert status == 200 and resp.get("displayname") == "Carol A.", resp


def test_invites_both_ways_accept_and_reject(nodes, users):
    a, b = nodes
    alice, bob, carol, dan = users["alice"], users["bob"], users["carol"], users["dan"]
    # A invites Bob (on B) into a private room; Bob accepts.
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {"preset": "private_chat"})
    private = resp["room_id"]
    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(private)}/invite", alice[1],
                       {"user_id": bob[0]})
    assert status == 200, (resp, a.log()[-3000:])
    status, resp = api(b.base_url, "GET", "/_matrix/client/v3/sync", bob[1], params={"timeout": "0"})
    assert private in resp["rooms"]["invite"], resp["rooms"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(private)}/join", bob[1])
    assert status == 200, (resp, b.log()[-3000:])
    wait_for("A sees Bob joined the private room", lambda: bob[0] in members(a, alice[1], private), nodes=nodes)

    # B invites Carol (on A) into a room of B; Carol rejects.
    _, resp = api(b.base_url, "POST", "/_matrix/client/v3/createRoom", dan[1], {"preset": "private_chat"})
    b_room = resp["room_id"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(b_room)}/invite", dan[1],
                       {"user_id": carol[0]})
    assert status == 200, (resp, b.log()[-3000:])
    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(b_room)}/leave", carol[1])
    assert status == 200, (resp, a.log()[-3000:])
    wait_for("B sees Carol's rejection",
             lambda: (state_content(b, dan[1], b_room, "m.room.member", carol[0]) or {}).get("membership") == "leave",
             nodes=nodes)
    status, resp = api(a.base_url, "GET", "/_matrix/client/v3/sync", carol[1], params={"timeout": "0"})
    assert b_room not in resp["rooms"].get("invite", {})


def test_leave_is_seen_by_the_other_server(nodes, users):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {"preset": "public_chat"})
    room = resp["room_id"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(room)}", bob[1], params={"server_name": a.name})
    assert status == 200, resp
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/leave", bob[1])
    assert status == 200, resp
    wait_for("A sees Bob leave", lambda: bob[0] not in members(a, alice[1], room), nodes=nodes)
    assert room not in joined(b, bob[1])


def test_messages_sent_while_the_peer_is_down_arrive_after_it_restarts(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    stop_server(a.proc)
    sent = [send_message(b, bob[1], shared_room, f"while A is down {i}") for i in range(3)]
    time.sleep(1.0)  # B tries, fails and backs off
    start(a)
    for event_id in sent:
        wait_for("A catches up", lambda: has_event(a, alice[1], shared_room, event_id), timeout=60, nodes=nodes)
    # and the other way round, right after the restart
    from_a = send_message(a, alice[1], shared_room, "back again")
    wait_for("B receives from the restarted A", lambda: has_event(b, bob[1], shared_room, from_a), nodes=nodes)


def sync(node: Node, token: str, since: str | None = None) -> dict:
    params = {"timeout": "0"}
    if since:
        params["since"] = since
    status, resp = api(node.base_url, "GET", "/_matrix/client/v3/sync", token, params=params)
    assert status == 200, resp
    return resp


def ephemeral_types(resp: dict, room_id: str) -> dict:
    room = resp.get("rooms", {}).get("join", {}).get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("ephemeral", {}).get("events", [])}


def test_typing_and_receipts_reach_the_other_server(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, _ = api(a.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(shared_room)}/typing/{q(alice[0])}", alice[1],
                    {"typing": True, "timeout": 20000})
    assert status == 200
    wait_for("Bob sees Alice typing",
             lambda: alice[0] in ephemeral_types(sync(b, bob[1]), shared_room).get("m.typing", {}).get("user_ids", []),
             nodes=nodes)
    event_id = send_message(b, bob[1], shared_room, "read me")
    wait_for("A has Bob's message", lambda: has_event(a, alice[1], shared_room, event_id), nodes=nodes)
    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(shared_room)}/receipt/m.read/{q(event_id)}",
                       alice[1], {})
    assert status == 200, resp

    def bob_sees_receipt():
        receipts = ephemeral_types(sync(b, bob[1]), shared_room).get("m.receipt", {})
        return alice[0] in receipts.get(event_id, {}).get("m.read", {})
    wait_for("Bob sees Alice's receipt", bob_sees_receipt, nodes=nodes)


def test_presence_reaches_users_sharing_a_room_on_the_other_server(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]

    def presence_of(node, token, user_id):
        events = sync(node, token).get("presence", {}).get("events", [])
        return next((e["content"] for e in events if e["sender"] == user_id), None)
    status, resp = api(b.base_url, "PUT", f"/_matrix/client/v3/presence/{q(bob[0])}/status", bob[1],
                       {"presence": "online", "status_msg": "working on B"})
    assert status == 200, resp
    got = wait_for("Alice sees Bob's presence",
                   lambda: (c := presence_of(a, alice[1], bob[0])) and c.get("status_msg") == "working on B" and c,
                   nodes=nodes)
    assert got["presence"] == "online"
    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/presence/{q(alice[0])}/status", alice[1],
                       {"presence": "unavailable", "status_msg": "away from A"})
    assert status == 200, resp
    wait_for("Bob sees Alice away",
             lambda: (presence_of(b, bob[1], alice[0]) or {}).get("presence") == "unavailable", nodes=nodes)
    status, resp = api(b.base_url, "GET", f"/_matrix/client/v3/presence/{q(alice[0])}/status", bob[1])
    assert status == 200 and resp["presence"] == "unavailable" and resp.get("status_msg") == "away from A", resp


def test_to_device_messages_and_device_keys_cross_servers(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    since = sync(a, alice[1])["next_batch"]
    from homeserver.protocol import signing
    device_key = signing.generate_signing_key(bob[2])
    device_keys = signing.sign_json(
        {"user_id": bob[0], "device_id": bob[2], "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
         "keys": {f"curve25519:{bob[2]}": "c" * 43, f"ed25519:{bob[2]}": signing.verify_key_base64(device_key)}},
        bob[0], device_key)
    status, resp = api(b.base_url, "POST", "/_matrix/client/v3/keys/upload", bob[1], {"device_keys": device_keys})
    assert status == 200, resp
    status, resp = api(a.base_url, "POST", "/_matrix/client/v3/keys/query", alice[1],
                       {"device_keys": {bob[0]: []}})
    assert status == 200 and bob[2] in resp["device_keys"].get(bob[0], {}), resp
    wait_for("Alice is told Bob's devices changed",
             lambda: bob[0] in sync(a, alice[1], since).get("device_lists", {}).get("changed", []), nodes=nodes)

    status, resp = api(a.base_url, "PUT", "/_matrix/client/v3/sendToDevice/m.test/tx1", alice[1],
                       {"messages": {bob[0]: {bob[2]: {"hello": "bob"}}}})
    assert status == 200, resp

    def bob_got_it():
        events = sync(b, bob[1]).get("to_device", {}).get("events", [])
        return any(e["type"] == "m.test" and e["sender"] == alice[0] and e["content"] == {"hello": "bob"}
                   for e in events)
    wait_for("Bob receives the to-device message", bob_got_it, nodes=nodes)


def test_media_and_the_room_directory_of_the_other_server(nodes, users, shared_room):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    status, resp = api(a.base_url, "POST", "/_matrix/media/v3/upload", alice[1], data=b"federated bytes",
                       headers={"Content-Type": "text/plain"}, params={"filename": "note.txt"})
    assert status == 200, resp
    media_id = resp["content_uri"].split("/")[-1]
    got = requests.get(f"{b.base_url}/_matrix/client/v1/media/download/{q(a.name)}/{media_id}",
                       headers={"Authorization": f"Bearer {bob[1]}"}, timeout=30)
    assert got.status_code == 200 and got.content == b"federated bytes", (got.status_code, got.text)
    assert "note.txt" in got.headers.get("Content-Disposition", "")

    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/directory/list/room/{q(shared_room)}", alice[1],
                       {"visibility": "public"})
    assert status == 200, resp
    status, resp = api(b.base_url, "GET", "/_matrix/client/v3/publicRooms", bob[1], params={"server": a.name})
    assert status == 200 and shared_room in [r["room_id"] for r in resp["chunk"]], resp
    status, resp = api(b.base_url, "POST", "/_matrix/client/v3/publicRooms", bob[1],
                       {"filter": {"generic_search_term": "Federated"}}, params={"server": a.name})
    assert status == 200 and [r["room_id"] for r in resp["chunk"]] == [shared_room], resp


def test_knock_invite_join_kick_and_ban_across_servers(nodes, users):
    a, b = nodes
    alice, dan = users["alice"], users["dan"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1],
                  {"preset": "private_chat", "initial_state": [
                      {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})
    room = resp["room_id"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/knock/{q(room)}", dan[1], {"reason": "let me in"},
                       params={"server_name": a.name})
    assert status == 200, (resp, b.log()[-3000:])
    wait_for("A sees the knock",
             lambda: (state_content(a, alice[1], room, "m.room.member", dan[0]) or {}).get("membership") == "knock",
             nodes=nodes)
    assert room in sync(b, dan[1]).get("rooms", {}).get("knock", {})
    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/invite", alice[1], {"user_id": dan[0]})
    assert status == 200, (resp, a.log()[-3000:])
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/join", dan[1])
    assert status == 200, (resp, b.log()[-3000:])
    wait_for("A sees Dan joined", lambda: dan[0] in members(a, alice[1], room), nodes=nodes)

    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/kick", alice[1],
                       {"user_id": dan[0], "reason": "bye"})
    assert status == 200, resp
    wait_for("B sees Dan kicked", lambda: room not in joined(b, dan[1]), nodes=nodes)
    status, resp = api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/ban", alice[1], {"user_id": dan[0]})
    assert status == 200, resp
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/knock/{q(room)}", dan[1], {},
                       params={"server_name": a.name})
    assert status == 403, resp
    # Unbanned and invited again, Dan rejoins a room his server had left (its copy is stale).
    assert api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/unban", alice[1], {"user_id": dan[0]})[0] == 200
    assert api(a.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/invite", alice[1], {"user_id": dan[0]})[0] == 200
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/join", dan[1])
    assert status == 200, (resp, b.log()[-3000:])
    wait_for("A sees Dan back", lambda: dan[0] in members(a, alice[1], room), nodes=nodes)
    assert room in joined(b, dan[1])
    from_a = send_message(a, alice[1], room, "welcome back")
    wait_for("B receives messages again", lambda: has_event(b, dan[1], room, from_a), nodes=nodes)


def test_restricted_join_is_authorised_by_the_resident_server(nodes, users):
    a, b = nodes
    alice, dan = users["alice"], users["dan"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {"preset": "public_chat"})
    space = resp["room_id"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {
        "preset": "private_chat", "room_version": "10", "initial_state": [
            {"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}]})
    restricted = resp["room_id"]
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(restricted)}", dan[1],
                       params={"server_name": a.name})
    assert status == 403, resp
    assert api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(space)}", dan[1],
               params={"server_name": a.name})[0] == 200
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(restricted)}", dan[1],
                       params={"server_name": a.name})
    assert status == 200, (resp, a.log()[-3000:])
    member = state_content(b, dan[1], restricted, "m.room.member", dan[0])
    assert member["membership"] == "join" and member["join_authorised_via_users_server"] == alice[0]


def test_space_hierarchy_shows_children_only_the_other_server_knows(nodes, users):
    a, b = nodes
    alice, bob = users["alice"], users["bob"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1],
                  {"preset": "public_chat", "name": "Child"})
    child = resp["room_id"]
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {
        "preset": "public_chat", "name": "Space", "creation_content": {"type": "m.space"},
        "initial_state": [{"type": "m.space.child", "state_key": child, "content": {"via": [a.name]}}]})
    space = resp["room_id"]
    assert api(b.base_url, "POST", f"/_matrix/client/v3/join/{q(space)}", bob[1],
               params={"server_name": a.name})[0] == 200
    status, resp = api(b.base_url, "GET", f"/_matrix/client/v1/rooms/{q(space)}/hierarchy", bob[1])
    assert status == 200, resp
    rooms = {r["room_id"]: r for r in resp["rooms"]}
    assert space in rooms and child in rooms and rooms[child].get("name") == "Child", resp


def test_third_party_invite_is_exchanged_with_the_resident_server(nodes, users):
    """An identity server (a test key) reports to B that Dan bound the e-mail Alice invited in a
    room of A: B asks A (/exchange_third_party_invite), A checks the signed block against the
    room's m.room.third_party_invite keys and invites Dan; a block signed by another key is 403."""
    from homeserver.protocol import signing
    a, b = nodes
    alice, dan = users["alice"], users["dan"]
    id_key, other_key = signing.generate_signing_key("0"), signing.generate_signing_key("0")
    _, resp = api(a.base_url, "POST", "/_matrix/client/v3/createRoom", alice[1], {"preset": "private_chat"})
    room = resp["room_id"]
    status, resp = api(a.base_url, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.third_party_invite/tok3",
                       alice[1], {"display_name": "d...@example.org", "key_validity_url": "https://id.example/check",
                                  "public_key": signing.verify_key_base64(id_key),
                                  "public_keys": [{"public_key": signing.verify_key_base64(id_key)}]})
    assert status == 200, resp

    def onbind(key):
        signed = signing.sign_json({"mxid": dan[0], "token": "tok3"}, "id.example", key)
        return api(b.base_url, "PUT", "/_matrix/federation/v1/3pid/onbind", None, {
            "medium": "email", "address": "dan@example.org", "mxid": dan[0],
            "invites": [{"medium": "email", "address": "dan@example.org", "mxid": dan[0], "room_id": room,
                         "sender": alice[0], "signed": signed}]})
    status, resp = onbind(other_key)
    assert status == 403, (resp, a.log()[-3000:])
    assert (state_content(a, alice[1], room, "m.room.member", dan[0]) or {}).get("membership") is None

    status, resp = onbind(id_key)
    assert status == 200, (resp, a.log()[-3000:], b.log()[-3000:])
    member = state_content(a, alice[1], room, "m.room.member", dan[0])
    assert member["membership"] == "invite", member
    assert member["third_party_invite"]["display_name"] == "d...@example.org"
    assert room in sync(b, dan[1]).get("rooms", {}).get("invite", {})
    status, resp = api(b.base_url, "POST", f"/_matrix/client/v3/rooms/{q(room)}/join", dan[1])
    assert status == 200, (resp, b.log()[-3000:])
    wait_for("A sees Dan joined", lambda: dan[0] in members(a, alice[1], room), nodes=nodes)


def test_exchange_third_party_invite_refuses_malformed_and_foreign_requests(nodes, users):
    a, b = nodes
    path = "/_matrix/federation/v1/exchange_third_party_invite/" + q("!nowhere:" + a.name)
    status, resp = api(a.base_url, "PUT", path, None, {"type": "m.room.member"})
    assert status == 401, resp  # unsigned
