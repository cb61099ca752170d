"""The directory services over real rooms built by the pipeline (both engines): aliases and the
canonical-alias check, directory visibility and listing, room stats freshness, space hierarchy,
room summary, user directory search and mutual rooms."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import pytest_twisted

from config.schema import Config

from homeserver.accounts.auth import Requester
from homeserver.directory.aliases import AliasService
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.directory.public_rooms import PublicRoomListService, decode_token
from homeserver.directory.stats import RoomStatsService
from homeserver.directory.user_directory import UserDirectoryService
from homeserver.http.errors import MatrixError
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from tests.storage.test_pipeline import make_hs

SERVER = "test.local"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
CAROL = f"@carol:{SERVER}"


class _Config(SimpleNamespace):
    """make_hs's minimal config, answering every other key with the Config default."""

    def __getattr__(self, name):
        for f in dataclasses.fields(Config):
            if f.name == name:
                if f.default is not dataclasses.MISSING:
                    return f.default
                if f.default_factory is not dataclasses.MISSING:
                    return f.default_factory()
        raise AttributeError(name)


@pytest.fixture
def hs(database, tmp_path):
    hs = make_hs(database, tmp_path)
    hs.config = _Config(**vars(hs.config))
    return hs


def req(user_id: str) -> Requester:
    return Requester(user_id, "DEV", None)


async def errcode(coro) -> tuple[int, str]:
    with pytest.raises(MatrixError) as e:
        await coro
    return e.value.code, e.value.errcode


async def room(hs, creator=ALICE, **kw) -> str:
    return await hs.get(RoomCreationService).create_room(creator, **kw)


async def send_state(hs, room_id, etype, content, sender=ALICE, state_key=""):
    return await hs.get(RoomEventService).create_and_send_event(room_id, etype, content, sender, state_key)


async def join(hs, room_id, user, **content):
    return await send_state(hs, room_id, "m.room.member", dict(content, membership="join"), user, user)


# --- aliases ------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_alias_lifecycle_and_its_errors(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    await aliases.create_alias(req(ALICE), f"#cheese:{SERVER}", rid)
    assert await aliases.resolve(f"#cheese:{SERVER}") == (rid, [SERVER])
    assert await errcode(aliases.create_alias(req(ALICE), f"#cheese:{SERVER}", rid)) == (409, "M_UNKNOWN")
    assert await errcode(aliases.create_alias(req(ALICE), "#cheese:elsewhere", rid)) == (400, "M_INVALID_PARAM")
    assert await errcode(aliases.create_alias(req(ALICE), "cheese", rid)) == (400, "M_INVALID_PARAM")
    assert await errcode(aliases.create_alias(req(ALICE), f"#x:{SERVER}", "nope")) == (400, "M_INVALID_PARAM")
    assert await errcode(aliases.create_alias(req(ALICE), f"#x:{SERVER}", None)) == (400, "M_MISSING_PARAM")
    assert await errcode(aliases.create_alias(req(BOB), f"#bob:{SERVER}", rid)) == (403, "M_FORBIDDEN")
    assert await errcode(aliases.create_alias(req(ALICE), f"#x:{SERVER}", f"!unknown:{SERVER}")) == \
        (404, "M_NOT_FOUND")
    assert await errcode(aliases.resolve(f"#nope:{SERVER}")) == (404, "M_NOT_FOUND")
    assert await errcode(aliases.resolve("#nope:elsewhere")) == (404, "M_NOT_FOUND")
    assert await errcode(aliases.resolve("not-an-alias")) == (400, "M_INVALID_PARAM")
    assert await aliases.get_local_aliases(req(ALICE), rid) == [f"#cheese:{SERVER}"]
    assert await errcode(aliases.get_local_aliases(req(BOB), rid)) == (403, "M_FORBIDDEN")
    assert await errcode(aliases.delete_alias(req(BOB), f"#cheese:{SERVER}")) == (403, "M_FORBIDDEN")
    await join(hs, rid, BOB)
    assert await errcode(aliases.delete_alias(req(BOB), f"#cheese:{SERVER}")) == (403, "M_FORBIDDEN")
    assert await aliases.delete_alias(req(ALICE), f"#cheese:{SERVER}") == rid
    assert await errcode(aliases.delete_alias(req(ALICE), f"#cheese:{SERVER}")) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_alias_creator_without_power_may_delete_and_moderators_may_delete_others(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    await join(hs, rid, BOB)
    await aliases.create_alias(req(BOB), f"#bobs:{SERVER}", rid)
    await aliases.create_alias(req(BOB), f"#bobs2:{SERVER}", rid)
    assert await aliases.delete_alias(req(BOB), f"#bobs:{SERVER}") == rid  # creator, power 0
    assert await aliases.delete_alias(req(ALICE), f"#bobs2:{SERVER}") == rid  # room admin


@pytest_twisted.ensureDeferred
async def test_resolve_lists_servers_of_joined_members(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    await aliases.create_alias(req(ALICE), f"#a:{SERVER}", rid)
    assert (await aliases.resolve(f"#a:{SERVER}"))[1] == [SERVER]


@pytest_twisted.ensureDeferred
async def test_namespace_hooks_reserve_aliases_and_let_owners_in(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    aliases.namespace_hooks.append(
        lambda alias, r: ("owner" if r.user_id == BOB else "reserved") if alias.startswith("#irc_") else None)
    assert await errcode(aliases.create_alias(req(ALICE), f"#irc_x:{SERVER}", rid)) == (400, "M_EXCLUSIVE")
    await aliases.create_alias(req(BOB), f"#irc_x:{SERVER}", rid)  # not joined, but owns the namespace
    assert await aliases.delete_alias(req(BOB), f"#irc_x:{SERVER}") == rid


@pytest_twisted.ensureDeferred
async def test_deleting_an_alias_removes_it_from_the_canonical_alias_event(hs):
    aliases = hs.get(AliasService)
    events = hs.get(RoomEventService)
    rid = await room(hs, preset="public_chat")
    a, b = f"#main:{SERVER}", f"#alt:{SERVER}"
    await aliases.create_alias(req(ALICE), a, rid)
    await aliases.create_alias(req(ALICE), b, rid)
    content = {"alias": a, "alt_aliases": [b]}
    await aliases.validate_canonical_alias_content(rid, content)
    await send_state(hs, rid, "m.room.canonical_alias", content)
    await aliases.delete_alias(req(ALICE), b)
    ev = await events.get_current_state_event(rid, "m.room.canonical_alias")
    assert ev.content == {"alias": a, "alt_aliases": []}
    await aliases.delete_alias(req(ALICE), a)
    ev = await events.get_current_state_event(rid, "m.room.canonical_alias")
    assert ev.content == {"alt_aliases": []}


@pytest_twisted.ensureDeferred
async def test_canonical_alias_content_must_be_valid_and_point_to_the_room(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    other = await room(hs, preset="public_chat")
    mine, theirs = f"#mine:{SERVER}", f"#theirs:{SERVER}"
    await aliases.create_alias(req(ALICE), mine, rid)
    await aliases.create_alias(req(ALICE), theirs, other)
    check = aliases.validate_canonical_alias_content
    await check(rid, {"alias": mine})
    await check(rid, {})
    await check(rid, {"alias": None, "alt_aliases": []})
    await check(rid, {"alias": ""})
    assert await errcode(check(rid, {"alias": "bad"})) == (400, "M_INVALID_PARAM")
    assert await errcode(check(rid, {"alias": 5})) == (400, "M_INVALID_PARAM")
    assert await errcode(check(rid, {"alt_aliases": "x"})) == (400, "M_INVALID_PARAM")
    assert await errcode(check(rid, {"alt_aliases": ["bad"]})) == (400, "M_INVALID_PARAM")
    assert await errcode(check(rid, {"alias": theirs})) == (400, "M_BAD_ALIAS")
    assert await errcode(check(rid, {"alias": f"#missing:{SERVER}"})) == (400, "M_BAD_ALIAS")
    assert await errcode(check(rid, {"alt_aliases": [mine, theirs]})) == (400, "M_BAD_ALIAS")
    assert await errcode(check(rid, {"alias": "#remote:elsewhere"})) == (400, "M_BAD_ALIAS")
    # Aliases already in the current event are not checked again (they may have drifted).
    await send_state(hs, rid, "m.room.canonical_alias", {"alias": mine})
    await aliases.delete_alias(req(ALICE), theirs)
    await check(rid, {"alias": mine}, previous_content={"alias": mine, "alt_aliases": [theirs]})
    await check(rid, {"alt_aliases": [theirs]}, previous_content={"alt_aliases": [theirs]})


@pytest_twisted.ensureDeferred
async def test_world_readable_rooms_show_their_aliases_to_anyone(hs):
    aliases = hs.get(AliasService)
    rid = await room(hs, preset="public_chat")
    await aliases.create_alias(req(ALICE), f"#wr:{SERVER}", rid)
    await send_state(hs, rid, "m.room.history_visibility", {"history_visibility": "world_readable"})
    assert await aliases.get_local_aliases(req(CAROL), rid) == [f"#wr:{SERVER}"]
    assert await errcode(aliases.get_local_aliases(req(CAROL), "bad")) == (400, "M_INVALID_PARAM")


# --- directory ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_published_rooms_are_listed_with_fresh_state(hs):
    service = hs.get(PublicRoomListService)
    rid = await room(hs, preset="public_chat", visibility="public", name="Cheese", topic="Tasty")
    await room(hs, preset="private_chat", name="Hidden")
    page = await service.list_rooms()
    assert page["chunk"] == [{"room_id": rid, "num_joined_members": 1, "world_readable": False,
                              "guest_can_join": False, "name": "Cheese", "topic": "Tasty",
                              "join_rule": "public"}]
    assert page["total_room_count_estimate"] == 1 and "next_batch" not in page and "prev_batch" not in page
    await send_state(hs, rid, "m.room.name", {"name": "Wine"})
    await join(hs, rid, BOB)
    page = await service.list_rooms()
    assert page["chunk"][0]["name"] == "Wine" and page["chunk"][0]["num_joined_members"] == 2
    assert (await service.list_rooms(search_term="wIN"))["chunk"][0]["room_id"] == rid
    assert (await service.list_rooms(search_term="cheese"))["chunk"] == []
    assert await errcode(service.list_rooms(limit="x")) == (400, "M_INVALID_PARAM")
    assert await errcode(service.list_rooms(since="garbage")) == (400, "M_INVALID_PARAM")
    assert await errcode(service.list_rooms(room_types="m.space")) == (400, "M_INVALID_PARAM")
    assert await errcode(service.list_rooms(include_all_networks=True, third_party_instance_id="a|b")) == \
        (400, "M_INVALID_PARAM")
    assert await errcode(service.list_rooms(server="other.example")) == (502, "M_UNKNOWN")
    assert await errcode(service.list_rooms(server="bad server")) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_public_room_pages_link_both_ways(hs):
    service = hs.get(PublicRoomListService)
    rooms = [await room(hs, preset="public_chat", visibility="public", name=f"R{i}") for i in range(5)]
    first = await service.list_rooms(limit=2)
    assert len(first["chunk"]) == 2 and "prev_batch" not in first
    second = await service.list_rooms(limit=2, since=first["next_batch"])
    third = await service.list_rooms(limit=2, since=second["next_batch"])
    assert len(third["chunk"]) == 1 and "next_batch" not in third and "prev_batch" in third
    seen = [c["room_id"] for p in (first, second, third) for c in p["chunk"]]
    assert sorted(seen) == sorted(rooms)
    back = await service.list_rooms(limit=2, since=second["prev_batch"])
    assert back["chunk"] == first["chunk"] and "prev_batch" not in back and "next_batch" in back
    assert decode_token(first["next_batch"])[0] == "n"


@pytest_twisted.ensureDeferred
async def test_visibility_is_set_by_moderators_only(hs):
    service = hs.get(PublicRoomListService)
    rid = await room(hs, preset="public_chat")
    assert await service.get_visibility(rid) == "private"
    await join(hs, rid, BOB)
    assert await errcode(service.set_visibility(req(BOB), rid, "public")) == (403, "M_FORBIDDEN")
    await service.set_visibility(req(ALICE), rid, "public")
    assert await service.get_visibility(rid) == "public"
    assert [c["room_id"] for c in (await service.list_rooms())["chunk"]] == [rid]
    await service.set_visibility(req(ALICE), rid, "private")
    assert (await service.list_rooms())["chunk"] == []
    assert await errcode(service.get_visibility(f"!nope:{SERVER}")) == (404, "M_NOT_FOUND")
    assert await errcode(service.set_visibility(req(ALICE), f"!nope:{SERVER}", "public")) == (404, "M_NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_room_types_filter_spaces_and_plain_rooms(hs):
    service = hs.get(PublicRoomListService)
    space = await room(hs, preset="public_chat", visibility="public", creation_content={"type": "m.space"})
    plain = await room(hs, preset="public_chat", visibility="public")
    assert [c["room_id"] for c in (await service.list_rooms(room_types=["m.space"]))["chunk"]] == [space]
    assert [c["room_id"] for c in (await service.list_rooms(room_types=[None]))["chunk"]] == [plain]
    chunk = (await service.list_rooms(room_types=["m.space"]))["chunk"][0]
    assert chunk["room_type"] == "m.space"


# --- hierarchy and summary --------------------------------------------------------------------------

async def link(hs, parent, child, **content):
    content.setdefault("via", [SERVER])
    await send_state(hs, parent, "m.space.child", content, state_key=child)


async def space(hs, name, **kw):
    return await room(hs, preset=kw.pop("preset", "public_chat"), name=name,
                      creation_content={"type": "m.space"}, **kw)


@pytest_twisted.ensureDeferred
async def test_hierarchy_walks_depth_first_in_spec_order_and_survives_loops(hs):
    svc = hs.get(SpaceHierarchyService)
    root = await space(hs, "root")
    sub = await space(hs, "sub")
    a = await room(hs, preset="public_chat", name="a")
    b = await room(hs, preset="public_chat", name="b")
    c = await room(hs, preset="public_chat", name="c")
    await link(hs, root, b)                       # no order: after ordered children
    await link(hs, root, sub, order="b")
    await link(hs, root, a, order="a")
    await link(hs, sub, c)
    await link(hs, sub, root)                     # a loop
    await link(hs, root, f"!gone:{SERVER}", via=[])  # removed child: not listed
    result = await svc.get_hierarchy(req(ALICE), root)
    names = [r.get("name") for r in result["rooms"]]
    assert names == ["root", "a", "sub", "c", "b"] and "next_batch" not in result
    top = result["rooms"][0]
    assert top["room_type"] == "m.space" and len(top["children_state"]) == 3
    assert {"type", "state_key", "content", "sender", "origin_server_ts"} <= set(top["children_state"][0])
    assert result["rooms"][1]["children_state"] == []
    shallow = await svc.get_hierarchy(req(ALICE), root, max_depth=0)
    assert [r["name"] for r in shallow["rooms"]] == ["root"]


@pytest_twisted.ensureDeferred
async def test_hierarchy_pages_with_tokens_bound_to_their_parameters(hs):
    svc = hs.get(SpaceHierarchyService)
    root = await space(hs, "root")
    children = [await room(hs, preset="public_chat", name=f"c{i}") for i in range(3)]
    for i, c in enumerate(children):
        await link(hs, root, c, order=str(i), suggested=i == 1)
    page1 = await svc.get_hierarchy(req(ALICE), root, limit=2)
    assert [r["name"] for r in page1["rooms"]] == ["root", "c0"]
    page2 = await svc.get_hierarchy(req(ALICE), root, limit=2, from_token=page1["next_batch"])
    assert [r["name"] for r in page2["rooms"]] == ["c1", "c2"] and "next_batch" not in page2
    assert await errcode(svc.get_hierarchy(req(ALICE), root, from_token=page1["next_batch"])) == \
        (400, "M_INVALID_PARAM")  # used up
    page1 = await svc.get_hierarchy(req(ALICE), root, limit=1)
    assert await errcode(svc.get_hierarchy(req(ALICE), root, suggested_only=True,
                                           from_token=page1["next_batch"])) == (400, "M_INVALID_PARAM")
    suggested = await svc.get_hierarchy(req(ALICE), root, suggested_only=True)
    assert [r["name"] for r in suggested["rooms"]] == ["root", "c1"]
    assert await errcode(svc.get_hierarchy(req(ALICE), root, limit=0)) == (400, "M_INVALID_PARAM")
    assert await errcode(svc.get_hierarchy(req(ALICE), root, max_depth=-1)) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_hierarchy_hides_rooms_the_user_may_not_see(hs):
    svc = hs.get(SpaceHierarchyService)
    root = await space(hs, "root")
    private = await room(hs, preset="private_chat", name="private")
    restricted = await room(hs, preset="private_chat", name="restricted", room_version="10")
    await send_state(hs, restricted, "m.room.join_rules",
                     {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": root}]})
    await link(hs, root, private)
    await link(hs, root, restricted)
    assert [r["name"] for r in (await svc.get_hierarchy(req(BOB), root))["rooms"]] == ["root"]
    await join(hs, root, BOB)
    visible = (await svc.get_hierarchy(req(BOB), root))["rooms"]
    assert [r["name"] for r in visible] == ["root", "restricted"]
    assert visible[1]["allowed_room_ids"] == [root] and visible[1]["room_version"] == "10"
    assert len((await svc.get_hierarchy(req(ALICE), root))["rooms"]) == 3
    hidden_root = await space(hs, "hidden", preset="private_chat")
    assert await errcode(svc.get_hierarchy(req(BOB), hidden_root)) == (403, "M_FORBIDDEN")
    assert await errcode(svc.get_hierarchy(req(BOB), f"!nope:{SERVER}")) == (403, "M_FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_room_summary_by_id_and_alias_for_members_strangers_and_anonymous(hs):
    svc = hs.get(SpaceHierarchyService)
    rid = await room(hs, preset="public_chat", name="Cheese")
    await hs.get(AliasService).create_alias(req(ALICE), f"#cheese:{SERVER}", rid)
    mine = await svc.get_room_summary(req(ALICE), f"#cheese:{SERVER}")
    assert mine["room_id"] == rid and mine["membership"] == "join" and mine["room_version"] == "12"
    assert (await svc.get_room_summary(req(BOB), rid))["membership"] == "leave"
    assert "membership" not in await svc.get_room_summary(None, rid)
    private = await room(hs, preset="private_chat")
    assert await errcode(svc.get_room_summary(req(BOB), private)) == (404, "M_NOT_FOUND")
    assert await errcode(svc.get_room_summary(None, private)) == (404, "M_NOT_FOUND")
    await send_state(hs, private, "m.room.member", {"membership": "invite"}, ALICE, BOB)
    assert (await svc.get_room_summary(req(BOB), private))["membership"] == "invite"
    assert await errcode(svc.get_room_summary(req(BOB), "junk")) == (400, "M_INVALID_PARAM")
    assert await errcode(svc.get_room_summary(req(BOB), f"#nope:{SERVER}")) == (404, "M_NOT_FOUND")


# --- user directory and mutual rooms -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_user_search_finds_room_sharers_and_public_room_members_by_name(hs):
    users = hs.get(UserDirectoryService)
    shared = await room(hs, preset="private_chat")
    await send_state(hs, shared, "m.room.member", {"membership": "invite"}, ALICE, BOB)
    await join(hs, shared, BOB, displayname="Bobby Tables")
    public = await room(hs, CAROL, preset="public_chat")
    await send_state(hs, public, "m.room.member", {"membership": "join", "displayname": "Caroline"},
                     CAROL, CAROL)
    secret = await room(hs, "@dave:test.local", preset="private_chat")
    assert secret
    result = await users.search(req(ALICE), "bobby")
    assert result == {"results": [{"user_id": BOB, "display_name": "Bobby Tables"}], "limited": False}
    assert [r["user_id"] for r in (await users.search(req(ALICE), "CAROL"))["results"]] == [CAROL]
    assert (await users.search(req(ALICE), "dave"))["results"] == []
    assert (await users.search(req(CAROL), "bobby"))["results"] == []
    limited = await users.search(req(ALICE), SERVER, limit=1)
    assert len(limited["results"]) == 1 and limited["limited"]
    assert await errcode(users.search(req(ALICE), None)) == (400, "M_MISSING_PARAM")
    assert await errcode(users.search(req(ALICE), 5)) == (400, "M_INVALID_PARAM")
    assert await errcode(users.search(req(ALICE), "x", limit="3")) == (400, "M_INVALID_PARAM")
    # A new display name is found right away.
    await join(hs, shared, BOB, displayname="Robert")
    assert [r["display_name"] for r in (await users.search(req(ALICE), "robert"))["results"]] == ["Robert"]


@pytest_twisted.ensureDeferred
async def test_mutual_rooms_lists_rooms_both_users_joined(hs):
    users = hs.get(UserDirectoryService)
    r1 = await room(hs, preset="public_chat")
    r2 = await room(hs, preset="public_chat")
    await room(hs, preset="public_chat")
    await join(hs, r1, BOB)
    await join(hs, r2, BOB)
    result = await users.mutual_rooms(req(ALICE), BOB)
    assert result == {"joined": sorted([r1, r2]), "count": 2}
    assert (await users.mutual_rooms(req(ALICE), "@nobody:test.local")) == {"joined": [], "count": 0}
    assert await errcode(users.mutual_rooms(req(ALICE), None)) == (400, "M_MISSING_PARAM")
    assert await errcode(users.mutual_rooms(req(ALICE), "bob")) == (400, "M_INVALID_PARAM")
    assert await errcode(users.mutual_rooms(req(ALICE), ALICE)) == (400, "M_INVALID_PARAM")
    assert await errcode(users.mutual_rooms(req(ALICE), BOB, "!!!")) == (400, "M_INVALID_PARAM")


@pytest_twisted.ensureDeferred
async def test_stats_rows_follow_the_state_group(hs):
    stats = hs.get(RoomStatsService)
    rid = await room(hs, preset="public_chat", name="one")
    first = await stats.get_stats(rid)
    assert first.name == "one" and first.joined_members == 1
    assert await stats.get_stats(rid) == first
    await send_state(hs, rid, "m.room.topic", {"topic": "old", "m.topic": {"m.text": [
        {"mimetype": "text/html", "body": "<b>rich</b>"}, {"body": "plain"}]}})
    assert (await stats.get_stats(rid)).topic == "plain"
    assert await stats.get_stats(f"!nope:{SERVER}") is None
