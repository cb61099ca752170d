"""State groups as deltas reconstruct the right state; events are stored once and read back; the
notifier wakes the right long-polls. Storage tests run on SQLite and PostgreSQL."""
from __future__ import annotations

import random

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage import state_store as state_store_module
from homeserver.storage.events_store import EventsStore
from homeserver.storage.state_store import StateStore
from homeserver.sync.notifier import Notifier
from tests.storage.test_pipeline import ALICE, make_hs


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


def _insert_fake_events(txn, n: int) -> None:
    txn.executemany(
        "INSERT INTO events (event_nid, event_id, room_id, room_version, type, sender, depth, origin_server_ts,"
        " received_ts, outlier, soft_failed, json) VALUES (?, ?, '!r:x', '10', 't', '@a:x', 1, 0, 0, ?, ?, '{}')",
        [(i, f"$e{i}", True, False) for i in range(1, n + 1)])


@pytest_twisted.ensureDeferred
async def test_state_group_deltas_reconstruct_state_across_many_changes(hs, monkeypatch):
    """Random sets and removals over 300 groups (snapshot every 7 deltas here) read back equal to a
    naive map, both from the cache and cold from the database."""
    monkeypatch.setattr(state_store_module, "SNAPSHOT_INTERVAL", 7)
    store = hs.get(StateStore)
    await hs.db.run("fake_events", _insert_fake_events, 400)
    rng = random.Random(42)
    keys = [("m.room.member", f"@u{i}:x") for i in range(40)] + [("m.room.name", ""), ("m.custom", "k")]
    key_nids = await store.intern_keys(keys)
    # New keys are written by the next events persist transaction; here, directly.
    await hs.db.run("keys", StateStore.write_keys_txn, store.pending_keys())
    naive: dict = {}
    prev_group = None
    prev_depth = None
    expected = {}
    for step in range(300):
        new = dict(naive)
        delta = {}
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(keys)
            if key in new and rng.random() < 0.25:
                del new[key]
                delta[key] = None
            else:
                new[key] = f"$e{rng.randint(1, 400)}"
                delta[key] = new[key]
        delta = {k: v for k, v in delta.items() if naive.get(k) != v or (v is None and k in naive)}
        group = store.prepare_group("!r:x", prev_group, prev_depth, new, delta, key_nids,
                                    {f"$e{i}": i for i in range(1, 401)})
        await hs.db.run("write", StateStore.write_groups_txn, [group])
        store.groups_written([group])
        expected[group.state_group] = dict(new)
        naive, prev_group, prev_depth = new, group.state_group, group.delta_depth
        assert group.delta_depth < 7
    for g, state in expected.items():
        assert await store.get_state_group(g) == state
    cold = StateStore(hs)
    for g in rng.sample(sorted(expected), 60):
        assert await cold.get_state_group(g) == expected[g]
    # Every stored group is a snapshot or a short delta: no walk is longer than the interval.
    depths = await hs.db.run("depths", lambda t: t.execute("SELECT MAX(delta_depth) FROM state_groups").fetchone())
    assert depths[0] < 7


@pytest_twisted.ensureDeferred
async def test_state_at_every_event_matches_a_naive_replay(hs):
    """250 state changes through the pipeline; the state after each event and the current state
    equal a naive replay, also when read cold after the caches are gone."""
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, room_version="11")
    naive = dict(await svc.get_current_state_ids(room_id))
    rng = random.Random(7)
    after: dict[str, dict] = {}
    for i in range(250):
        if rng.random() < 0.2:
            ev = await svc.create_and_send_event(room_id, "m.room.message", {"body": str(i)}, ALICE)
        else:
            sk = f"k{rng.randint(0, 30)}"
            ev = await svc.create_and_send_event(room_id, "org.example.state", {"v": i}, ALICE, sk)
            naive[("org.example.state", sk)] = ev.event_id
        after[ev.event_id] = dict(naive)
    assert await svc.get_current_state_ids(room_id) == naive
    for eid in rng.sample(sorted(after), 40):
        assert await svc.get_state_ids_at(eid) == after[eid]
    fresh = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])
    fsvc = fresh.get(RoomEventService)
    assert await fsvc.get_current_state_ids(room_id) == naive
    for eid in rng.sample(sorted(after), 40):
        assert await fsvc.get_state_ids_at(eid) == after[eid]
    # Bounded storage: far fewer rows than a full copy of the state per group.
    rows = await hs.db.run("rows", lambda t: t.scalar("SELECT COUNT(*) FROM state_group_entries"))
    groups = await hs.db.run("groups", lambda t: t.scalar("SELECT COUNT(*) FROM state_groups"))
    assert rows < groups * 5


@pytest_twisted.ensureDeferred
async def test_events_are_stored_once_and_read_back_cold(hs):
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    ev = await svc.create_and_send_event(room_id, "m.room.message", {"body": "é ünïcode"}, ALICE)
    fresh = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])
    loaded = await fresh.get(EventsStore).get_event(ev.event_id)
    assert loaded.pdu == ev.pdu and loaded.event_id == ev.event_id
    assert await fresh.get(EventsStore).get_event("$missing") is None
    edges = await hs.db.run("edges", lambda t: t.execute(
        "SELECT prev_event_id FROM event_edges WHERE event_id = ?", (ev.event_id,)).fetchall())
    assert [r[0] for r in edges] == ev.prev_event_ids
    auth = await fresh.get(EventsStore).get_auth_chain_ids([ev.event_id])
    assert set(ev.auth_event_ids) <= auth
    timeline = await fresh.get(EventsStore).get_room_events_stream(room_id, 0, fresh.get(
        EventsStore).get_current_stream_token(), 3)
    assert timeline[0][1].event_id == ev.event_id and timeline[0][0] > timeline[1][0]


# --- notifier (no database) ------------------------------------------------------------------------

class _FakeHS:
    reactor = reactor


def _later(seconds, fn, *args):
    return task.deferLater(reactor, seconds, fn, *args)


@pytest_twisted.ensureDeferred
async def test_notifier_wakes_a_waiter_for_its_room_immediately():
    n = Notifier(_FakeHS())
    _later(0.01, n.notify, "events", 5, ["!other:x"])
    _later(0.03, n.notify, "events", 6, ["!r:x"])
    start = reactor.seconds()
    assert await n.wait_for("@a:x", {"!r:x"}, {"events": 4}, 5000) is True
    assert reactor.seconds() - start < 1
    assert n.waiter_count() == 0


@pytest_twisted.ensureDeferred
async def test_notifier_answers_at_once_when_data_is_already_newer():
    n = Notifier(_FakeHS())
    n.notify("typing", 3, ["!r:x"])
    assert await n.wait_for("@a:x", {"!r:x"}, {"typing": 2}, 10_000) is True
    assert await n.wait_for("@a:x", {"!r:x"}, {"typing": 3}, 0) is False


@pytest_twisted.ensureDeferred
async def test_notifier_wakes_a_user_for_their_own_stream_and_times_out_otherwise():
    n = Notifier(_FakeHS())
    _later(0.01, n.notify, "to_device", 1, (), ["@a:x"])
    assert await n.wait_for("@a:x", set(), {}, 5000) is True
    _later(0.01, n.notify, "to_device", 2, (), ["@b:x"])
    assert await n.wait_for("@a:x", set(), {"to_device": 1}, 100) is False
    assert n.waiter_count() == 0


@pytest_twisted.ensureDeferred
async def test_notifier_wait_is_cancel_safe():
    n = Notifier(_FakeHS())
    d = defer.ensureDeferred(n.wait_for("@a:x", {"!r:x"}, {"events": 0}, 60_000))
    assert n.waiter_count() == 1
    d.cancel()
    with pytest.raises(defer.CancelledError):
        await d
    assert n.waiter_count() == 0
    n.notify("events", 1, ["!r:x"])  # nothing left to wake, nothing breaks
