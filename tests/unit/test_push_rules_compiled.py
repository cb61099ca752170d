"""Compiled rulesets evaluating one event for many recipients with shared EventFacts give each
recipient exactly what a separate evaluation gives (modules/push.md)."""
import itertools

from homeserver.client.push_rules import (
    CompiledRuleset, EventFacts, evaluate, merge_ruleset,
)

ROOM = "!room:example.org"
USERS = [f"@u{i}:example.org" for i in range(6)]
NAMES = {USERS[1]: "Bob", USERS[2]: "bobby", USERS[3]: "Carol"}


def events():
    yield {"type": "m.room.message", "sender": USERS[0], "room_id": ROOM, "content": {"msgtype": "m.text",
           "body": "hi Bob and carol"}}
    yield {"type": "m.room.message", "sender": USERS[0], "room_id": ROOM, "content": {"msgtype": "m.notice",
           "body": "Bob"}}
    yield {"type": "m.room.member", "sender": USERS[0], "room_id": ROOM, "state_key": USERS[4],
           "content": {"membership": "invite"}}
    yield {"type": "m.room.message", "sender": USERS[0], "room_id": ROOM, "content": {
        "body": "x", "m.mentions": {"user_ids": [USERS[5], 1], "room": True}}}
    yield {"type": "m.room.encrypted", "sender": USERS[2], "room_id": ROOM, "content": {}}
    yield {"type": "m.room.message", "sender": USERS[1], "room_id": ROOM, "content": {
        "body": "edit", "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}}


def rulesets():
    own = {"override": [{"rule_id": "mine", "enabled": True, "actions": ["notify"],
                         "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room",
                                         "value": 1}]}],
           "content": [{"rule_id": "kw", "enabled": True, "actions": ["notify", {"set_tweak": "highlight"}],
                        "pattern": "car*"}],
           "sender": [{"rule_id": USERS[2], "enabled": True, "actions": ["dont_notify"]}]}
    for i, user in enumerate(USERS):
        yield user, merge_ruleset(user, own if i % 2 else {})


def test_shared_facts_give_every_recipient_its_own_answer():
    compiled = {user: (rules, CompiledRuleset(rules)) for user, rules in rulesets()}
    for event, count, pl in itertools.product(list(events()), (2, 6), (None, {"users": {USERS[0]: 100}})):
        facts = EventFacts(event, count, pl)
        for user, (rules, ruleset) in compiled.items():
            assert ruleset.evaluate(facts, user, NAMES.get(user)) == \
                evaluate(event, count, user, NAMES.get(user), pl, rules), (event, user)


def test_compiled_answers_match_the_spec_defaults():
    rules = merge_ruleset(USERS[4], {})
    ruleset = CompiledRuleset(rules)
    invite = list(events())[2]
    assert ruleset.evaluate(EventFacts(invite, 3, None), USERS[4], None) == \
        ["notify", {"set_tweak": "sound", "value": "default"}]
    others = CompiledRuleset(merge_ruleset(USERS[3], {}))
    assert others.evaluate(EventFacts(invite, 3, None), USERS[3], None) == []  # not for me: member_event
    mention = list(events())[3]
    assert CompiledRuleset(merge_ruleset(USERS[5], {})).evaluate(EventFacts(mention, 3, None), USERS[5], None) \
        == ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    # true is not 1: the user's own rule wanting room == 1 does not match room == true; the room
    # mention needs level 50 (the sender has 0): only .m.rule.message is left.
    own = dict(rulesets())[USERS[1]]
    facts = EventFacts(mention, 3, {"users": {USERS[0]: 0}})
    assert CompiledRuleset(own).evaluate(facts, USERS[1], None) == ["notify"]
    facts = EventFacts(mention, 3, {"users": {USERS[0]: 50}})
    assert CompiledRuleset(own).evaluate(facts, USERS[1], None) == ["notify", {"set_tweak": "highlight"}]


def test_rules_indexed_by_type_still_match_types_in_any_case_and_wildcards():
    ruleset = CompiledRuleset(merge_ruleset(USERS[1], {
        "underride": [{"rule_id": "any_call", "enabled": True, "actions": ["notify", {"set_tweak": "x"}],
                       "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.call.*"}]}]}))
    shouty = {"type": "M.Room.Message", "sender": USERS[0], "room_id": ROOM, "content": {"body": "x"}}
    assert ruleset.evaluate(EventFacts(shouty, 5, None), USERS[1], None) == ["notify"]
    hangup = {"type": "m.call.hangup", "sender": USERS[0], "room_id": ROOM, "content": {}}
    assert ruleset.evaluate(EventFacts(hangup, 5, None), USERS[1], None) == ["notify", {"set_tweak": "x"}]
    odd = {"type": 5, "sender": USERS[0], "room_id": ROOM, "content": {}}
    assert ruleset.evaluate(EventFacts(odd, 5, None), USERS[1], None) == []
