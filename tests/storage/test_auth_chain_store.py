"""The persisted chain-cover index (homeserver/storage/auth_chain_store.py) on rooms built through the
real pipeline, forks from a remote server included: it agrees with the pure auth-chain walk, also
after a restart and after a backfill, and state resolution gives the same results with it."""
from __future__ import annotations

import itertools

import pytest
import pytest_twisted

from homeserver.protocol import auth_chain, state_res
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms import state as state_module
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import RoomStateService
from homeserver.storage.auth_chain_store import AuthChainStore
from homeserver.storage.events_store import EventsStore
from tests.storage.test_pipeline import ALICE, BOB, make_hs
from tests.storage.test_pipeline_remote import CAROL, DAVE, REMOTE, FakeRemote, room_with_carol

EVE = "@eve:test.local"


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


def restarted(hs):
    """A new HomeServer over the same database: every cache empty."""
    return make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])


async def forked_room(hs, version: str):
    """A room with local and remote members and three branches from Carol's join: Alice (local)
    changes power levels, topic and kicks Eve; Carol (remote) renames herself and Dave joins; a
    second remote branch changes Carol's name again. One forged event is rejected. Returns the
    room ID and the events whose states are compared."""
    svc, remote, room_id, rv, join = await room_with_carol(hs, version)
    for user in (BOB, EVE):
        await svc.create_and_send_event(room_id, "m.room.member", {"membership": "join"}, user, user)
    fork_point = await svc.create_and_send_event(room_id, "m.room.topic", {"topic": "fork"}, ALICE, "")
    base = await svc.get_state_ids_at(fork_point.event_id)
    points = [fork_point]

    # Branch A (local).
    pl = (await svc.get_current_state_event(room_id, "m.room.power_levels")).content
    pl = dict(pl, users={**pl.get("users", {}), BOB: 50})
    points.append(await svc.create_and_send_event(room_id, "m.room.power_levels", pl, ALICE, "",
                                                  prev_event_ids=[fork_point.event_id]))
    points.append(await svc.create_and_send_event(room_id, "m.room.topic", {"topic": "A"}, BOB, ""))
    points.append(await svc.create_and_send_event(room_id, "m.room.member", {"membership": "leave"}, ALICE, EVE))

    # Branch B (remote): Carol renames herself, Dave joins, then Dave's forged name change.
    b1 = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "join", "displayname": "B"},
                            prevs=[fork_point], state=base, state_key=CAROL)
    await svc.handle_remote_event(b1)
    state_b = {**base, ("m.room.member", CAROL): b1.event_id}
    b2 = await remote.build(room_id, rv, "m.room.member", DAVE, {"membership": "join"}, prevs=[b1],
                            state=state_b, state_key=DAVE)
    await svc.handle_remote_event(b2)
    state_b[("m.room.member", DAVE)] = b2.event_id
    forged = await remote.build(room_id, rv, "m.room.name", DAVE, {"name": "pwned"}, prevs=[b2], state=state_b,
                                state_key="")
    assert (await svc.handle_remote_event(forged)).rejected_reason is not None
    points += [b1, b2]

    # Branch C (remote): another rename of Carol from the fork point.
    c1 = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "join", "displayname": "C"},
                            prevs=[fork_point], state=base, state_key=CAROL)
    await svc.handle_remote_event(c1)
    points.append(c1)

    # A local state event on the resolved state of all branches.
    points.append(await svc.create_and_send_event(room_id, "m.room.name", {"name": "merged"}, ALICE, ""))
    return room_id, rv, points, forged


async def room_events(hs, room_id: str) -> dict:
    ids_ = await hs.db.run("ids", lambda t: [r[0] for r in t.execute(
        "SELECT event_id FROM events WHERE room_id = ?", (room_id,)).fetchall()])
    return await hs.get(EventsStore).get_events(ids_, allow_rejected=True)


async def states_at(hs, points) -> list[dict]:
    svc = hs.get(RoomEventService)
    return [await svc.get_state_ids_at(e.event_id) for e in points]


async def assert_index_agrees_with_walk(hs, room_id: str, state_maps: list[dict]) -> int:
    """Every indexed event's chain and the difference of every pair and triple of states equal
    the pure walk's. Returns how many events are indexed."""
    store = hs.get(AuthChainStore)
    events = await room_events(hs, room_id)
    positions = await store.get_positions(events)
    for eid in positions:
        # The difference of {e} and {} is C = {e} ∪ auth_chain(e).
        expected = {eid} | auth_chain.auth_chain({eid}, events.get)
        assert await store.auth_chain_difference([{eid}, set()]) == expected, eid
    sets = [set(m.values()) for m in state_maps]
    for n in (2, 3):
        for combo in itertools.combinations(sets, n):
            assert await store.auth_chain_difference(list(combo)) == \
                auth_chain.auth_chain_difference(list(combo), events.get)
    return len(positions)


@pytest.mark.parametrize("version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_index_of_a_forked_room_agrees_with_the_walk_across_a_restart(hs, version):
    room_id, rv, points, forged = await forked_room(hs, version)
    events = await room_events(hs, room_id)
    positions = await hs.get(AuthChainStore).get_positions(events)
    state_ids = {e for e, ev in events.items() if ev.is_state()}
    # Every accepted state event has a position; messages and the rejected event do not.
    assert set(positions) == {e for e in state_ids if events[e].rejected_reason is None}
    assert forged.event_id not in positions
    assert len(set(positions.values())) == len(positions)
    maps = await states_at(hs, points)
    await assert_index_agrees_with_walk(hs, room_id, maps)

    fresh = restarted(hs)
    assert await fresh.get(AuthChainStore).get_positions(events) == positions
    await assert_index_agrees_with_walk(fresh, room_id, maps)
    # Events persisted after the restart extend the stored chains (caches filled from the database).
    svc = fresh.get(RoomEventService)
    more = [await svc.create_and_send_event(room_id, "m.room.topic", {"topic": "later"}, ALICE, ""),
            await svc.create_and_send_event(room_id, "m.room.member", {"membership": "leave"}, BOB, BOB)]
    new_positions = await fresh.get(AuthChainStore).get_positions(e.event_id for e in more)
    assert len(new_positions) == 2 and not set(new_positions.values()) & set(positions.values())
    await assert_index_agrees_with_walk(fresh, room_id, maps + await states_at(fresh, more))


@pytest.mark.parametrize("version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_state_resolution_with_the_index_matches_the_pure_algorithm(hs, version):
    room_id, rv, points, _ = await forked_room(hs, version)
    maps = await states_at(hs, points)
    events = await room_events(hs, room_id)
    svc_state = hs.get(RoomStateService)

    async def no_walk(*_a, **_kw):
        raise AssertionError("the auth edges were walked although every event is indexed")
    hs.get(EventsStore).get_auth_chain_ids = no_walk
    for combo in itertools.combinations(maps, 3):
        expected = state_res.resolve_state(rv, list(combo), events.get)
        assert await svc_state.resolve(rv, list(combo)) == expected
    # The current state (resolved by the pipeline with the index) is the pure resolution of the
    # forward extremities' states.
    snap = await svc_state.get_snapshot(room_id)
    ext_states = [await hs.get(RoomEventService).get_state_ids_at(e) for e in snap.extremities]
    assert snap.state == state_res.resolve_state(rv, ext_states, events.get)


@pytest.mark.parametrize("sql_walk", [False, True], ids=["walked_in_memory", "sql_walk"])
@pytest_twisted.ensureDeferred
async def test_events_without_positions_are_walked_past(hs, sql_walk, monkeypatch):
    """Events without a position (here: Carol's rename on branch B and Dave's join that cites it,
    as if stored before the index) are walked in memory down to indexed events, or — past
    MAX_UNINDEXED_WALK — the whole difference comes from the SQL walk; same resolution."""
    room_id, rv, points, _ = await forked_room(hs, "10")
    maps = await states_at(hs, points)
    events = await room_events(hs, room_id)
    store = hs.get(AuthChainStore)
    victims = (points[4].event_id, points[5].event_id)
    await hs.db.run("drop", lambda t: t.executemany("DELETE FROM event_auth_chains WHERE event_id = ?",
                                                    [(v,) for v in victims]))
    fresh = restarted(hs)
    assert await fresh.get(AuthChainStore).auth_chain_difference([set(m.values()) for m in maps]) is None
    if sql_walk:
        monkeypatch.setattr(state_module, "MAX_UNINDEXED_WALK", 0)
    walks = []
    walk = fresh.get(EventsStore).get_auth_chain_ids

    async def counting_walk(event_ids):
        walks.append(event_ids)
        return await walk(event_ids)
    fresh.get(EventsStore).get_auth_chain_ids = counting_walk
    for combo in itertools.combinations(maps, 3):
        expected = state_res.resolve_state(rv, list(combo), events.get)
        assert await fresh.get(RoomStateService).resolve(rv, list(combo)) == expected
    assert bool(walks) == sql_walk
    assert store is not fresh.get(AuthChainStore)


@pytest.mark.parametrize("version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_backfill_indexes_events_stored_before_the_index(hs, version):
    room_id, rv, points, forged = await forked_room(hs, version)
    events = await room_events(hs, room_id)
    before = await hs.get(AuthChainStore).get_positions(events)

    def wipe(txn):
        for table in ("event_auth_chains", "event_auth_chain_links", "event_auth_chain_keys"):
            txn.execute(f"DELETE FROM {table}")
        txn.execute("INSERT INTO event_auth_chain_backfill (room_id) VALUES (?)", (room_id,))
    await hs.db.run("wipe", wipe)
    fresh = restarted(hs)
    assert await fresh.get(AuthChainStore).get_positions(events) == {}
    assert await fresh.get(AuthChainStore).backfill() == len(before)
    assert set(await fresh.get(AuthChainStore).get_positions(events)) == set(before)
    assert await hs.db.run("left", lambda t: t.scalar("SELECT COUNT(*) FROM event_auth_chain_backfill")) == 0
    await assert_index_agrees_with_walk(fresh, room_id, await states_at(fresh, points))
    assert await fresh.get(AuthChainStore).backfill() == 0  # one-off


@pytest_twisted.ensureDeferred
async def test_outliers_of_a_remote_room_are_indexed_in_their_batch(hs):
    """As after send_join: the remote room's auth chain arrives as outliers in any order, is
    indexed auth-first in one transaction; the forged event among them gets no position."""
    svc = hs.get(RoomEventService)
    rv = KNOWN_ROOM_VERSIONS["11"]
    remote = FakeRemote(svc)
    room_id = f"!joinme:{REMOTE}"
    create = await remote.build(room_id, rv, "m.room.create", CAROL, {"room_version": "11"}, prevs=[],
                                state={}, state_key="")
    state = {("m.room.create", ""): create.event_id}
    chain = [create]
    everything = {create.event_id: create}
    svc_get = svc.get_events

    async def get_events(ids_, allow_rejected=False):  # the fake remote knows its own events
        found = await svc_get(ids_, allow_rejected=allow_rejected)
        found.update({i: everything[i] for i in ids_ if i in everything})
        return found
    svc.get_events = get_events
    for etype, sk, content in [("m.room.member", CAROL, {"membership": "join"}),
                               ("m.room.power_levels", "", {"users": {CAROL: 100}}),
                               ("m.room.join_rules", "", {"join_rule": "public"}),
                               ("m.room.member", DAVE, {"membership": "join"}),
                               ("m.room.member", DAVE, {"membership": "join", "displayname": "D"})]:
        sender = sk if etype == "m.room.member" else CAROL
        ev = await remote.build(room_id, rv, etype, sender, content, prevs=[chain[-1]], state=state, state_key=sk)
        everything[ev.event_id] = ev
        state[(etype, sk)] = ev.event_id
        chain.append(ev)
    forged = await remote.build(room_id, rv, "m.room.name", DAVE, {"name": "x"}, prevs=[chain[-1]], state=state,
                                state_key="")
    svc.get_events = svc_get
    batches_before = hs.get(EventsStore).batches_committed
    await svc.handle_remote_outliers(list(reversed(chain)) + [forged])
    assert hs.get(EventsStore).batches_committed == batches_before + 1
    positions = await hs.get(AuthChainStore).get_positions(everything | {forged.event_id: forged})
    assert set(positions) == set(everything)
    # Dave's two memberships share a chain (the chain key is the state key).
    dave = [p for e, p in positions.items() if everything[e].state_key == DAVE]
    assert dave[0][0] == dave[1][0] and {dave[0][1], dave[1][1]} == {1, 2}
    # The join with the room's state joins the DAG; an alternative state is resolved with the index.
    join = await remote.build(room_id, rv, "m.room.member", "@eve:remote.test", {"membership": "join"},
                              prevs=[chain[-1]], state=state, state_key="@eve:remote.test")
    await svc.handle_remote_event(join, state_before=state)
    events = await room_events(hs, room_id)
    other = {**state, ("m.room.member", DAVE): chain[4].event_id}
    after_join = await svc.get_state_ids_at(join.event_id)
    await assert_index_agrees_with_walk(hs, room_id, [state, other, after_join])
    assert await hs.get(RoomStateService).resolve(rv, [after_join, other]) == \
        state_res.resolve_state(rv, [after_join, other], events.get)


@pytest_twisted.ensureDeferred
async def test_a_database_from_before_the_index_gets_the_tables_and_a_backfill(hs):
    """A database at a later schema version than 0012 that never had it (areas number their
    migrations in their own ranges): the migration is applied at start-up, then the backfill
    indexes the rooms stored before it."""
    from homeserver.storage.migrations import prepare_database
    room_id, rv, points, _ = await forked_room(hs, "10")
    events = await room_events(hs, room_id)
    before = await hs.get(AuthChainStore).get_positions(events)

    def downgrade(txn):
        for table in ("event_auth_chains", "event_auth_chain_links", "event_auth_chain_keys",
                      "event_auth_chain_backfill"):
            txn.execute(f"DROP TABLE {table}")
        txn.execute("DELETE FROM schema_version WHERE version = 12")
    await hs.db.run("downgrade", downgrade)
    assert prepare_database(hs.db) == [12]
    fresh = restarted(hs)
    assert await fresh.get(AuthChainStore).backfill() == len(before)
    await assert_index_agrees_with_walk(fresh, room_id, await states_at(fresh, points))

