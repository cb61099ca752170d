"""Authorization rules of room versions 1–12 (homeserver/protocol/event_auth.py).

Each rule gets an allowed and a rejected event, parametrised over the room versions where the rule
applies (rooms/v1.md … v12.md). Rooms are built event by event through ``check_auth_rules`` itself,
so every fixture state was accepted by the rules under test.
"""
from __future__ import annotations

import math

import pytest

from homeserver.protocol import signing
from homeserver.protocol.event_auth import (
    AuthError,
    auth_types_for_event,
    check_against_auth_events,
    check_auth_events_list,
    check_auth_rules,
)
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import (
    get_creators,
    get_named_level,
    get_power_level_for_event,
    get_user_power_level,
)
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

ALICE = "@alice:a.test"   # creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:d.test"
EVE = "@eve:e.test"       # never in the room

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")


def versions(pred=lambda rv: True) -> list[str]:
    return [v for v, rv in KNOWN_ROOM_VERSIONS.items() if pred(rv)]


ALL = versions()
V1_5 = versions(lambda rv: rv.special_case_aliases_auth)
V6_UP = versions(lambda rv: not rv.special_case_aliases_auth)
BEFORE_KNOCK = versions(lambda rv: not rv.knock_join_rule)
KNOCK = versions(lambda rv: rv.knock_join_rule)
BEFORE_RESTRICTED = versions(lambda rv: not rv.restricted_join_rule)
RESTRICTED = versions(lambda rv: rv.restricted_join_rule)
BEFORE_KNOCK_RESTRICTED = versions(lambda rv: not rv.knock_restricted_join_rule)
KNOCK_RESTRICTED = versions(lambda rv: rv.knock_restricted_join_rule)
STRINGY = versions(lambda rv: not rv.enforce_int_power_levels)
INT_ONLY = versions(lambda rv: rv.enforce_int_power_levels)
FLOATY = versions(lambda rv: not rv.strict_canonicaljson)
CANONICAL_BEFORE_V10 = versions(lambda rv: rv.strict_canonicaljson and not rv.enforce_int_power_levels)
EXPLICIT_CREATOR = versions(lambda rv: not rv.implicit_room_creator)
IMPLICIT_CREATOR = versions(lambda rv: rv.implicit_room_creator)
NOT_PRIVILEGED = versions(lambda rv: not rv.privileged_creators)
V12 = versions(lambda rv: rv.privileged_creators)
ROOM_ID_DOMAIN = versions(lambda rv: not rv.room_id_from_create_event)
DOMAIN_EVENT_IDS = versions(lambda rv: rv.event_id_has_server)
HASH_EVENT_IDS = versions(lambda rv: not rv.event_id_has_server)
NO_NOTIFICATIONS_CHECK = versions(lambda rv: not rv.limit_notifications_power_levels)
NOTIFICATIONS_CHECK = versions(lambda rv: rv.limit_notifications_power_levels)


class Room:
    """A room built through the auth rules: create, creator join, power levels, join rules."""

    def __init__(self, version: str, *, creator: str = ALICE, create_content: dict | None = None,
                 join_rule: str | None = "invite", power_levels: dict | None = None,
                 with_power_levels: bool = True, join_creator: bool = True):
        self.rv = KNOWN_ROOM_VERSIONS[version]
        self.state: dict[tuple[str, str], Event] = {}
        self.count = 0
        content = {} if self.rv.implicit_room_creator else {"creator": creator}
        content.update(create_content or {})
        self.room_id = None if self.rv.room_id_from_create_event else "!room:a.test"
        self.create = self.make("m.room.create", creator, content, state_key="", prev=[])
        self.room_id = self.create.room_id
        self.accept(self.create, {})
        if not join_creator:
            return
        self.accept(self.member(creator, creator, "join", prev=[self.create.event_id]))
        if with_power_levels:
            self.accept(self.make("m.room.power_levels", creator,
                                  power_levels if power_levels is not None else self.default_levels(),
                                  state_key=""))
        if join_rule is not None:
            self.accept(self.make("m.room.join_rules", creator, {"join_rule": join_rule}, state_key=""))

    def default_levels(self, **overrides) -> dict:
        users = {} if self.rv.privileged_creators else {ALICE: 100}
        content = {"ban": 50, "kick": 50, "invite": 0, "redact": 50, "state_default": 50,
                   "events_default": 0, "users_default": 0, "users": users,
                   "events": {"m.room.power_levels": 100}}
        content.update(overrides)
        return content

    def next_id(self, sender: str) -> str:
        self.count += 1
        if self.rv.event_id_has_server:
            return f"$e{self.count}:{sender.split(':', 1)[1]}"
        return f"$e{self.count}"

    def make(self, type_: str, sender: str, content: dict, *, state_key: str | None = None,
             prev: list[str] | None = None, event_id: str | None = None, **extra) -> Event:
        pdu = {"type": type_, "sender": sender, "content": content, "depth": self.count + 1,
               "origin_server_ts": 1000 + self.count, "auth_events": [], "hashes": {}, "signatures": {},
               "prev_events": prev if prev is not None else [f"$prev{self.count}"]}
        if self.room_id is not None:
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu.update(extra)
        event_id = event_id or self.next_id(sender)
        if self.rv.event_id_has_server:
            pdu["event_id"] = event_id
        return Event(pdu, self.rv, event_id=event_id)

    def member(self, sender: str, target: str, membership: str, content: dict | None = None,
               **kw) -> Event:
        body = {"membership": membership}
        body.update(content or {})
        return self.make("m.room.member", sender, body, state_key=target, **kw)

    def message(self, sender: str, **kw) -> Event:
        return self.make("m.room.message", sender, {"msgtype": "m.text", "body": "hi"}, **kw)

    def check(self, event: Event, **kw) -> None:
        check_auth_rules(event, self.state, **kw)

    def accept(self, event: Event, state=None, **kw) -> Event:
        check_auth_rules(event, self.state if state is None else state, **kw)
        if event.is_state():
            self.state[event.state_tuple] = event
        return event

    # --- shortcuts that go through the rules ------------------------------------------------
    def join(self, user: str) -> None:
        """Invite (by the creator) then join."""
        if self.membership(user) != "join":
            if self.membership(user) != "invite":
                self.accept(self.member(ALICE, user, "invite"))
            self.accept(self.member(user, user, "join"))

    def set_levels(self, sender: str = ALICE, **overrides) -> None:
        self.accept(self.make("m.room.power_levels", sender, self.levels_with(**overrides), state_key=""))

    def levels_with(self, users: dict | None = None, **overrides) -> dict:
        content = dict(self.state[PL].content)
        if users is not None:
            content["users"] = {**content.get("users", {}), **users}
        content.update(overrides)
        return content

    def set_join_rule(self, rule: str) -> None:
        self.accept(self.make("m.room.join_rules", ALICE, {"join_rule": rule}, state_key=""))

    def membership(self, user: str) -> str | None:
        ev = self.state.get(("m.room.member", user))
        return ev.content["membership"] if ev else None


def allowed(room: Room, event: Event, **kw) -> None:
    room.check(event, **kw)


def rejected(room: Room, event: Event, rule: str | None = None, **kw) -> AuthError:
    with pytest.raises(AuthError) as info:
        room.check(event, **kw)
    if rule is not None:
        assert f"rooms/v{room.rv.identifier}.md rule {rule}:" in str(info.value)
    return info.value


def by_version(version: str, v1: str, v6: str, v8: str, v12: str) -> str:
    """The number of a rule in the four numbering schemes: v1–v5 (aliases rule 4), v6–v7, v8–v11
    (restricted joins insert member rule .2), v12 (room-ID rule 2)."""
    n = int(version)
    return v1 if n <= 5 else v6 if n <= 7 else v8 if n <= 11 else v12


# ============================================================================================
# Rule 1: m.room.create
# ============================================================================================

def _create(version: str, content: dict | None = None, sender: str = ALICE, **extra) -> Event:
    rv = KNOWN_ROOM_VERSIONS[version]
    body = {} if rv.implicit_room_creator else {"creator": sender}
    body.update(content or {})
    pdu = {"type": "m.room.create", "state_key": "", "sender": sender, "content": body,
           "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": 1}
    if not rv.room_id_from_create_event:
        pdu["room_id"] = "!room:a.test"
    pdu.update(extra)
    eid = "$create:a.test" if rv.event_id_has_server else "$create"
    if rv.event_id_has_server:
        pdu["event_id"] = eid
    return Event(pdu, rv, event_id=eid)


@pytest.mark.parametrize("version", ALL)
def test_create_event_with_no_prev_events_is_allowed(version):
    check_auth_rules(_create(version), {})
    check_auth_rules(_create(version, {"room_version": version}), {})


@pytest.mark.parametrize("version", ALL)
def test_create_event_with_prev_events_is_rejected(version):
    with pytest.raises(AuthError, match=r"rule 1\.1:"):
        check_auth_rules(_create(version, prev_events=["$other"]), {})


@pytest.mark.parametrize("version", ROOM_ID_DOMAIN)
def test_create_event_room_id_must_be_on_senders_server(version):
    with pytest.raises(AuthError, match=r"rule 1\.2:"):
        check_auth_rules(_create(version, room_id="!room:b.test"), {})


@pytest.mark.parametrize("version", V12)
def test_v12_create_event_must_not_carry_a_room_id(version):
    with pytest.raises(AuthError, match=r"rule 1\.2:"):
        check_auth_rules(_create(version, room_id="!room:a.test"), {})


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("bad", ["99", 12, "v1"])
def test_create_event_with_unknown_room_version_is_rejected(version, bad):
    with pytest.raises(AuthError, match=r"rule 1\.3:"):
        check_auth_rules(_create(version, {"room_version": bad}), {})


@pytest.mark.parametrize("version", EXPLICIT_CREATOR)
def test_create_event_without_creator_is_rejected_before_v11(version):
    ev = _create(version)
    del ev.pdu["content"]["creator"]
    with pytest.raises(AuthError, match=r"rule 1\.4:"):
        check_auth_rules(ev, {})


@pytest.mark.parametrize("version", IMPLICIT_CREATOR)
def test_create_event_without_creator_is_allowed_from_v11(version):
    check_auth_rules(_create(version), {})


@pytest.mark.parametrize("version", V12)
def test_v12_additional_creators_must_be_user_ids(version):
    check_auth_rules(_create(version, {"additional_creators": [BOB, CAROL]}), {})
    check_auth_rules(_create(version, {"additional_creators": []}), {})
    for bad in ["@bob:b.test", [BOB, 5], [BOB, "bob"], [BOB, "@bob"], {"@bob:b.test": 1}]:
        with pytest.raises(AuthError, match=r"rule 1\.4:"):
            check_auth_rules(_create(version, {"additional_creators": bad}), {})


@pytest.mark.parametrize("version", NOT_PRIVILEGED)
def test_additional_creators_are_ignored_before_v12(version):
    check_auth_rules(_create(version, {"additional_creators": "nonsense"}), {})
    room = Room(version, create_content={"additional_creators": [BOB]})
    assert get_creators(room.create) == {ALICE}


# ============================================================================================
# Auth events selection and rules about the auth_events list (v1–v11 rule 2, v12 rules 2–3)
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_auth_types_for_a_message(version):
    room = Room(version)
    types = auth_types_for_event(room.rv, room.message(BOB))
    expected = {PL, ("m.room.member", BOB)}
    if not room.rv.room_id_from_create_event:
        expected.add(CREATE)
    assert types == expected
    assert auth_types_for_event(room.rv, room.create) == set()


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("membership,has_join_rules", [
    ("join", True), ("invite", True), ("knock", True), ("leave", False), ("ban", False)])
def test_auth_types_for_a_membership_event(version, membership, has_join_rules):
    room = Room(version)
    types = auth_types_for_event(room.rv, room.member(ALICE, BOB, membership))
    assert ("m.room.member", BOB) in types and ("m.room.member", ALICE) in types
    assert (("m.room.join_rules", "") in types) == has_join_rules
    assert (CREATE in types) == (not room.rv.room_id_from_create_event)


@pytest.mark.parametrize("version", ALL)
def test_auth_types_for_a_third_party_invite_include_the_token_event(version):
    room = Room(version)
    ev = room.member(ALICE, BOB, "invite", {"third_party_invite": {"signed": {"token": "tok"}}})
    assert ("m.room.third_party_invite", "tok") in auth_types_for_event(room.rv, ev)


@pytest.mark.parametrize("version", ALL)
def test_auth_types_for_a_restricted_join_include_the_authorising_member_from_v8(version):
    room = Room(version)
    ev = room.member(BOB, BOB, "join", {"join_authorised_via_users_server": CAROL})
    assert (("m.room.member", CAROL) in auth_types_for_event(room.rv, ev)) == room.rv.restricted_join_rule


def _auth_events_for(room: Room, event: Event) -> list[Event]:
    return [room.state[k] for k in auth_types_for_event(room.rv, event) if k in room.state]


@pytest.mark.parametrize("version", ALL)
def test_selected_auth_events_are_accepted(version):
    room = Room(version)
    room.join(BOB)
    ev = room.message(BOB)
    check_auth_events_list(ev, _auth_events_for(room, ev), room.create)
    check_against_auth_events(ev, _auth_events_for(room, ev), room.create)


@pytest.mark.parametrize("version", ALL)
def test_duplicate_auth_event_types_are_rejected(version):
    room = Room(version)
    room.join(BOB)
    old_pl = room.state[PL]
    room.set_levels(users={BOB: 10})
    ev = room.message(BOB)
    auth = _auth_events_for(room, ev) + [old_pl]
    n = "3" if room.rv.room_id_from_create_event else "2"
    with pytest.raises(AuthError, match=rf"rule {n}\.1:"):
        check_auth_events_list(ev, auth, room.create)


@pytest.mark.parametrize("version", ALL)
def test_auth_events_outside_the_selection_are_rejected(version):
    room = Room(version)
    room.join(BOB)
    ev = room.message(BOB)
    auth = _auth_events_for(room, ev) + [room.state[("m.room.join_rules", "")]]
    n = "3" if room.rv.room_id_from_create_event else "2"
    with pytest.raises(AuthError, match=rf"rule {n}\.2:"):
        check_auth_events_list(ev, auth, room.create)


@pytest.mark.parametrize("version", V12)
def test_v12_create_event_must_not_be_listed_in_auth_events(version):
    room = Room(version)
    ev = room.message(ALICE)
    with pytest.raises(AuthError, match=r"rule 3\.2:"):
        check_auth_events_list(ev, _auth_events_for(room, ev) + [room.create], room.create)


@pytest.mark.parametrize("version", ALL)
def test_rejected_auth_events_are_rejected(version):
    room = Room(version)
    room.join(BOB)
    ev = room.message(BOB)
    auth = _auth_events_for(room, ev)
    member = room.state[("m.room.member", BOB)]
    bad = Event(member.pdu, room.rv, event_id=member.event_id, rejected_reason="auth")
    auth = [bad if a is member else a for a in auth]
    n = "3" if room.rv.room_id_from_create_event else "2"
    with pytest.raises(AuthError, match=rf"rule {n}\.3:"):
        check_auth_events_list(ev, auth, room.create)


@pytest.mark.parametrize("version", ROOM_ID_DOMAIN)
def test_auth_events_without_create_event_are_rejected_before_v12(version):
    room = Room(version)
    ev = room.message(ALICE)
    auth = [a for a in _auth_events_for(room, ev) if a.type != "m.room.create"]
    with pytest.raises(AuthError, match=r"rule 2\.4:"):
        check_auth_events_list(ev, auth, room.create)


@pytest.mark.parametrize("version", ALL)
def test_auth_events_from_another_room_are_rejected(version):
    room = Room(version)
    ev = room.message(ALICE)
    auth = _auth_events_for(room, ev)
    pl = room.state[PL]
    foreign = Event(dict(pl.pdu, room_id="!elsewhere:a.test"), room.rv, event_id=pl.event_id)
    auth = [foreign if a is pl else a for a in auth]
    n = "3" if room.rv.room_id_from_create_event else "2"
    with pytest.raises(AuthError, match=rf"rule {n}\.5:"):
        check_auth_events_list(ev, auth, room.create)


@pytest.mark.parametrize("version", V12)
def test_v12_room_id_must_be_the_create_event_id(version):
    room = Room(version)
    ev = room.message(ALICE)
    auth = _auth_events_for(room, ev)
    check_auth_events_list(ev, auth, room.create)
    other_create = _create(version, {"m.federate": True})
    other_create = Event(other_create.pdu, room.rv, event_id="$othercreate")
    with pytest.raises(AuthError, match=r"rule 2:"):
        check_auth_events_list(ev, auth, other_create)
    with pytest.raises(AuthError, match=r"rule 2:"):
        check_auth_events_list(ev, auth, None)
    rejected_create = Event(room.create.pdu, room.rv, event_id=room.create.event_id, rejected_reason="x")
    with pytest.raises(AuthError, match=r"rule 2:"):
        check_auth_events_list(ev, auth, rejected_create)


@pytest.mark.parametrize("version", ALL)
def test_state_without_create_event_is_rejected(version):
    room = Room(version)
    state = {k: v for k, v in room.state.items() if k != CREATE}
    with pytest.raises(AuthError):
        check_auth_rules(room.message(ALICE), state)


# ============================================================================================
# m.federate (v1–v11 rule 3, v12 rule 4)
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_unfederated_room_rejects_remote_senders(version):
    room = Room(version, create_content={"m.federate": False}, join_rule="public")
    local = "@alice2:a.test"
    allowed(room, room.member(local, local, "join"))
    rule = "4" if room.rv.room_id_from_create_event else "3"
    rejected(room, room.member(BOB, BOB, "join"), rule)


@pytest.mark.parametrize("version", ALL)
def test_federated_room_accepts_remote_senders(version):
    room = Room(version, create_content={"m.federate": True}, join_rule="public")
    allowed(room, room.member(BOB, BOB, "join"))


# ============================================================================================
# m.room.aliases (v1–v5 rule 4)
# ============================================================================================

@pytest.mark.parametrize("version", V1_5)
def test_aliases_allowed_from_any_server_for_its_own_domain(version):
    room = Room(version)
    allowed(room, room.make("m.room.aliases", EVE, {"aliases": ["#x:e.test"]}, state_key="e.test"))


@pytest.mark.parametrize("version", V1_5)
def test_aliases_for_another_domain_are_rejected(version):
    room = Room(version)
    rejected(room, room.make("m.room.aliases", EVE, {"aliases": []}, state_key="a.test"), "4.2")


@pytest.mark.parametrize("version", V1_5)
def test_aliases_without_state_key_are_rejected(version):
    room = Room(version)
    rejected(room, room.make("m.room.aliases", EVE, {"aliases": []}), "4.1")


@pytest.mark.parametrize("version", V6_UP)
def test_aliases_follow_the_normal_rules_from_v6(version):
    room = Room(version)
    rejected(room, room.make("m.room.aliases", EVE, {"aliases": []}, state_key="e.test"),
             by_version(version, "-", "5", "5", "6"))
    room.join(BOB)  # joined, but state_default 50 applies
    rejected(room, room.make("m.room.aliases", BOB, {"aliases": []}, state_key="b.test"),
             by_version(version, "-", "7", "7", "8"))


# ============================================================================================
# m.room.member: general, join
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_member_event_without_membership_or_state_key_is_rejected(version):
    room = Room(version, join_rule="public")
    m = by_version(version, "5", "4", "4", "5")
    rejected(room, room.make("m.room.member", BOB, {}, state_key=BOB), f"{m}.1")
    rejected(room, room.make("m.room.member", BOB, {"membership": "join"}), f"{m}.1")


@pytest.mark.parametrize("version", ALL)
def test_creator_first_join_after_create_is_allowed_only_for_the_creator(version):
    room = Room(version, with_power_levels=False, join_rule=None)
    # Room() already accepted ALICE's first join; a stranger cannot use the same shortcut.
    ev = room.member(BOB, BOB, "join", prev=[room.create.event_id])
    rejected(room, ev, by_version(version, "5.2.6", "4.2.6", "4.3.7", "5.3.7"))


@pytest.mark.parametrize("version", EXPLICIT_CREATOR)
def test_first_join_uses_content_creator_before_v11(version):
    room = Room(version, creator=ALICE, create_content={"creator": BOB}, join_creator=False)
    assert get_creators(room.create) == {BOB}
    rejected(room, room.member(ALICE, ALICE, "join", prev=[room.create.event_id]))
    allowed(room, room.member(BOB, BOB, "join", prev=[room.create.event_id]))


@pytest.mark.parametrize("version", IMPLICIT_CREATOR)
def test_first_join_uses_create_sender_from_v11(version):
    room = Room(version, with_power_levels=False, join_rule=None, create_content={"creator": BOB})
    rejected(room, room.member(BOB, BOB, "join", prev=[room.create.event_id]))
    assert BOB not in get_creators(room.create)


@pytest.mark.parametrize("version", ALL)
def test_join_for_someone_else_is_rejected(version):
    room = Room(version, join_rule="public")
    rejected(room, room.member(ALICE, BOB, "join"), by_version(version, "5.2.2", "4.2.2", "4.3.2", "5.3.2"))


@pytest.mark.parametrize("version", ALL)
def test_banned_user_cannot_rejoin(version):
    room = Room(version, join_rule="public")
    room.accept(room.member(ALICE, BOB, "ban"))
    rejected(room, room.member(BOB, BOB, "join"), by_version(version, "5.2.3", "4.2.3", "4.3.3", "5.3.3"))


@pytest.mark.parametrize("version", ALL)
def test_public_room_can_be_joined_by_anyone(version):
    room = Room(version, join_rule="public")
    allowed(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", ALL)
def test_invite_only_room_needs_an_invite_to_join(version):
    room = Room(version, join_rule="invite")
    rejected(room, room.member(BOB, BOB, "join"), by_version(version, "5.2.6", "4.2.6", "4.3.7", "5.3.7"))
    room.accept(room.member(ALICE, BOB, "invite"))
    allowed(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", ALL)
def test_joined_user_may_send_join_again(version):
    room = Room(version, join_rule="invite")
    room.join(BOB)
    allowed(room, room.member(BOB, BOB, "join", {"displayname": "Bob"}))


@pytest.mark.parametrize("version", ALL)
def test_room_without_join_rules_behaves_as_invite_only(version):
    room = Room(version, join_rule=None)
    rejected(room, room.member(BOB, BOB, "join"))
    room.accept(room.member(ALICE, BOB, "invite"))
    allowed(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", ALL)
def test_private_join_rule_allows_no_join(version):
    room = Room(version, join_rule="private")
    rejected(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", KNOCK)
def test_knock_room_can_be_joined_with_an_invite_from_v7(version):
    room = Room(version, join_rule="knock")
    rejected(room, room.member(BOB, BOB, "join"))
    room.accept(room.member(ALICE, BOB, "invite"))
    allowed(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", BEFORE_KNOCK)
def test_knock_join_rule_is_unknown_before_v7(version):
    room = Room(version, join_rule="knock")
    room.accept(room.member(ALICE, BOB, "invite"))
    rejected(room, room.member(BOB, BOB, "join"), by_version(version, "5.2.6", "4.2.6", "-", "-"))


# --- restricted and knock_restricted joins (v8+, v10+) --------------------------------------

def _restricted_room(version: str, rule: str = "restricted") -> Room:
    room = Room(version, join_rule="invite")
    room.join(CAROL)
    room.set_join_rule(rule)
    return room


def _via(user: str) -> dict:
    return {"join_authorised_via_users_server": user}


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_authorised_by_a_joined_inviter_is_allowed(version):
    room = _restricted_room(version)
    allowed(room, room.member(BOB, BOB, "join", _via(CAROL)))
    allowed(room, room.member(BOB, BOB, "join", _via(ALICE)))


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_without_authorising_user_is_rejected(version):
    room = _restricted_room(version)
    rule = by_version(version, "-", "-", "4.3.5.2", "5.3.5.2")
    rejected(room, room.member(BOB, BOB, "join"), rule)
    rejected(room, room.member(BOB, BOB, "join", _via(DAVE)), rule)  # not joined


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_authorised_by_user_who_cannot_invite_is_rejected(version):
    room = _restricted_room(version)
    room.set_levels(invite=50)
    rejected(room, room.member(BOB, BOB, "join", _via(CAROL)),
             by_version(version, "-", "-", "4.3.5.2", "5.3.5.2"))
    allowed(room, room.member(BOB, BOB, "join", _via(ALICE)))


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_room_can_be_joined_with_an_invite(version):
    room = _restricted_room(version)
    room.accept(room.member(ALICE, BOB, "invite"))
    allowed(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", BEFORE_RESTRICTED)
def test_restricted_join_rule_is_unknown_before_v8(version):
    room = _restricted_room(version)
    rejected(room, room.member(BOB, BOB, "join", _via(CAROL)), by_version(version, "5.2.6", "4.2.6", "-", "-"))


@pytest.mark.parametrize("version", KNOCK_RESTRICTED)
def test_knock_restricted_room_allows_authorised_joins_from_v10(version):
    room = _restricted_room(version, "knock_restricted")
    allowed(room, room.member(BOB, BOB, "join", _via(CAROL)))
    rejected(room, room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("version", BEFORE_KNOCK_RESTRICTED)
def test_knock_restricted_join_rule_is_unknown_before_v10(version):
    room = _restricted_room(version, "knock_restricted")
    rejected(room, room.member(BOB, BOB, "join", _via(CAROL)))


@pytest.mark.parametrize("version", RESTRICTED)
def test_authorising_server_must_have_signed_the_join(version):
    room = _restricted_room(version)
    seen = []

    def checker(event, server_name):
        seen.append(server_name)
        return server_name == "c.test"

    allowed(room, room.member(BOB, BOB, "join", _via(CAROL)), signature_checker=checker)
    assert seen == ["c.test"]
    rejected(room, room.member(BOB, BOB, "join", _via(CAROL)), by_version(version, "-", "-", "4.2.1", "5.2.1"),
             signature_checker=lambda e, s: False)
    # The rule applies to any membership carrying the key, before the membership branches.
    room.join(BOB)
    rejected(room, room.member(BOB, BOB, "leave", _via(CAROL)), signature_checker=lambda e, s: False)
    # None: signatures verified upstream.
    allowed(room, room.member(BOB, BOB, "leave", _via(CAROL)), signature_checker=None)


@pytest.mark.parametrize("version", BEFORE_RESTRICTED)
def test_join_authorised_via_users_server_is_ignored_before_v8(version):
    room = Room(version, join_rule="public")
    allowed(room, room.member(BOB, BOB, "join", _via(CAROL)), signature_checker=lambda e, s: False)


# ============================================================================================
# m.room.member: invite (incl. third-party invites)
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_joined_member_with_invite_level_can_invite(version):
    room = Room(version)
    room.join(BOB)
    allowed(room, room.member(BOB, CAROL, "invite"))


@pytest.mark.parametrize("version", ALL)
def test_invite_from_non_member_is_rejected(version):
    room = Room(version)
    rejected(room, room.member(EVE, CAROL, "invite"), by_version(version, "5.3.2", "4.3.2", "4.4.2", "5.4.2"))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("target_state", ["join", "ban"])
def test_invite_of_joined_or_banned_user_is_rejected(version, target_state):
    room = Room(version)
    room.join(BOB)
    if target_state == "ban":
        room.accept(room.member(ALICE, BOB, "ban"))
    rejected(room, room.member(ALICE, BOB, "invite"), by_version(version, "5.3.3", "4.3.3", "4.4.3", "5.4.3"))


@pytest.mark.parametrize("version", ALL)
def test_invite_below_invite_level_is_rejected(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(invite=50)
    rejected(room, room.member(BOB, CAROL, "invite"), by_version(version, "5.3.5", "4.3.5", "4.4.5", "5.4.5"))
    allowed(room, room.member(ALICE, CAROL, "invite"))


IS_KEY = signing.generate_signing_key("0")


def _third_party_room(version: str, key_field: str = "public_key") -> Room:
    room = Room(version)
    room.join(BOB)
    content = {"display_name": "c...@example.org", "key_validity_url": "https://id.test/isvalid"}
    if key_field == "public_key":
        content["public_key"] = signing.verify_key_base64(IS_KEY)
    else:
        content["public_key"] = "not-the-right-key"
        content["public_keys"] = [{"public_key": "AAAA"},
                                  {"public_key": signing.verify_key_base64(IS_KEY)}]
    room.accept(room.make("m.room.third_party_invite", BOB, content, state_key="tok"))
    return room


def _third_party_invite(room: Room, sender: str = BOB, target: str = CAROL, *, mxid: str | None = None,
                        token: str = "tok", key=IS_KEY, signed: dict | None = None) -> Event:
    if signed is None:
        signed = signing.sign_json({"mxid": mxid or target, "token": token, "sender": sender},
                                   "id.test", key)
    return room.member(sender, target, "invite",
                       {"third_party_invite": {"display_name": "c...", "signed": signed}})


def _tpi_rule(version: str, sub: str) -> str:
    return by_version(version, "5.3.1.", "4.3.1.", "4.4.1.", "5.4.1.") + sub


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("key_field", ["public_key", "public_keys"])
def test_third_party_invite_signed_by_the_identity_server_is_allowed(version, key_field):
    room = _third_party_room(version, key_field)
    allowed(room, _third_party_invite(room))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_with_wrong_signature_is_rejected(version):
    room = _third_party_room(version)
    rejected(room, _third_party_invite(room, key=signing.generate_signing_key("0")), _tpi_rule(version, "8"))
    signed = signing.sign_json({"mxid": CAROL, "token": "tok"}, "id.test", IS_KEY)
    signed["mxid"] = CAROL  # unchanged, but tamper with another field
    signed["extra"] = 1
    rejected(room, _third_party_invite(room, signed=signed), _tpi_rule(version, "8"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_of_banned_user_is_rejected(version):
    room = _third_party_room(version)
    room.accept(room.member(ALICE, CAROL, "ban"))
    rejected(room, _third_party_invite(room), _tpi_rule(version, "1"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_needs_signed_mxid_and_token(version):
    room = _third_party_room(version)
    rejected(room, room.member(BOB, CAROL, "invite", {"third_party_invite": {}}), _tpi_rule(version, "2"))
    rejected(room, _third_party_invite(room, signed={"mxid": CAROL}), _tpi_rule(version, "3"))
    rejected(room, _third_party_invite(room, signed={"token": "tok"}), _tpi_rule(version, "3"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_mxid_must_match_state_key(version):
    room = _third_party_room(version)
    rejected(room, _third_party_invite(room, mxid=DAVE), _tpi_rule(version, "4"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_needs_the_matching_token_event(version):
    room = _third_party_room(version)
    rejected(room, _third_party_invite(room, token="other"), _tpi_rule(version, "5"))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_must_come_from_the_token_events_sender(version):
    room = _third_party_room(version)
    rejected(room, _third_party_invite(room, sender=ALICE), _tpi_rule(version, "6"))


# ============================================================================================
# m.room.member: leave (incl. kick, unban), ban
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("start", ["join", "invite"])
def test_user_can_leave_when_joined_or_invited(version, start):
    room = Room(version)
    room.join(BOB) if start == "join" else room.accept(room.member(ALICE, BOB, "invite"))
    allowed(room, room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("start", [None, "leave", "ban"])
def test_user_cannot_leave_when_not_in_the_room(version, start):
    room = Room(version)
    if start == "leave":
        room.join(BOB)
        room.accept(room.member(BOB, BOB, "leave"))
    elif start == "ban":
        room.accept(room.member(ALICE, BOB, "ban"))
    rejected(room, room.member(BOB, BOB, "leave"), by_version(version, "5.4.1", "4.4.1", "4.5.1", "5.5.1"))


@pytest.mark.parametrize("version", KNOCK)
def test_user_can_rescind_a_knock_from_v7(version):
    room = Room(version, join_rule="knock")
    room.accept(room.member(BOB, BOB, "knock"))
    allowed(room, room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("version", ALL)
def test_kick_needs_kick_level_and_higher_level_than_target(version):
    room = Room(version)
    room.join(BOB)
    room.join(CAROL)
    allowed(room, room.member(ALICE, BOB, "leave"))
    rejected(room, room.member(CAROL, BOB, "leave"), by_version(version, "5.4.5", "4.4.5", "4.5.5", "5.5.5"))
    room.set_levels(users={BOB: 50, CAROL: 50})
    rejected(room, room.member(CAROL, BOB, "leave"), by_version(version, "5.4.5", "4.4.5", "4.5.5", "5.5.5"))
    room.set_levels(users={CAROL: 60})
    allowed(room, room.member(CAROL, BOB, "leave"))


@pytest.mark.parametrize("version", ALL)
def test_kick_by_non_member_is_rejected(version):
    room = Room(version)
    room.join(BOB)
    rejected(room, room.member(EVE, BOB, "leave"), by_version(version, "5.4.2", "4.4.2", "4.5.2", "5.5.2"))


@pytest.mark.parametrize("version", ALL)
def test_unban_needs_the_ban_level(version):
    room = Room(version)
    room.join(CAROL)
    room.accept(room.member(ALICE, BOB, "ban"))
    room.set_levels(users={CAROL: 50}, ban=60, kick=50)
    rejected(room, room.member(CAROL, BOB, "leave"), by_version(version, "5.4.3", "4.4.3", "4.5.3", "5.5.3"))
    allowed(room, room.member(ALICE, BOB, "leave"))


@pytest.mark.parametrize("version", ALL)
def test_ban_needs_ban_level_and_higher_level_than_target(version):
    room = Room(version)
    room.join(BOB)
    room.join(CAROL)
    allowed(room, room.member(ALICE, BOB, "ban"))
    allowed(room, room.member(ALICE, EVE, "ban"))  # pre-emptive ban of a stranger
    rule = by_version(version, "5.5.3", "4.5.3", "4.6.3", "5.6.3")
    rejected(room, room.member(CAROL, BOB, "ban"), rule)
    room.set_levels(users={BOB: 50, CAROL: 50})
    rejected(room, room.member(CAROL, BOB, "ban"), rule)


@pytest.mark.parametrize("version", ALL)
def test_ban_by_non_member_is_rejected(version):
    room = Room(version)
    rejected(room, room.member(EVE, BOB, "ban"), by_version(version, "5.5.1", "4.5.1", "4.6.1", "5.6.1"))


# ============================================================================================
# m.room.member: knock, unknown memberships
# ============================================================================================

@pytest.mark.parametrize("version", KNOCK)
def test_knock_is_allowed_in_knock_rooms_from_v7(version):
    room = Room(version, join_rule="knock")
    allowed(room, room.member(BOB, BOB, "knock"))


@pytest.mark.parametrize("version", BEFORE_KNOCK)
def test_knock_membership_is_unknown_before_v7(version):
    room = Room(version, join_rule="knock")
    rejected(room, room.member(BOB, BOB, "knock"), by_version(version, "5.6", "4.6", "-", "-"))


@pytest.mark.parametrize("version", KNOCK)
@pytest.mark.parametrize("rule", ["invite", "public", "restricted"])
def test_knock_in_rooms_without_knock_join_rule_is_rejected(version, rule):
    room = Room(version, join_rule=rule)
    rejected(room, room.member(BOB, BOB, "knock"), by_version(version, "-", "4.6.1", "4.7.1", "5.7.1"))


@pytest.mark.parametrize("version", KNOCK_RESTRICTED)
def test_knock_is_allowed_in_knock_restricted_rooms_from_v10(version):
    room = Room(version, join_rule="knock_restricted")
    allowed(room, room.member(BOB, BOB, "knock"))


@pytest.mark.parametrize("version", versions(lambda rv: rv.knock_join_rule and not rv.knock_restricted_join_rule))
def test_knock_in_knock_restricted_rooms_is_rejected_before_v10(version):
    room = Room(version, join_rule="knock_restricted")
    rejected(room, room.member(BOB, BOB, "knock"))


@pytest.mark.parametrize("version", KNOCK)
def test_knock_for_someone_else_is_rejected(version):
    room = Room(version, join_rule="knock")
    room.join(BOB)
    rejected(room, room.member(BOB, CAROL, "knock"), by_version(version, "-", "4.6.2", "4.7.2", "5.7.2"))


@pytest.mark.parametrize("version", KNOCK)
@pytest.mark.parametrize("start", ["ban", "invite", "join"])
def test_banned_invited_or_joined_users_cannot_knock(version, start):
    room = Room(version, join_rule="knock")
    if start == "ban":
        room.accept(room.member(ALICE, BOB, "ban"))
    elif start == "invite":
        room.accept(room.member(ALICE, BOB, "invite"))
    else:
        room.join(BOB)
    rejected(room, room.member(BOB, BOB, "knock"), by_version(version, "-", "4.6.4", "4.7.4", "5.7.4"))


@pytest.mark.parametrize("version", ALL)
def test_unknown_membership_is_rejected(version):
    room = Room(version, join_rule="public")
    rejected(room, room.member(BOB, BOB, "dance"), by_version(version, "5.6", "4.6" if version == "6" else "4.7",
                                                              "4.8", "5.8"))


# ============================================================================================
# Sender must be joined; m.room.third_party_invite; required power level; @-state keys
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_message_from_non_member_is_rejected(version):
    room = Room(version)
    rule = by_version(version, "6", "5", "5", "6")
    rejected(room, room.message(BOB), rule)
    room.accept(room.member(ALICE, BOB, "invite"))
    rejected(room, room.message(BOB), rule)
    room.accept(room.member(BOB, BOB, "join"))
    allowed(room, room.message(BOB))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_event_needs_invite_level(version):
    room = Room(version)
    room.join(BOB)
    ev = room.make("m.room.third_party_invite", BOB, {"public_key": "x"}, state_key="tok")
    allowed(room, ev)
    room.set_levels(invite=10)
    rejected(room, ev, by_version(version, "7.1", "6.1", "6.1", "7.1"))


@pytest.mark.parametrize("version", ALL)
def test_state_event_below_state_default_is_rejected(version):
    room = Room(version)
    room.join(BOB)
    topic = room.make("m.room.topic", BOB, {"topic": "x"}, state_key="")
    rejected(room, topic, by_version(version, "8", "7", "7", "8"))
    allowed(room, room.make("m.room.topic", ALICE, {"topic": "x"}, state_key=""))
    room.set_levels(events={"m.room.topic": 0, "m.room.power_levels": 100})
    allowed(room, topic)


@pytest.mark.parametrize("version", ALL)
def test_message_event_type_level_is_enforced(version):
    room = Room(version)
    room.join(BOB)
    allowed(room, room.message(BOB))
    room.set_levels(events={"m.room.message": 20, "m.room.power_levels": 100})
    rejected(room, room.message(BOB), by_version(version, "8", "7", "7", "8"))
    room.set_levels(events_default=10, events={"m.room.power_levels": 100})
    rejected(room, room.message(BOB))


@pytest.mark.parametrize("version", ALL)
def test_state_key_naming_another_user_is_rejected(version):
    room = Room(version)
    room.join(BOB)
    allowed(room, room.make("org.example.profile", ALICE, {}, state_key=ALICE))
    rejected(room, room.make("org.example.profile", ALICE, {}, state_key=BOB), by_version(version, "9", "8", "8", "9"))


# ============================================================================================
# m.room.power_levels
# ============================================================================================

def _pl(room: Room, sender: str = ALICE, **content) -> Event:
    return room.make("m.room.power_levels", sender, content, state_key="")


def _pl_rule(version: str, v1_9: str, v10_11: str, v12: str) -> str:
    n = int(version)
    top = "10" if n <= 5 or n == 12 else "9"
    return f"{top}.{v1_9 if n <= 9 else v10_11 if n <= 11 else v12}"


@pytest.mark.parametrize("version", ALL)
def test_first_power_levels_event_is_allowed(version):
    room = Room(version, with_power_levels=False)
    allowed(room, _pl(room, users={BOB: 100}, ban=100))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("users", [{"bob": 10}, {"@bob": 10}, {BOB: None}, {BOB: "ten"}, {BOB: True}, ["x"]])
def test_power_levels_users_must_map_user_ids_to_integers(version, users):
    room = Room(version, with_power_levels=False)
    rejected(room, _pl(room, users=users), _pl_rule(version, "1", "3", "3"))


@pytest.mark.parametrize("version", STRINGY)
def test_power_levels_accept_integer_strings_before_v10(version):
    room = Room(version, with_power_levels=False)
    room.accept(_pl(room, users={ALICE: "100", BOB: " +050 "}, ban="60", events={"m.room.topic": "20"}))
    assert get_user_power_level(BOB, room.state) == 50
    assert get_named_level(room.state, "ban", 50) == 60
    assert get_power_level_for_event("m.room.topic", room.state, True) == 20
    rejected(room, _pl(room, users={ALICE: "100", BOB: "5.5"}))


@pytest.mark.parametrize("version", INT_ONLY)
def test_power_levels_must_be_integers_from_v10(version):
    room = Room(version, with_power_levels=False)
    rejected(room, _pl(room, ban="50"), _pl_rule(version, "-", "1", "1"))
    rejected(room, _pl(room, events={"m.room.topic": "50"}), _pl_rule(version, "-", "2", "2"))
    rejected(room, _pl(room, notifications={"room": "50"}), _pl_rule(version, "-", "2", "2"))
    rejected(room, _pl(room, events=["m.room.topic"]), _pl_rule(version, "-", "2", "2"))
    rejected(room, _pl(room, users={BOB: "50"}), _pl_rule(version, "-", "3", "3"))
    allowed(room, _pl(room, ban=50, events={"m.room.topic": 50}, notifications={"room": 50}, users={BOB: 50}))


@pytest.mark.parametrize("version", FLOATY)
def test_power_levels_floats_are_truncated_in_v1_to_v5(version):
    room = Room(version, with_power_levels=False)
    room.accept(_pl(room, users={ALICE: 100, BOB: 50.57}))
    assert get_user_power_level(BOB, room.state) == 50
    rejected(room, _pl(room, users={ALICE: 100, BOB: float("inf")}))


@pytest.mark.parametrize("version", CANONICAL_BEFORE_V10)
def test_power_levels_floats_are_not_levels_from_v6(version):
    room = Room(version, with_power_levels=False)
    rejected(room, _pl(room, users={ALICE: 100, BOB: 50.5}))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_change_needs_power_levels_event_level(version):
    room = Room(version)
    room.join(BOB)
    rejected(room, _pl(room, BOB, **room.levels_with(ban=40)), by_version(version, "8", "7", "7", "8"))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_cannot_raise_a_level_above_the_sender(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50})
    rule = _pl_rule(version, "3.2", "5.2", "6.2")
    rejected(room, _pl(room, BOB, **room.levels_with(ban=70)), rule)
    allowed(room, _pl(room, BOB, **room.levels_with(ban=60)))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_cannot_change_a_level_above_the_sender(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50}, kick=80)
    rejected(room, _pl(room, BOB, **room.levels_with(kick=10)), _pl_rule(version, "3.1", "5.1", "6.1"))
    removed = room.levels_with()
    del removed["kick"]
    rejected(room, _pl(room, BOB, **removed), _pl_rule(version, "3.1", "5.1", "6.1"))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_events_entries_are_limited_by_sender_level(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50, "m.room.tombstone": 100})
    # removing or changing an entry above the sender's level
    rejected(room, _pl(room, BOB, **room.levels_with(events={"m.room.power_levels": 50})),
             _pl_rule(version, "4.1", "6.1", "7.1"))
    # adding or raising an entry above the sender's level
    rejected(room, _pl(room, BOB, **room.levels_with(
        events={"m.room.power_levels": 50, "m.room.tombstone": 100, "m.room.topic": 61})),
        _pl_rule(version, "5.1", "7.1", "8.1"))
    allowed(room, _pl(room, BOB, **room.levels_with(
        events={"m.room.power_levels": 50, "m.room.tombstone": 100, "m.room.topic": 60})))


@pytest.mark.parametrize("version", NOTIFICATIONS_CHECK)
def test_power_levels_notifications_are_limited_from_v6(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50}, notifications={"room": 100})
    rejected(room, _pl(room, BOB, **room.levels_with(notifications={"room": 10})),
             _pl_rule(version, "4.1", "6.1", "7.1"))
    rejected(room, _pl(room, BOB, **room.levels_with(notifications={"room": 100, "other": 70})),
             _pl_rule(version, "5.1", "7.1", "8.1"))


@pytest.mark.parametrize("version", NO_NOTIFICATIONS_CHECK)
def test_power_levels_notifications_are_unchecked_before_v6(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50}, notifications={"room": 100})
    allowed(room, _pl(room, BOB, **room.levels_with(notifications={"room": 10, "other": 70})))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_users_cannot_demote_peers_but_can_demote_themselves(version):
    room = Room(version)
    room.join(BOB)
    room.join(CAROL)
    room.set_levels(users={BOB: 60, CAROL: 60}, events={"m.room.power_levels": 50})
    rejected(room, _pl(room, BOB, **room.levels_with(users={CAROL: 0})), _pl_rule(version, "6.1", "8.1", "9.1"))
    allowed(room, _pl(room, BOB, **room.levels_with(users={BOB: 10})))
    no_carol = room.levels_with()
    no_carol["users"] = {k: v for k, v in no_carol["users"].items() if k != CAROL}
    rejected(room, _pl(room, BOB, **no_carol), _pl_rule(version, "6.1", "8.1", "9.1"))


@pytest.mark.parametrize("version", ALL)
def test_power_levels_users_cannot_be_raised_above_the_sender(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50})
    rejected(room, _pl(room, BOB, **room.levels_with(users={CAROL: 61})), _pl_rule(version, "7.1", "9.1", "10.1"))
    rejected(room, _pl(room, BOB, **room.levels_with(users={BOB: 61})), _pl_rule(version, "7.1", "9.1", "10.1"))
    allowed(room, _pl(room, BOB, **room.levels_with(users={CAROL: 60})))


@pytest.mark.parametrize("version", STRINGY)
def test_power_levels_string_and_integer_of_same_value_is_no_change(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 60}, events={"m.room.power_levels": 50}, kick=80)
    allowed(room, _pl(room, BOB, **room.levels_with(kick="80", users={ALICE: "100"})))


# --- v12 creators ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", V12)
def test_v12_power_levels_cannot_list_creators(version):
    room = Room(version, create_content={"additional_creators": [CAROL]}, with_power_levels=False)
    rejected(room, _pl(room, users={ALICE: 100}), "10.4")
    rejected(room, _pl(room, users={CAROL: 100}), "10.4")
    allowed(room, _pl(room, users={BOB: 100}))


@pytest.mark.parametrize("version", V12)
def test_v12_creators_have_infinite_power(version):
    room = Room(version, create_content={"additional_creators": [CAROL]})
    assert get_creators(room.create) == {ALICE, CAROL}
    assert get_user_power_level(ALICE, room.state) == math.inf
    assert get_user_power_level(CAROL, room.state) == math.inf
    room.join(BOB)
    room.join(CAROL)
    room.set_levels(users={BOB: 2 ** 53 - 1})
    # nobody outranks a creator: no kick, ban or demotion
    rejected(room, room.member(BOB, ALICE, "ban"))
    rejected(room, room.member(BOB, CAROL, "leave"))
    # creators outrank everyone
    allowed(room, room.member(CAROL, BOB, "ban"))
    allowed(room, _pl(room, CAROL, **room.levels_with(users={BOB: 0})))


@pytest.mark.parametrize("version", V12)
def test_v12_creators_have_infinite_power_without_power_levels(version):
    room = Room(version, with_power_levels=False)
    assert get_user_power_level(ALICE, room.state) == math.inf
    assert get_user_power_level(BOB, room.state) == 0


@pytest.mark.parametrize("version", NOT_PRIVILEGED)
def test_creator_has_level_100_without_power_levels_before_v12(version):
    room = Room(version, with_power_levels=False, create_content={"additional_creators": [CAROL]})
    assert get_user_power_level(ALICE, room.state) == 100
    assert get_user_power_level(CAROL, room.state) == 0
    room.join(BOB)
    rejected(room, room.make("m.room.topic", BOB, {"topic": "x"}, state_key=""))
    allowed(room, room.make("m.room.topic", ALICE, {"topic": "x"}, state_key=""))


@pytest.mark.parametrize("version", NOT_PRIVILEGED)
def test_creator_is_an_ordinary_peer_once_power_levels_exist_before_v12(version):
    room = Room(version)
    room.join(BOB)
    room.set_levels(users={BOB: 100})
    rejected(room, room.member(BOB, ALICE, "ban"))
    rejected(room, _pl(room, BOB, **room.levels_with(users={ALICE: 0})), _pl_rule(version, "6.1", "8.1", "-"))
    room.set_levels(users={ALICE: 10})  # the creator can demote herself
    assert get_user_power_level(ALICE, room.state) == 10
    allowed(room, room.member(BOB, ALICE, "ban"))


# ============================================================================================
# m.room.redaction (v1–v2 rule 11; v3+ ordinary events)
# ============================================================================================

@pytest.mark.parametrize("version", DOMAIN_EVENT_IDS)
def test_v1_v2_redaction_of_same_server_event_is_allowed_below_redact_level(version):
    room = Room(version)
    room.join(BOB)
    allowed(room, room.make("m.room.redaction", BOB, {}, redacts="$abc:b.test"))


@pytest.mark.parametrize("version", DOMAIN_EVENT_IDS)
def test_v1_v2_redaction_of_other_server_event_needs_redact_level(version):
    room = Room(version)
    room.join(BOB)
    rejected(room, room.make("m.room.redaction", BOB, {}, redacts="$abc:a.test"), "11.3")
    allowed(room, room.make("m.room.redaction", ALICE, {}, redacts="$abc:b.test"))


@pytest.mark.parametrize("version", HASH_EVENT_IDS)
def test_redaction_is_an_ordinary_event_from_v3(version):
    room = Room(version)
    room.join(BOB)
    content = {"redacts": "$abc"} if room.rv.redacts_in_content else {}
    extra = {} if room.rv.redacts_in_content else {"redacts": "$abc"}
    allowed(room, room.make("m.room.redaction", BOB, content, **extra))
    room.set_levels(events={"m.room.redaction": 50, "m.room.power_levels": 100})
    rejected(room, room.make("m.room.redaction", BOB, content, **extra))


# ============================================================================================
# Helpers shared with the client API
# ============================================================================================

@pytest.mark.parametrize("version", ALL)
def test_default_levels_without_power_levels_event(version):
    room = Room(version, with_power_levels=False)
    assert get_power_level_for_event("m.room.topic", room.state, True) == 50
    assert get_power_level_for_event("m.room.message", room.state, False) == 0
    assert get_named_level(room.state, "kick", 50) == 50
    assert get_user_power_level(BOB, room.state) == 0


@pytest.mark.parametrize("version", ALL)
def test_levels_come_from_power_levels_event(version):
    room = Room(version)
    room.set_levels(users_default=5, state_default=40, events_default=3, invite=7)
    assert get_user_power_level(BOB, room.state) == 5
    assert get_power_level_for_event("m.room.topic", room.state, True) == 40
    assert get_power_level_for_event("m.room.message", room.state, False) == 3
    assert get_power_level_for_event("m.room.power_levels", room.state, True) == 100
    assert get_named_level(room.state, "invite", 0) == 7
    assert get_named_level(room.state, "missing", 42) == 42
