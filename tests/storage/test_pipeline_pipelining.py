"""The room lock covers only the in-memory part of a send: events of one room are queued while the
ones before them are still being committed, acknowledged only once committed, and a failed write
takes down exactly the events built on it. Room creation is one transaction. Both engines."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from homeserver.http.errors import MatrixError
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import RoomStateService
from homeserver.storage.events_store import DependencyFailed, EventsStore

from .test_pipeline import ALICE, BOB, count_events, make_hs, message


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


def gate_writes(store: EventsStore) -> defer.Deferred:
    """Hold every persist transaction until the returned Deferred fires."""
    gate: defer.Deferred = defer.Deferred()
    original = store._write

    async def gated(items):
        if not gate.called:
            await gate
        return await original(items)
    store._write = gated
    return gate


def send(hs, room_id: str, body: str, sender: str = ALICE) -> defer.Deferred:
    return defer.ensureDeferred(message(hs, room_id, sender=sender, body=body))


@pytest_twisted.ensureDeferred
async def test_next_event_builds_on_an_uncommitted_one_and_the_200_waits_for_commit(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    store = hs.get(EventsStore)
    state = hs.get(RoomStateService)
    committed_before = await state.get_snapshot(room_id)
    events_before = await count_events(hs)
    gate = gate_writes(store)
    first = send(hs, room_id, "one")
    second = send(hs, room_id, "two")
    for _ in range(20):  # both are built and queued while the first write is held
        if len(store._pending) == 2:
            break
        await defer.succeed(None)
    pending = list(store._pending.values())
    assert len(pending) == 2 and not first.called and not second.called
    assert pending[1].event.prev_event_ids == [pending[0].event.event_id]
    # Readers see only what is committed.
    assert await state.get_snapshot(room_id) is committed_before
    assert await count_events(hs) == events_before
    gate.callback(None)
    one, two = await first, await second
    assert two.prev_event_ids == [one.event_id]
    metas = await store.get_event_metas([one.event_id, two.event_id])
    assert metas[one.event_id].stream_ordering < metas[two.event_id].stream_ordering
    assert list((await state.get_snapshot(room_id)).extremities) == [two.event_id]
    assert await store.get_forward_extremities(room_id) == {two.event_id}
    assert not store._pending and not hs.get(RoomEventService)._heads


@pytest_twisted.ensureDeferred
async def test_concurrent_sends_into_one_room_share_transactions(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    store = hs.get(EventsStore)
    batches = store.batches_committed
    events = await defer.gatherResults([send(hs, room_id, str(i)) for i in range(30)])
    assert store.batches_committed - batches < 15
    metas = await store.get_event_metas(e.event_id for e in events)
    ordered = sorted(events, key=lambda e: metas[e.event_id].stream_ordering)
    for prev, ev in zip(ordered, ordered[1:]):
        assert ev.prev_event_ids == [prev.event_id] and ev.depth == prev.depth + 1


@pytest_twisted.ensureDeferred
async def test_state_changes_in_flight_are_seen_by_the_next_events_and_survive_a_restart(hs):
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    gate = gate_writes(hs.get(EventsStore))
    sends = [defer.ensureDeferred(svc.create_and_send_event(room_id, "m.room.member", {"membership": "join"},
                                                            BOB, BOB)),
             defer.ensureDeferred(svc.create_and_send_event(room_id, "m.room.name", {"name": "n1"}, ALICE, "")),
             send(hs, room_id, "from bob", sender=BOB),  # needs Bob's join, not committed yet
             defer.ensureDeferred(svc.create_and_send_event(room_id, "m.room.name", {"name": "n2"}, ALICE, ""))]
    for _ in range(50):
        await defer.succeed(None)
    gate.callback(None)
    join, name1, msg, name2 = await defer.gatherResults(sends)
    assert msg.sender == BOB and join.event_id in msg.auth_event_ids
    current = await svc.get_current_state_ids(room_id)
    assert current[("m.room.name", "")] == name2.event_id and current[("m.room.member", BOB)] == join.event_id
    assert await svc.get_joined_members(room_id) == sorted([ALICE, BOB])
    fresh = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])
    assert await fresh.get(RoomEventService).get_current_state_ids(room_id) == current
    assert await fresh.get(RoomEventService).get_state_ids_at(name1.event_id) == {
        **current, ("m.room.name", ""): name1.event_id}


@pytest_twisted.ensureDeferred
async def test_a_failed_write_fails_the_events_built_on_it_and_the_room_recovers(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    other_room = await hs.get(RoomCreationService).create_room(ALICE)
    last_good = await message(hs, room_id, body="good")
    store = hs.get(EventsStore)
    events_before = await count_events(hs)
    gate = gate_writes(store)
    original_txn = store._persist_txn

    def failing_txn(txn, items, now):
        if any(item.event.content.get("body") == "poison" for item in items):
            raise RuntimeError("disk on fire")
        return original_txn(txn, items, now)
    store._persist_txn = failing_txn
    held = send(hs, other_room, "held")  # occupies the writer while the others queue
    poison = send(hs, room_id, "poison")
    built_on_it = send(hs, room_id, "after poison")
    bystander = send(hs, other_room, "bystander")
    for _ in range(50):
        await defer.succeed(None)
    gate.callback(None)
    await held
    with pytest.raises(RuntimeError):
        await poison
    with pytest.raises(DependencyFailed):
        await built_on_it
    assert (await bystander).room_id == other_room
    store._persist_txn = original_txn
    assert await count_events(hs) == events_before + 2  # held + bystander
    # The room goes on from what was committed.
    nxt = await message(hs, room_id, body="next")
    assert nxt.prev_event_ids == [last_good.event_id]
    assert await store.get_forward_extremities(room_id) == {nxt.event_id}
    assert not store._pending and not hs.get(RoomEventService)._heads


@pytest_twisted.ensureDeferred
async def test_room_creation_is_one_transaction_and_a_refusal_half_way_creates_nothing(hs):
    rooms = hs.get(RoomCreationService)
    store = hs.get(EventsStore)
    batches = store.batches_committed
    room_id = await rooms.create_room(ALICE, preset="public_chat", name="N", topic="T",
                                      initial_state=[{"type": "m.room.encryption", "state_key": "",
                                                      "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert store.batches_committed - batches == 1
    state = await hs.get(RoomEventService).get_current_state_ids(room_id)
    assert {t for t, _ in state} >= {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
                                      "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
                                      "m.room.name", "m.room.topic"}
    events_before = await count_events(hs)
    with pytest.raises(MatrixError) as e:  # Bob's membership cannot be set by Alice as a join
        await rooms.create_room(ALICE, initial_state=[{"type": "m.room.member", "state_key": BOB,
                                                       "content": {"membership": "join"}}])
    assert e.value.code == 403
    assert await count_events(hs) == events_before
    assert not store._pending and not hs.get(RoomEventService)._heads


@pytest_twisted.ensureDeferred
async def test_transaction_ids_are_found_after_a_restart_and_for_devices_past_the_memory_limit(
        hs, monkeypatch):
    import homeserver.storage.events_store as events_store
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    first = await message(hs, room_id, txn_id="t1", device_id="D")
    fresh = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])
    fsvc = fresh.get(RoomEventService)
    again = await fsvc.create_and_send_event(room_id, "m.room.message", {"body": "x"}, ALICE, txn_id="t1",
                                             device_id="D")
    assert again.event_id == first.event_id
    second = await fsvc.create_and_send_event(room_id, "m.room.message", {"body": "y"}, ALICE, txn_id="t2",
                                              device_id="D")
    assert second.event_id != first.event_id
    # Committed since the device was loaded: answered from memory.
    assert await fresh.get(EventsStore).get_event_id_for_txn(ALICE, "D", "t2") == second.event_id
    monkeypatch.setattr(events_store, "TXN_IDS_PER_DEVICE", 1)
    other = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0]).get(EventsStore)
    assert await other.get_event_id_for_txn(ALICE, "D", "t1") == first.event_id
    assert await other.get_event_id_for_txn(ALICE, "D", "t2") == second.event_id
    assert await other.get_event_id_for_txn(ALICE, "D", "t3") is None
    assert other._txn_ids.get((ALICE, "D")) is None


@pytest_twisted.ensureDeferred
async def test_member_caches_follow_joins_and_leaves_without_reloading(hs):
    svc = hs.get(RoomEventService)
    store = hs.get(EventsStore)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    other = await hs.get(RoomCreationService).create_room(BOB, preset="public_chat")
    assert await svc.get_joined_members(room_id) == [ALICE]
    assert await svc.get_rooms_for_user(BOB) == [other]
    loads = []
    original = store.get_members

    async def spy(*args):
        loads.append(args)
        return await original(*args)
    store.get_members = spy
    users = [f"@u{i}:test.local" for i in (3, 1, 2)]
    for user in users + [BOB]:
        await svc.create_and_send_event(room_id, "m.room.member", {"membership": "join"}, user, user)
    await svc.create_and_send_event(room_id, "m.room.member", {"membership": "leave"}, users[0], users[0])
    assert await svc.get_joined_members(room_id) == sorted([ALICE, BOB, users[1], users[2]])
    assert await svc.get_rooms_for_user(BOB) == sorted([room_id, other])
    assert await svc.get_rooms_for_user(users[0]) == []
    assert loads == []
    assert await svc.get_joined_members(room_id) == await original(room_id, "join")
