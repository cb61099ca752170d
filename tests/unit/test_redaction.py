"""The redaction algorithm per room version, checked key by key against the spec's lists.

rooms/fragments/v1-redactions.md (v1–v5), v6-redactions.md (v6–v7), rooms/v8.md "Redactions",
v9-redactions.md (v9–v10), v11-redactions.md (v11–v12).
"""
import copy

import pytest

from homeserver.protocol.redaction import redact
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RedactionRules

TOP_LEVEL_V1 = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
                "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
                "origin_server_ts", "membership"}
TOP_LEVEL_V11 = TOP_LEVEL_V1 - {"prev_state", "origin", "membership"}
PL_V1 = {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}

# The spec's tables: redaction rules -> (top-level keys kept, {event type: content keys kept}).
# "*" means the whole content is kept.
SPEC = {
    RedactionRules.V1: (TOP_LEVEL_V1, {
        "m.room.member": {"membership"},
        "m.room.create": {"creator"},
        "m.room.join_rules": {"join_rule"},
        "m.room.power_levels": PL_V1,
        "m.room.aliases": {"aliases"},
        "m.room.history_visibility": {"history_visibility"},
    }),
    RedactionRules.V6: (TOP_LEVEL_V1, {
        "m.room.member": {"membership"},
        "m.room.create": {"creator"},
        "m.room.join_rules": {"join_rule"},
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": {"history_visibility"},
    }),
    RedactionRules.V8: (TOP_LEVEL_V1, {
        "m.room.member": {"membership"},
        "m.room.create": {"creator"},
        "m.room.join_rules": {"join_rule", "allow"},
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": {"history_visibility"},
    }),
    RedactionRules.V9: (TOP_LEVEL_V1, {
        "m.room.member": {"membership", "join_authorised_via_users_server"},
        "m.room.create": {"creator"},
        "m.room.join_rules": {"join_rule", "allow"},
        "m.room.power_levels": PL_V1,
        "m.room.history_visibility": {"history_visibility"},
    }),
    RedactionRules.V11: (TOP_LEVEL_V11, {
        "m.room.member": {"membership", "join_authorised_via_users_server"},
        "m.room.create": "*",
        "m.room.join_rules": {"join_rule", "allow"},
        "m.room.power_levels": PL_V1 | {"invite"},
        "m.room.history_visibility": {"history_visibility"},
        "m.room.redaction": {"redacts"},
    }),
}

ALL_TOP_LEVEL = TOP_LEVEL_V1 | {"unsigned", "redacts", "extra_key", "age_ts", "outlier", "destinations"}
# Every content key any version keeps for any type, plus ones none keeps.
ALL_CONTENT_KEYS = set().union(*(v for _, types in SPEC.values() for v in types.values() if v != "*")) | {
    "body", "displayname", "avatar_url", "room_version", "predecessor", "additional_creators",
    "third_party_invite", "reason", "notifications", "name", "m.federate", "creator", "aliases",
}
EVENT_TYPES = ["m.room.member", "m.room.create", "m.room.join_rules", "m.room.power_levels",
               "m.room.aliases", "m.room.history_visibility", "m.room.redaction", "m.room.message",
               "m.room.name", "m.room.topic", "m.room.encrypted", "org.example.custom"]

# One room version per rule set, as named in room_versions.RoomVersion.redaction_rules.
VERSIONS = {rv.identifier: rv for rv in KNOWN_ROOM_VERSIONS.values()}


def _full_event(event_type):
    event = {k: f"value-{k}" for k in ALL_TOP_LEVEL}
    event["type"] = event_type
    event["content"] = {k: {"nested": k} for k in ALL_CONTENT_KEYS}
    return event


@pytest.mark.parametrize("version", sorted(VERSIONS, key=int))
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_redaction_keeps_exactly_the_keys_the_spec_lists(version, event_type):
    rv = VERSIONS[version]
    top_level, content_rules = SPEC[rv.redaction_rules]
    event = _full_event(event_type)
    redacted = redact(event, rv)
    assert set(redacted) == top_level
    kept = content_rules.get(event_type, set())
    if kept == "*":
        assert redacted["content"] == event["content"]
    else:
        assert set(redacted["content"]) == kept
        for k in kept:
            assert redacted["content"][k] == event["content"][k]


def test_each_room_version_uses_the_expected_rule_set():
    expected = {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 6, "7": 6, "8": 8, "9": 9, "10": 9,
                "11": 11, "12": 11}
    assert {v: int(rv.redaction_rules) for v, rv in VERSIONS.items()} == expected


@pytest.mark.parametrize("version", ["1", "6", "8", "9", "11", "12"])
def test_unsigned_is_removed(version):
    redacted = redact({"type": "m.room.message", "content": {"body": "x"},
                       "unsigned": {"age": 1, "redacted_because": {}}}, VERSIONS[version])
    assert redacted == {"type": "m.room.message", "content": {}}


def test_aliases_content_survives_only_before_v6():
    event = {"type": "m.room.aliases", "state_key": "d", "content": {"aliases": ["#a:d"]}}
    assert redact(event, VERSIONS["5"])["content"] == {"aliases": ["#a:d"]}
    assert redact(event, VERSIONS["6"])["content"] == {}


def test_join_rules_allow_survives_from_v8():
    event = {"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!a:b"}]}}
    assert redact(event, VERSIONS["7"])["content"] == {"join_rule": "restricted"}
    assert redact(event, VERSIONS["8"])["content"] == event["content"]


def test_join_authorised_via_users_server_survives_from_v9():
    event = {"type": "m.room.member", "state_key": "@u:d",
             "content": {"membership": "join", "join_authorised_via_users_server": "@x:d", "displayname": "U"}}
    assert redact(event, VERSIONS["8"])["content"] == {"membership": "join"}
    assert redact(event, VERSIONS["9"])["content"] == {"membership": "join", "join_authorised_via_users_server": "@x:d"}


def test_v11_member_keeps_only_signed_part_of_third_party_invite():
    event = {"type": "m.room.member", "state_key": "@u:d", "content": {
        "membership": "invite",
        "third_party_invite": {"display_name": "alice", "signed": {"mxid": "@u:d", "token": "t", "signatures": {}}}}}
    assert redact(event, VERSIONS["11"])["content"] == {
        "membership": "invite", "third_party_invite": {"signed": {"mxid": "@u:d", "token": "t", "signatures": {}}}}
    assert redact(event, VERSIONS["10"])["content"] == {"membership": "invite"}


@pytest.mark.parametrize("tpi", ["string", {"display_name": "no signed"}, None])
def test_v11_member_without_signed_third_party_invite_drops_it(tpi):
    event = {"type": "m.room.member", "content": {"membership": "invite", "third_party_invite": tpi}}
    assert redact(event, VERSIONS["11"])["content"] == {"membership": "invite"}


def test_v11_create_keeps_whole_content_earlier_only_creator():
    content = {"creator": "@c:d", "room_version": "11", "m.federate": False,
               "predecessor": {"room_id": "!o:d"}, "additional_creators": ["@x:d"]}
    event = {"type": "m.room.create", "state_key": "", "content": content}
    assert redact(event, VERSIONS["11"])["content"] == content
    assert redact(event, VERSIONS["12"])["content"] == content
    assert redact(event, VERSIONS["10"])["content"] == {"creator": "@c:d"}


def test_v11_redaction_keeps_content_redacts_and_drops_top_level_redacts():
    event = {"type": "m.room.redaction", "redacts": "$old", "content": {"redacts": "$old", "reason": "spam"}}
    assert redact(event, VERSIONS["11"]) == {"type": "m.room.redaction", "content": {"redacts": "$old"}}
    assert redact(event, VERSIONS["10"]) == {"type": "m.room.redaction", "content": {}}


def test_v11_power_levels_keep_invite():
    content = {"invite": 50, "ban": 50, "notifications": {"room": 50}, "users": {"@a:d": 100}}
    event = {"type": "m.room.power_levels", "state_key": "", "content": content}
    assert redact(event, VERSIONS["11"])["content"] == {"invite": 50, "ban": 50, "users": {"@a:d": 100}}
    assert redact(event, VERSIONS["10"])["content"] == {"ban": 50, "users": {"@a:d": 100}}


def test_redaction_does_not_modify_input_nor_share_nested_values():
    event = {"type": "m.room.power_levels", "signatures": {"d": {"k": "s"}},
             "content": {"users": {"@a:d": 100}, "body": "x"}, "unsigned": {"a": 1}}
    before = copy.deepcopy(event)
    redacted = redact(event, VERSIONS["12"])
    assert event == before
    redacted["content"]["users"]["@b:d"] = 1
    redacted["signatures"]["d"]["k2"] = "t"
    assert event == before


@pytest.mark.parametrize("content", [None, "string", [1, 2]])
def test_malformed_or_missing_content_redacts_to_empty_object(content):
    event = {"type": "m.room.member"}
    if content is not None:
        event["content"] = content
    assert redact(event, VERSIONS["12"]) == {"type": "m.room.member", "content": {}}


def test_redacting_twice_changes_nothing():
    for rv in VERSIONS.values():
        for t in EVENT_TYPES:
            once = redact(_full_event(t), rv)
            assert redact(once, rv) == once


def test_shared_values_redaction_keeps_the_same_keys_and_values():
    for rv in VERSIONS.values():
        for t in EVENT_TYPES:
            event = _full_event(t)
            assert redact(event, rv, share_values=True) == redact(event, rv)
