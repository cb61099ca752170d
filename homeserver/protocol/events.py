"""The PDU as a plain, read-only object shared by auth, state resolution, storage and the APIs.

An :class:`Event` wraps the event's JSON dict (exactly as signed and sent over federation) and its
room version; everything else (event ID, room ID for v12 create events) is derived from those.
"""
from __future__ import annotations

from typing import Any, Iterable

from .room_versions import EventFormat, RoomVersion


class Event:
    __slots__ = ("_pdu", "room_version", "event_id", "room_id", "rejected_reason")

    def __init__(self, pdu: dict, room_version: RoomVersion, event_id: str | None = None,
                 rejected_reason: str | None = None):
        self._pdu = pdu
        self.room_version = room_version
        if event_id is None:
            if room_version.event_format == EventFormat.V1:
                event_id = pdu["event_id"]
            else:
                from .hashing import compute_event_id
                event_id = compute_event_id(pdu, room_version)
        self.event_id: str = event_id
        room_id = pdu.get("room_id")
        if room_id is None and room_version.room_id_from_create_event and pdu.get("type") == "m.room.create":
            room_id = "!" + event_id[1:]
        self.room_id: str = room_id
        self.rejected_reason = rejected_reason

    # --- the PDU fields -------------------------------------------------------------------
    @property
    def pdu(self) -> dict:
        """The event JSON as sent over federation (do not mutate)."""
        return self._pdu

    @property
    def type(self) -> str:
        return self._pdu["type"]

    @property
    def sender(self) -> str:
        return self._pdu["sender"]

    @property
    def content(self) -> dict:
        return self._pdu.get("content", {})

    @property
    def state_key(self) -> str | None:
        return self._pdu.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self._pdu

    @property
    def state_tuple(self) -> tuple[str, str]:
        """(type, state_key) for state events."""
        return (self._pdu["type"], self._pdu["state_key"])

    @property
    def depth(self) -> int:
        return self._pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self._pdu.get("origin_server_ts", 0)

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.type == "m.room.member" else None

    @property
    def redacts(self) -> str | None:
        if self.room_version.redacts_in_content:
            return self.content.get("redacts")
        return self._pdu.get("redacts")

    @property
    def prev_event_ids(self) -> list[str]:
        return _ids(self._pdu.get("prev_events", []))

    @property
    def auth_event_ids(self) -> list[str]:
        return _ids(self._pdu.get("auth_events", []))

    @property
    def unsigned(self) -> dict:
        return self._pdu.get("unsigned", {})

    def get(self, key: str, default: Any = None) -> Any:
        return self._pdu.get(key, default)

    def __repr__(self) -> str:
        sk = f" {self.state_key!r}" if self.is_state() else ""
        return f"<Event {self.event_id} {self.type}{sk} from {self.sender}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)


def _ids(refs: Iterable) -> list[str]:
    """prev_events/auth_events are ["$id", ...] or, in v1/v2, [["$id", {hashes}], ...]."""
    return [r[0] if isinstance(r, (list, tuple)) else r for r in refs]
