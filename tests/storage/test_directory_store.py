"""The directory tables (0035_directory.sql) on both engines: aliases, visibility, stats rows,
public room listing with search and keyset pagination, user directory search, mutual rooms."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted

from homeserver.storage.directory_store import DirectoryStore, DirectoryUser, RoomStats


@pytest.fixture
def store(database):
    return DirectoryStore(SimpleNamespace(db=database))


def add_room(db, room_id, *, public=False, group=1):
    db.run_sync("add_room", lambda txn: txn.execute(
        "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts, current_state_group)"
        " VALUES (?, '10', '@c:test', ?, 0, ?)", (room_id, public, group)))


def join(db, room_id, *users, membership="join"):
    def txn_fn(txn):
        for u in users:
            txn.execute("INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering)"
                        " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (room_id, user_id) DO UPDATE SET"
                        " membership = excluded.membership", (room_id, u, membership, f"$m{room_id}{u}", u))
    db.run_sync("join", txn_fn)


def stats(room_id, group=1, **kw) -> RoomStats:
    kw.setdefault("join_rule", "public")
    return RoomStats(room_id, group, "10", **kw)


@pytest_twisted.ensureDeferred
async def test_alias_is_created_once_and_deleted(store):
    assert await store.create_alias("#a:test", "!r:test", "@alice:test", 5)
    assert not await store.create_alias("#a:test", "!other:test", "@bob:test", 6)
    rec = await store.get_alias("#a:test")
    assert (rec.room_id, rec.creator, rec.created_ts) == ("!r:test", "@alice:test", 5)
    assert await store.create_alias("#b:test", "!r:test", "@alice:test", 7)
    assert await store.get_aliases_for_room("!r:test") == ["#a:test", "#b:test"]
    assert await store.delete_alias("#a:test") == "!r:test"
    assert await store.delete_alias("#a:test") is None
    assert await store.get_alias("#a:test") is None
    assert await store.get_aliases_for_room("!r:test") == ["#b:test"]


@pytest_twisted.ensureDeferred
async def test_unicode_alias_round_trips(store):
    assert await store.create_alias("#ünï©ödé:test", "!r:test", "@alice:test", 1)
    assert (await store.get_alias("#ünï©ödé:test")).room_id == "!r:test"


@pytest_twisted.ensureDeferred
async def test_visibility_is_rooms_is_public_and_unknown_rooms_are_none(store, database):
    add_room(database, "!r:test")
    assert await store.get_room_visibility("!r:test") is False
    assert await store.set_room_visibility("!r:test", True)
    assert await store.get_room_visibility("!r:test") is True
    assert await store.get_room_visibility("!nope:test") is None
    assert not await store.set_room_visibility("!nope:test", True)


@pytest_twisted.ensureDeferred
async def test_stats_row_counts_joined_members_and_goes_stale_with_the_state_group(store, database):
    add_room(database, "!r:test", group=3)
    join(database, "!r:test", "@a:test", "@b:test")
    join(database, "!r:test", "@c:test", membership="invite")
    assert await store.get_stale_stats_rooms() == ["!r:test"]
    written = await store.upsert_room_stats(stats("!r:test", 3, name="Cheese", allowed_room_ids=("!x:test",)))
    assert written.joined_members == 2 and written.allowed_room_ids == ("!x:test",)
    assert (await store.get_room_stats(["!r:test"]))["!r:test"] == written
    assert await store.get_stale_stats_rooms() == []
    database.run_sync("bump", lambda txn: txn.execute("UPDATE rooms SET current_state_group = 4"))
    assert await store.get_stale_stats_rooms() == ["!r:test"]
    assert await store.get_stale_stats_rooms(only_public=True) == []


async def _public_rooms(store, database, n):
    for i in range(n):
        rid = f"!r{i}:test"
        add_room(database, rid, public=True)
        join(database, rid, *[f"@u{j}:test" for j in range(i % 3)])
        await store.upsert_room_stats(stats(rid, name=f"Room {i}", topic="cheese" if i % 2 else "wine"))


@pytest_twisted.ensureDeferred
async def test_public_rooms_page_forward_and_back_by_keyset(store, database):
    await _public_rooms(store, database, 7)
    first = await store.list_public_rooms(limit=3)
    order = [r.room_id for r in first.rooms]
    assert [r.joined_members for r in first.rooms] == [2, 2, 1] and first.has_more and first.total == 7
    last = first.rooms[-1]
    second = await store.list_public_rooms(limit=3, after=(last.joined_members, last.room_id))
    third_key = second.rooms[-1]
    third = await store.list_public_rooms(limit=3, after=(third_key.joined_members, third_key.room_id))
    everything = order + [r.room_id for r in second.rooms] + [r.room_id for r in third.rooms]
    assert sorted(everything) == sorted(f"!r{i}:test" for i in range(7)) and len(set(everything)) == 7
    assert not third.has_more
    head = second.rooms[0]
    back = await store.list_public_rooms(limit=3, before=(head.joined_members, head.room_id))
    assert [r.room_id for r in back.rooms] == order and not back.has_more


@pytest_twisted.ensureDeferred
async def test_public_rooms_filter_by_search_type_and_join_rule(store, database):
    await _public_rooms(store, database, 4)
    page = await store.list_public_rooms(limit=None, search="CHEESE")
    assert sorted(r.room_id for r in page.rooms) == ["!r1:test", "!r3:test"] and page.total == 2
    assert (await store.list_public_rooms(limit=None, search="100%_")).rooms == []
    add_room(database, "!space:test", public=True)
    await store.upsert_room_stats(stats("!space:test", room_type="m.space"))
    add_room(database, "!invite:test", public=True)
    await store.upsert_room_stats(stats("!invite:test", join_rule="invite"))
    spaces = await store.list_public_rooms(limit=None, room_types=["m.space"])
    assert [r.room_id for r in spaces.rooms] == ["!space:test"]
    untyped = await store.list_public_rooms(limit=None, room_types=[None])
    assert "!space:test" not in {r.room_id for r in untyped.rooms} and len(untyped.rooms) == 4
    assert len((await store.list_public_rooms(limit=None, room_types=[None, "m.space"])).rooms) == 5
    assert (await store.list_public_rooms(limit=None, room_types=[])).rooms == []
    everything = await store.list_public_rooms(limit=None, joinable_only=False)
    assert "!invite:test" in {r.room_id for r in everything.rooms}


@pytest_twisted.ensureDeferred
async def test_unpublished_rooms_are_not_listed_but_appservice_networks_are(store, database):
    add_room(database, "!private:test", public=False)
    await store.upsert_room_stats(stats("!private:test"))
    assert (await store.list_public_rooms(limit=10)).rooms == []
    await store.set_appservice_room_visibility("as1", "irc", "!private:test", True)
    page = await store.list_public_rooms(limit=10, network=("as1", "irc"))
    assert [r.room_id for r in page.rooms] == ["!private:test"]
    page = await store.list_public_rooms(limit=10, include_all_networks=True)
    assert [r.room_id for r in page.rooms] == ["!private:test"]
    await store.set_appservice_room_visibility("as1", "irc", "!private:test", False)
    assert (await store.list_public_rooms(limit=10, network=("as1", "irc"))).rooms == []


@pytest_twisted.ensureDeferred
async def test_user_search_sees_shared_and_public_room_members_only(store, database):
    add_room(database, "!shared:test")
    add_room(database, "!public:test")
    add_room(database, "!secret:test")
    join(database, "!shared:test", "@me:test", "@friend:test")
    join(database, "!public:test", "@pub:test")
    join(database, "!secret:test", "@hidden:test")
    await store.upsert_room_stats(stats("!shared:test", join_rule="invite"))
    await store.upsert_room_stats(stats("!public:test", join_rule="public"))
    await store.upsert_room_stats(stats("!secret:test", join_rule="invite"))
    await store.upsert_directory_users([
        DirectoryUser("@me:test", "Me", None), DirectoryUser("@friend:test", "Bob Friend", "mxc://t/a"),
        DirectoryUser("@pub:test", None, None), DirectoryUser("@hidden:test", "Bob Hidden", None)])
    users, limited = await store.search_users("@me:test", "bob", 10)
    assert [u.user_id for u in users] == ["@friend:test"] and not limited
    users, _ = await store.search_users("@me:test", "PUB", 10)
    assert users == [DirectoryUser("@pub:test", None, None)]
    users, limited = await store.search_users("@me:test", ":test", 1)
    assert len(users) == 1 and limited
    assert (await store.search_users("@me:test", "%", 10))[0] == []


@pytest_twisted.ensureDeferred
async def test_user_search_ranks_prefix_matches_first_then_named_users(store, database):
    add_room(database, "!p:test")
    join(database, "!p:test", "@zed:test", "@anna:test", "@bob:test", "@annabel:test")
    await store.upsert_room_stats(stats("!p:test"))
    await store.upsert_directory_users([
        DirectoryUser("@bob:test", "Joanna", None), DirectoryUser("@zed:test", "Anna Z", None),
        DirectoryUser("@anna:test", None, None), DirectoryUser("@annabel:test", "Belle", None)])
    users, _ = await store.search_users("@x:test", "anna", 10)
    assert [u.user_id for u in users] == ["@annabel:test", "@zed:test", "@anna:test", "@bob:test"]


@pytest_twisted.ensureDeferred
async def test_mutual_rooms_are_rooms_both_joined(store, database):
    join(database, "!a:test", "@x:test", "@y:test")
    join(database, "!b:test", "@x:test")
    join(database, "!b:test", "@y:test", membership="leave")
    join(database, "!c:test", "@x:test", "@y:test")
    assert await store.get_mutual_rooms("@x:test", "@y:test") == ["!a:test", "!c:test"]
    assert await store.get_mutual_rooms("@x:test", "@nobody:test") == []
