"""Erased accounts over real HTTP (client-server-api account_deactivation.yaml, ``erase``): after
deactivation with ``erase: true`` the account's events are served redacted to users who were not
joined when they were sent (/messages, /sync, /context, /event, /relations; /search no longer finds
them), while members who saw them keep the full copy; other servers always get redacted copies
(/backfill, /event, /get_missing_events). Synapse decides the same way (membership at the event)."""
from __future__ import annotations

import time
from urllib.parse import quote

from tests.integration.harness import api, make_server_fixture, register_user
from tests.integration.test_federation_history import paginate_to_start, signed_get
from tests.integration.test_federation_rooms import send_message, two_nodes

V3 = "/_matrix/client/v3"
PW = "correct horse battery staple"
server = make_server_fixture()


def q(s: str) -> str:
    return quote(s, safe="")


def deactivate_erasing(base: str, user_id: str, token: str) -> None:
    status, body = api(base, "POST", V3 + "/account/deactivate", token, json={"erase": True})
    assert status == 401, body
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": PW, "session": body["session"]}
    status, body = api(base, "POST", V3 + "/account/deactivate", token, json={"erase": True, "auth": auth})
    assert status == 200, body


def join(base: str, token: str, room: str) -> None:
    status, body = api(base, "POST", f"{V3}/join/{q(room)}", token)
    assert status == 200, body


def send(base: str, token: str, room: str, content: dict) -> str:
    status, body = api(base, "PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/t{time.monotonic_ns()}", token, content)
    assert status == 200, body
    return body["event_id"]


def by_id(events: list[dict], event_id: str) -> dict:
    return next(e for e in events if e["event_id"] == event_id)


def test_erased_senders_events_are_redacted_only_for_users_who_were_not_joined(server):
    base = server.base_url
    tag = str(time.monotonic_ns())[-6:]
    alice = register_user(base, "alice" + tag, PW)
    bob = register_user(base, "bob" + tag, PW)
    eve = register_user(base, "eve" + tag, PW)
    carol = register_user(base, "carol" + tag, PW)
    status, body = api(base, "POST", V3 + "/createRoom", alice[1], {"preset": "public_chat"})
    room = body["room_id"]
    join(base, bob[1], room)
    join(base, eve[1], room)
    word = "zebrafish" + tag
    secret = send(base, eve[1], room, {"msgtype": "m.text", "body": f"eve says {word}"})
    root = send(base, alice[1], room, {"msgtype": "m.text", "body": "thread root"})
    reply = send(base, eve[1], room, {"msgtype": "m.text", "body": "eve in thread",
                                      "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    deactivate_erasing(base, eve[0], eve[1])
    join(base, carol[1], room)

    def messages(token):
        status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/messages", token, params={"dir": "b", "limit": "50"})
        assert status == 200, body
        return body["chunk"]

    # Bob was joined when Eve spoke: the full copy everywhere.
    assert by_id(messages(bob[1]), secret)["content"]["body"] == f"eve says {word}"
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/event/{q(secret)}", bob[1])
    assert status == 200 and body["content"]["body"] == f"eve says {word}"
    # Carol joined later (shared history): redacted copies.
    assert by_id(messages(carol[1]), secret)["content"] == {}
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/event/{q(secret)}", carol[1])
    assert status == 200 and body["content"] == {} and body["sender"] == eve[0]
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/context/{q(secret)}", carol[1], params={"limit": "4"})
    assert status == 200 and body["event"]["content"] == {}
    status, body = api(base, "GET", f"{V3}/rooms/{q(room)}/context/{q(root)}", carol[1], params={"limit": "4"})
    assert by_id(body["events_before"], secret)["content"] == {}
    status, body = api(base, "GET", f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(root)}", carol[1])
    assert status == 200 and by_id(body["chunk"], reply)["content"] == {}
    status, body = api(base, "GET", f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(root)}", bob[1])
    assert by_id(body["chunk"], reply)["content"]["body"] == "eve in thread"
    flt = '{"room":{"timeline":{"limit":50}}}'
    status, body = api(base, "GET", V3 + "/sync", carol[1], params={"timeout": "0", "filter": flt})
    timeline = body["rooms"]["join"][room]["timeline"]["events"]
    assert by_id(timeline, secret)["content"] == {}
    status, body = api(base, "GET", V3 + "/sync", bob[1], params={"timeout": "0", "filter": flt})
    assert by_id(body["rooms"]["join"][room]["timeline"]["events"], secret)["content"]["body"] == f"eve says {word}"
    criteria = {"search_term": word}
    status, body = api(base, "POST", V3 + "/search", carol[1], json={"search_categories": {"room_events": criteria}})
    assert status == 200 and body["search_categories"]["room_events"]["results"] == []
    status, body = api(base, "POST", V3 + "/search", bob[1], json={"search_categories": {"room_events": criteria}})
    assert [r["result"]["event_id"] for r in body["search_categories"]["room_events"]["results"]] == [secret]


def test_other_servers_get_redacted_copies_of_an_erased_senders_events():
    with two_nodes("sqlite", prefix="uzel-erase-") as nodes:
        a, b = nodes
        alice = register_user(a.base_url, "alice", PW)
        eve = register_user(a.base_url, "eve", PW)
        bob = register_user(b.base_url, "bob", PW)
        status, resp = api(a.base_url, "POST", V3 + "/createRoom", alice[1], {"preset": "public_chat"})
        room = resp["room_id"]
        join(a.base_url, eve[1], room)
        secret = send_message(a, eve[1], room, "eve's words")
        last = send_message(a, alice[1], room, "alice after")
        deactivate_erasing(a.base_url, eve[0], eve[1])
        status, resp = api(b.base_url, "POST", f"{V3}/join/{q(room)}", bob[1], params={"server_name": a.name})
        assert status == 200, resp

        fed = "/_matrix/federation/v1"
        status, resp = signed_get(b, a, f"{fed}/event/{q(secret)}")
        assert status == 200 and resp["pdus"][0]["content"] == {} and "hashes" in resp["pdus"][0], resp
        status, resp = signed_get(b, a, f"{fed}/backfill/{q(room)}?v={q(last)}&limit=20")
        pdus = {p["content"].get("body") for p in resp["pdus"] if p["type"] == "m.room.message"}
        assert pdus == {"alice after", None}, resp
        status, resp = signed_get(b, a, f"{fed}/get_missing_events/{q(room)}",
                                  {"earliest_events": [], "latest_events": [last], "limit": 20}, method="POST")
        assert next(p for p in resp["events"] if p["type"] == "m.room.message")["content"] == {}

        # Bob of B joins after the erasure and pages back: the redacted copy.
        events = paginate_to_start(b, bob[1], room)
        assert by_id(events, secret)["content"] == {}
        assert by_id(events, last)["content"]["body"] == "alice after"
