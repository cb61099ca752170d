"""The room-version registry: one record of flags per room version (rooms/v1.md … v12.md).

Code asks the record (``version.knock_join_rule``), never compares version strings.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class EventFormat(enum.IntEnum):
    """How event IDs are formed (rooms/fragments/*-event-ids.md, *-event-format.md)."""

    V1 = 1  # "$random:server", event_id carried in the event (rooms v1, v2)
    V2 = 2  # "$" + standard unpadded base64 of the reference hash (v3)
    V3 = 3  # "$" + URL-safe unpadded base64 of the reference hash (v4–v11)
    V4 = 4  # as V3; room ID is "!" + the create event's reference hash, create has no room_id (v12)


class StateResAlgorithm(enum.Enum):
    V1 = "v1"      # rooms/v1.md
    V2 = "v2"      # rooms/fragments/v2-state-res.md
    V2_1 = "v2.1"  # rooms/v12.md: iterative auth from empty state, conflicted subgraph


class RedactionRules(enum.IntEnum):
    """Which redaction algorithm applies (rooms/fragments/*-redactions.md)."""

    V1 = 1   # v1–v5
    V6 = 6   # v6–v7: m.room.aliases content no longer kept
    V8 = 8   # v8: m.room.join_rules keeps "allow"
    V9 = 9   # v9–v10: m.room.member keeps "join_authorised_via_users_server"
    V11 = 11  # v11–v12: the v11 rules (whole create content, redacts in content, invite PL, signed 3pid)


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # Key validity period enforced when checking signatures (v5+).
    enforce_key_validity: bool
    # m.room.aliases has its own auth rule (v1–v5); removed in v6.
    special_case_aliases_auth: bool
    # Integers outside [-2^53+1, 2^53-1] and floats are invalid JSON (v6+).
    strict_canonicaljson: bool
    # "notifications" power levels are checked when changing power levels (v6+).
    limit_notifications_power_levels: bool
    # join_rule "knock" and membership "knock" (v7+).
    knock_join_rule: bool
    # join_rule "restricted" with join_authorised_via_users_server (v8+).
    restricted_join_rule: bool
    # join_rule "knock_restricted" (v10+).
    knock_restricted_join_rule: bool
    # Power level values must be integers, not strings (v10+).
    enforce_int_power_levels: bool
    # The creator is the create event's sender; content.creator is not used (v11+).
    implicit_room_creator: bool
    # redacts is a content key of m.room.redaction (v11+).
    redacts_in_content: bool
    # Room creators (sender + additional_creators) have infinite power (v12).
    privileged_creators: bool
    # Room ID is derived from the create event's reference hash; create has no room_id
    # and is never listed in auth_events (v12).
    room_id_from_create_event: bool
    # invites-v2.yaml (spec v1.16): invite_room_state must be well-formed PDUs of the room
    # including m.room.create — "MAY" apply to v1–v11, "SHOULD" from v12: checked from v12.
    strict_invite_room_state: bool = False

    @property
    def event_id_has_server(self) -> bool:
        return self.event_format == EventFormat.V1


def _v(identifier: str, n: int) -> RoomVersion:
    if n <= 2:
        fmt = EventFormat.V1
    elif n == 3:
        fmt = EventFormat.V2
    elif n < 12:
        fmt = EventFormat.V3
    else:
        fmt = EventFormat.V4
    if n == 1:
        res = StateResAlgorithm.V1
    elif n < 12:
        res = StateResAlgorithm.V2
    else:
        res = StateResAlgorithm.V2_1
    if n < 6:
        red = RedactionRules.V1
    elif n < 8:
        red = RedactionRules.V6
    elif n == 8:
        red = RedactionRules.V8
    elif n < 11:
        red = RedactionRules.V9
    else:
        red = RedactionRules.V11
    return RoomVersion(
        identifier=identifier,
        event_format=fmt,
        state_res=res,
        redaction_rules=red,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonicaljson=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        redacts_in_content=n >= 11,
        privileged_creators=n >= 12,
        room_id_from_create_event=n >= 12,
        strict_invite_room_state=n >= 12,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _v(str(n), n) for n in range(1, 13)}
DEFAULT_ROOM_VERSION = KNOWN_ROOM_VERSIONS["12"]


def get_room_version(identifier: str) -> RoomVersion | None:
    """The record for a version string, or None if uzel does not know it."""
    return KNOWN_ROOM_VERSIONS.get(identifier)
