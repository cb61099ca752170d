"""The push-rule evaluator and default rule set (client-server-api/modules/push.md)."""
import math

import pytest

from homeserver.client.push_rules import (
    KINDS, PushRuleError, default_rules, evaluate, exact_equal, glob_matches, is_highlight,
    member_count_matches, merge_ruleset, should_notify, tweaks, validate_rule,
)

ME = "@me:example.org"
OTHER = "@other:example.org"
ROOM = "!room:example.org"


def msg(body="hello", sender=OTHER, **content):
    return {"type": "m.room.message", "sender": sender, "room_id": ROOM,
            "content": {"msgtype": "m.text", "body": body, **content}}


def run(event, members=5, rules=None, display_name="Me", power_levels=None, **kw):
    return evaluate(event, members, ME, display_name, power_levels,
                    rules if rules is not None else merge_ruleset(ME, {}), **kw)


def rule_ids(ruleset, kind):
    return [r["rule_id"] for r in ruleset[kind]]


# --- the default rule set -----------------------------------------------------------------

def test_default_rules_match_the_spec_list_and_order():
    rs = merge_ruleset(ME, {})
    assert rule_ids(rs, "override") == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits"]
    assert rule_ids(rs, "underride") == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted"]
    assert rs["content"] == [] and rs["room"] == [] and rs["sender"] == []
    assert all(r["default"] for kind in KINDS for r in rs[kind])
    master = rs["override"][0]
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False, "conditions": [],
                      "actions": []}


def test_default_rules_name_the_user():
    rs = default_rules(ME)
    invite = next(r for r in rs["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"key": "state_key", "kind": "event_match", "pattern": ME} in invite["conditions"]
    mention = next(r for r in rs["override"] if r["rule_id"] == ".m.rule.is_user_mention")
    assert mention["conditions"][0]["value"] == ME


def test_user_rules_come_after_master_and_before_server_defaults():
    user = {"override": [{"rule_id": "mine", "conditions": [], "actions": ["notify"]}],
            "underride": [{"rule_id": "low", "conditions": [], "actions": []}],
            "content": [{"rule_id": "cake", "pattern": "cake", "actions": ["notify"]}],
            "room": [{"rule_id": ROOM, "actions": []}]}
    rs = merge_ruleset(ME, user)
    assert rule_ids(rs, "override")[:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert rule_ids(rs, "underride")[0] == "low"
    assert rs["content"] == [{"rule_id": "cake", "default": False, "enabled": True, "actions": ["notify"],
                              "pattern": "cake"}]
    assert rs["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]


def test_changes_to_server_default_rules_are_applied():
    rs = merge_ruleset(ME, {}, {("override", ".m.rule.master"): {"enabled": True, "actions": None},
                                ("underride", ".m.rule.message"): {"enabled": None, "actions": []}})
    assert rs["override"][0]["enabled"] is True
    assert next(r for r in rs["underride"] if r["rule_id"] == ".m.rule.message")["actions"] == []


# --- evaluation with the default rules ------------------------------------------------------

def test_plain_message_in_group_room_notifies_without_sound():
    assert run(msg()) == ["notify"]


def test_message_in_one_to_one_room_plays_default_sound():
    assert run(msg(), members=2) == ["notify", {"set_tweak": "sound", "value": "default"}]


def test_own_events_never_notify():
    assert run(msg(sender=ME), members=2) == []


def test_notices_are_suppressed():
    assert run(msg(msgtype="m.notice")) == []


def test_master_rule_enabled_silences_everything():
    rs = merge_ruleset(ME, {}, {("override", ".m.rule.master"): {"enabled": True}})
    assert run(msg(), rules=rs) == []


def test_invite_for_me_rings():
    invite = {"type": "m.room.member", "sender": OTHER, "state_key": ME, "room_id": ROOM,
              "content": {"membership": "invite"}}
    assert run(invite) == ["notify", {"set_tweak": "sound", "value": "default"}]
    someone_else = dict(invite, state_key="@third:example.org")
    assert run(someone_else) == []  # .m.rule.member_event


def test_user_mention_highlights():
    event = msg(**{"m.mentions": {"user_ids": [ME]}})
    actions = run(event)
    assert should_notify(actions) and is_highlight(actions)
    assert tweaks(actions) == {"sound": "default", "highlight": True}


def test_mention_of_someone_else_is_a_plain_message():
    assert run(msg(**{"m.mentions": {"user_ids": [OTHER]}})) == ["notify"]


def test_room_mention_needs_notification_permission():
    event = msg(**{"m.mentions": {"room": True}})
    pl = {"users": {OTHER: 50}, "notifications": {"room": 50}}
    assert is_highlight(run(event, power_levels=pl))
    low = {"users": {OTHER: 10}}
    assert not is_highlight(run(event, power_levels=low))
    assert run(event, power_levels=low) == ["notify"]  # still a message
    # No power levels: the sender has users_default 0 < 50.
    assert not is_highlight(run(event, power_levels=None))
    # A creator with infinite power (room versions with privileged creators).
    assert is_highlight(run(event, power_levels=None, sender_power_level=math.inf))


def test_room_mention_must_be_boolean_true():
    assert not is_highlight(run(msg(**{"m.mentions": {"room": "true"}}), power_levels={"users_default": 100}))


def test_legacy_body_mentions_do_not_highlight_since_v1_17():
    assert run(msg(body="hey Me, @room")) == ["notify"]


def test_tombstone_needs_empty_state_key():
    tomb = {"type": "m.room.tombstone", "sender": OTHER, "state_key": "", "room_id": ROOM, "content": {}}
    assert run(tomb) == ["notify", {"set_tweak": "highlight"}]
    assert run(dict(tomb, state_key="x")) == []
    not_state = {k: v for k, v in tomb.items() if k != "state_key"}
    assert run(not_state) == []


def test_reactions_acl_and_edits_are_suppressed():
    assert run({"type": "m.reaction", "sender": OTHER, "content": {}}) == []
    assert run({"type": "m.room.server_acl", "sender": OTHER, "state_key": "", "content": {}}) == []
    edit = msg(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert run(edit, members=2) == []


def test_encrypted_and_call_underrides():
    enc = {"type": "m.room.encrypted", "sender": OTHER, "content": {}}
    assert run(enc, members=2) == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert run(enc, members=3) == ["notify"]
    call = {"type": "m.call.invite", "sender": OTHER, "content": {}}
    assert run(call) == ["notify", {"set_tweak": "sound", "value": "ring"}]


def test_unmatched_event_gives_no_actions():
    assert run({"type": "org.example.custom", "sender": OTHER, "content": {}}) == []


# --- conditions (push.md "Conditions" examples) ------------------------------------------------

def one_rule(*conditions, actions=("notify",)):
    return {"override": [{"rule_id": "r", "enabled": True, "conditions": list(conditions),
                          "actions": list(actions)}]}


TOPIC = {"content": {"topic": "Lunch plans"}, "event_id": "$143273582443PhrSn:example.org",
         "room_id": "!636q39766251:example.com", "sender": "@example:example.org", "state_key": "",
         "type": "m.room.topic"}


@pytest.mark.parametrize("topic, expected", [
    ("Lunch plans", True), ("LUNCH", True), (" lunch", False), ("lunc", False), (None, False),
])
def test_event_match_spec_example_topic(topic, expected):
    event = dict(TOPIC, content={"topic": topic})
    rules = one_rule({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"})
    assert (run(event, rules=rules) == ["notify"]) is expected


def test_event_match_absent_property_does_not_match_even_star():
    rules = one_rule({"kind": "event_match", "key": "content.nothing", "pattern": "*"})
    assert run(TOPIC, rules=rules) == []


@pytest.mark.parametrize("body, expected", [
    ("An example event.", True),
    ("exple", True),
    ("An exciting triple-whammy", True),
    ("counterexample", False),  # does not start at a word boundary
    ("examples", False),  # does not end at a word boundary
    ("EXAMPLE", True),
])
def test_event_match_content_body_word_boundaries(body, expected):
    rules = one_rule({"kind": "event_match", "key": "content.body", "pattern": "ex*ple"})
    assert (run(msg(body), rules=rules) == ["notify"]) is expected


def test_glob_question_mark_and_escaping():
    assert glob_matches("a?c", "abc") and not glob_matches("a?c", "ac")
    assert glob_matches("m.room.*", "m.room.message") and not glob_matches("m.room.*", "mxroom.x")
    assert glob_matches("[x]", "[X]")  # brackets are literal


CREATE = {"content": {"creator": "@example:example.org", "m.federate": True,
                      "predecessor": {"event_id": "$something:example.org", "room_id": "!oldroom:example.org"},
                      "room_version": "1"},
          "event_id": "$143273582443PhrSn:example.org", "room_id": "!636q39766251:example.com",
          "sender": "@example:example.org", "state_key": "", "type": "m.room.create"}


@pytest.mark.parametrize("federate, expected", [(True, True), ("true", False), (1, False), (False, False)])
def test_event_property_is_spec_example(federate, expected):
    event = dict(CREATE, content=dict(CREATE["content"], **{"m.federate": federate}))
    rules = one_rule({"kind": "event_property_is", "key": "content.m\\.federate", "value": True})
    assert (run(event, rules=rules) == ["notify"]) is expected


def test_event_property_is_null_and_ints():
    rules = one_rule({"kind": "event_property_is", "key": "content.x", "value": None})
    assert run({"sender": OTHER, "content": {"x": None}}, rules=rules) == ["notify"]
    assert run({"sender": OTHER, "content": {}}, rules=rules) == []
    ints = one_rule({"kind": "event_property_is", "key": "content.x", "value": 1})
    assert run({"sender": OTHER, "content": {"x": 1}}, rules=ints) == ["notify"]
    assert run({"sender": OTHER, "content": {"x": True}}, rules=ints) == []
    assert run({"sender": OTHER, "content": {"x": 1.0}}, rules=ints) == []
    assert run({"sender": OTHER, "content": {"x": [1]}}, rules=ints) == []


ALIASES = {"content": {"alias": "#somewhere:localhost",
                       "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]},
           "sender": "@example:example.org", "state_key": "", "type": "m.room.canonical_alias"}


@pytest.mark.parametrize("value, expected", [("#myroom:example.com", True), (":example.com", False)])
def test_event_property_contains_spec_example(value, expected):
    rules = one_rule({"kind": "event_property_contains", "key": "content.alt_aliases", "value": value})
    assert (run(ALIASES, rules=rules) == ["notify"]) is expected


def test_event_property_contains_needs_an_array():
    rules = one_rule({"kind": "event_property_contains", "key": "content.alias", "value": "#somewhere:localhost"})
    assert run(ALIASES, rules=rules) == []


@pytest.mark.parametrize("body, name, expected", [
    ("hello Me!", "Me", True),
    ("hello me", "Me", True),
    ("hello meme", "Me", False),
    ("ping [Bot] now", "[Bot]", True),  # regex characters in the name are literal
    ("hi", None, False),
    ("hi", "", False),
])
def test_contains_display_name(body, name, expected):
    rules = one_rule({"kind": "contains_display_name"})
    assert (run(msg(body), rules=rules, display_name=name) == ["notify"]) is expected


@pytest.mark.parametrize("spec, count, expected", [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<10", 9, True), ("<10", 10, False),
    ("<=10", 10, True), (">2", 3, True), (">2", 2, False), (">=2", 2, True), ("abc", 2, False),
    ("=2", 2, False), (2, 2, False),
])
def test_room_member_count(spec, count, expected):
    assert member_count_matches(spec, count) is expected


def test_unknown_condition_disables_rule():
    rules = one_rule({"kind": "org.example.unknown"})
    assert run(msg(), rules=rules) == []


def test_rule_without_conditions_always_matches():
    assert run(msg(), rules=one_rule()) == ["notify"]


def test_disabled_rules_never_match():
    rules = {"override": [{"rule_id": "r", "enabled": False, "conditions": [], "actions": ["notify"]}]}
    assert run(msg(), rules=rules) == []


def test_historical_actions_are_stripped():
    assert run(msg(), rules=one_rule(actions=["dont_notify"])) == []
    assert run(msg(), rules=one_rule(actions=["notify", "coalesce"])) == ["notify"]


def test_kind_priority_and_implied_conditions():
    user = {"content": [{"rule_id": "tea", "pattern": "tea", "actions": ["notify", {"set_tweak": "sound",
                                                                                    "value": "tea"}]}],
            "room": [{"rule_id": ROOM, "actions": []}],
            "sender": [{"rule_id": OTHER, "actions": ["notify", {"set_tweak": "highlight"}]}]}
    rs = merge_ruleset(ME, user)
    assert tweaks(run(msg("time for tea"), rules=rs)) == {"sound": "tea"}  # content before room
    assert run(msg("nothing"), rules=rs) == []  # room rule silences the room
    other_room = dict(msg("nothing"), room_id="!else:x")
    assert is_highlight(run(other_room, rules=rs))  # sender rule


def test_highlight_false_is_not_a_highlight():
    assert not is_highlight(["notify", {"set_tweak": "highlight", "value": False}])
    assert is_highlight(["notify", {"set_tweak": "highlight"}])


def test_exact_equal_type_strictness():
    assert exact_equal("a", "a") and exact_equal(None, None) and exact_equal(False, False)
    assert not exact_equal(0, False) and not exact_equal(1, True) and not exact_equal("1", 1)
    assert not exact_equal(2 ** 53, 2 ** 53)  # outside the canonical JSON range


# --- validation of PUT bodies ------------------------------------------------------------------

@pytest.mark.parametrize("kind, rule_id, body, errcode", [
    ("override", ".m.rule.mine", {"actions": []}, "M_INVALID_PARAM"),
    ("override", "a/b", {"actions": []}, "M_INVALID_PARAM"),
    ("override", "a\\b", {"actions": []}, "M_INVALID_PARAM"),
    ("bogus", "x", {"actions": []}, "M_INVALID_PARAM"),
    ("override", "x", {}, "M_MISSING_PARAM"),
    ("override", "x", {"actions": "notify"}, "M_BAD_JSON"),
    ("override", "x", {"actions": ["explode"]}, "M_BAD_JSON"),
    ("override", "x", {"actions": [{"value": 1}]}, "M_BAD_JSON"),
    ("override", "x", {"actions": [], "conditions": {}}, "M_BAD_JSON"),
    ("override", "x", {"actions": [], "conditions": [{"key": "type"}]}, "M_BAD_JSON"),
    ("content", "x", {"actions": []}, "M_MISSING_PARAM"),
    ("content", "x", {"actions": [], "pattern": 5}, "M_BAD_JSON"),
])
def test_invalid_rule_bodies(kind, rule_id, body, errcode):
    with pytest.raises(PushRuleError) as e:
        validate_rule(kind, rule_id, body)
    assert e.value.errcode == errcode


def test_valid_rule_bodies_are_normalised():
    assert validate_rule("room", ROOM, {"actions": ["notify"], "conditions": [{"kind": "x"}]}) == {
        "rule_id": ROOM, "actions": ["notify"]}
    assert validate_rule("content", "c", {"actions": [], "pattern": "cake*lie"}) == {
        "rule_id": "c", "actions": [], "pattern": "cake*lie"}
    assert validate_rule("underride", "u", {"actions": ["dont_notify"]}) == {
        "rule_id": "u", "actions": ["dont_notify"], "conditions": []}
