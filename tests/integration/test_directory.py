"""Aliases, the published room directory, space hierarchy, room summary, user directory and mutual
rooms over HTTP against a real uzel (both engines), every error case included."""
from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest

from tests.integration.harness import SERVER_NAME, api, make_server_fixture, register_user

server = make_server_fixture()
open_server = make_server_fixture({"allow_public_rooms_without_auth": True}, engines=("sqlite",))

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
_names = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


def user(server, name: str) -> tuple[str, str]:
    user_id, token, _ = register_user(server.base_url, f"{name}{next(_names)}")
    return user_id, token


def ok(result):
    status, body = result
    assert status == 200, body
    return body


def err(result) -> tuple[int, str]:
    status, body = result
    return status, (body or {}).get("errcode")


def create_room(server, token, **body) -> str:
    return ok(api(server.base_url, "POST", f"{V3}/createRoom", token, body))["room_id"]


def join(server, token, room_id_or_alias: str) -> None:
    ok(api(server.base_url, "POST", f"{V3}/join/{q(room_id_or_alias)}", token, {}))


def set_state(server, token, room_id, etype, content, state_key=""):
    return api(server.base_url, "PUT", f"{V3}/rooms/{q(room_id)}/state/{etype}/{q(state_key)}", token, content)


def alias(name: str) -> str:
    return f"#{name}{next(_names)}:{SERVER_NAME}"


# --- aliases -----------------------------------------------------------------------------------------

def test_alias_create_resolve_delete(server):
    _, token = user(server, "alice")
    room_id = create_room(server, token, preset="public_chat")
    a = alias("cheese")
    path = f"{V3}/directory/room/{q(a)}"
    assert ok(api(server.base_url, "PUT", path, token, {"room_id": room_id})) == {}
    assert ok(api(server.base_url, "GET", path)) == {"room_id": room_id, "servers": [SERVER_NAME]}
    assert ok(api(server.base_url, "GET", f"{V3}/rooms/{q(room_id)}/aliases", token)) == {"aliases": [a]}
    assert ok(api(server.base_url, "DELETE", path, token)) == {}
    assert err(api(server.base_url, "GET", path)) == (404, "M_NOT_FOUND")


def test_unicode_aliases_round_trip(server):
    _, token = user(server, "alice")
    room_id = create_room(server, token)
    a = f"#ünïcødé-☕{next(_names)}:{SERVER_NAME}"
    ok(api(server.base_url, "PUT", f"{V3}/directory/room/{q(a)}", token, {"room_id": room_id}))
    assert ok(api(server.base_url, "GET", f"{V3}/directory/room/{q(a)}"))["room_id"] == room_id


def test_alias_errors(server):
    _, token = user(server, "alice")
    _, other = user(server, "bob")
    room_id = create_room(server, token, preset="public_chat")
    a = alias("taken")
    path = f"{V3}/directory/room/{q(a)}"
    ok(api(server.base_url, "PUT", path, token, {"room_id": room_id}))
    assert err(api(server.base_url, "PUT", path, token, {"room_id": room_id})) == (409, "M_UNKNOWN")
    assert err(api(server.base_url, "PUT", f"{V3}/directory/room/{q('#x:elsewhere.example')}", token,
                   {"room_id": room_id})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "PUT", f"{V3}/directory/room/{q('notanalias')}", token,
                   {"room_id": room_id})) == (400, "M_INVALID_PARAM")
    fresh = f"{V3}/directory/room/{q(alias('fresh'))}"
    assert err(api(server.base_url, "PUT", fresh, token, {})) == (400, "M_MISSING_PARAM")
    assert err(api(server.base_url, "PUT", fresh, token, {"room_id": 5})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "PUT", fresh, token, data=b"nope")) == (400, "M_NOT_JSON")
    assert err(api(server.base_url, "PUT", fresh, None, {"room_id": room_id})) == (401, "M_MISSING_TOKEN")
    assert err(api(server.base_url, "PUT", fresh, other, {"room_id": room_id})) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "PUT", fresh, token, {"room_id": f"!unknown:{SERVER_NAME}"})) == \
        (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", f"{V3}/directory/room/{q('notanalias')}")) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", f"{V3}/directory/room/{q('#nope:elsewhere.example')}")) == \
        (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "DELETE", path, other)) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "DELETE", path, None)) == (401, "M_MISSING_TOKEN")
    assert err(api(server.base_url, "DELETE", f"{V3}/directory/room/{q(alias('never'))}", token)) == \
        (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", f"{V3}/rooms/{q(room_id)}/aliases", other)) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "GET", f"{V3}/rooms/{q(room_id)}/aliases", None)) == (401, "M_MISSING_TOKEN")


def test_alias_creator_may_delete_without_power_and_moderators_may_delete_any(server):
    _, admin = user(server, "alice")
    _, member = user(server, "bob")
    room_id = create_room(server, admin, preset="public_chat")
    join(server, member, room_id)
    mine, theirs = alias("bobs"), alias("bobs")
    for a in (mine, theirs):
        ok(api(server.base_url, "PUT", f"{V3}/directory/room/{q(a)}", member, {"room_id": room_id}))
    ok(api(server.base_url, "DELETE", f"{V3}/directory/room/{q(mine)}", member))
    ok(api(server.base_url, "DELETE", f"{V3}/directory/room/{q(theirs)}", admin))


def test_canonical_alias_must_exist_and_point_to_the_room(server):
    _, token = user(server, "alice")
    room_id = create_room(server, token, preset="public_chat")
    other = create_room(server, token, preset="public_chat")
    mine, theirs = alias("mine"), alias("theirs")
    ok(api(server.base_url, "PUT", f"{V3}/directory/room/{q(mine)}", token, {"room_id": room_id}))
    ok(api(server.base_url, "PUT", f"{V3}/directory/room/{q(theirs)}", token, {"room_id": other}))
    assert set_state(server, token, room_id, "m.room.canonical_alias", {"alias": mine})[0] == 200
    assert err(set_state(server, token, room_id, "m.room.canonical_alias", {"alias": theirs})) == (400, "M_BAD_ALIAS")
    assert err(set_state(server, token, room_id, "m.room.canonical_alias",
                         {"alias": alias("missing")})) == (400, "M_BAD_ALIAS")
    assert err(set_state(server, token, room_id, "m.room.canonical_alias", {"alias": "bad"})) == \
        (400, "M_INVALID_PARAM")
    assert err(set_state(server, token, room_id, "m.room.canonical_alias",
                         {"alias": mine, "alt_aliases": "x"})) == (400, "M_INVALID_PARAM")
    # Deleting the alias takes it out of the canonical alias event.
    ok(api(server.base_url, "DELETE", f"{V3}/directory/room/{q(mine)}", token))
    status, content = api(server.base_url, "GET", f"{V3}/rooms/{q(room_id)}/state/m.room.canonical_alias/", token)
    assert status == 200 and "alias" not in content


def test_create_room_with_alias_and_join_by_alias(server):
    _, token = user(server, "alice")
    _, other = user(server, "bob")
    local = f"made{next(_names)}"
    room_id = create_room(server, token, preset="public_chat", room_alias_name=local)
    full = f"#{local}:{SERVER_NAME}"
    assert ok(api(server.base_url, "GET", f"{V3}/directory/room/{q(full)}"))["room_id"] == room_id
    assert err(api(server.base_url, "POST", f"{V3}/createRoom", token, {"room_alias_name": local})) == \
        (400, "M_ROOM_IN_USE")
    join(server, other, full)
    assert ok(api(server.base_url, "GET", f"{V3}/rooms/{q(room_id)}/aliases", other)) == {"aliases": [full]}


# --- published room directory -------------------------------------------------------------------------

def test_directory_visibility_and_listing(server):
    _, token = user(server, "alice")
    _, other = user(server, "bob")
    name = f"Cheese{next(_names)}"
    room_id = create_room(server, token, preset="public_chat", name=name, topic="Tasty tasty cheese")
    path = f"{V3}/directory/list/room/{q(room_id)}"
    assert ok(api(server.base_url, "GET", path)) == {"visibility": "private"}
    join(server, other, room_id)
    assert err(api(server.base_url, "PUT", path, other, {"visibility": "public"})) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "PUT", path, token, {"visibility": "secret"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "PUT", path, None, {"visibility": "public"})) == (401, "M_MISSING_TOKEN")
    assert ok(api(server.base_url, "PUT", path, token, {"visibility": "public"})) == {}
    assert ok(api(server.base_url, "GET", path)) == {"visibility": "public"}
    found = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token,
                   {"filter": {"generic_search_term": name.upper()}}))
    assert found["chunk"] == [{"room_id": room_id, "name": name, "topic": "Tasty tasty cheese",
                               "num_joined_members": 2, "world_readable": False, "guest_can_join": False,
                               "join_rule": "public"}]
    listed = ok(api(server.base_url, "GET", f"{V3}/publicRooms", token, params={"limit": "500"}))
    assert room_id in {c["room_id"] for c in listed["chunk"]}
    ok(api(server.base_url, "PUT", path, token, {"visibility": "private"}))
    gone = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token, {"filter": {"generic_search_term": name}}))
    assert gone["chunk"] == []
    unknown = f"{V3}/directory/list/room/{q('!nope:' + SERVER_NAME)}"
    assert err(api(server.base_url, "GET", unknown)) == (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "PUT", unknown, token, {"visibility": "public"})) == (404, "M_NOT_FOUND")


def test_public_rooms_paginate_both_ways_and_filter_room_types(server):
    _, token = user(server, "alice")
    tag = f"page{next(_names)}"
    rooms = [create_room(server, token, preset="public_chat", visibility="public", name=f"{tag} {i}")
             for i in range(3)]
    space = create_room(server, token, preset="public_chat", visibility="public", name=f"{tag} space",
                        creation_content={"type": "m.space"})
    flt = {"generic_search_term": tag}
    first = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token, {"limit": 2, "filter": flt}))
    assert len(first["chunk"]) == 2 and "prev_batch" not in first and first["total_room_count_estimate"] == 4
    second = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token,
                    {"limit": 2, "filter": flt, "since": first["next_batch"]}))
    assert len(second["chunk"]) == 2 and "next_batch" not in second
    assert {c["room_id"] for c in first["chunk"] + second["chunk"]} == set(rooms + [space])
    back = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token,
                  {"limit": 2, "filter": flt, "since": second["prev_batch"]}))
    assert back["chunk"] == first["chunk"]
    spaces = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token,
                    {"filter": dict(flt, room_types=["m.space"])}))
    assert [c["room_id"] for c in spaces["chunk"]] == [space] and spaces["chunk"][0]["room_type"] == "m.space"
    plain = ok(api(server.base_url, "POST", f"{V3}/publicRooms", token, {"filter": dict(flt, room_types=[None])}))
    assert {c["room_id"] for c in plain["chunk"]} == set(rooms)


def test_public_rooms_errors(server):
    _, token = user(server, "alice")
    base = f"{V3}/publicRooms"
    assert err(api(server.base_url, "GET", base)) == (401, "M_MISSING_TOKEN")
    assert err(api(server.base_url, "POST", base, None, {})) == (401, "M_MISSING_TOKEN")
    assert err(api(server.base_url, "GET", base, token, params={"limit": "many"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", base, token, params={"since": "garbage"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", base, token, {"limit": "x"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", base, token, {"filter": []})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", base, token, {"filter": {"room_types": "m.space"}})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", base, token, {"filter": {"generic_search_term": 3}})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", base, token,
                   {"include_all_networks": True, "third_party_instance_id": "as|net"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", base, token, params={"server": "bad server"})) == (400, "M_INVALID_PARAM")
    assert ok(api(server.base_url, "GET", base, token, params={"server": SERVER_NAME}))["chunk"] is not None
    assert ok(api(server.base_url, "POST", base, token, {"third_party_instance_id": "unknown"}))["chunk"] == []


def test_public_rooms_without_auth_when_configured(open_server):
    _, token = user(open_server, "alice")
    room_id = create_room(open_server, token, preset="public_chat", visibility="public", name="Open")
    listed = ok(api(open_server.base_url, "GET", f"{V3}/publicRooms"))
    assert [c["room_id"] for c in listed["chunk"]] == [room_id]
    assert err(api(open_server.base_url, "GET", f"{V3}/publicRooms", "bad-token")) == (401, "M_UNKNOWN_TOKEN")
    assert err(api(open_server.base_url, "POST", f"{V3}/publicRooms", None, {})) == (401, "M_MISSING_TOKEN")


# --- spaces and summaries --------------------------------------------------------------------------

def test_space_hierarchy_over_http(server):
    _, token = user(server, "alice")
    _, stranger = user(server, "bob")
    space = create_room(server, token, preset="public_chat", name="Space", creation_content={"type": "m.space"})
    child = create_room(server, token, preset="public_chat", name="Child")
    secret = create_room(server, token, preset="private_chat", name="Secret")
    for room_id, order in ((child, "a"), (secret, "b")):
        assert set_state(server, token, space, "m.space.child", {"via": [SERVER_NAME], "order": order},
                         room_id)[0] == 200
    path = f"{V1}/rooms/{q(space)}/hierarchy"
    mine = ok(api(server.base_url, "GET", path, token))
    assert [r["name"] for r in mine["rooms"]] == ["Space", "Child", "Secret"]
    assert [c["state_key"] for c in mine["rooms"][0]["children_state"]] == [child, secret]
    theirs = ok(api(server.base_url, "GET", path, stranger))
    assert [r["name"] for r in theirs["rooms"]] == ["Space", "Child"]
    page = ok(api(server.base_url, "GET", path, token, params={"limit": "1"}))
    rest = ok(api(server.base_url, "GET", path, token, params={"limit": "5", "from": page["next_batch"]}))
    assert [r["name"] for r in page["rooms"] + rest["rooms"]] == ["Space", "Child", "Secret"]
    assert [r["name"] for r in ok(api(server.base_url, "GET", path, token, params={"max_depth": "0"}))["rooms"]] \
        == ["Space"]
    assert err(api(server.base_url, "GET", path, token, params={"limit": "0"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, token, params={"limit": "x"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, token, params={"max_depth": "-1"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, token, params={"suggested_only": "maybe"})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, token, params={"from": "nope"})) == (400, "M_INVALID_PARAM")
    page = ok(api(server.base_url, "GET", path, token, params={"limit": "1"}))
    assert err(api(server.base_url, "GET", path, token, params={"from": page["next_batch"], "max_depth": "1"})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", f"{V1}/rooms/{q(secret)}/hierarchy", stranger)) == (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "GET", f"{V1}/rooms/{q('!nope:' + SERVER_NAME)}/hierarchy", token)) == \
        (403, "M_FORBIDDEN")
    assert err(api(server.base_url, "GET", path, None)) == (401, "M_MISSING_TOKEN")


def test_room_summary_over_http(server):
    _, token = user(server, "alice")
    _, stranger = user(server, "bob")
    a = alias("summary")
    room_id = create_room(server, token, preset="public_chat", name="Summary",
                          room_alias_name=a[1:].split(":")[0])
    for key in (room_id, a):
        body = ok(api(server.base_url, "GET", f"{V1}/room_summary/{q(key)}", token))
        assert body["room_id"] == room_id and body["membership"] == "join" and body["name"] == "Summary"
        assert body["canonical_alias"] == a and body["join_rule"] == "public" and "room_version" in body
    assert ok(api(server.base_url, "GET", f"{V1}/room_summary/{q(room_id)}", stranger))["membership"] == "leave"
    anonymous = ok(api(server.base_url, "GET", f"{V1}/room_summary/{q(room_id)}"))
    assert anonymous["room_id"] == room_id and "membership" not in anonymous
    secret = create_room(server, token, preset="private_chat")
    assert err(api(server.base_url, "GET", f"{V1}/room_summary/{q(secret)}", stranger)) == (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", f"{V1}/room_summary/{q(secret)}")) == (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", f"{V1}/room_summary/{q('junk')}", token)) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", f"{V1}/room_summary/{q(alias('nope'))}", token)) == (404, "M_NOT_FOUND")
    assert err(api(server.base_url, "GET", f"{V1}/room_summary/{q(room_id)}", "bad")) == (401, "M_UNKNOWN_TOKEN")


# --- users ----------------------------------------------------------------------------------------

def test_user_directory_search(server):
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    carol_id, carol = user(server, "carol")
    shared = create_room(server, alice, preset="private_chat", invite=[bob_id])
    join(server, bob, shared)
    marker = f"zebra{next(_names)}"
    ok(api(server.base_url, "PUT", f"{V3}/profile/{q(bob_id)}/displayname", bob, {"displayname": f"Bob {marker}"}))
    found = ok(api(server.base_url, "POST", f"{V3}/user_directory/search", alice, {"search_term": marker}))
    assert found == {"results": [{"user_id": bob_id, "display_name": f"Bob {marker}"}], "limited": False}
    assert ok(api(server.base_url, "POST", f"{V3}/user_directory/search", carol,
                  {"search_term": marker}))["results"] == []
    public = create_room(server, carol, preset="public_chat")
    assert public
    by_id = ok(api(server.base_url, "POST", f"{V3}/user_directory/search", alice,
                   {"search_term": carol_id.split(":")[0][1:]}))
    assert [r["user_id"] for r in by_id["results"]] == [carol_id]
    limited = ok(api(server.base_url, "POST", f"{V3}/user_directory/search", alice,
                     {"search_term": SERVER_NAME, "limit": 1}))
    assert len(limited["results"]) == 1 and limited["limited"] is True
    search = f"{V3}/user_directory/search"
    assert err(api(server.base_url, "POST", search, alice, {})) == (400, "M_MISSING_PARAM")
    assert err(api(server.base_url, "POST", search, alice, {"search_term": 1})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", search, alice, {"search_term": "x", "limit": -1})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "POST", search, alice, data=b"[")) == (400, "M_NOT_JSON")
    assert err(api(server.base_url, "POST", search, None, {"search_term": "x"})) == (401, "M_MISSING_TOKEN")
    assert alice_id


@pytest.mark.parametrize("path", [f"{V1}/mutual_rooms", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"])
def test_mutual_rooms(server, path):
    alice_id, alice = user(server, "alice")
    bob_id, bob = user(server, "bob")
    rooms = sorted(create_room(server, alice, preset="public_chat") for _ in range(2))
    create_room(server, alice, preset="public_chat")
    for room_id in rooms:
        join(server, bob, room_id)
    assert ok(api(server.base_url, "GET", path, alice, params={"user_id": bob_id})) == {"joined": rooms, "count": 2}
    assert ok(api(server.base_url, "GET", path, alice, params={"user_id": f"@ghost:{SERVER_NAME}"})) == \
        {"joined": [], "count": 0}
    assert err(api(server.base_url, "GET", path, alice)) == (400, "M_MISSING_PARAM")
    assert err(api(server.base_url, "GET", path, alice, params={"user_id": "bob"})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, alice, params={"user_id": alice_id})) == (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, alice, params={"user_id": bob_id, "from": "!!"})) == \
        (400, "M_INVALID_PARAM")
    assert err(api(server.base_url, "GET", path, None, params={"user_id": bob_id})) == (401, "M_MISSING_TOKEN")
