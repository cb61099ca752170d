"""Authorization rules for room versions 1–12 (pure, no I/O).

Sources: rooms/fragments/v1-auth-rules.md (v1, v2), rooms/fragments/v3-auth-rules.md (v3–v5),
rooms/v6.md, rooms/v7.md, rooms/fragments/v8-auth-rules.md (v8, v9), rooms/v10.md, rooms/v11.md,
rooms/v12.md ("Authorisation rules"); server-server-api.md "Auth events selection", "Checks performed
on receipt of a PDU", "Rejection" and "Soft failure".

The spec checks an event several times against different state (its auth events, the state before
it, the current state — the last giving "soft failure"); the caller picks the state, this module only
answers "allowed or not". Three entry points:

* :func:`check_auth_events_list` — the rules about the ``auth_events`` list itself (v1–v11 rule 2,
  v12 rules 2 and 3);
* :func:`check_auth_rules` — every state-dependent rule, against a ``(type, state_key) -> Event`` map
  that always holds the create event (the caller adds it in v12 too);
* :func:`auth_types_for_event` — the auth events selection algorithm.

Every rejection raises :class:`AuthError` whose message names the room version document and rule
number, e.g. ``"rooms/v12.md rule 5.3.3: sender is banned"``. The rule numbers differ between room
versions; :class:`_Rules` computes them from the room version's flags.
"""
from __future__ import annotations

from typing import Callable, Mapping

from . import ids, signing
from .events import Event
from .power_levels import (
    CREATE,
    DEFAULT_LEVELS,
    LEVEL_KEYS,
    POWER_LEVELS,
    get_creators,
    get_named_level,
    get_original_creator,
    get_power_level_for_event,
    get_user_power_level,
    parse_level,
)
from .room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth_events_list",
    "check_auth_rules",
    "check_against_auth_events",
    "auth_state_from_events",
    "get_user_power_level",
    "get_power_level_for_event",
    "get_creators",
    "get_named_level",
]

State = Mapping[tuple[str, str], Event]
SignatureChecker = Callable[[Event, str], bool]

MEMBER = "m.room.member"
JOIN_RULES = ("m.room.join_rules", "")
THIRD_PARTY_INVITE = "m.room.third_party_invite"


class AuthError(Exception):
    """An event fails the authorization rules; the message names the rule."""


# --- rule numbering -------------------------------------------------------------------------

class _Rules:
    """Rule numbers as printed in each room version's document.

    v1–v5 have the m.room.aliases rule (4) before the membership rules; v6–v11 drop it; v12 inserts
    the room-ID rule (2). v8 inserts the join_authorised_via_users_server signature rule (member .2)
    and the restricted join rule (join .5); v7 appends the knock rule; v10 inserts two
    type checks at the start of the power levels rules and v12 one more (.4).
    """

    def __init__(self, rv: RoomVersion):
        self.rv = rv
        self.doc = f"rooms/v{rv.identifier}.md"
        v12 = rv.room_id_from_create_event
        self.create = 1
        self.room_id = 2  # v12 only
        self.auth_events = 3 if v12 else 2
        self.federate = self.auth_events + 1
        self.aliases = self.federate + 1  # v1–v5 only
        self.member = self.federate + (2 if rv.special_case_aliases_auth else 1)
        self.joined = self.member + 1
        self.third_party_invite = self.member + 2
        self.required_level = self.member + 3
        self.state_key_user = self.member + 4
        self.power_levels = self.member + 5
        self.redaction = self.member + 6  # v1–v2 only
        r = 1 if rv.restricted_join_rule else 0
        self.m_join = 2 + r
        self.m_invite = 3 + r
        self.m_leave = 4 + r
        self.m_ban = 5 + r
        self.m_knock = 6 + r
        self.m_unknown = self.m_knock + (1 if rv.knock_join_rule else 0)
        self.j_public = 5 + r
        self.j_otherwise = 6 + r
        # power levels: offset of the "users" check (.1 in v1–v9, .3 from v10).
        self.pl_users = 3 if rv.enforce_int_power_levels else 1
        self.pl_base = self.pl_users + (1 if rv.privileged_creators else 0)

    def fail(self, number: str, why: str) -> AuthError:
        return AuthError(f"{self.doc} rule {number}: {why}")


def _err(rv: RoomVersion, number: str, why: str) -> AuthError:
    return _Rules(rv).fail(number, why)


# --- auth events selection ------------------------------------------------------------------

def auth_types_for_event(room_version: RoomVersion, event: Event) -> set[tuple[str, str]]:
    """The (type, state_key) pairs an event may cite in ``auth_events``.

    server-server-api.md "Auth events selection": nothing for the create event; otherwise the
    create event (not in v12, rooms/v12.md rule 3.2), the power levels, the sender's membership, and
    for membership events the target's membership, the join rules (join, invite, knock), the
    third-party invite named by ``signed.token`` and, for restricted joins (v8+), the membership of
    the ``join_authorised_via_users_server`` user.
    """
    if event.type == "m.room.create":
        return set()
    types: set[tuple[str, str]] = {POWER_LEVELS, (MEMBER, event.sender)}
    if not room_version.room_id_from_create_event:
        types.add(CREATE)
    if event.type == MEMBER:
        state_key = event.state_key
        membership = event.content.get("membership")
        if isinstance(state_key, str):
            types.add((MEMBER, state_key))
        if membership in ("join", "invite", "knock"):
            types.add(JOIN_RULES)
        if membership == "invite":
            token = _third_party_token(event)
            if token is not None:
                types.add((THIRD_PARTY_INVITE, token))
        if membership == "join" and room_version.restricted_join_rule:
            via = event.content.get("join_authorised_via_users_server")
            if isinstance(via, str):
                types.add((MEMBER, via))
    return types


def _third_party_token(event: Event) -> str | None:
    tpi = event.content.get("third_party_invite")
    if not isinstance(tpi, dict):
        return None
    signed = tpi.get("signed")
    if not isinstance(signed, dict):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


# --- the auth_events list -------------------------------------------------------------------

def check_auth_events_list(event: Event, auth_events: list[Event], create_event: Event | None) -> None:
    """The rules about the ``auth_events`` list itself.

    v1–v11 rule 2 (duplicates, entries outside the selection, rejected entries, no create event,
    entries from another room); v12 rule 2 (``room_id`` is the accepted create event's ID with "!")
    and rule 3 (the same list rules, the create event never selected). ``create_event`` is the
    room's create event as the caller knows it (required in v12: looked up from ``room_id``).
    Nothing to check for the create event itself.
    """
    rv = event.room_version
    rules = _Rules(rv)
    if event.type == "m.room.create":
        if event.auth_event_ids:
            raise rules.fail(f"{rules.auth_events}.2", "the create event must have no auth events")
        return
    if rv.room_id_from_create_event:
        if create_event is None or create_event.rejected_reason is not None:
            raise rules.fail(str(rules.room_id), "room_id is not the ID of an accepted create event")
        if create_event.type != "m.room.create" or event.room_id != "!" + create_event.event_id[1:]:
            raise rules.fail(str(rules.room_id), "room_id is not the create event's ID with '!'")
    n = rules.auth_events
    allowed = auth_types_for_event(rv, event)
    seen: set[tuple[str, str]] = set()
    has_create = False
    for ae in auth_events:
        if not ae.is_state() or not isinstance(ae.state_key, str):
            raise rules.fail(f"{n}.2", f"auth event {ae.event_id} is not a state event")
        key = ae.state_tuple
        if key in seen:
            raise rules.fail(f"{n}.1", f"duplicate auth events for {key}")
        seen.add(key)
        if key not in allowed:
            raise rules.fail(f"{n}.2", f"auth event {ae.event_id} {key} is not in the selection")
        if ae.rejected_reason is not None:
            raise rules.fail(f"{n}.3", f"auth event {ae.event_id} was rejected")
        if key == CREATE:
            has_create = True
    if not rv.room_id_from_create_event and not has_create:
        raise rules.fail(f"{n}.4", "no m.room.create event among the auth events")
    for ae in auth_events:
        if ae.room_id != event.room_id:
            raise rules.fail(f"{n}.5", f"auth event {ae.event_id} is from another room")


def auth_state_from_events(auth_events: list[Event],
                           create_event: Event | None) -> dict[tuple[str, str], Event]:
    """The auth state an event's ``auth_events`` describe, plus the create event (v12)."""
    state = {ae.state_tuple: ae for ae in auth_events if ae.is_state()}
    if create_event is not None:
        state.setdefault(CREATE, create_event)
    return state


def check_against_auth_events(event: Event, auth_events: list[Event], create_event: Event | None, *,
                              signature_checker: SignatureChecker | None = None) -> None:
    """Check 4 of "Checks performed on receipt of a PDU": the list rules, then every rule against
    the state formed by the event's own auth events. ``create_event`` is required in v12."""
    check_auth_events_list(event, auth_events, create_event)
    if event.type == "m.room.create":
        check_auth_rules(event, {}, signature_checker=signature_checker)
    else:
        check_auth_rules(event, auth_state_from_events(auth_events, create_event),
                         signature_checker=signature_checker)


# --- the state-dependent rules --------------------------------------------------------------

def check_auth_rules(event: Event, state: State, *,
                     signature_checker: SignatureChecker | None = None) -> None:
    """Raise :class:`AuthError` unless ``event`` is allowed by the rules against ``state``.

    ``state`` maps (type, state_key) to events and always holds the create event (also in v12);
    the create event itself is checked with an empty ``state``. ``signature_checker(event,
    server_name)`` answers the join_authorised_via_users_server signature rule (v8+); None means
    signatures were verified upstream and the rule passes.
    """
    rv = event.room_version
    rules = _Rules(rv)

    if event.type == "m.room.create":
        _check_create(event, rules)
        return

    create = state.get(CREATE)
    if create is None:
        if rv.room_id_from_create_event:
            raise rules.fail(str(rules.room_id), "no create event for this room")
        raise rules.fail(f"{rules.auth_events}.4", "no m.room.create event in the auth state")

    # v1–v11 rule 3, v12 rule 4: m.federate.
    if create.content.get("m.federate", True) is False:
        if ids.domain_or_none(event.sender) != ids.domain_or_none(create.sender):
            raise rules.fail(str(rules.federate), "room is not federated and sender is on another server")

    # v1–v5 rule 4: m.room.aliases.
    if rv.special_case_aliases_auth and event.type == "m.room.aliases":
        if not event.is_state():
            raise rules.fail(f"{rules.aliases}.1", "m.room.aliases has no state_key")
        if event.state_key != ids.domain_or_none(event.sender):
            raise rules.fail(f"{rules.aliases}.2", "sender's domain does not match the state_key")
        return

    if event.type == MEMBER:
        _check_membership(event, state, create, rules, signature_checker)
        return

    sender_level = get_user_power_level(event.sender, state)

    if _membership_of(state, event.sender) != "join":
        raise rules.fail(str(rules.joined), "sender is not joined to the room")

    if event.type == THIRD_PARTY_INVITE:
        if sender_level >= _level(state, "invite"):
            return
        raise rules.fail(f"{rules.third_party_invite}.1", "sender's power level is below the invite level")

    required = get_power_level_for_event(event.type, state, event.is_state())
    if required > sender_level:
        raise rules.fail(str(rules.required_level),
                         f"sender's power level {sender_level} is below {required} for {event.type}")

    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != event.sender:
        raise rules.fail(str(rules.state_key_user), "state_key is a user ID other than the sender")

    if event.type == "m.room.power_levels":
        _check_power_levels(event, state, create, sender_level, rules)
        return

    # v1–v2 rule 11: in these versions event IDs carry the originating server's domain.
    if rv.event_id_has_server and event.type == "m.room.redaction":
        if sender_level >= _level(state, "redact"):
            return
        redacts = event.redacts
        if isinstance(redacts, str) and ids.domain_or_none(redacts) is not None \
                and ids.domain_or_none(redacts) == ids.domain_or_none(event.event_id):
            return
        raise rules.fail(f"{rules.redaction}.3",
                         "sender is below the redact level and the redacted event is from another server")


def _check_create(event: Event, rules: _Rules) -> None:
    """Rule 1 of every version: the m.room.create event."""
    rv = rules.rv
    if event.prev_event_ids:
        raise rules.fail("1.1", "the create event has prev_events")
    if rv.room_id_from_create_event:
        if "room_id" in event.pdu:
            raise rules.fail("1.2", "the create event has a room_id")
    else:
        room_domain = ids.domain_or_none(event.room_id) if isinstance(event.room_id, str) else None
        if room_domain is None or room_domain != ids.domain_or_none(event.sender):
            raise rules.fail("1.2", "the room_id's domain does not match the sender's")
    if "room_version" in event.content:
        version = event.content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise rules.fail("1.3", f"unknown room_version {version!r}")
    if not rv.implicit_room_creator and "creator" not in event.content:
        raise rules.fail("1.4", "content has no creator")
    if rv.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(
                isinstance(u, str) and ids.is_valid_user_id(u) for u in extra):
            raise rules.fail("1.4", "additional_creators is not an array of valid user IDs")


def _check_membership(event: Event, state: State, create: Event, rules: _Rules,
                      signature_checker: SignatureChecker | None) -> None:
    """Rule 5 (v1–v5, v12) / 4 (v6–v11): m.room.member events."""
    rv = rules.rv
    m = rules.member
    target = event.state_key
    membership = event.content.get("membership")
    if not isinstance(target, str) or "membership" not in event.content:
        raise rules.fail(f"{m}.1", "no state_key or no membership")

    # v8+ member rule 2: the authorising server must have signed a restricted join.
    if rv.restricted_join_rule and "join_authorised_via_users_server" in event.content:
        via = event.content["join_authorised_via_users_server"]
        via_domain = ids.domain_or_none(via) if isinstance(via, str) else None
        if via_domain is None:
            raise rules.fail(f"{m}.2.1", "join_authorised_via_users_server is not a user ID")
        if signature_checker is not None and not signature_checker(event, via_domain):
            raise rules.fail(f"{m}.2.1", f"event is not signed by {via_domain}")

    sender = event.sender
    sender_membership = _membership_of(state, sender)
    target_membership = _membership_of(state, target)
    join_rule = _join_rule(state)

    if membership == "join":
        n = f"{m}.{rules.m_join}"
        prev = event.prev_event_ids
        if len(prev) == 1 and prev[0] == create.event_id and target == get_original_creator(create):
            return
        if sender != target:
            raise rules.fail(f"{n}.2", "sender does not match state_key")
        if sender_membership == "ban":
            raise rules.fail(f"{n}.3", "sender is banned")
        if join_rule == "invite" or (rv.knock_join_rule and join_rule == "knock"):
            if sender_membership in ("invite", "join"):
                return
            # Rule .4 only allows; nothing later matches, so "Otherwise, reject" applies.
            raise rules.fail(f"{n}.{rules.j_otherwise}",
                             f"join rule is {join_rule} and sender is not invited")
        if (rv.restricted_join_rule and join_rule == "restricted") or \
                (rv.knock_restricted_join_rule and join_rule == "knock_restricted"):
            if sender_membership in ("join", "invite"):
                return
            via = event.content.get("join_authorised_via_users_server")
            if not isinstance(via, str) or _membership_of(state, via) != "join" \
                    or get_user_power_level(via, state) < _level(state, "invite"):
                raise rules.fail(f"{n}.5.2",
                                 "join_authorised_via_users_server is not a joined user able to invite")
            return
        if join_rule == "public":
            return
        raise rules.fail(f"{n}.{rules.j_otherwise}", f"join rule {join_rule!r} does not allow joining")

    if membership == "invite":
        n = f"{m}.{rules.m_invite}"
        if "third_party_invite" in event.content:
            _check_third_party_invite(event, state, target_membership, f"{n}.1", rules)
            return
        if sender_membership != "join":
            raise rules.fail(f"{n}.2", "sender is not joined")
        if target_membership in ("join", "ban"):
            raise rules.fail(f"{n}.3", f"target is already {target_membership}")
        if get_user_power_level(sender, state) >= _level(state, "invite"):
            return
        raise rules.fail(f"{n}.5", "sender's power level is below the invite level")

    if membership == "leave":
        n = f"{m}.{rules.m_leave}"
        if sender == target:
            allowed = ("invite", "join", "knock") if rv.knock_join_rule else ("invite", "join")
            if sender_membership in allowed:
                return
            raise rules.fail(f"{n}.1", f"cannot leave with membership {sender_membership!r}")
        if sender_membership != "join":
            raise rules.fail(f"{n}.2", "sender is not joined")
        sender_level = get_user_power_level(sender, state)
        if target_membership == "ban" and sender_level < _level(state, "ban"):
            raise rules.fail(f"{n}.3", "unbanning needs the ban level")
        if sender_level >= _level(state, "kick") and get_user_power_level(target, state) < sender_level:
            return
        raise rules.fail(f"{n}.5", "sender's power level is below the kick level or not above the target's")

    if membership == "ban":
        n = f"{m}.{rules.m_ban}"
        if sender_membership != "join":
            raise rules.fail(f"{n}.1", "sender is not joined")
        sender_level = get_user_power_level(sender, state)
        if sender_level >= _level(state, "ban") and get_user_power_level(target, state) < sender_level:
            return
        raise rules.fail(f"{n}.3", "sender's power level is below the ban level or not above the target's")

    if membership == "knock" and rv.knock_join_rule:
        n = f"{m}.{rules.m_knock}"
        knockable = ("knock", "knock_restricted") if rv.knock_restricted_join_rule else ("knock",)
        if join_rule not in knockable:
            raise rules.fail(f"{n}.1", f"join rule {join_rule!r} does not allow knocking")
        if sender != target:
            raise rules.fail(f"{n}.2", "sender does not match state_key")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise rules.fail(f"{n}.4", f"cannot knock with membership {sender_membership!r}")

    raise rules.fail(f"{m}.{rules.m_unknown}", f"unknown membership {membership!r}")


def _check_third_party_invite(event: Event, state: State, target_membership: str | None,
                              n: str, rules: _Rules) -> None:
    """Member rule "invite .1": an invite carrying ``content.third_party_invite``."""
    if target_membership == "ban":
        raise rules.fail(f"{n}.1", "target is banned")
    tpi = event.content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise rules.fail(f"{n}.2", "third_party_invite has no signed object")
    if "mxid" not in signed or "token" not in signed:
        raise rules.fail(f"{n}.3", "signed has no mxid or no token")
    if signed["mxid"] != event.state_key:
        raise rules.fail(f"{n}.4", "signed.mxid does not match state_key")
    token = signed["token"]
    invite_event = state.get((THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
    if invite_event is None:
        raise rules.fail(f"{n}.5", "no m.room.third_party_invite event for the token")
    if invite_event.sender != event.sender:
        raise rules.fail(f"{n}.6", "sender did not send the m.room.third_party_invite")
    if _signed_by_any_public_key(signed, invite_event):
        return
    raise rules.fail(f"{n}.8", "no signature in signed matches a public key of the invite")


def _public_keys(invite_event: Event) -> list[str]:
    """``content.public_key`` and each ``content.public_keys[].public_key`` (member rule invite 1.7)."""
    keys = []
    content = invite_event.content
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        for entry in public_keys:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _signed_by_any_public_key(signed: dict, invite_event: Event) -> bool:
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    keys = _public_keys(invite_event)
    for server_name, sigs in signatures.items():
        if not isinstance(sigs, dict):
            continue
        for key_id in sigs:
            for public_key in keys:
                try:
                    verify_key = signing.decode_verify_key(key_id, public_key)
                    signing.verify_json(signed, server_name, key_id, verify_key)
                except (ValueError, TypeError):  # SignatureError is a ValueError
                    continue
                return True
    return False


def _check_power_levels(event: Event, state: State, create: Event, sender_level: int | float,
                        rules: _Rules) -> None:
    """Rule 10 (v1–v5, v12) / 9 (v6–v11): m.room.power_levels events."""
    rv = rules.rv
    n = rules.power_levels
    content = event.content

    # v10+ rules .1 and .2; in v1–v9 uzel also rejects values that are not integers or integer
    # strings (rooms/fragments/v1-stringy-power-levels.md gives their only valid format), as they
    # cannot be compared by the rules below.
    for key in LEVEL_KEYS:
        if key in content and parse_level(content[key], rv) is None:
            raise rules.fail(f"{n}.1" if rv.enforce_int_power_levels else f"{n}.{rules.pl_users}",
                             f"{key} is not an integer")
    for key in ("events", "notifications"):
        if key in content:
            value = content[key]
            if not isinstance(value, dict) or any(parse_level(v, rv) is None for v in value.values()):
                raise rules.fail(f"{n}.2" if rv.enforce_int_power_levels else f"{n}.{rules.pl_users}",
                                 f"{key} is not an object of integers")
    users = content.get("users", {})
    if not isinstance(users, dict) or any(
            not ids.is_valid_user_id(u) or parse_level(v, rv) is None for u, v in users.items()):
        raise rules.fail(f"{n}.{rules.pl_users}", "users is not an object of user IDs to integers")

    if rv.privileged_creators:
        creators = get_creators(create)
        if creators & set(users):
            raise rules.fail(f"{n}.4", "users contains a room creator")

    previous = state.get(POWER_LEVELS)
    b = rules.pl_base
    if previous is None:
        return
    old = previous.content

    def lvl(container: object, key: str) -> int | None:
        return parse_level(container.get(key), previous.room_version) if isinstance(container, dict) \
            and key in container else None

    def new_lvl(container: dict, key: str) -> int | None:
        return parse_level(container[key], rv) if key in container else None

    for key in LEVEL_KEYS:
        before, after = lvl(old, key), new_lvl(content, key)
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise rules.fail(f"{n}.{b + 2}.1", f"cannot change {key} from a level above the sender's")
        if after is not None and after > sender_level:
            raise rules.fail(f"{n}.{b + 2}.2", f"cannot set {key} above the sender's level")

    maps = ("events", "notifications") if rv.limit_notifications_power_levels else ("events",)
    for name in maps:
        old_map = old.get(name) if isinstance(old.get(name), dict) else {}
        new_map = content.get(name, {})
        for key in set(old_map) | set(new_map):
            before, after = lvl(old_map, key), new_lvl(new_map, key)
            if before == after:
                continue
            if before is not None and before > sender_level:
                raise rules.fail(f"{n}.{b + 3}.1",
                                 f"cannot change {name}[{key!r}] from a level above the sender's")
            if after is not None and after > sender_level:
                raise rules.fail(f"{n}.{b + 4}.1", f"cannot set {name}[{key!r}] above the sender's level")

    old_users = old.get("users") if isinstance(old.get("users"), dict) else {}
    for user in set(old_users) | set(users):
        before, after = lvl(old_users, user), new_lvl(users, user)
        if before == after:
            continue
        if user != event.sender and before is not None and before >= sender_level:
            raise rules.fail(f"{n}.{b + 5}.1",
                             f"cannot change the level of {user}, who is not below the sender")
        if after is not None and after > sender_level:
            raise rules.fail(f"{n}.{b + 6}.1", f"cannot set the level of {user} above the sender's")


# --- small helpers --------------------------------------------------------------------------

def _membership_of(state: State, user_id: str) -> str | None:
    ev = state.get((MEMBER, user_id))
    if ev is None:
        return None
    membership = ev.content.get("membership")
    return membership if isinstance(membership, str) else None


def _join_rule(state: State) -> str:
    """The current join rule. Without an m.room.join_rules event (or ``join_rule``) uzel treats the
    room as "invite", as Synapse and ruma do; the spec leaves this case implicit."""
    ev = state.get(JOIN_RULES)
    rule = ev.content.get("join_rule", "invite") if ev is not None else "invite"
    return rule if isinstance(rule, str) else "invite"


def _level(state: State, name: str) -> int:
    return get_named_level(state, name, DEFAULT_LEVELS[name])
