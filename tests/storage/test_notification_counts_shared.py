"""Push actions computed with the shared default template (one evaluation per event for every
user without rules of their own, one by one for users named by the event, users with rules of
their own and unusual user IDs) equal a brute-force evaluation of every recipient's own
ruleset against the full state after each event (modules/push.md). Both engines."""
from __future__ import annotations

import json

import pytest
import pytest_twisted

from homeserver.client import push_rules
from homeserver.client.push_service import PushRulesService
from homeserver.protocol.power_levels import get_user_power_level
from homeserver.push.notification_counts import NotificationCounter
from homeserver.storage.receipts_store import ReceiptsStore
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.pipeline import RoomEventService

from .test_pipeline import SERVER, make_hs

ALICE, BOB, CAROL, ERIN = (f"@{n}:{SERVER}" for n in ("alice", "bob", "carol", "erin"))
ODD = f"@Dave:{SERVER}"
REMOTE = "@remote:other.example"


@pytest.fixture
def hs(database, tmp_path):
    hs = make_hs(database, tmp_path)
    hs.get(NotificationCounter)
    return hs


async def brute_force(hs, event) -> dict[str, list]:
    svc = hs.get(RoomEventService)
    state = await svc.get_state_ids_at(event.event_id)
    events = await svc.get_events(state.values())
    members = {k[1]: events[e] for k, e in state.items() if k[0] == "m.room.member" and e in events}
    joined = [u for u, ev in members.items() if ev.membership == "join"]
    names = {u: ev.content.get("displayname") for u, ev in members.items() if ev.membership == "join"
             and isinstance(ev.content.get("displayname"), str)}
    levels = {k: events[state[k]] for k in (("m.room.create", ""), ("m.room.power_levels", "")) if k in state}
    pl = levels.get(("m.room.power_levels", ""))
    recipients = [u for u in joined if u.endswith(":" + SERVER) and u != event.sender]
    if event.type == "m.room.member" and event.membership == "invite" and event.state_key.endswith(":" + SERVER):
        recipients.append(event.state_key)
    out = {}
    for user in recipients:
        rules = await hs.get(PushRulesService).get_ruleset(user)
        actions = push_rules.evaluate(event.pdu, len(joined), user, names.get(user), pl.content if pl else None,
                                      rules, sender_power_level=get_user_power_level(event.sender, levels))
        if push_rules.should_notify(actions):
            out[user] = actions
    return out


async def stored(hs, event) -> dict[str, list]:
    await hs.get(ReceiptsStore).fold_staged()  # staged with the event, folded in batches
    rows = await hs.db.run("actions", lambda t: t.execute(
        "SELECT user_id, actions FROM event_push_actions WHERE event_id = ?", (event.event_id,)).fetchall())
    return {u: json.loads(a) for u, a in rows}


@pytest_twisted.ensureDeferred
async def test_shared_evaluation_equals_each_users_own_evaluation(hs):
    svc = hs.get(RoomEventService)
    counter = hs.get(NotificationCounter)
    carried, original = [], counter._carried_forward

    def spy(*args):
        ctx = original(*args)
        carried.append(ctx is not None)
        return ctx
    counter._carried_forward = spy
    await hs.get(PushRulesService).put_rule(CAROL, "content", "hello", {
        "pattern": "hello", "actions": ["notify", {"set_tweak": "highlight"}]})
    room = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")

    async def send(sender, event_type, content, state_key=None):
        event = await svc.create_and_send_event(room, event_type, content, sender, state_key)
        assert await stored(hs, event) == await brute_force(hs, event), (event_type, content)
        return event

    for user in (BOB, CAROL, ODD, REMOTE):
        await send(user, "m.room.member", {"membership": "join"}, user)
    await send(ALICE, "m.room.message", {"msgtype": "m.text", "body": "hello all"})
    await send(BOB, "m.room.message", {"msgtype": "m.text", "body": "hi", "m.mentions": {"user_ids": [CAROL, ODD]}})
    await send(BOB, "m.room.message", {"msgtype": "m.text", "body": "hey", "m.mentions": {"room": True}})
    await send(ALICE, "m.room.message", {"msgtype": "m.text", "body": "all", "m.mentions": {"room": True}})
    await send(ALICE, "m.room.message", {"msgtype": "m.notice", "body": "notice"})
    await send(ALICE, "m.room.member", {"membership": "invite"}, ERIN)
    await send(ALICE, "m.room.member", {"membership": "invite"}, "@erin2:other.example")
    await send(BOB, "m.room.member", {"membership": "join", "displayname": "Bobby"}, BOB)
    await send(ALICE, "m.room.power_levels", {"users": {BOB: 50}, "notifications": {"room": 40}}, "")
    await send(BOB, "m.room.message", {"msgtype": "m.text", "body": "again", "m.mentions": {"room": True}})
    await send(CAROL, "m.room.member", {"membership": "leave"}, CAROL)
    await send(REMOTE, "m.room.member", {"membership": "leave"}, REMOTE)
    await send(ALICE, "m.room.encrypted", {"algorithm": "x", "ciphertext": "y"})
    await send(ODD, "m.room.message", {"msgtype": "m.text", "body": "hello from dave"})
    # Bob now has a rule of his own: evaluated one by one from the next event on.
    await hs.get(PushRulesService).set_enabled(BOB, "underride", ".m.rule.message", False)
    last = await send(ALICE, "m.room.message", {"msgtype": "m.text", "body": "quiet for bob"})
    assert BOB not in await stored(hs, last) and ODD in await stored(hs, last)
    assert sum(carried) >= 8  # joins, leaves, invites and power levels carried the context forward
    # Two members: the one-to-one rule.
    other = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    await svc.create_and_send_event(other, "m.room.member", {"membership": "join"}, ERIN, ERIN)
    one_to_one = await svc.create_and_send_event(other, "m.room.message", {"msgtype": "m.text", "body": "x"}, ALICE)
    assert await stored(hs, one_to_one) == await brute_force(hs, one_to_one) == {
        ERIN: ["notify", {"set_tweak": "sound", "value": "default"}]}


@pytest_twisted.ensureDeferred
async def test_staged_push_actions_count_before_and_after_the_fold_and_a_receipt_folds_first(hs):
    """A message stages one row for all its recipients; unread counts are the same before and
    after the fold; a read receipt folds the staged rows before clearing (nothing stays unread
    below it); a user ID with LIKE wildcards counts only its own rows."""
    svc = hs.get(RoomEventService)
    receipts = hs.get(ReceiptsStore)
    odd = f"@b_%:{SERVER}"
    room = await hs.get(RoomCreationService).create_room(ALICE, preset="public_chat")
    for user in (BOB, CAROL, odd):
        await svc.create_and_send_event(room, "m.room.member", {"membership": "join"}, user, user)
    await receipts.fold_staged()
    sent = [await svc.create_and_send_event(room, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"}, ALICE)
            for i in range(3)]
    staged = await hs.db.run("n", lambda t: t.scalar(
        "SELECT COUNT(*) FROM event_push_staging WHERE event_id IN (?, ?, ?)", [e.event_id for e in sent]))
    assert staged == 3  # one row per event, not one per recipient
    before = {u: await receipts.get_notification_counts(u) for u in (BOB, CAROL, odd)}
    assert before[BOB] == before[CAROL] == before[odd] == {room: {"main": (3, 0)}}
    await receipts.fold_staged()
    assert {u: await receipts.get_notification_counts(u) for u in (BOB, CAROL, odd)} == before
    assert await hs.db.run("n", lambda t: t.scalar("SELECT COUNT(*) FROM event_push_staging")) == 0
    # Staged again, then a receipt on the second message: only the third stays unread.
    more = await svc.create_and_send_event(room, "m.room.message", {"msgtype": "m.text", "body": "m3"}, ALICE)
    await receipts.upsert_receipt(room, "m.read", BOB, "", sent[1].event_id, {"ts": 1}, 1)
    assert await receipts.get_notification_counts(BOB) == {room: {"main": (2, 0)}}
    assert [r.event_id for r in await receipts.get_push_actions(BOB)] == [more.event_id, sent[2].event_id]
    assert await receipts.get_notification_counts(CAROL) == {room: {"main": (4, 0)}}
