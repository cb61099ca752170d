"""The event pipeline for local events: room creation in every version, sends, locking, batching,
auth failures, transaction IDs, forward extremities — on SQLite and PostgreSQL."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from homeserver.app import HomeServer
from homeserver.http.errors import MatrixError
from homeserver.protocol import signing
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import EXTREMITIES_MERGE_THRESHOLD, RoomEventService
from homeserver.rooms.state import RoomStateService
from homeserver.storage.events_store import EventsStore

SERVER = "test.local"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"


def make_hs(database, tmp_path, server_name: str = SERVER, default_room_version: str = "12") -> HomeServer:
    """A HomeServer over the test's database, built from a minimal config (no listeners)."""
    key_path = os.path.join(str(tmp_path), f"{server_name}.key")
    signing.write_signing_key(key_path, signing.generate_signing_key("a_test"))
    config = SimpleNamespace(
        server_name=server_name, default_room_version=default_room_version, signing_key_path=key_path,
        database=SimpleNamespace(engine="sqlite", path=":memory:", dsn=None, pool_max=1))
    hs = HomeServer(config, reactor)
    hs.db = database
    return hs


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def message(hs, room_id: str, sender: str = ALICE, body: str = "hi", **kw):
    return await hs.get(RoomEventService).create_and_send_event(
        room_id, "m.room.message", {"msgtype": "m.text", "body": body}, sender, **kw)


async def count_events(hs) -> int:
    return await hs.db.run("count", lambda t: t.scalar("SELECT COUNT(*) FROM events"))


# --- room creation ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS, key=int))
@pytest_twisted.ensureDeferred
async def test_every_room_version_can_be_created_and_sent_to(hs, version):
    rooms = hs.get(RoomCreationService)
    svc = hs.get(RoomEventService)
    rv = KNOWN_ROOM_VERSIONS[version]
    room_id = await rooms.create_room(ALICE, room_version=version, name="Room", topic="About")
    assert await svc.get_room_version(room_id) == rv
    create = await svc.get_current_state_event(room_id, "m.room.create", "")
    assert create.content["room_version"] == version
    if rv.room_id_from_create_event:  # v12: the room ID is the create event's hash
        assert "room_id" not in create.pdu and room_id == "!" + create.event_id[1:]
    else:
        assert create.pdu["room_id"] == room_id and room_id.endswith(":" + SERVER)
    assert ("creator" in create.content) == (not rv.implicit_room_creator)
    pl = await svc.get_current_state_event(room_id, "m.room.power_levels", "")
    assert (ALICE in pl.content["users"]) == (not rv.privileged_creators)
    if rv.privileged_creators:
        assert pl.content["events"]["m.room.tombstone"] > pl.content["state_default"]
    ev = await message(hs, room_id)
    assert ev.room_id == room_id and ev.depth == 9
    if rv.room_id_from_create_event:
        assert create.event_id not in ev.auth_event_ids
    else:
        assert create.event_id in ev.auth_event_ids
    assert await svc.get_membership(room_id, ALICE) == "join"
    assert await svc.get_rooms_for_user(ALICE) == [room_id]
    name = await svc.get_current_state_event(room_id, "m.room.name", "")
    assert name.content == {"name": "Room"}


@pytest_twisted.ensureDeferred
async def test_room_version_defaults_to_config_then_12(database, tmp_path):
    hs = make_hs(database, tmp_path, default_room_version="10")
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    assert (await hs.get(RoomEventService).get_room_version(room_id)).identifier == "10"
    hs.config.default_room_version = None
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    assert (await hs.get(RoomEventService).get_room_version(room_id)).identifier == "12"


@pytest_twisted.ensureDeferred
async def test_rooms_created_at_once_by_one_user_get_distinct_v12_ids(hs):
    """v12 room IDs hash the create event; identical creates in one millisecond must not collide."""
    hs.clock_ms = lambda: 1_700_000_000_000  # every create event gets the same timestamp
    rooms = hs.get(RoomCreationService)
    room_ids = await defer.gatherResults(
        [defer.ensureDeferred(rooms.create_room(ALICE, room_version="12")) for _ in range(5)])
    assert len(set(room_ids)) == 5


@pytest_twisted.ensureDeferred
async def test_unknown_room_version_is_unsupported(hs):
    with pytest.raises(MatrixError) as e:
        await hs.get(RoomCreationService).create_room(ALICE, room_version="99")
    assert (e.value.code, e.value.errcode) == (400, "M_UNSUPPORTED_ROOM_VERSION")


@pytest_twisted.ensureDeferred
async def test_presets_set_join_rules_and_invites_become_memberships(hs):
    rooms = hs.get(RoomCreationService)
    svc = hs.get(RoomEventService)
    public = await rooms.create_room(ALICE, preset="public_chat")
    jr = await svc.get_current_state_event(public, "m.room.join_rules", "")
    ga = await svc.get_current_state_event(public, "m.room.guest_access", "")
    assert jr.content == {"join_rule": "public"} and ga.content == {"guest_access": "forbidden"}
    private = await rooms.create_room(ALICE, invite=[BOB], is_direct=True)
    jr = await svc.get_current_state_event(private, "m.room.join_rules", "")
    assert jr.content == {"join_rule": "invite"}
    invite = await svc.get_current_state_event(private, "m.room.member", BOB)
    assert invite.content == {"membership": "invite", "is_direct": True}
    assert await svc.get_rooms_for_user(BOB, ["invite"]) == [private]
    # Bob accepts: the invite lets him join.
    await svc.create_and_send_event(private, "m.room.member", {"membership": "join"}, BOB, BOB)
    assert await svc.get_joined_members(private) == [ALICE, BOB]


@pytest_twisted.ensureDeferred
async def test_trusted_private_chat_makes_invitees_creators_in_v12_and_admins_before(hs):
    rooms = hs.get(RoomCreationService)
    svc = hs.get(RoomEventService)
    v12 = await rooms.create_room(ALICE, preset="trusted_private_chat", invite=[BOB])
    create = await svc.get_current_state_event(v12, "m.room.create", "")
    assert create.content["additional_creators"] == [BOB]
    pl = await svc.get_current_state_event(v12, "m.room.power_levels", "")
    assert BOB not in pl.content["users"]
    v11 = await rooms.create_room(ALICE, room_version="11", preset="trusted_private_chat", invite=[BOB])
    pl = await svc.get_current_state_event(v11, "m.room.power_levels", "")
    assert pl.content["users"] == {ALICE: 100, BOB: 100}


@pytest_twisted.ensureDeferred
async def test_initial_state_and_power_level_override_apply(hs):
    rooms = hs.get(RoomCreationService)
    svc = hs.get(RoomEventService)
    room_id = await rooms.create_room(
        ALICE, room_version="11",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "public"}},
                       {"type": "m.room.name", "state_key": "", "content": {"name": "ignored"}},
                       {"type": "org.example.custom", "state_key": "k", "content": {"a": 1}}],
        name="wins", power_level_content_override={"events_default": 10})
    state = await svc.get_current_state_events(room_id)
    assert state[("m.room.join_rules", "")].content == {"join_rule": "public"}
    assert state[("m.room.name", "")].content == {"name": "wins"}
    assert state[("org.example.custom", "k")].content == {"a": 1}
    assert state[("m.room.power_levels", "")].content["events_default"] == 10


# --- sending --------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_auth_failure_is_forbidden_and_stores_nothing(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    before_events = await count_events(hs)
    token = hs.get(RoomEventService).current_stream_token()
    with pytest.raises(MatrixError) as e:
        await message(hs, room_id, sender=BOB)
    assert (e.value.code, e.value.errcode) == (403, "M_FORBIDDEN")
    assert "not joined" in e.value.msg
    assert await count_events(hs) == before_events
    assert hs.get(RoomEventService).current_stream_token() == token
    # A state event above the sender's level is refused too.
    await hs.get(RoomEventService).create_and_send_event(
        room_id, "m.room.member", {"membership": "invite"}, ALICE, BOB)
    await hs.get(RoomEventService).create_and_send_event(
        room_id, "m.room.member", {"membership": "join"}, BOB, BOB)
    with pytest.raises(MatrixError) as e:
        await hs.get(RoomEventService).create_and_send_event(room_id, "m.room.name", {"name": "x"}, BOB, "")
    assert e.value.errcode == "M_FORBIDDEN"


@pytest_twisted.ensureDeferred
async def test_sending_to_an_unknown_room_is_not_found(hs):
    with pytest.raises(MatrixError) as e:
        await message(hs, "!nope:test.local")
    assert e.value.code == 404


@pytest_twisted.ensureDeferred
async def test_concurrent_sends_into_one_room_form_a_chain(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    events = await defer.gatherResults([defer.ensureDeferred(message(hs, room_id, body=str(i)))
                                        for i in range(20)])
    metas = await hs.get(EventsStore).get_event_metas(e.event_id for e in events)
    ordered = sorted(events, key=lambda e: metas[e.event_id].stream_ordering)
    for prev, ev in zip(ordered, ordered[1:]):
        assert ev.prev_event_ids == [prev.event_id]
        assert ev.depth == prev.depth + 1
    snap = await hs.get(RoomStateService).get_snapshot(room_id)
    assert list(snap.extremities) == [ordered[-1].event_id]


@pytest_twisted.ensureDeferred
async def test_sends_into_different_rooms_interleave_and_share_transactions(hs):
    rooms = [await hs.get(RoomCreationService).create_room(ALICE) for _ in range(8)]
    store = hs.get(EventsStore)
    batches = store.batches_committed
    sends = [defer.ensureDeferred(message(hs, r, body=str(i))) for i in range(5) for r in rooms]
    events = await defer.gatherResults(sends)
    assert len({e.event_id for e in events}) == 40
    # 40 events in far fewer transactions: concurrent rooms were committed together.
    assert store.batches_committed - batches < 40
    for r in rooms:
        chain = [e for e in events if e.room_id == r]
        assert sorted(e.depth for e in chain) == list(range(7, 12))


@pytest_twisted.ensureDeferred
async def test_repeated_txn_id_returns_the_first_event(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    first = await message(hs, room_id, txn_id="t1", device_id="DEV")
    again = await message(hs, room_id, body="other", txn_id="t1", device_id="DEV")
    assert again.event_id == first.event_id
    concurrent = await defer.gatherResults([
        defer.ensureDeferred(message(hs, room_id, txn_id="t2", device_id="DEV")) for _ in range(3)])
    assert len({e.event_id for e in concurrent}) == 1
    other_device = await message(hs, room_id, txn_id="t1", device_id="DEV2")
    assert other_device.event_id != first.event_id
    # Survives a restart of the caches: the txn ID is stored.
    hs2_svc = RoomEventService(hs)
    hs2_svc._inflight_txns.clear()
    assert (await hs2_svc.create_and_send_event(room_id, "m.room.message", {"body": "x"}, ALICE,
                                                txn_id="t1", device_id="DEV")).event_id == first.event_id


@pytest_twisted.ensureDeferred
async def test_forward_extremities_are_merged_past_the_threshold(hs):
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    root = await message(hs, room_id, body="root")
    fork = [await message(hs, room_id, body=f"b{i}", prev_event_ids=[root.event_id])
            for i in range(EXTREMITIES_MERGE_THRESHOLD + 3)]
    snap = hs.get(RoomStateService)
    for _ in range(100):  # the dummy events are sent right after the last send
        await sleep(0.02)
        current = await snap.get_snapshot(room_id)
        if len(current.extremities) <= EXTREMITIES_MERGE_THRESHOLD and not svc._merging:
            break
    current = await snap.get_snapshot(room_id)
    assert len(current.extremities) <= EXTREMITIES_MERGE_THRESHOLD
    last = await message(hs, room_id, body="after")
    assert set(last.prev_event_ids) == set(current.extremities)
    assert list((await snap.get_snapshot(room_id)).extremities) == [last.event_id]
    assert await hs.get(EventsStore).get_forward_extremities(room_id) == {last.event_id}
    dummies = [e for e in (await svc.get_events(current.extremities)).values()
               if e.type == "org.matrix.dummy_event"]
    assert dummies and len(fork) == 13


@pytest_twisted.ensureDeferred
async def test_messages_are_sent_without_reading_state_from_the_database(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    await message(hs, room_id)
    calls = []
    orig = hs.get(EventsStore).load_room_snapshot

    async def spy(room):
        calls.append(room)
        return await orig(room)
    hs.get(EventsStore).load_room_snapshot = spy
    orig_group = hs.get(RoomStateService).state_store.get_state_group

    async def spy_group(g):
        calls.append(g)
        return await orig_group(g)
    hs.get(RoomStateService).state_store.get_state_group = spy_group
    for i in range(10):
        await message(hs, room_id, body=str(i))
    assert calls == []


@pytest_twisted.ensureDeferred
async def test_state_of_a_large_room_is_read_without_loading_event_json(hs):
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    users = [f"@u{i}:{SERVER}" for i in range(150)]
    await defer.gatherResults([defer.ensureDeferred(svc.create_and_send_event(
        room_id, "m.room.member", {"membership": "join"}, u, u)) for u in users])
    assert len(await svc.get_joined_members(room_id)) == 151
    # Cold caches: a fresh store and state service (as after a restart).
    fresh = make_hs(hs.db, os.path.dirname(hs.config.signing_key_path))
    state = await fresh.get(RoomEventService).get_current_state_ids(room_id)
    assert len([k for k in state if k[0] == "m.room.member"]) == 151
    assert len(fresh.get(EventsStore)._events) == 0
    assert await fresh.get(RoomEventService).get_membership(room_id, users[7]) == "join"
    assert room_id in await fresh.get(RoomEventService).get_rooms_for_user(users[7])


@pytest_twisted.ensureDeferred
async def test_state_survives_a_restart(hs):
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, name="n1")
    await svc.create_and_send_event(room_id, "m.room.name", {"name": "n2"}, ALICE, "")
    last = await message(hs, room_id)
    fresh = make_hs(hs.db, os.path.dirname(hs.config.signing_key_path))
    fsvc = fresh.get(RoomEventService)
    assert await fsvc.get_current_state_ids(room_id) == await svc.get_current_state_ids(room_id)
    assert await fsvc.get_state_ids_at(last.event_id) == await svc.get_current_state_ids(room_id)
    nxt = await fsvc.create_and_send_event(room_id, "m.room.message", {"body": "x"}, ALICE)
    assert nxt.prev_event_ids == [last.event_id]
    assert fsvc.current_stream_token() > svc.current_stream_token()


@pytest_twisted.ensureDeferred
async def test_a_busy_room_does_not_block_another_room(hs):
    from homeserver.rooms.locks import RoomLocks
    busy = await hs.get(RoomCreationService).create_room(ALICE)
    free = await hs.get(RoomCreationService).create_room(ALICE)
    locks = hs.get(RoomLocks)
    held = defer.Deferred()

    async def hold():
        async with locks.lock(busy):
            await held
    holder = defer.ensureDeferred(hold())
    blocked = defer.ensureDeferred(message(hs, busy, body="waits"))
    ev = await message(hs, free, body="goes")  # completes while `busy` is locked
    assert ev.room_id == free and not blocked.called
    held.callback(None)
    await holder
    assert (await blocked).room_id == busy


@pytest_twisted.ensureDeferred
async def test_membership_changes_and_redactions_are_queryable(hs):
    svc = hs.get(RoomEventService)
    store = hs.get(EventsStore)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    token = svc.current_stream_token()
    assert await svc.get_rooms_for_user(BOB) == [] and await svc.get_joined_members(room_id) == [ALICE]
    await svc.create_and_send_event(room_id, "m.room.member", {"membership": "join"}, BOB, BOB)
    assert await svc.get_rooms_for_user(BOB) == [room_id]  # the cached answers follow the changes
    assert await svc.get_joined_members(room_id) == [ALICE, BOB]
    await svc.create_and_send_event(room_id, "m.room.member", {"membership": "leave"}, BOB, BOB)
    assert await svc.get_rooms_for_user(BOB) == [] and await svc.get_joined_members(room_id) == [ALICE]
    changes = await store.get_membership_changes(BOB, token, svc.current_stream_token())
    assert [(c.room_id, c.membership) for c in changes] == [(room_id, "leave")]
    assert await svc.get_rooms_for_user(BOB, ["leave"]) == [room_id]
    msg = await message(hs, room_id)
    red = await svc.create_and_send_event(room_id, "m.room.redaction", {"redacts": msg.event_id}, ALICE)
    assert await store.get_redactions([msg.event_id, red.event_id]) == {msg.event_id: [red.event_id]}


@pytest_twisted.ensureDeferred
async def test_bad_content_is_refused_with_400_and_huge_events_with_413(hs):
    room_id = await hs.get(RoomCreationService).create_room(ALICE)
    svc = hs.get(RoomEventService)
    for content in ({"n": 1.5}, {"n": 2**60}, {"n": float("nan")}):
        with pytest.raises(MatrixError) as e:
            await svc.create_and_send_event(room_id, "m.room.message", content, ALICE)
        assert (e.value.code, e.value.errcode) == (400, "M_BAD_JSON")
    with pytest.raises(MatrixError) as e:
        await svc.create_and_send_event(room_id, "m.room.message", {"body": "x" * 70000}, ALICE)
    assert (e.value.code, e.value.errcode) == (413, "M_TOO_LARGE")
    with pytest.raises(MatrixError) as e:
        await svc.create_and_send_event(room_id, "m.room.topic", {"topic": "x"}, ALICE, 5)
    assert e.value.code == 400
