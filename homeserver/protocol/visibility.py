"""Which room events a user may see: the history visibility rules (pure, no I/O).

Spec: client-server-api modules/history_visibility.md, "Server behaviour". The decision for an
event depends on the room state *at that event*: the ``m.room.history_visibility`` in force and the
user's membership. The caller gives, for each event, the state just before it (only the history
visibility event and the user's member event are read); the state after is that plus the event.

1. ``world_readable`` at the event → allow.
2. The user's membership at the event was ``join`` → allow.
3. ``shared``, and the user joined the room at some point after the event → allow.
4. The user's membership was ``invite`` and visibility ``invited`` → allow.
5. Otherwise deny.

For ``m.room.history_visibility`` events the least restrictive of the values before and after the
event counts; for the user's own ``m.room.member`` events, the more permissive of the memberships
before and after (so a user always sees their own join, and the event that ended their join).
A missing or unknown visibility counts as ``shared``.

Erased senders (account_deactivation.yaml ``erase``): their events are served as redacted copies
to users who were not joined at the event (``filter_events_for_user``).
"""
from __future__ import annotations

from typing import Any, Callable, Container, Iterable, Mapping

from .events import Event
from .ids import domain_or_none
from .redaction import redact

HISTORY_VISIBILITY = ("m.room.history_visibility", "")

WORLD_READABLE = "world_readable"
SHARED = "shared"
INVITED = "invited"
JOINED = "joined"

#: Least restrictive first.
_ORDER = (WORLD_READABLE, SHARED, INVITED, JOINED)
_MEMBERSHIP_ORDER = ("join", "invite")

StateMap = Mapping[tuple[str, str], Any]  # (type, state_key) -> Event or content dict


def _content(value: Any) -> Mapping:
    if isinstance(value, Event):
        return value.content if isinstance(value.content, dict) else {}
    if isinstance(value, Mapping):
        return value
    return {}


def visibility_value(content: Mapping | None) -> str:
    """The effective history visibility of an ``m.room.history_visibility`` content ("shared"
    when absent or not understood)."""
    value = (content or {}).get("history_visibility")
    return value if value in _ORDER else SHARED


def membership_value(content: Mapping | None) -> str | None:
    value = (content or {}).get("membership")
    return value if isinstance(value, str) else None


def history_visibility_of(state: StateMap) -> str:
    """The effective history visibility in a state map."""
    ev = state.get(HISTORY_VISIBILITY)
    return visibility_value(_content(ev)) if ev is not None else SHARED


def _least_restrictive(a: str, b: str) -> str:
    return a if _ORDER.index(a) <= _ORDER.index(b) else b


def _most_permissive(a: str | None, b: str | None) -> str | None:
    for m in _MEMBERSHIP_ORDER:
        if a == m or b == m:
            return m
    return a


def membership_at(user_id: str, event: Event, state_before: StateMap) -> str | None:
    """The user's membership at ``event``: in the state before it, or for the user's own member
    event the more permissive of before and after."""
    member = state_before.get(("m.room.member", user_id))
    membership = membership_value(_content(member)) if member is not None else None
    if event.type == "m.room.member" and event.state_key == user_id:
        membership = _most_permissive(membership, membership_value(event.content))
    return membership


def erased_copy(event: Event) -> Event:
    """The redacted copy of an erased sender's event (account_deactivation.yaml, ``erase``),
    under the room version's redaction rules; same event ID."""
    return Event(redact(event.pdu, event.room_version), event.room_version, event_id=event.event_id)


def is_event_visible(user_id: str, event: Event, state_before: StateMap, *,
                     joined_later: bool = False) -> bool:
    """Whether ``user_id`` may see ``event`` given the state just before it.

    ``joined_later``: the user joined the room at some point after the event (rule 3)."""
    visibility = history_visibility_of(state_before)
    if event.type == HISTORY_VISIBILITY[0] and event.state_key == "":
        visibility = _least_restrictive(visibility, visibility_value(_content(event.content)))
    if visibility == WORLD_READABLE:
        return True
    membership = membership_at(user_id, event, state_before)
    if membership == "join":
        return True
    if visibility == SHARED and joined_later:
        return True
    if visibility == INVITED and membership == "invite":
        return True
    return False


def filter_events_for_user(user_id: str, events_with_state: Iterable[tuple[Event, StateMap]], *,
                           joined_later: bool | Callable[[Event], bool] = False,
                           ignored_users: Iterable[str] = (),
                           erased_senders: Container[str] = frozenset()) -> list[Event]:
    """The events of ``events_with_state`` (``(event, state before it)`` pairs, in order) that
    ``user_id`` may see, in the same order.

    ``joined_later`` is rule 3's "the user joined the room at any point after the event": a
    constant (True when the user is joined now) or a predicate per event. Non-state events sent
    by ``ignored_users`` (modules/ignore_users.md) are dropped too.

    Events of ``erased_senders`` (account_deactivation.yaml, ``erase``: "Users which had
    visibility on those events prior to the erasure are still able to see unredacted copies")
    come back as :func:`erased_copy` unless the user was joined at the event (as Synapse
    judges it: membership at the event, not the time of the erasure); others are the given
    objects themselves."""
    ignored = set(ignored_users)
    out = []
    # A non-state event's verdict depends only on the state before it and ``joined_later``
    # (is_event_visible looks at the event itself only for history_visibility and the user's
    # own member events): events sharing one state map object are judged once.
    verdicts: dict[tuple[int, bool], bool] = {}
    for event, state_before in events_with_state:
        is_state = event.is_state()
        if ignored and event.sender in ignored and not is_state:
            continue
        later = joined_later(event) if callable(joined_later) else bool(joined_later)
        if is_state:
            visible = is_event_visible(user_id, event, state_before, joined_later=later)
        else:
            key = (id(state_before), later)
            visible = verdicts.get(key)
            if visible is None:
                visible = verdicts[key] = is_event_visible(user_id, event, state_before, joined_later=later)
        if visible:
            if erased_senders and event.sender in erased_senders \
                    and membership_at(user_id, event, state_before) != "join":
                event = erased_copy(event)
            out.append(event)
    return out


def is_event_visible_to_server(server_name: str, event: Event, state_before: StateMap, *,
                               server_joined_later: bool = False) -> bool:
    """Whether another server may be sent ``event``: when one of its users could see it under
    the rules above (modules/history_visibility.md "Server behaviour"), judged with the state
    just before the event. ``state_before`` needs the history visibility event and the member
    events of the server's users (others are ignored).

    Rule 3 (``shared``, the user joined later) for a server: ``server_joined_later``, the caller
    knows a user of the server joined the room after the event (e.g. one is joined now)."""
    visibility = history_visibility_of(state_before)
    if event.type == HISTORY_VISIBILITY[0] and event.state_key == "":
        visibility = _least_restrictive(visibility, visibility_value(_content(event.content)))
    if visibility == WORLD_READABLE:
        return True
    memberships: set[str | None] = set()
    for key, member in state_before.items():
        if key[0] == "m.room.member" and domain_or_none(key[1]) == server_name:
            memberships.add(membership_value(_content(member)))
    if event.type == "m.room.member" and domain_or_none(event.state_key) == server_name:
        memberships.add(membership_value(event.content))
    if "join" in memberships:
        return True
    if visibility == SHARED and server_joined_later:
        return True
    if visibility == INVITED and "invite" in memberships:
        return True
    return False
