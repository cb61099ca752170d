"""History over real HTTP on both engines: /messages, /context, /relations, /threads and /search
(client-server-api "Getting events for a room", "Forming relationships between events",
"Aggregations of child events", modules/threading.md, modules/event_replacements.md,
modules/search.md, modules/history_visibility.md)."""
from __future__ import annotations

import itertools
import json
import uuid
from urllib.parse import quote

import pytest

from tests.integration.harness import api, make_server_fixture, register_user

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"

server = make_server_fixture()
_n = itertools.count()


def user(srv, name="h"):
    user_id, token, _ = register_user(srv.base_url, f"{name}{next(_n)}")
    return user_id, token


def q(s: str) -> str:
    return quote(s, safe="")


def create(srv, token, **body):
    status, resp = api(srv.base_url, "POST", V3 + "/createRoom", token, json=body)
    assert status == 200, resp
    return resp["room_id"]


def send(srv, token, room_id, body=None, event_type="m.room.message"):
    status, resp = api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}",
                       token, json=body if body is not None else {"msgtype": "m.text", "body": "hi"})
    assert status == 200, resp
    return resp["event_id"]


def text(body, **extra):
    return {"msgtype": "m.text", "body": body, **extra}


def rel(rel_type, parent, **extra):
    return {"m.relates_to": {"rel_type": rel_type, "event_id": parent, **extra}}


def join(srv, token, room_id):
    status, resp = api(srv.base_url, "POST", f"{V3}/join/{q(room_id)}", token, json={})
    assert status == 200, resp


def leave(srv, token, room_id):
    status, resp = api(srv.base_url, "POST", f"{V3}/rooms/{q(room_id)}/leave", token, json={})
    assert status == 200, resp


def redact(srv, token, room_id, event_id):
    status, resp = api(srv.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/redact/{q(event_id)}/{uuid.uuid4().hex}",
                       token, json={"reason": "test"})
    assert status == 200, resp
    return resp["event_id"]


def messages(srv, token, room_id, **params):
    if "filter" in params and not isinstance(params["filter"], str):
        params["filter"] = json.dumps(params["filter"])
    return api(srv.base_url, "GET", f"{V3}/rooms/{q(room_id)}/messages", token, params=params)


def context(srv, token, room_id, event_id, **params):
    if "filter" in params:
        params["filter"] = json.dumps(params["filter"])
    return api(srv.base_url, "GET", f"{V3}/rooms/{q(room_id)}/context/{q(event_id)}", token, params=params)


def relations(srv, token, room_id, event_id, *parts, **params):
    path = "".join("/" + q(p) for p in parts)
    return api(srv.base_url, "GET", f"{V1}/rooms/{q(room_id)}/relations/{q(event_id)}{path}", token,
               params=params)


def search(srv, token, criteria, next_batch=None):
    return api(srv.base_url, "POST", V3 + "/search", token, json={"search_categories": {"room_events": criteria}},
               params={"next_batch": next_batch} if next_batch else None)


def page_all(srv, token, room_id, direction, limit, **params):
    """Every event through /messages, following ``end`` until it is omitted."""
    events, token_from, pages = [], None, 0
    while True:
        p = dict(params, dir=direction, limit=limit)
        if token_from is not None:
            p["from"] = token_from
        status, body = messages(srv, token, room_id, **p)
        assert status == 200, body
        events += body["chunk"]
        pages += 1
        assert pages < 100
        if "end" not in body:
            return events, pages
        token_from = body["end"]


# --- /messages -----------------------------------------------------------------------------------

def test_messages_pages_back_and_forward_through_120_messages_to_the_start(server):
    _, token = user(server)
    room = create(server, token, name="History")
    sent = [send(server, token, room, text(f"message {i}")) for i in range(120)]
    back, pages = page_all(server, token, room, "b", 25)
    ids = [e["event_id"] for e in back]
    assert ids[:120] == list(reversed(sent))
    assert back[-1]["type"] == "m.room.create" and len(set(ids)) == len(ids)
    assert pages >= 5
    fwd, _ = page_all(server, token, room, "f", 40)
    assert [e["event_id"] for e in fwd] == list(reversed(ids))
    assert all("room_id" in e and "unsigned" in e for e in back[:5])


def test_messages_tokens_from_and_to_bound_a_window_and_start_echoes_from(server):
    _, token = user(server)
    room = create(server, token)
    sent = [send(server, token, room, text(f"w{i}")) for i in range(30)]
    status, first = messages(server, token, room, dir="b", limit=10)
    assert status == 200 and [e["event_id"] for e in first["chunk"]] == list(reversed(sent[-10:]))
    status, second = messages(server, token, room, dir="b", limit=10, **{"from": first["end"]})
    assert second["start"] == first["end"]
    assert [e["event_id"] for e in second["chunk"]] == list(reversed(sent[10:20]))
    # forwards from the end of page two up to the start of page one: exactly page two again
    status, window = messages(server, token, room, dir="f", limit=50, **{"from": second["end"], "to": first["end"]})
    assert status == 200 and [e["event_id"] for e in window["chunk"]] == sent[10:20]
    assert "end" not in window
    # a stream-only token is accepted too (s<stream>), and limit=0 returns nothing
    status, body = messages(server, token, room, dir="b", limit=0)
    assert status == 200 and body["chunk"] == []
    status, body = messages(server, token, room, dir="b", limit=3, **{"from": "s999999999"})
    assert status == 200 and [e["event_id"] for e in body["chunk"]] == list(reversed(sent[-3:]))
    huge = "t9999999999999999999_9999999999999999999"  # beyond 64 bits: clamped, not a 500
    status, body = messages(server, token, room, dir="b", limit=1, **{"from": huge})
    assert status == 200 and body["chunk"][0]["event_id"] == sent[-1]
    status, body = messages(server, token, room, dir="f", limit=1, **{"from": huge})
    assert status == 200 and body["chunk"] == [] and "end" not in body


def test_messages_filter_by_type_sender_and_lazy_loaded_members(server):
    alice, a_tok = user(server, "alice")
    bob, b_tok = user(server, "bob")
    room = create(server, a_tok, preset="public_chat")
    join(server, b_tok, room)
    for i in range(6):
        send(server, a_tok, room, text(f"a{i}"))
        send(server, b_tok, room, text(f"b{i}"))
        send(server, a_tok, room, {"k": i}, event_type="org.example.custom")
    status, body = messages(server, a_tok, room, dir="b", limit=4,
                            filter={"types": ["m.room.message"], "senders": [bob], "lazy_load_members": True})
    assert status == 200, body
    assert [e["content"]["body"] for e in body["chunk"]] == ["b5", "b4", "b3", "b2"]
    assert [(e["type"], e["state_key"]) for e in body["state"]] == [("m.room.member", bob)]
    status, body = messages(server, a_tok, room, dir="b", limit=100, filter={"not_types": ["m.room.*"]})
    assert {e["type"] for e in body["chunk"]} == {"org.example.custom"} and len(body["chunk"]) == 6
    status, body = messages(server, a_tok, room, dir="b", limit=5, filter={"not_rooms": [room]})
    assert status == 200 and body["chunk"] == []


@pytest.mark.parametrize("params,errcode", [
    ({"dir": "b", "from": "nonsense"}, "M_INVALID_PARAM"),
    ({"dir": "b", "from": "t1_x"}, "M_INVALID_PARAM"),
    ({"dir": "b", "to": "s-4"}, "M_INVALID_PARAM"),
    ({"dir": "sideways"}, "M_INVALID_PARAM"),
    ({"dir": "b", "limit": "ten"}, "M_INVALID_PARAM"),
    ({"dir": "b", "limit": "-1"}, "M_INVALID_PARAM"),
    ({"dir": "b", "filter": "{not json"}, "M_NOT_JSON"),
    ({"dir": "b", "filter": '{"types": "m.room.message"}'}, "M_BAD_JSON"),
    ({"dir": "b", "filter": '{"limit": 0}'}, "M_INVALID_PARAM"),
])
def test_messages_bad_input_is_400(server, params, errcode):
    _, token = user(server)
    room = create(server, token)
    status, body = messages(server, token, room, **params)
    assert (status, body["errcode"]) == (400, errcode), body


def test_messages_forbidden_for_non_members_unknown_rooms_and_anonymous(server):
    _, owner = user(server)
    _, stranger = user(server)
    room = create(server, owner, preset="private_chat")
    send(server, owner, room, text("private"))
    status, body = messages(server, stranger, room, dir="b")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = messages(server, stranger, "!unknown:test.local", dir="b")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = messages(server, None, room, dir="b")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


def test_world_readable_room_is_readable_without_joining(server):
    _, owner = user(server)
    _, reader = user(server)
    room = create(server, owner, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                  "content": {"history_visibility": "world_readable"}}])
    eid = send(server, owner, room, text("hello world"))
    status, body = messages(server, reader, room, dir="b", limit=5)
    assert status == 200 and body["chunk"][0]["event_id"] == eid


def test_user_who_left_reads_up_to_their_leave_only(server):
    _, owner = user(server)
    leaver_id, leaver = user(server)
    room = create(server, owner, preset="public_chat")
    join(server, leaver, room)
    before = send(server, owner, room, text("while you were here"))
    leave(server, leaver, room)
    after = [send(server, owner, room, text(f"after {i}")) for i in range(3)]
    events, _ = page_all(server, leaver, room, "b", 2)
    ids = [e["event_id"] for e in events]
    assert before in ids and not set(after) & set(ids)
    assert events[0]["type"] == "m.room.member" and events[0]["state_key"] == leaver_id
    assert events[0]["content"]["membership"] == "leave"
    fwd, _ = page_all(server, leaver, room, "f", 50)
    assert [e["event_id"] for e in fwd] == list(reversed(ids))


def test_joined_visibility_hides_history_before_the_join(server):
    _, owner = user(server)
    _, late = user(server)
    room = create(server, owner, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                  "content": {"history_visibility": "joined"}}])
    hidden = send(server, owner, room, text("before you came"))
    join(server, late, room)
    seen = send(server, owner, room, text("after you came"))
    events, _ = page_all(server, late, room, "b", 10)
    ids = [e["event_id"] for e in events]
    assert seen in ids and hidden not in ids


def test_redacted_events_are_served_redacted(server):
    _, token = user(server)
    room = create(server, token)
    eid = send(server, token, room, text("oops, my password"))
    redaction = redact(server, token, room, eid)
    status, body = messages(server, token, room, dir="b", limit=5)
    served = {e["event_id"]: e for e in body["chunk"]}
    assert served[eid]["content"] == {}
    assert served[eid]["unsigned"]["redacted_because"]["event_id"] == redaction
    status, ctx = context(server, token, room, eid)
    assert status == 200 and ctx["event"]["content"] == {}


# --- /context ------------------------------------------------------------------------------------

def test_context_splits_the_limit_and_its_tokens_continue_in_messages(server):
    _, token = user(server)
    room = create(server, token)
    sent = [send(server, token, room, text(f"c{i}")) for i in range(20)]
    status, body = context(server, token, room, sent[10], limit=5)
    assert status == 200, body
    assert body["event"]["event_id"] == sent[10]
    assert [e["event_id"] for e in body["events_before"]] == [sent[9], sent[8]]
    assert [e["event_id"] for e in body["events_after"]] == sent[11:14]
    assert any(e["type"] == "m.room.create" for e in body["state"])
    status, older = messages(server, token, room, dir="b", limit=3, **{"from": body["start"]})
    assert [e["event_id"] for e in older["chunk"]] == [sent[7], sent[6], sent[5]]
    status, newer = messages(server, token, room, dir="f", limit=3, **{"from": body["end"]})
    assert [e["event_id"] for e in newer["chunk"]] == sent[14:17]
    status, body = context(server, token, room, sent[10], limit=4, filter={"lazy_load_members": True})
    assert [e["type"] for e in body["state"]] == ["m.room.member"]


def test_context_of_unknown_or_foreign_events_is_404_and_strangers_403(server):
    _, token = user(server)
    _, stranger = user(server)
    room = create(server, token)
    other = create(server, token)
    foreign = send(server, token, other, text("elsewhere"))
    status, body = context(server, token, room, "$nope")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = context(server, token, room, foreign)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = context(server, stranger, other, foreign)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = context(server, token, other, foreign, limit="x")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# --- relations and aggregations -------------------------------------------------------------------

def test_edits_threads_and_references_are_bundled_where_events_are_served(server):
    alice, a_tok = user(server, "alice")
    bob, b_tok = user(server, "bob")
    room = create(server, a_tok, preset="public_chat")
    join(server, b_tok, room)
    root = send(server, a_tok, room, text("original"))
    send(server, a_tok, room, {**text("* first"), "m.new_content": text("first"), **rel("m.replace", root)})
    last_edit = send(server, a_tok, room, {**text("* second"), "m.new_content": text("second"),
                                           **rel("m.replace", root)})
    send(server, b_tok, room, {**text("* not yours"), "m.new_content": text("hijack"), **rel("m.replace", root)})
    send(server, b_tok, room, {**text("in thread 1"), **rel("m.thread", root)})
    latest = send(server, b_tok, room, {**text("in thread 2"), **rel("m.thread", root)})
    ref = send(server, b_tok, room, rel("m.reference", root), event_type="m.key.verification.done")
    send(server, b_tok, room, rel("m.annotation", root, key="👍"), event_type="m.reaction")

    status, body = messages(server, a_tok, room, dir="b", limit=20)
    served = {e["event_id"]: e for e in body["chunk"]}
    bundle = served[root]["unsigned"]["m.relations"]
    assert served[root]["content"]["body"] == "original"  # servers never replace content
    assert bundle["m.replace"]["event_id"] == last_edit
    assert bundle["m.replace"]["content"]["m.new_content"]["body"] == "second"
    assert bundle["m.thread"]["latest_event"]["event_id"] == latest
    assert bundle["m.thread"]["count"] == 2
    assert bundle["m.thread"]["current_user_participated"] is True  # alice sent the root
    assert bundle["m.reference"] == {"chunk": [{"event_id": ref}]}
    status, ctx = context(server, b_tok, room, root, limit=2)
    assert ctx["event"]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True
    assert ctx["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == last_edit

    redact(server, a_tok, room, last_edit)
    status, ctx = context(server, a_tok, room, root, limit=0)
    assert ctx["event"]["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"] == "first"
    redact(server, a_tok, room, root)
    status, ctx = context(server, a_tok, room, root, limit=0)
    assert "m.replace" not in ctx["event"]["unsigned"].get("m.relations", {})


def test_relations_endpoint_filters_pages_and_recurses(server):
    _, token = user(server)
    room = create(server, token)
    root = send(server, token, room, text("root"))
    replies = [send(server, token, room, {**text(f"r{i}"), **rel("m.thread", root)}) for i in range(7)]
    reaction = send(server, token, room, rel("m.annotation", replies[0], key="🎉"), event_type="m.reaction")
    send(server, token, room, text("unrelated"))

    status, body = relations(server, token, room, root, "m.thread", limit=3)
    assert status == 200 and [e["event_id"] for e in body["chunk"]] == list(reversed(replies[-3:]))
    assert "recursion_depth" not in body and "prev_batch" not in body
    collected = [e["event_id"] for e in body["chunk"]]
    while "next_batch" in body:
        status, body = relations(server, token, room, root, "m.thread", limit=3, **{"from": body["next_batch"]})
        assert body["prev_batch"]
        collected += [e["event_id"] for e in body["chunk"]]
    assert collected == list(reversed(replies))
    status, body = relations(server, token, room, root, dir="f", limit=2)
    assert [e["event_id"] for e in body["chunk"]] == replies[:2]
    status, body = relations(server, token, room, root, "m.thread", "m.reaction")
    assert body["chunk"] == []
    status, body = relations(server, token, room, root, recurse="true", limit=50)
    assert body["recursion_depth"] == 3 and reaction in [e["event_id"] for e in body["chunk"]]
    status, body = relations(server, token, room, root, "m.annotation", recurse="false")
    assert body["recursion_depth"] == 1 and body["chunk"] == []
    status, body = relations(server, token, room, replies[0], "m.annotation", "m.reaction")
    assert [e["content"]["m.relates_to"]["key"] for e in body["chunk"]] == ["🎉"]


def test_relations_bad_input_and_hidden_parents(server):
    _, token = user(server)
    _, stranger = user(server)
    room = create(server, token)
    root = send(server, token, room, text("root"))
    for params in ({"dir": "x"}, {"limit": "many"}, {"from": "bogus"}, {"recurse": "yes"}):
        status, body = relations(server, token, room, root, **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params
    status, body = relations(server, token, room, "$missing")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = relations(server, stranger, room, root)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_threads_list_orders_by_activity_filters_participation_and_pages(server):
    alice, a_tok = user(server, "alice")
    bob, b_tok = user(server, "bob")
    room = create(server, a_tok, preset="public_chat")
    join(server, b_tok, room)
    t_alice = send(server, a_tok, room, text("alice's thread"))
    t_bob = send(server, b_tok, room, text("bob's thread"))
    t_other = send(server, b_tok, room, text("another of bob's"))
    send(server, b_tok, room, {**text("x"), **rel("m.thread", t_alice)})
    send(server, b_tok, room, {**text("x"), **rel("m.thread", t_bob)})
    send(server, b_tok, room, {**text("x"), **rel("m.thread", t_other)})
    send(server, a_tok, room, {**text("x"), **rel("m.thread", t_bob)})

    status, body = api(server.base_url, "GET", f"{V1}/rooms/{q(room)}/threads", a_tok)
    assert status == 200 and [e["event_id"] for e in body["chunk"]] == [t_bob, t_other, t_alice]
    assert body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    status, body = api(server.base_url, "GET", f"{V1}/rooms/{q(room)}/threads", a_tok,
                       params={"include": "participated"})
    assert [e["event_id"] for e in body["chunk"]] == [t_bob, t_alice]
    status, page1 = api(server.base_url, "GET", f"{V1}/rooms/{q(room)}/threads", a_tok, params={"limit": 2})
    status, page2 = api(server.base_url, "GET", f"{V1}/rooms/{q(room)}/threads", a_tok,
                        params={"limit": 2, "from": page1["next_batch"]})
    assert [e["event_id"] for e in page1["chunk"] + page2["chunk"]] == [t_bob, t_other, t_alice]
    assert "next_batch" not in page2
    status, body = api(server.base_url, "GET", f"{V1}/rooms/{q(room)}/threads", a_tok, params={"include": "mine"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# --- /search ---------------------------------------------------------------------------------------

def test_search_finds_ranks_pages_and_groups_with_context(server):
    alice, a_tok = user(server, "alice")
    bob, b_tok = user(server, "bob")
    room = create(server, a_tok, preset="public_chat", name="Orchard news", topic="apples and pears")
    other = create(server, a_tok, name="Elsewhere")
    join(server, b_tok, room)
    api(server.base_url, "PUT", f"{V3}/profile/{q(bob)}/displayname", b_tok, json={"displayname": "Bobby"})
    hits = []
    for i in range(6):
        send(server, a_tok, room, text(f"filler {i}"))
        hits.append(send(server, b_tok if i % 2 else a_tok, room, text(f"apple harvest report {i}")))
    hits.append(send(server, a_tok, other, text("apple apple apple")))

    status, body = search(server, a_tok, {"search_term": "apple", "keys": ["content.body"]})
    res = body["search_categories"]["room_events"]
    assert status == 200 and res["count"] == 7 and "apple" in res["highlights"]
    assert {r["result"]["event_id"] for r in res["results"]} == set(hits)
    assert res["results"][0]["result"]["event_id"] == hits[-1]  # most relevant first
    ranks = [r["rank"] for r in res["results"]]
    assert ranks == sorted(ranks, reverse=True)

    criteria = {"search_term": "apples", "keys": ["content.body"], "order_by": "recent", "filter": {"limit": 4, "rooms": [room]},
                "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
                "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}, "include_state": True}
    status, body = search(server, a_tok, criteria)
    res = body["search_categories"]["room_events"]
    got = [r["result"]["event_id"] for r in res["results"]]
    assert got == list(reversed(hits[2:6]))
    ctx = res["results"][0]["context"]
    assert len(ctx["events_before"]) == 1 and ctx["events_before"][0]["content"]["body"] == "filler 5"
    assert ctx["profile_info"][bob]["displayname"] == "Bobby"
    assert set(res["groups"]["room_id"][room]["results"]) == set(got)
    assert set(res["groups"]["sender"]) == {alice, bob}
    assert any(e["type"] == "m.room.name" for e in res["state"][room])
    status, body = search(server, a_tok, criteria, next_batch=res["next_batch"])
    rest = body["search_categories"]["room_events"]
    assert [r["result"]["event_id"] for r in rest["results"]] == list(reversed(hits[:2]))
    assert "next_batch" not in rest

    status, body = search(server, a_tok, {"search_term": "orchard", "keys": ["content.name"]})
    assert body["search_categories"]["room_events"]["results"][0]["result"]["type"] == "m.room.name"
    status, body = search(server, a_tok, {"search_term": "pears", "keys": ["content.topic"]})
    assert body["search_categories"]["room_events"]["count"] == 1


def test_search_respects_membership_departure_and_redaction(server):
    _, owner = user(server)
    _, guest = user(server)
    _, stranger = user(server)
    room = create(server, owner, preset="public_chat")
    join(server, guest, room)
    seen = send(server, owner, room, text("zucchini before leaving"))
    doomed = send(server, owner, room, text("zucchini to be redacted"))
    redact(server, owner, room, doomed)
    leave(server, guest, room)
    send(server, owner, room, text("zucchini after leaving"))

    def found(token):
        status, body = search(server, token, {"search_term": "zucchini"})
        assert status == 200, body
        return [r["result"]["event_id"] for r in body["search_categories"]["room_events"]["results"]]
    assert found(guest) == [seen]
    assert found(stranger) == []
    assert len(found(owner)) == 2


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_BAD_JSON"),
    ({"search_categories": []}, "M_BAD_JSON"),
    ({"search_categories": {"room_events": {}}}, "M_BAD_JSON"),
    ({"search_categories": {"room_events": {"search_term": 5}}}, "M_BAD_JSON"),
    ({"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}}, "M_INVALID_PARAM"),
    ({"search_categories": {"room_events": {"search_term": "x", "order_by": "random"}}}, "M_INVALID_PARAM"),
    ({"search_categories": {"room_events": {"search_term": "x", "filter": {"senders": "@a:b"}}}}, "M_BAD_JSON"),
    ({"search_categories": {"room_events": {"search_term": "x", "event_context": {"before_limit": "2"}}}},
     "M_BAD_JSON"),
    ({"search_categories": {"room_events": {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}}},
     "M_INVALID_PARAM"),
])
def test_search_bad_input_is_400(server, body, errcode):
    _, token = user(server)
    status, resp = api(server.base_url, "POST", V3 + "/search", token, json=body)
    assert (status, resp["errcode"]) == (400, errcode), resp


def test_search_bad_next_batch_and_empty_categories(server):
    _, token = user(server)
    status, body = search(server, token, {"search_term": "x"}, next_batch="recent:12")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = api(server.base_url, "POST", V3 + "/search", token, json={"search_categories": {}})
    assert (status, body) == (200, {"search_categories": {}})
    status, body = search(server, token, {"search_term": "x"}, next_batch="rank:9999999999999999999")
    assert status == 200 and body["search_categories"]["room_events"]["results"] == []
    status, body = search(server, token, {"search_term": "!!!"})
    assert status == 200 and body["search_categories"]["room_events"]["results"] == []
