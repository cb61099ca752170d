"""Pure sync assembly (homeserver/sync/assembly.py), tokens (homeserver/sync/tokens.py) and the
legacy reshaping, on hand-built events: no server, no database."""
from __future__ import annotations

import pytest

from homeserver.client.filtering import RoomEventFilter, SyncFilter, parse_sync_filter
from homeserver.ephemeral.receipts import receipts_edu
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.push.notification_counts import thread_of
from homeserver.storage.receipts_store import ReceiptRow
from homeserver.sync import assembly, legacy
from homeserver.sync.tokens import RoomPosition, SyncToken, TokenError, parse_room_position

RV = KNOWN_ROOM_VERSIONS["10"]
ROOM = "!room:hs"
ALICE, BOB, CAROL = "@alice:hs", "@bob:hs", "@carol:hs"


def ev(n: int, etype: str = "m.room.message", sender: str = ALICE, state_key: str | None = None,
       content: dict | None = None) -> Event:
    pdu = {"type": etype, "sender": sender, "room_id": ROOM, "content": content or {"body": f"m{n}"},
           "depth": n, "origin_server_ts": n, "prev_events": [], "auth_events": []}
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, RV, event_id=f"$e{n}")


def member(n: int, user: str, membership: str = "join") -> Event:
    return ev(n, "m.room.member", user, user, {"membership": membership})


# --- tokens ---------------------------------------------------------------------------------------

def test_sync_token_round_trips_and_rejects_garbage():
    t = SyncToken(12, 3, 7, 0, 4, 2, 5)
    assert str(t) == "s12_3_7_0_4_2_5"
    assert SyncToken.parse(str(t)) == t
    for bad in ("", "x1_2", "s1_2_3", "s1_2_3_4_5_6_-7", "s1_2_3_4_5_6_a", "s1_2_3_4_5_6_7_8", 12):
        with pytest.raises(TokenError):
            SyncToken.parse(bad)


def test_sync_token_clamps_positions_above_the_current_ones():
    since = SyncToken(5, 5, 5, 50, 5, 5, 5)
    current = SyncToken(9, 9, 9, 3, 9, 9, 9)
    assert since.clamped(current) == SyncToken(5, 5, 5, 3, 5, 5, 5)
    assert since.advanced_to(current) == SyncToken(9, 9, 9, 50, 9, 9, 9)


def test_prev_batch_is_just_before_the_first_timeline_event():
    pos = RoomPosition.before_event(depth=7, stream_ordering=20)
    assert str(pos) == "t7_19"
    assert parse_room_position("t7_19") == pos
    assert not pos.includes(7, 20)  # the first timeline event itself is not before prev_batch
    assert pos.includes(7, 19) and pos.includes(6, 25)
    assert parse_room_position("s42") == RoomPosition(None, 42)
    assert parse_room_position("s42_1_2_3_4_5_6") == RoomPosition(None, 42)
    for bad in ("t7", "x1", "t_1", "s", "tA_1"):
        with pytest.raises(TokenError):
            parse_room_position(bad)


# --- timeline selection ---------------------------------------------------------------------------

def test_timeline_keeps_the_newest_events_up_to_the_limit_and_says_limited():
    events = [ev(i) for i in range(1, 8)]
    choice = assembly.select_timeline(ROOM, list(reversed(events)), RoomEventFilter(), 3, exhausted=True)
    assert [e.event_id for e in choice.events] == ["$e5", "$e6", "$e7"]
    assert choice.limited and choice.gap and not choice.need_more


def test_timeline_with_the_whole_window_is_not_limited():
    events = [ev(i) for i in range(1, 4)]
    choice = assembly.select_timeline(ROOM, list(reversed(events)), RoomEventFilter(), 10, exhausted=True)
    assert [e.event_id for e in choice.events] == ["$e1", "$e2", "$e3"]
    assert not choice.limited and not choice.gap


def test_timeline_filter_asks_for_more_when_too_few_events_match():
    events = [ev(1), ev(2, "m.reaction"), ev(3, "m.reaction")]
    flt = RoomEventFilter(types=("m.room.message",))
    choice = assembly.select_timeline(ROOM, list(reversed(events)), flt, 2, exhausted=False)
    assert choice.need_more
    final = assembly.select_timeline(ROOM, list(reversed(events)), flt, 2, exhausted=True)
    assert [e.event_id for e in final.events] == ["$e1"] and final.gap and not final.limited


def test_timeline_skipping_older_events_by_filter_is_limited():
    events = [ev(1, "m.reaction"), ev(2)]
    flt = RoomEventFilter(types=("m.room.message",))
    choice = assembly.select_timeline(ROOM, list(reversed(events)), flt, 5, exhausted=True)
    assert [e.event_id for e in choice.events] == ["$e2"] and choice.limited and choice.gap


# --- state section --------------------------------------------------------------------------------

STATE = {("m.room.create", ""): "$create", ("m.room.name", ""): "$name",
         ("m.room.member", ALICE): "$ma", ("m.room.member", BOB): "$mb", ("m.room.member", CAROL): "$mc"}


def test_initial_sync_state_is_the_whole_state_at_timeline_start():
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=[ev(9)], full=True, gap=True)
    assert sorted(ids) == sorted(STATE.values())


def test_incremental_state_without_gap_is_empty():
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=STATE, timeline=[ev(9)], full=False, gap=False)
    assert ids == []


def test_limited_incremental_state_is_the_delta_from_the_since_state():
    since = dict(STATE)
    since[("m.room.name", "")] = "$old_name"
    del since[("m.room.member", CAROL)]
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=since, timeline=[ev(9)], full=False, gap=True)
    assert sorted(ids) == ["$mc", "$name"]


def test_state_never_repeats_timeline_events_unless_state_after():
    timeline = [Event(dict(ev(9).pdu, type="m.room.name", state_key=""), RV, event_id="$name")]
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=timeline, full=True, gap=True)
    assert "$name" not in ids
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=timeline, full=True, gap=True,
                                     exclude_timeline=False)
    assert "$name" in ids


def test_lazy_loading_keeps_only_timeline_senders_and_the_user_on_initial_sync():
    timeline = [ev(9, sender=BOB)]
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=timeline, full=True, gap=True,
                                     lazy_load_members=True)
    assert sorted(ids) == ["$create", "$ma", "$mb", "$name"]


def test_lazy_loading_includes_heroes():
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=[], full=True, gap=False,
                                     lazy_load_members=True, extra_members=[CAROL])
    assert "$mc" in ids and "$mb" not in ids


def test_lazy_loading_skips_members_already_sent_to_the_device_but_keeps_gap_members():
    since = dict(STATE)
    since[("m.room.member", CAROL)] = "$mc_old"
    timeline = [ev(9, sender=BOB)]
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=since, timeline=timeline, full=False, gap=True,
                                     lazy_load_members=True, sent_members={BOB: "$mb"})
    assert ids == ["$mc"]  # the gap's member change; Bob's unchanged event was sent before
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=since, timeline=timeline, full=False, gap=True,
                                     lazy_load_members=True, sent_members={BOB: "$mb"},
                                     include_redundant_members=True)
    assert sorted(ids) == ["$mb", "$mc"]


def test_state_filter_types_apply_to_keys():
    check = assembly.state_type_checker(RoomEventFilter(types=("m.room.*",), not_types=("m.room.member",)))
    ids = assembly.compute_state_ids(ALICE, STATE, state_at_since=None, timeline=[], full=True, gap=False,
                                     types_ok=check)
    assert sorted(ids) == ["$create", "$name"]
    assert assembly.state_type_checker(RoomEventFilter()) is None


def test_members_sent_records_member_events_of_state_and_timeline():
    assert assembly.members_sent([member(1, BOB)], [ev(2), member(3, CAROL, "leave")]) == {BOB: "$e1", CAROL: "$e3"}


# --- counts, summary, receipts --------------------------------------------------------------------

def test_unread_counts_sum_threads_unless_asked_per_thread():
    counts = {"main": (2, 1), "$root": (3, 0)}
    assert assembly.unread_counts(counts, per_thread=False) == (
        {"notification_count": 5, "highlight_count": 1}, {})
    assert assembly.unread_counts(counts, per_thread=True) == (
        {"notification_count": 2, "highlight_count": 1}, {"$root": {"notification_count": 3, "highlight_count": 0}})
    assert assembly.unread_counts(None, False)[0] == {"notification_count": 0, "highlight_count": 0}


def test_thread_of_an_event_is_its_thread_root_or_main():
    assert thread_of(ev(1, content={"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})) == "$root"
    assert thread_of(ev(2, content={"body": "x", "m.relates_to": {"rel_type": "m.annotation", "event_id": "$a"}})) == "main"
    assert thread_of(ev(3)) == "main"


def test_room_summary_heroes_exclude_the_user_and_prefer_present_members():
    s = assembly.room_summary(ALICE, 2, 1, [(ALICE, "join"), (BOB, "join"), (CAROL, "invite")], has_name=False)
    assert s == {"m.joined_member_count": 2, "m.invited_member_count": 1, "m.heroes": [BOB, CAROL]}
    s = assembly.room_summary(ALICE, 1, 0, [(BOB, "leave")], has_name=False)
    assert s["m.heroes"] == [BOB]
    assert "m.heroes" not in assembly.room_summary(ALICE, 1, 0, [(BOB, "join")], has_name=True)


def test_private_receipts_are_shown_only_to_their_owner():
    rows = [ReceiptRow(ROOM, "m.read", BOB, "", "$e1", {"ts": 1}, 1),
            ReceiptRow(ROOM, "m.read.private", CAROL, "", "$e2", {"ts": 2}, 2),
            ReceiptRow(ROOM, "m.read", CAROL, "main", "$e2", {"ts": 3}, 3)]
    seen_by_alice = receipts_edu(rows, ALICE)
    assert seen_by_alice == {"type": "m.receipt", "content": {
        "$e1": {"m.read": {BOB: {"ts": 1}}},
        "$e2": {"m.read": {CAROL: {"ts": 3, "thread_id": "main"}}}}}
    assert "m.read.private" in receipts_edu(rows, CAROL)["content"]["$e2"]
    assert receipts_edu(rows[1:2], ALICE) is None


# --- whole responses --------------------------------------------------------------------------------

def _data(**kw) -> assembly.SyncData:
    base = dict(next_batch="s1_0_0_0_0_0_0", incremental=True)
    base.update(kw)
    return assembly.SyncData(**base)


def test_incremental_response_leaves_out_rooms_without_news_and_is_empty():
    data = _data(rooms=[assembly.JoinedRoom(ROOM, prev_batch="s1")])
    body = assembly.assemble_response(data, SyncFilter())
    assert body["rooms"]["join"] == {} and assembly.is_empty(body)
    assert body["next_batch"] == "s1_0_0_0_0_0_0"


def test_initial_response_lists_every_joined_room_with_counts():
    data = _data(incremental=False, rooms=[assembly.JoinedRoom(ROOM, prev_batch="s1", counts={"main": (1, 1)})])
    body = assembly.assemble_response(data, SyncFilter())
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"] == {"events": [], "limited": False, "prev_batch": "s1"}
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 1}
    assert room["state"] == {"events": []} and room["ephemeral"] == {"events": []}


def test_response_sections_follow_the_filter():
    flt = parse_sync_filter({"room": {"not_rooms": ["!other:hs"], "ephemeral": {"types": ["m.typing"]}},
                             "presence": {"types": []}, "event_fields": ["type"]})
    data = _data(rooms=[
        assembly.JoinedRoom(ROOM, timeline=[{"type": "m.room.message", "content": {}}], prev_batch="s1",
                            ephemeral=[{"type": "m.typing", "content": {}}, {"type": "m.receipt", "content": {}}]),
        assembly.JoinedRoom("!other:hs", timeline=[{"type": "x"}])],
        presence=[{"type": "m.presence", "sender": BOB, "content": {}}])
    body = assembly.assemble_response(data, flt)
    assert list(body["rooms"]["join"]) == [ROOM]
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"]["events"] == [{"type": "m.room.message"}]
    assert [e["type"] for e in room["ephemeral"]["events"]] == ["m.typing"]
    assert body["presence"]["events"] == []


def test_left_invited_and_knocked_rooms_have_their_sections():
    data = _data(rooms=[assembly.JoinedRoom("!left:hs", timeline=[{"type": "m.room.member"}], left=True)],
                 stripped=[assembly.StrippedRoom("!inv:hs", [{"type": "m.room.member"}]),
                           assembly.StrippedRoom("!knock:hs", [{"type": "m.room.member"}], knock=True)])
    body = assembly.assemble_response(data, SyncFilter(), use_state_after=True)
    assert "state_after" in body["rooms"]["leave"]["!left:hs"] and "state" not in body["rooms"]["leave"]["!left:hs"]
    assert body["rooms"]["invite"]["!inv:hs"] == {"invite_state": {"events": [{"type": "m.room.member"}]}}
    assert body["rooms"]["knock"]["!knock:hs"] == {"knock_state": {"events": [{"type": "m.room.member"}]}}
    assert not assembly.is_empty(body)


def test_to_device_and_device_lists_make_a_response_non_empty():
    assert not assembly.is_empty(assembly.assemble_response(_data(to_device=[{"type": "x"}]), SyncFilter()))
    assert not assembly.is_empty(assembly.assemble_response(_data(device_lists_left=[BOB]), SyncFilter()))


def test_legacy_events_chunk_and_initial_sync_reshape_a_sync_response():
    response = {"next_batch": "s5_0_0_0_0_0_0", "presence": {"events": [{"type": "m.presence"}]},
                "account_data": {"events": []},
                "rooms": {"join": {ROOM: {"timeline": {"events": [{"type": "m.room.message"}], "prev_batch": "t1_0"},
                                          "state_after": {"events": [{"type": "m.room.join_rules", "state_key": "",
                                                                      "content": {"join_rule": "public"}}]},
                                          "ephemeral": {"events": [{"type": "m.typing"}]},
                                          "account_data": {"events": []}}},
                          "invite": {}, "leave": {}}}
    chunk = legacy.events_chunk(response)
    assert [(e["type"], e.get("room_id")) for e in chunk] == [
        ("m.room.message", ROOM), ("m.typing", ROOM), ("m.presence", None)]
    body = legacy.initial_sync_body(response)
    assert body["end"] == "s5_0_0_0_0_0_0"
    room = body["rooms"][0]
    assert room["membership"] == "join" and room["visibility"] == "public"
    assert room["messages"]["start"] == "t1_0" and room["messages"]["chunk"][0]["room_id"] == ROOM
