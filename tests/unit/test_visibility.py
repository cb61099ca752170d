"""History visibility rules (modules/history_visibility.md "Server behaviour") and the client
event format (client_event.yaml, "Redactions") as pure functions."""
from __future__ import annotations

import itertools

import pytest

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.protocol.visibility import filter_events_for_user, is_event_visible
from homeserver.rooms.serialize import client_txn_id, redaction_applies, serialize_event, txn_key

RV = KNOWN_ROOM_VERSIONS["10"]
RV11 = KNOWN_ROOM_VERSIONS["11"]
ROOM = "!room:a.example"
ME = "@me:a.example"
_ids = itertools.count()


def ev(event_type="m.room.message", content=None, sender="@other:a.example", state_key=None, rv=RV, ts=1000,
       **extra):
    pdu = {"type": event_type, "sender": sender, "room_id": ROOM, "content": content or {},
           "origin_server_ts": ts, **extra}
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, rv, event_id=f"$e{next(_ids)}")


def hv(value):
    return ev("m.room.history_visibility", {"history_visibility": value}, state_key="")


def member(membership, user=ME):
    return ev("m.room.member", {"membership": membership}, sender=user, state_key=user)


def state(visibility=None, membership=None):
    s = {}
    if visibility is not None:
        s[("m.room.history_visibility", "")] = hv(visibility)
    if membership is not None:
        s[("m.room.member", ME)] = member(membership)
    return s


# Rule table: (visibility at the event, membership at the event, joined later) -> visible.
@pytest.mark.parametrize("visibility,membership,joined_later,visible", [
    ("world_readable", None, False, True),            # rule 1
    ("world_readable", "leave", False, True),
    ("joined", "join", False, True),                   # rule 2
    ("invited", "join", False, True),
    ("shared", "join", False, True),
    ("shared", None, True, True),                      # rule 3
    ("shared", None, False, False),
    ("shared", "leave", False, False),
    ("invited", "invite", False, True),                # rule 4
    ("joined", "invite", False, False),
    ("invited", None, True, False),                    # rule 3 is only for shared
    ("joined", None, True, False),
    ("joined", "leave", False, False),                 # rule 5
    ("joined", "ban", False, False),
    (None, None, True, True),                          # missing visibility counts as shared
    ("bogus", None, True, True),                       # unknown value counts as shared
    ("bogus", None, False, False),
])
def test_visibility_rules(visibility, membership, joined_later, visible):
    assert is_event_visible(ME, ev(), state(visibility, membership), joined_later=joined_later) is visible


def test_own_membership_events_use_the_more_permissive_of_before_and_after():
    # Joining under "joined": not joined before, joined after → visible.
    assert is_event_visible(ME, member("join"), state("joined", None))
    # Leaving under "joined": joined before → visible.
    assert is_event_visible(ME, member("leave"), state("joined", "join"))
    # Being invited under "invited": visible from the invite.
    assert is_event_visible(ME, member("invite"), state("invited", None))
    # Someone else's join is judged by my membership only.
    other = ev("m.room.member", {"membership": "join"}, sender="@x:a.example", state_key="@x:a.example")
    assert not is_event_visible(ME, other, state("joined", None))


def test_history_visibility_events_use_the_least_restrictive_of_before_and_after():
    assert is_event_visible(ME, hv("world_readable"), state("joined", None))
    assert is_event_visible(ME, hv("joined"), state("world_readable", None))
    assert not is_event_visible(ME, hv("invited"), state("joined", None))


def test_filter_keeps_order_and_applies_joined_later_predicate():
    early, late = ev(ts=1), ev(ts=2)
    pairs = [(early, state("shared")), (late, state("shared"))]
    assert filter_events_for_user(ME, pairs, joined_later=True) == [early, late]
    assert filter_events_for_user(ME, pairs, joined_later=False) == []
    assert filter_events_for_user(ME, pairs, joined_later=lambda e: e is early) == [early]


def test_filter_drops_messages_from_ignored_users_but_not_their_state():
    msg = ev(sender="@troll:a.example")
    name = ev("m.room.name", {"name": "x"}, sender="@troll:a.example", state_key="")
    pairs = [(msg, state("shared", "join")), (name, state("shared", "join"))]
    assert filter_events_for_user(ME, pairs, ignored_users=["@troll:a.example"]) == [name]


def test_state_values_may_be_plain_contents():
    s = {("m.room.history_visibility", ""): {"history_visibility": "joined"},
         ("m.room.member", ME): {"membership": "join"}}
    assert is_event_visible(ME, ev(), s)


# --- serialize_event ---------------------------------------------------------------------------

def test_serialize_event_client_format_fields():
    e = ev("m.room.topic", {"topic": "t"}, state_key="", ts=1000, hashes={"sha256": "x"}, signatures={},
           depth=3, prev_events=[], auth_events=[])
    out = serialize_event(e, 1500, prev_content={"topic": "old"}, replaces_state="$old", transaction_id="tx",
                          membership="join")
    assert out == {"event_id": e.event_id, "type": "m.room.topic", "sender": "@other:a.example",
                   "origin_server_ts": 1000, "content": {"topic": "t"}, "room_id": ROOM, "state_key": "",
                   "unsigned": {"age": 500, "prev_content": {"topic": "old"}, "replaces_state": "$old",
                                "transaction_id": "tx", "membership": "join"}}
    assert "room_id" not in serialize_event(e, 1500, include_room_id=False)


def test_serialize_redacted_event_shows_redacted_form_and_redaction():
    e = ev(content={"body": "secret", "msgtype": "m.text"})
    red = ev("m.room.redaction", {"reason": "spam"}, redacts=e.event_id, ts=1200)
    out = serialize_event(e, 2000, redacted_because=red)
    assert out["content"] == {}
    because = out["unsigned"]["redacted_because"]
    assert because["event_id"] == red.event_id and because["redacts"] == e.event_id
    assert because["content"] == {"reason": "spam"} and because["unsigned"]["age"] == 800


def test_serialize_redaction_in_v11_has_redacts_in_content_and_top_level():
    red = ev("m.room.redaction", {"redacts": "$target"}, rv=RV11)
    out = serialize_event(red, 2000)
    assert out["redacts"] == "$target" and out["content"]["redacts"] == "$target"


def test_serialize_passes_invite_room_state_only():
    e = ev("m.room.member", {"membership": "invite"}, state_key=ME,
           unsigned={"invite_room_state": [{"type": "m.room.name"}], "secret": 1})
    assert serialize_event(e, 1000)["unsigned"] == {"age": 0, "invite_room_state": [{"type": "m.room.name"}]}


def test_transaction_keys_round_trip():
    assert client_txn_id(txn_key("send", ROOM, "m.room.message", "abc\x1fdef")) == "abc\x1fdef"
    assert txn_key("send", ROOM, "a", "1") != txn_key("redact", ROOM, "a", "1")


def test_redaction_applies_same_server_or_with_power():
    target = ev(sender="@a:a.example")
    same = ev("m.room.redaction", {}, sender="@mod:a.example", redacts=target.event_id)
    other = ev("m.room.redaction", {}, sender="@mod:b.example", redacts=target.event_id)
    assert redaction_applies(same, target)
    assert not redaction_applies(other, target)
    assert redaction_applies(other, target, 50, 50)
    assert not redaction_applies(other, target, 0, 50)
    create = ev("m.room.create", {}, sender="@a:a.example", state_key="")
    assert not redaction_applies(same, create)


# --- servers (is_event_visible_to_server) ---------------------------------------------------------
from homeserver.protocol.visibility import is_event_visible_to_server  # noqa: E402

THEM = "b.example"


def their(membership, user=f"@u:{THEM}"):
    return ev("m.room.member", {"membership": membership}, sender=user, state_key=user)


@pytest.mark.parametrize("visibility,memberships,joined_later,visible", [
    ("world_readable", [], False, True),
    ("joined", ["join"], False, True),
    ("joined", ["invite"], False, False),
    ("joined", ["leave", "join"], False, True),       # any one of its users
    ("invited", ["invite"], False, True),
    ("invited", [], True, False),
    ("shared", [], True, True),                       # a user joined later
    ("shared", ["leave"], False, False),
    ("joined", [], True, False),
])
def test_a_server_sees_an_event_when_one_of_its_users_could(visibility, memberships, joined_later, visible):
    s = {("m.room.history_visibility", ""): hv(visibility)}
    for i, m in enumerate(memberships):
        s[("m.room.member", f"@u{i}:{THEM}")] = their(m, f"@u{i}:{THEM}")
    s[("m.room.member", f"@x:{THEM}.evil")] = their("join", f"@x:{THEM}.evil")  # another server's user
    assert is_event_visible_to_server(THEM, ev(), s, server_joined_later=joined_later) is visible


def test_a_server_sees_its_users_own_joins_and_visibility_changes_to_world_readable():
    joined_only = {("m.room.history_visibility", ""): hv("joined")}
    assert is_event_visible_to_server(THEM, their("join"), joined_only)
    assert is_event_visible_to_server(THEM, hv("world_readable"), joined_only)
    assert not is_event_visible_to_server(THEM, ev(), joined_only)


# --- erased senders (account_deactivation.yaml, "erase") -----------------------------------------

ERASED = "@gone:a.example"


def test_erased_senders_events_stay_whole_for_users_joined_at_the_event():
    msg = ev(content={"body": "hi"}, sender=ERASED)
    (shown,) = filter_events_for_user(ME, [(msg, state("shared", "join"))], erased_senders={ERASED})
    assert shown is msg


def test_erased_senders_events_are_redacted_for_users_who_joined_later():
    msg = ev(content={"body": "hi"}, sender=ERASED)
    (shown,) = filter_events_for_user(ME, [(msg, state("shared", None))], joined_later=True,
                                      erased_senders={ERASED})
    assert shown.event_id == msg.event_id and shown.content == {} and shown.sender == ERASED


def test_erased_senders_events_are_redacted_for_world_readable_readers_and_hidden_ones_stay_hidden():
    msg = ev(content={"body": "hi"}, sender=ERASED)
    (shown,) = filter_events_for_user(ME, [(msg, state("world_readable", None))], erased_senders={ERASED})
    assert shown.content == {}
    assert filter_events_for_user(ME, [(msg, state("joined", None))], joined_later=True,
                                  erased_senders={ERASED}) == []


def test_other_senders_are_not_affected_by_an_erasure():
    msg = ev(content={"body": "hi"})
    (shown,) = filter_events_for_user(ME, [(msg, state("shared", None))], joined_later=True,
                                      erased_senders={ERASED})
    assert shown is msg
