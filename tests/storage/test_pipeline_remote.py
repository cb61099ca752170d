"""The event pipeline for events from another server: forks resolved by state resolution, rejected
and soft-failed events kept apart, missing events reported, outliers and out-of-band invites.

A fake remote server ("remote.test") builds and signs events with its own key."""
from __future__ import annotations

import pytest
import pytest_twisted

from homeserver.protocol import event_auth, signing, state_res
from homeserver.protocol.events import Event
from homeserver.protocol.ids import random_string
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import MissingEventsError, RoomStateService
from homeserver.storage.events_store import EventsStore
from homeserver.sync.notifier import Notifier
from tests.storage.test_pipeline import ALICE, make_hs  # noqa: F401  (fixture helpers)

REMOTE = "remote.test"
CAROL = f"@carol:{REMOTE}"
DAVE = f"@dave:{REMOTE}"


@pytest.fixture
def hs(database, tmp_path):
    return make_hs(database, tmp_path)


class FakeRemote:
    """Builds events as server ``remote.test`` would: hashes, its signature, auth events chosen
    from the state it believes in."""

    def __init__(self, svc: RoomEventService):
        self.svc = svc
        self.key = signing.generate_signing_key("a_remote")
        self.ts = 1_700_000_000_000

    async def build(self, room_id: str | None, rv, event_type: str, sender: str, content: dict, *,
                    prevs: list[Event], state: dict, state_key: str | None = None,
                    auth_ids: list[str] | None = None, ts: int | None = None) -> Event:
        self.ts += 1
        pdu = {"type": event_type, "sender": sender, "content": content,
               "origin_server_ts": ts if ts is not None else self.ts,
               "depth": max((p.depth for p in prevs), default=0) + 1}
        if room_id is not None:
            pdu["room_id"] = room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if rv.event_format == EventFormat.V1:
            pdu["event_id"] = f"${random_string(12)}:{REMOTE}"
        if auth_ids is None:
            draft = Event(dict(pdu, event_id="$x"), rv, event_id="$x")
            keys = event_auth.auth_types_for_event(rv, draft)
            auth_ids = sorted(state[k] for k in keys if k in state)
        everything = await self.svc.get_events([p.event_id for p in prevs] + auth_ids, allow_rejected=True)
        everything.update({p.event_id: p for p in prevs})

        def ref(eid):
            if rv.event_format != EventFormat.V1:
                return eid
            return [eid, {"sha256": everything[eid].pdu["hashes"]["sha256"]}]
        pdu["prev_events"] = [ref(p.event_id) for p in prevs]
        pdu["auth_events"] = [ref(a) for a in auth_ids]
        return Event(signing.sign_event(pdu, rv, REMOTE, self.key), rv)


async def room_with_carol(hs, version: str):
    """A public local room (Alice's) that Carol from remote.test has joined."""
    svc = hs.get(RoomEventService)
    room_id = await hs.get(RoomCreationService).create_room(ALICE, room_version=version, preset="public_chat")
    rv = KNOWN_ROOM_VERSIONS[version]
    remote = FakeRemote(svc)
    state = await svc.get_current_state_ids(room_id)
    prev = list((await hs.get(RoomStateService).get_snapshot(room_id)).extremities)
    prev_events = list((await svc.get_events(prev)).values())
    join = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "join"},
                              prevs=prev_events, state=state, state_key=CAROL)
    await svc.handle_remote_event(join)
    assert await svc.get_membership(room_id, CAROL) == "join"
    return svc, remote, room_id, rv, join


@pytest.mark.parametrize("version", ["1", "10", "12"])
@pytest_twisted.ensureDeferred
async def test_forked_dag_is_resolved_with_state_res(hs, version):
    svc, remote, room_id, rv, join = await room_with_carol(hs, version)
    base = await svc.get_state_ids_at(join.event_id)
    # Two branches from Carol's join: Alice (local) sets the topic, Carol renames herself twice.
    topic = await svc.create_and_send_event(room_id, "m.room.topic", {"topic": "t"}, ALICE, "",
                                            prev_event_ids=[join.event_id])
    a = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "join", "displayname": "A"},
                           prevs=[join], state=base, state_key=CAROL)
    await svc.handle_remote_event(a)
    b = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "join", "displayname": "B"},
                           prevs=[join], state=base, state_key=CAROL)
    await svc.handle_remote_event(b)

    # The current state is the resolution of the three branches' states.
    branches = [await svc.get_state_ids_at(e.event_id) for e in (topic, a, b)]
    loaded = await svc.get_events({e for s in branches for e in s.values()}, allow_rejected=True)
    chain = await hs.get(EventsStore).get_auth_chain_ids(sorted(loaded))
    loaded.update(await svc.get_events(chain, allow_rejected=True))
    expected = state_res.resolve_state(rv, branches, loaded.get)
    current = await svc.get_current_state_ids(room_id)
    assert current == expected
    assert current[("m.room.topic", "")] == topic.event_id
    assert current[("m.room.member", CAROL)] in (a.event_id, b.event_id)
    snap = await hs.get(RoomStateService).get_snapshot(room_id)
    assert set(snap.extremities) == {topic.event_id, a.event_id, b.event_id}

    # A remote event citing all branches gets the resolved state before it.
    merge = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "merged"},
                               prevs=[topic, a, b], state=expected)
    await svc.handle_remote_event(merge)
    assert await svc.get_state_ids_before(merge.event_id) == expected
    assert list((await hs.get(RoomStateService).get_snapshot(room_id)).extremities) == [merge.event_id]
    timeline = await hs.get(EventsStore).get_room_events_stream(room_id, 0, svc.current_stream_token(), 1)
    assert timeline[0][1].event_id == merge.event_id
    # And a cold reader computes the same states from the stored groups.
    fresh = make_hs(hs.db, hs.config.signing_key_path.rsplit("/", 1)[0])
    assert await fresh.get(RoomEventService).get_state_ids_before(merge.event_id) == expected
    assert await fresh.get(RoomEventService).get_current_state_ids(room_id) == expected


@pytest.mark.parametrize("version", ["10", "12"])
@pytest_twisted.ensureDeferred
async def test_soft_failed_and_rejected_events_are_kept_apart(hs, version):
    svc, remote, room_id, rv, join = await room_with_carol(hs, version)
    store = hs.get(EventsStore)
    base = await svc.get_state_ids_at(join.event_id)
    ban = await svc.create_and_send_event(room_id, "m.room.member", {"membership": "ban"}, ALICE, CAROL)
    state_before = await svc.get_current_state_ids(room_id)

    # Carol, not yet aware of the ban, speaks from before it: allowed by its own state, not by the
    # current state -> soft-failed.
    late = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "still here"},
                              prevs=[join], state=base)
    await svc.handle_remote_event(late)
    meta = (await store.get_event_metas([late.event_id]))[late.event_id]
    assert meta.soft_failed and meta.rejected_reason is None and meta.stream_ordering is None
    assert (await svc.get_event(late.event_id)).event_id == late.event_id
    snap = await hs.get(RoomStateService).get_snapshot(room_id)
    assert list(snap.extremities) == [ban.event_id]
    assert await svc.get_current_state_ids(room_id) == state_before

    # Carol speaking after the ban: rejected against the state before it.
    banned = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "let me in"},
                                prevs=[ban], state=base)
    await svc.handle_remote_event(banned)
    meta = (await store.get_event_metas([banned.event_id]))[banned.event_id]
    assert meta.rejected_reason and meta.rejected_reason.startswith("state:")
    assert await svc.get_event(banned.event_id) is None
    assert (await svc.get_event(banned.event_id, allow_rejected=True)).rejected_reason == meta.rejected_reason

    # Dave never joined: rejected by his own auth events.
    dave = await remote.build(room_id, rv, "m.room.message", DAVE, {"body": "hi"}, prevs=[ban],
                              state=state_before)
    await svc.handle_remote_event(dave)
    meta = (await store.get_event_metas([dave.event_id]))[dave.event_id]
    assert meta.rejected_reason and meta.rejected_reason.startswith("auth_events:")

    # None of them reached the timeline, the extremities or the current state.
    timeline = await store.get_room_events_stream(room_id, 0, svc.current_stream_token(), 50)
    ids = {e.event_id for _, e in timeline}
    assert ids.isdisjoint({late.event_id, banned.event_id, dave.event_id}) and ban.event_id in ids
    assert list((await hs.get(RoomStateService).get_snapshot(room_id)).extremities) == [ban.event_id]
    assert await svc.get_current_state_ids(room_id) == state_before
    # The same event again is not processed twice.
    assert (await svc.handle_remote_event(dave)).rejected_reason == meta.rejected_reason


@pytest_twisted.ensureDeferred
async def test_missing_auth_or_prev_events_are_reported(hs):
    svc, remote, room_id, rv, join = await room_with_carol(hs, "10")
    base = await svc.get_state_ids_at(join.event_id)
    ghost = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "ghost"}, prevs=[join], state=base)
    child = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "child"}, prevs=[ghost], state=base)
    with pytest.raises(MissingEventsError) as e:
        await svc.handle_remote_event(child)
    assert e.value.kind == "prev_events" and e.value.event_ids == [ghost.event_id]
    bad_auth = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "x"}, prevs=[join], state=base,
                                  auth_ids=sorted(base[k] for k in base if k[0] != "m.room.member") + ["$nope"])
    with pytest.raises(MissingEventsError) as e:
        await svc.handle_remote_event(bad_auth)
    assert e.value.kind == "auth_events" and e.value.event_ids == ["$nope"]
    # With the state supplied (as federation does after /state_ids), the child is accepted.
    accepted = await svc.handle_remote_event(child, state_before=base)
    assert accepted.rejected_reason is None
    assert await svc.get_state_ids_before(child.event_id) == base


@pytest_twisted.ensureDeferred
async def test_remote_invite_outlier_and_joining_a_remote_room(hs):
    svc = hs.get(RoomEventService)
    rv = KNOWN_ROOM_VERSIONS["12"]
    remote = FakeRemote(svc)
    create = await remote.build(None, rv, "m.room.create", CAROL, {"room_version": "12"}, prevs=[], state={},
                                state_key="")
    room_id = create.room_id
    state = {("m.room.create", ""): create.event_id}
    await svc.handle_remote_event(create, outlier=True)
    chain = [create]
    for etype, sk, content in [("m.room.member", CAROL, {"membership": "join"}),
                               ("m.room.power_levels", "", {"users": {}}),
                               ("m.room.join_rules", "", {"join_rule": "invite"})]:
        ev = await remote.build(room_id, rv, etype, CAROL, content, prevs=[chain[-1]], state=state, state_key=sk)
        await svc.handle_remote_event(ev, outlier=True)
        state[(etype, sk)] = ev.event_id
        chain.append(ev)
    assert await svc.get_room_version(room_id) is None  # outliers do not make a room ours

    notifier = hs.get(Notifier)
    token_before = svc.current_stream_token()
    invite = await remote.build(room_id, rv, "m.room.member", CAROL, {"membership": "invite"},
                                prevs=[chain[-1]], state=state, state_key=ALICE)
    await svc.handle_remote_event(invite, outlier=True)
    assert await svc.get_rooms_for_user(ALICE, ["invite"]) == [room_id]
    assert await svc.get_membership(room_id, ALICE) == "invite"
    assert notifier.has_new_data(ALICE, [], {"events": token_before})

    # A later event whose state federation supplies: the room becomes ours.
    msg = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "hello"}, prevs=[invite], state=state)
    state_with_invite = dict(state)
    state_with_invite[("m.room.member", ALICE)] = invite.event_id
    await svc.handle_remote_event(msg, state_before=state_with_invite)
    assert (await svc.get_room_version(room_id)).identifier == "12"
    # The invite itself arriving later in the DAG joins the timeline (no longer an outlier).
    await svc.handle_remote_event(invite, state_before=state)
    meta = (await hs.get(EventsStore).get_event_metas([invite.event_id]))[invite.event_id]
    assert not meta.outlier and meta.stream_ordering is not None
    assert await svc.get_current_state_ids(room_id) == state_with_invite
    assert await svc.get_membership(room_id, ALICE) == "invite"


@pytest_twisted.ensureDeferred
async def test_event_with_a_bad_content_hash_is_stored_redacted(hs):
    svc, remote, room_id, rv, join = await room_with_carol(hs, "10")
    base = await svc.get_state_ids_at(join.event_id)
    ev = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "original"}, prevs=[join], state=base)
    tampered = Event(dict(ev.pdu, content={"body": "tampered"}), rv, event_id=ev.event_id)
    stored = await svc.handle_remote_event(tampered)
    assert stored.content == {}
    assert (await svc.get_event(ev.event_id)).content == {}


@pytest_twisted.ensureDeferred
async def test_joining_a_remote_room_stores_its_state_as_outliers_in_one_batch(hs):
    """As after send_join: the room's state and auth chain arrive in any order and are stored in
    one transaction, a forged event among them is rejected, then the join gets that state."""
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
                               ("m.room.member", DAVE, {"membership": "join"})]:
        sender = sk if etype == "m.room.member" else CAROL
        ev = await remote.build(room_id, rv, etype, sender, content, prevs=[chain[-1]], state=state, state_key=sk)
        everything[ev.event_id] = ev
        state[(etype, sk)] = ev.event_id
        chain.append(ev)
    # A forged name change by Dave (power 0, needs 50).
    forged = await remote.build(room_id, rv, "m.room.name", DAVE, {"name": "pwned"}, prevs=[chain[-1]], state=state,
                                state_key="")
    svc.get_events = svc_get
    stored = await svc.handle_remote_outliers(list(reversed(chain)) + [forged])
    assert all(stored[e.event_id].rejected_reason is None for e in chain)
    assert stored[forged.event_id].rejected_reason.startswith("auth_events:")
    metas = await hs.get(EventsStore).get_event_metas(stored)
    assert all(m.outlier and m.stream_ordering is None for m in metas.values())
    # Again: nothing is stored twice.
    again = await svc.handle_remote_outliers(chain)
    assert set(again) == {e.event_id for e in chain}

    # The join (built by us in reality, here by the remote for brevity) with the room's state.
    join = await remote.build(room_id, rv, "m.room.member", "@eve:remote.test", {"membership": "join"},
                              prevs=[chain[-1]], state=state, state_key="@eve:remote.test")
    await svc.handle_remote_event(join, state_before=state)
    current = await svc.get_current_state_ids(room_id)
    assert current == {**state, ("m.room.member", "@eve:remote.test"): join.event_id}
    assert sorted(await svc.get_joined_members(room_id)) == [CAROL, "@dave:remote.test", "@eve:remote.test"]


@pytest_twisted.ensureDeferred
async def test_an_event_citing_another_rooms_events_is_rejected(hs):
    svc, remote, room_id, rv, join = await room_with_carol(hs, "10")
    other = await hs.get(RoomCreationService).create_room(ALICE, room_version="10", preset="public_chat")
    other_msg = await svc.create_and_send_event(other, "m.room.message", {"body": "elsewhere"}, ALICE)
    base = await svc.get_state_ids_at(join.event_id)
    sneaky = await remote.build(room_id, rv, "m.room.message", CAROL, {"body": "x"}, prevs=[other_msg], state=base)
    stored = await svc.handle_remote_event(sneaky)
    assert stored.rejected_reason.startswith("prev_events:")
    assert list((await hs.get(RoomStateService).get_snapshot(room_id)).extremities) == [join.event_id]
