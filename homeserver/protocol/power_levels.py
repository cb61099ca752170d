"""Reading power levels and room creators out of room state (pure, no I/O).

Sources: client-server-api ``m.room.power_levels`` (defaults), server-server-api "Definitions"
(invite level 0; kick, ban, redact 50), rooms/fragments/v1-stringy-power-levels.md (v1–v9 accept
integer strings), rooms/fragments/v1-floaty-power-levels.md (v1–v5 accept floats, truncated),
rooms/v10.md (integers only), rooms/v12.md (room creators have infinite power).

``state`` everywhere is a mapping ``(event type, state key) -> Event``.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

from .events import Event
from .room_versions import RoomVersion

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")

#: The integer-valued top-level properties of m.room.power_levels (auth rule "power levels .3/.5").
LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")

#: Defaults when a property (or the whole event) is missing (client-server-api m.room.power_levels).
DEFAULT_LEVELS = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

#: Power level of the creator when the room has no m.room.power_levels event (v1–v11).
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100

# rooms/fragments/v1-stringy-power-levels.md: optional surrounding whitespace, one optional sign,
# base-10 digits (leading zeroes allowed), nothing else.
_INT_STRING = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


def parse_level(value: Any, room_version: RoomVersion) -> int | None:
    """A power level value as an int, or None when the room version does not accept it.

    v10+ (``enforce_int_power_levels``): JSON integers only. v1–v9: also integer strings
    (v1-stringy-power-levels). v1–v5 (no ``strict_canonicaljson``): also finite floats,
    truncated at the decimal point (v1-floaty-power-levels). Booleans are never levels.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        if _INT_STRING.fullmatch(value):
            return int(value.strip())
        return None
    if isinstance(value, float) and not room_version.strict_canonicaljson:
        if math.isfinite(value):
            return int(value)
        return None
    return None


def get_original_creator(create_event: Event) -> str | None:
    """The single "creator" of rules 'join .1' and the no-power-levels default: ``content.creator``
    before v11, the create event's sender from v11 (rooms/v11.md, auth rule 4.3.1)."""
    if create_event.room_version.implicit_room_creator:
        return create_event.sender
    creator = create_event.content.get("creator")
    return creator if isinstance(creator, str) else None


def get_creators(create_event: Event | None) -> set[str]:
    """The room creators.

    v12 (``privileged_creators``): the create event's sender plus ``content.additional_creators``
    (rooms/v12.md, note before the auth rules). v11: the sender. v1–v10: ``content.creator``.
    """
    if create_event is None:
        return set()
    rv = create_event.room_version
    if rv.privileged_creators:
        creators = {create_event.sender}
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
        return creators
    creator = get_original_creator(create_event)
    return {creator} if creator is not None else set()


def get_named_level(state: Mapping[tuple[str, str], Event], name: str, default: int) -> int:
    """A top-level level (``invite``, ``kick``, ``ban``, ``redact``, ``state_default`` …) from the
    current m.room.power_levels event, or ``default`` when absent or not a valid level."""
    pl = state.get(POWER_LEVELS)
    if pl is None:
        return default
    level = parse_level(pl.content.get(name), pl.room_version)
    return default if level is None else level


def get_user_power_level(user_id: str, state: Mapping[tuple[str, str], Event]) -> int | float:
    """The power level of ``user_id``: ``math.inf`` for creators in v12; else ``users[user_id]``,
    else ``users_default``; with no power levels event, 100 for the creator (v1–v11) and 0 for
    everyone else (client-server-api m.room.power_levels, ``users_default``)."""
    create = state.get(CREATE)
    if create is not None and create.room_version.privileged_creators:
        if user_id in get_creators(create):
            return math.inf
    pl = state.get(POWER_LEVELS)
    if pl is not None:
        users = pl.content.get("users")
        if isinstance(users, dict) and user_id in users:
            level = parse_level(users[user_id], pl.room_version)
            if level is not None:
                return level
        return get_named_level(state, "users_default", DEFAULT_LEVELS["users_default"])
    if create is not None and not create.room_version.privileged_creators:
        if user_id in get_creators(create):
            return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
    return 0


def get_power_level_for_event(event_type: str, state: Mapping[tuple[str, str], Event],
                              is_state: bool) -> int:
    """The *required power level* for sending ``event_type`` (server-server-api, "Definitions"):
    ``events[event_type]``, else ``state_default`` (50) for state events or ``events_default`` (0)."""
    pl = state.get(POWER_LEVELS)
    if pl is not None:
        events = pl.content.get("events")
        if isinstance(events, dict) and event_type in events:
            level = parse_level(events[event_type], pl.room_version)
            if level is not None:
                return level
    name = "state_default" if is_state else "events_default"
    return get_named_level(state, name, DEFAULT_LEVELS[name])
