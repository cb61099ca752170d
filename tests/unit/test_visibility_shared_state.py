"""filter_events_for_user judges the non-state events sharing one state map once
(homeserver/protocol/visibility.py); the verdicts must be those of judging each event alone
(modules/history_visibility.md "Server behaviour"), state events still judged one by one, and
copies served for erased senders (account_deactivation.yaml ``erase``)."""
from __future__ import annotations

import itertools

from homeserver.protocol.visibility import filter_events_for_user, is_event_visible
from tests.unit.test_visibility import ME, ev, hv, member

_n = itertools.count()


def test_events_sharing_a_state_map_get_the_verdicts_of_judging_each_alone():
    joined = {("m.room.history_visibility", ""): hv("joined")}  # ME not a member before these
    shared = {("m.room.history_visibility", ""): hv("shared")}
    events = [
        (ev(content={"body": "before my join"}), joined),
        (member("join"), joined),  # my own join: visible though I was not joined before it
        (ev(content={"body": "also before"}), joined),
        (hv("world_readable"), joined),  # judged with its own content: world_readable
        (ev(content={"body": "shared history"}), shared),
        (member("invite", user="@someone:a.example"), shared),
    ]
    later = {id(e): i >= 4 for i, (e, _) in enumerate(events)}

    def joined_later(event):
        return later[id(event)]

    expected = [e for e, s in events if is_event_visible(ME, e, s, joined_later=joined_later(e))]
    got = filter_events_for_user(ME, events, joined_later=joined_later)
    assert got == expected
    assert [e.type for e in got] == ["m.room.member", "m.room.history_visibility", "m.room.message",
                                     "m.room.member"]


def test_joined_later_is_asked_per_event_even_within_one_state_map():
    shared = {("m.room.history_visibility", ""): hv("shared")}
    first, second = ev(content={"body": "1"}), ev(content={"body": "2"})
    got = filter_events_for_user(ME, [(first, shared), (second, shared)],
                                 joined_later=lambda e: e is second)
    assert got == [second]


def test_ignored_and_erased_senders_are_still_handled_per_event():
    world = {("m.room.history_visibility", ""): hv("world_readable")}
    mine = ev(content={"body": "kept"})
    ignored = ev(content={"body": "ignored"}, sender="@troll:a.example")
    erased = ev(content={"body": "erased"}, sender="@gone:a.example")
    got = filter_events_for_user(ME, [(mine, world), (ignored, world), (erased, world)],
                                 ignored_users={"@troll:a.example"}, erased_senders={"@gone:a.example"})
    assert [e.event_id for e in got] == [mine.event_id, erased.event_id]
    assert got[0] is mine and got[1].content == {}
