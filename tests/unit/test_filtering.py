"""Filter validation and matching (client-server-api "Filtering", sync_filter.yaml,
room_event_filter.yaml, event_filter.yaml)."""
import pytest

from homeserver.client.filtering import (
    EventFilter, FilterError, RoomEventFilter, SyncFilter, apply_event_fields, parse_room_event_filter,
    parse_sync_filter, split_dotted_path, type_matches, validate_filter,
)

# The example of filter.yaml (POST /user/{userId}/filter).
SPEC_EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"], "not_rooms": ["!726s6s6q:example.com"],
                     "not_senders": ["@spam:example.com"]},
        "ephemeral": {"types": ["m.receipt", "m.typing"], "not_rooms": ["!726s6s6q:example.com"],
                      "not_senders": ["@spam:example.com"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def ev(type_="m.room.message", sender="@bob:example.com", room_id="!r:example.com", **content):
    return {"type": type_, "sender": sender, "room_id": room_id, "content": content}


def test_spec_example_filter_is_valid_and_parses():
    f = parse_sync_filter(SPEC_EXAMPLE)
    assert f.timeline.limit == 10
    assert f.event_fields == ("type", "content", "sender")
    assert f.state.not_rooms == {"!726s6s6q:example.com"}


def test_empty_filter_matches_everything():
    f = parse_sync_filter({})
    assert f.timeline.matches(ev())
    assert f.presence.matches({"type": "m.presence", "sender": "@x:y"})
    assert f.room_allowed("!any:x")
    assert f.timeline.limit is None


@pytest.mark.parametrize("bad, errcode", [
    ([], "M_BAD_JSON"),
    ({"room": []}, "M_BAD_JSON"),
    ({"room": {"timeline": {"limit": "10"}}}, "M_BAD_JSON"),
    ({"room": {"timeline": {"limit": True}}}, "M_BAD_JSON"),
    ({"room": {"timeline": {"limit": 0}}}, "M_INVALID_PARAM"),
    ({"room": {"timeline": {"limit": -5}}}, "M_INVALID_PARAM"),
    ({"room": {"timeline": {"types": "m.room.message"}}}, "M_BAD_JSON"),
    ({"room": {"timeline": {"types": [1]}}}, "M_BAD_JSON"),
    ({"room": {"rooms": ["@notaroom:x"]}}, "M_INVALID_PARAM"),
    ({"room": {"state": {"senders": ["!notauser:x"]}}}, "M_INVALID_PARAM"),
    ({"room": {"state": {"lazy_load_members": "yes"}}}, "M_BAD_JSON"),
    ({"room": {"include_leave": 1}}, "M_BAD_JSON"),
    ({"presence": {"limit": 1.5}}, "M_BAD_JSON"),
    ({"event_format": "xml"}, "M_INVALID_PARAM"),
    ({"event_format": 3}, "M_BAD_JSON"),
    ({"event_fields": "type"}, "M_BAD_JSON"),
])
def test_invalid_filters_are_rejected_with_the_right_errcode(bad, errcode):
    with pytest.raises(FilterError) as e:
        validate_filter(bad)
    assert e.value.errcode == errcode


def test_unknown_keys_are_allowed():
    validate_filter({"org.example.future": {"x": 1}, "room": {"timeline": {"org.example": True}}})


@pytest.mark.parametrize("event_type, pattern, expected", [
    ("m.room.message", "m.room.message", True),
    ("m.room.message", "m.room.*", True),
    ("m.room.message", "m.*", True),
    ("m.room.message", "*", True),
    ("m.room.message", "m.room", False),
    ("m.roomXmessage", "m.room.message", False),  # "." is literal, not a regex wildcard
    ("m.call.invite", "m.*.invite", True),
    ("m.call.answer", "m.*.invite", False),
])
def test_type_wildcards(event_type, pattern, expected):
    assert type_matches(event_type, pattern) is expected


def test_not_types_wins_over_types():
    f = EventFilter.from_json({"types": ["m.room.*"], "not_types": ["m.room.member"]})
    assert f.matches(ev("m.room.message"))
    assert not f.matches(ev("m.room.member"))
    assert not f.matches(ev("m.reaction"))


def test_not_senders_wins_over_senders():
    f = EventFilter.from_json({"senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"]})
    assert f.matches(ev(sender="@a:x"))
    assert not f.matches(ev(sender="@b:x"))
    assert not f.matches(ev(sender="@c:x"))


def test_empty_types_list_excludes_everything():
    f = EventFilter.from_json({"types": []})
    assert f.excludes_everything
    assert not f.matches(ev())


def test_room_lists_not_rooms_wins():
    f = RoomEventFilter.from_json({"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"]})
    assert f.matches(ev(room_id="!a:x"))
    assert not f.matches(ev(room_id="!b:x"))
    assert not f.matches(ev(room_id="!c:x"))
    # sync passes the room explicitly for events that carry no room_id
    assert f.matches({"type": "m.tag", "content": {}}, room_id="!a:x")


def test_contains_url():
    with_url = ev(url="mxc://x/y", body="pic")
    without = ev(body="text")
    only_url = RoomEventFilter.from_json({"contains_url": True})
    no_url = RoomEventFilter.from_json({"contains_url": False})
    either = RoomEventFilter.from_json({})
    assert only_url.matches(with_url) and not only_url.matches(without)
    assert no_url.matches(without) and not no_url.matches(with_url)
    assert either.matches(with_url) and either.matches(without)


def test_limit_keeps_the_first_events():
    f = EventFilter.from_json({"limit": 2})
    assert [e["content"]["n"] for e in f.filter([ev(n=1), ev(n=2), ev(n=3)])] == [1, 2]
    assert f.limit_or(10) == 2
    assert EventFilter().limit_or(10, maximum=5) == 5


def test_room_filter_applies_before_section_filters():
    f = parse_sync_filter(SPEC_EXAMPLE | {"room": SPEC_EXAMPLE["room"] | {"not_rooms": ["!gone:x"]}})
    assert f.filter_room_timeline("!gone:x", [ev(room_id="!gone:x")]) == []
    assert f.filter_room_timeline("!ok:x", [ev(room_id="!ok:x")]) == [ev(room_id="!ok:x")]
    assert f.filter_room_timeline("!ok:x", [ev(room_id="!ok:x", sender="@spam:example.com")]) == []
    assert f.filter_room_state("!726s6s6q:example.com", [ev("m.room.name", room_id="!726s6s6q:example.com")]) == []
    assert f.filter_room_ephemeral("!ok:x", [{"type": "m.typing", "content": {}}, {"type": "m.other"}]) == [
        {"type": "m.typing", "content": {}}]


def test_presence_filter_spec_example():
    f = parse_sync_filter(SPEC_EXAMPLE)
    alice = {"type": "m.presence", "sender": "@alice:example.com", "content": {}}
    bob = {"type": "m.presence", "sender": "@bob:example.com", "content": {}}
    assert f.filter_presence([alice, bob]) == [bob]


def test_lazy_loading_flags_parse():
    f = parse_room_event_filter({"lazy_load_members": True, "include_redundant_members": True})
    assert f.lazy_load_members and f.include_redundant_members and not f.unread_thread_notifications


@pytest.mark.parametrize("path, parts", [
    ("content.body", ["content", "body"]),
    ("content.m\\.relates_to", ["content", "m.relates_to"]),
    ("content.m\\\\foo", ["content", "m\\foo"]),
    ("content.m\\xfoo", ["content", "m\\xfoo"]),  # other escapes stay as written
    ("type", ["type"]),
])
def test_dotted_paths_follow_the_appendix(path, parts):
    assert split_dotted_path(path) == parts


def test_event_fields_projection():
    event = {"type": "m.room.message", "sender": "@a:x", "event_id": "$e",
             "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "x"}}}
    assert apply_event_fields(event, ["type", "content.body"]) == {"type": "m.room.message",
                                                                    "content": {"body": "hi"}}
    assert apply_event_fields(event, ["content.m\\.relates_to"]) == {"content": {"m.relates_to": {"rel_type": "x"}}}
    assert apply_event_fields(event, ["content.missing", "nothing.here"]) == {}
    f = SyncFilter.from_json({"event_fields": ["event_id"]})
    assert f.project(event) == {"event_id": "$e"}
    assert SyncFilter.from_json({}).project(event) is event
