"""Event filters: validating filter JSON and matching events against it (pure, no I/O).

Sources: client-server-api "Filtering" and the schemas data/api/client-server/definitions/
sync_filter.yaml (Filter, RoomFilter), room_event_filter.yaml (RoomEventFilter) and
event_filter.yaml (EventFilter). Sync and /messages build a :class:`SyncFilter` or a
:class:`RoomEventFilter` once per request and call ``matches``/``filter`` on plain event dicts
(client format: ``type``, ``sender``, ``room_id``, ``content``).

Rules from the schemas:
- a list that is absent imposes nothing; ``not_*`` wins over the matching include list;
- ``types``/``not_types`` entries may use ``*`` for any sequence of characters;
- ``contains_url``: true keeps only events whose content has a ``url`` key, false drops them;
- ``room.rooms``/``room.not_rooms`` apply before the ephemeral/state/timeline/account_data filters;
- ``event_fields`` are dot-separated paths (appendices "Dot-separated property paths").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping

__all__ = [
    "FilterError", "EventFilter", "RoomEventFilter", "SyncFilter", "validate_filter",
    "parse_sync_filter", "parse_room_event_filter", "apply_event_fields", "split_dotted_path",
    "type_matches",
]


class FilterError(ValueError):
    """Filter JSON of the wrong shape; ``errcode`` is M_BAD_JSON (wrong type) or M_INVALID_PARAM
    (right type, value out of range)."""

    def __init__(self, errcode: str, message: str):
        super().__init__(message)
        self.errcode = errcode
        self.message = message


def _bad(path: str, msg: str) -> FilterError:
    return FilterError("M_BAD_JSON", f"{path}: {msg}")


def _invalid(path: str, msg: str) -> FilterError:
    return FilterError("M_INVALID_PARAM", f"{path}: {msg}")


# --- validation -------------------------------------------------------------------------------

_EVENT_FILTER_LISTS = ("types", "not_types", "senders", "not_senders")
_ROOM_EVENT_FILTER_LISTS = _EVENT_FILTER_LISTS + ("rooms", "not_rooms")
_ROOM_EVENT_FILTER_BOOLS = ("contains_url", "lazy_load_members", "include_redundant_members",
                            "unread_thread_notifications")


def _check_str_list(obj: Mapping, key: str, path: str, sigil: str | None = None) -> None:
    if key not in obj:
        return
    value = obj[key]
    if not isinstance(value, list):
        raise _bad(f"{path}.{key}", "must be an array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"{path}.{key}[{i}]", "must be a string")
        if sigil is not None and not item.startswith(sigil):
            raise _invalid(f"{path}.{key}[{i}]", f"must start with {sigil!r}")


def _check_event_filter(obj: Any, path: str, room_event: bool) -> None:
    if not isinstance(obj, dict):
        raise _bad(path, "must be an object")
    if "limit" in obj:
        limit = obj["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise _bad(f"{path}.limit", "must be an integer")
        if limit <= 0:
            raise _invalid(f"{path}.limit", "must be greater than 0")
        if limit > 2**53 - 1:  # the integer range of appendices.md "Canonical JSON"
            raise _invalid(f"{path}.limit", "is too large")
    _check_str_list(obj, "types", path)
    _check_str_list(obj, "not_types", path)
    _check_str_list(obj, "senders", path, "@")
    _check_str_list(obj, "not_senders", path, "@")
    if room_event:
        _check_str_list(obj, "rooms", path, "!")
        _check_str_list(obj, "not_rooms", path, "!")
        for key in _ROOM_EVENT_FILTER_BOOLS:
            if key in obj and not isinstance(obj[key], bool):
                raise _bad(f"{path}.{key}", "must be a boolean")


def validate_filter(obj: Any) -> None:
    """Raise :class:`FilterError` unless ``obj`` is a Filter (sync_filter.yaml).

    Unknown keys are allowed (forward compatibility); known keys must have the schema's type.
    """
    if not isinstance(obj, dict):
        raise _bad("filter", "must be an object")
    if "event_fields" in obj:
        _check_str_list(obj, "event_fields", "filter")
    if "event_format" in obj:
        if not isinstance(obj["event_format"], str):
            raise _bad("filter.event_format", "must be a string")
        if obj["event_format"] not in ("client", "federation"):
            raise _invalid("filter.event_format", "must be 'client' or 'federation'")
    for key in ("presence", "account_data"):
        if key in obj:
            _check_event_filter(obj[key], f"filter.{key}", room_event=False)
    if "room" in obj:
        room = obj["room"]
        if not isinstance(room, dict):
            raise _bad("filter.room", "must be an object")
        _check_str_list(room, "rooms", "filter.room", "!")
        _check_str_list(room, "not_rooms", "filter.room", "!")
        if "include_leave" in room and not isinstance(room["include_leave"], bool):
            raise _bad("filter.room.include_leave", "must be a boolean")
        for key in ("ephemeral", "state", "timeline", "account_data"):
            if key in room:
                _check_event_filter(room[key], f"filter.room.{key}", room_event=True)


def validate_room_event_filter(obj: Any) -> None:
    """Raise :class:`FilterError` unless ``obj`` is a RoomEventFilter (e.g. /messages ``filter``)."""
    _check_event_filter(obj, "filter", room_event=True)


# --- matching ---------------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _type_pattern(pattern: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def type_matches(event_type: str, pattern: str) -> bool:
    """Whether ``event_type`` matches a ``types`` entry, where ``*`` is any sequence of characters."""
    if "*" not in pattern:
        return event_type == pattern
    return _type_pattern(pattern).fullmatch(event_type) is not None


def _any_type(event_type: str, patterns: Iterable[str]) -> bool:
    return any(type_matches(event_type, p) for p in patterns)


@dataclass(frozen=True)
class EventFilter:
    """An EventFilter (event_filter.yaml): presence and global account data."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: frozenset[str] | None = None
    not_senders: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, obj: Mapping | None) -> "EventFilter":
        obj = obj or {}
        return cls(**_event_filter_fields(obj))

    def _type_and_sender_ok(self, event_type: Any, sender: Any) -> bool:
        if not isinstance(event_type, str):
            return False
        if self.not_types and _any_type(event_type, self.not_types):
            return False
        if self.types is not None and not _any_type(event_type, self.types):
            return False
        if sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        return True

    def matches(self, event: Mapping) -> bool:
        """Whether the event passes the type and sender lists."""
        return self._type_and_sender_ok(event.get("type"), event.get("sender"))

    def filter(self, events: Iterable[Mapping]) -> list:
        """The events that match, in order, cut to ``limit`` (the first ``limit`` kept)."""
        out = [e for e in events if self.matches(e)]
        if self.limit is not None:
            out = out[: self.limit]
        return out

    def limit_or(self, default: int, maximum: int | None = None) -> int:
        """``limit`` if set, else ``default``; capped at ``maximum`` when given."""
        n = self.limit if self.limit is not None else default
        return min(n, maximum) if maximum is not None else n

    @property
    def excludes_everything(self) -> bool:
        """True for ``types: []``: nothing can match (lets callers skip work)."""
        return self.types is not None and not self.types


@dataclass(frozen=True)
class RoomEventFilter(EventFilter):
    """A RoomEventFilter (room_event_filter.yaml): state, timeline, ephemeral, room account data,
    /messages and /context."""

    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    @classmethod
    def from_json(cls, obj: Mapping | None) -> "RoomEventFilter":
        obj = obj or {}
        fields = _event_filter_fields(obj)
        if "rooms" in obj:
            fields["rooms"] = frozenset(obj["rooms"])
        fields["not_rooms"] = frozenset(obj.get("not_rooms", ()))
        if "contains_url" in obj:
            fields["contains_url"] = obj["contains_url"]
        for key in ("lazy_load_members", "include_redundant_members", "unread_thread_notifications"):
            fields[key] = bool(obj.get(key, False))
        return cls(**fields)

    def room_allowed(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event: Mapping, room_id: str | None = None) -> bool:
        """Whether the event passes every list; ``room_id`` overrides the event's own (room
        account data and ephemeral events in /sync carry none)."""
        rid = room_id if room_id is not None else event.get("room_id")
        if (self.rooms is not None or self.not_rooms) and not (isinstance(rid, str) and self.room_allowed(rid)):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, dict) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return self._type_and_sender_ok(event.get("type"), event.get("sender"))

    def filter(self, events: Iterable[Mapping], room_id: str | None = None) -> list:
        out = [e for e in events if self.matches(e, room_id)]
        if self.limit is not None:
            out = out[: self.limit]
        return out


def _event_filter_fields(obj: Mapping) -> dict:
    fields: dict[str, Any] = {}
    if obj.get("limit") is not None:
        fields["limit"] = obj["limit"]
    if "types" in obj:
        fields["types"] = tuple(obj["types"])
    fields["not_types"] = tuple(obj.get("not_types", ()))
    if "senders" in obj:
        fields["senders"] = frozenset(obj["senders"])
    fields["not_senders"] = frozenset(obj.get("not_senders", ()))
    return fields


@dataclass(frozen=True)
class SyncFilter:
    """A whole Filter (sync_filter.yaml), as /sync uses it."""

    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    include_leave: bool = False
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    room_account_data: RoomEventFilter = field(default_factory=RoomEventFilter)
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    raw: Mapping = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, obj: Mapping) -> "SyncFilter":
        """Build from filter JSON that passed :func:`validate_filter`."""
        room = obj.get("room") or {}
        return cls(
            presence=EventFilter.from_json(obj.get("presence")),
            account_data=EventFilter.from_json(obj.get("account_data")),
            rooms=frozenset(room["rooms"]) if "rooms" in room else None,
            not_rooms=frozenset(room.get("not_rooms", ())),
            include_leave=bool(room.get("include_leave", False)),
            ephemeral=RoomEventFilter.from_json(room.get("ephemeral")),
            state=RoomEventFilter.from_json(room.get("state")),
            timeline=RoomEventFilter.from_json(room.get("timeline")),
            room_account_data=RoomEventFilter.from_json(room.get("account_data")),
            event_fields=tuple(obj["event_fields"]) if "event_fields" in obj else None,
            event_format=obj.get("event_format", "client"),
            raw=obj,
        )

    def room_allowed(self, room_id: str) -> bool:
        """room.rooms / room.not_rooms, applied before the per-section filters."""
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def filter_presence(self, events: Iterable[Mapping]) -> list:
        return self.presence.filter(events)

    def filter_account_data(self, events: Iterable[Mapping]) -> list:
        return self.account_data.filter(events)

    def filter_room_state(self, room_id: str, events: Iterable[Mapping]) -> list:
        return self.state.filter(events, room_id) if self.room_allowed(room_id) else []

    def filter_room_timeline(self, room_id: str, events: Iterable[Mapping]) -> list:
        """Timeline events that pass (without the limit: sync cuts the newest ``limit`` itself)."""
        if not self.room_allowed(room_id):
            return []
        return [e for e in events if self.timeline.matches(e, room_id)]

    def filter_room_ephemeral(self, room_id: str, events: Iterable[Mapping]) -> list:
        return self.ephemeral.filter(events, room_id) if self.room_allowed(room_id) else []

    def filter_room_account_data(self, room_id: str, events: Iterable[Mapping]) -> list:
        return self.room_account_data.filter(events, room_id) if self.room_allowed(room_id) else []

    def project(self, event: Mapping) -> Mapping:
        """The event cut to ``event_fields`` (unchanged when the filter has none)."""
        if self.event_fields is None:
            return event
        return apply_event_fields(event, self.event_fields)


def parse_sync_filter(obj: Any) -> SyncFilter:
    """Validate then build; raises :class:`FilterError`."""
    validate_filter(obj)
    return SyncFilter.from_json(obj)


def parse_room_event_filter(obj: Any) -> RoomEventFilter:
    """Validate then build a RoomEventFilter; raises :class:`FilterError`."""
    validate_room_event_filter(obj)
    return RoomEventFilter.from_json(obj)


# --- event_fields -----------------------------------------------------------------------------

def split_dotted_path(path: str) -> list[str]:
    """Split a dot-separated property path (appendices "Dot-separated property paths").

    ``\\.`` is a literal dot and ``\\\\`` a literal backslash inside a name; any other escape
    is kept as written (a backslash followed by that character).
    """
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "\\" and i + 1 < n and path[i + 1] in ".\\":
            cur.append(path[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def apply_event_fields(event: Mapping, fields: Iterable[str]) -> dict:
    """A copy of ``event`` holding only the listed paths (nested objects are kept partially).

    A path naming a missing key, or going through a non-object, contributes nothing.
    """
    out: dict = {}
    for path in fields:
        parts = split_dotted_path(path)
        src: Any = event
        for part in parts:
            if not isinstance(src, Mapping) or part not in src:
                break
            src = src[part]
        else:
            dst = out
            for part in parts[:-1]:
                nxt = dst.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    dst[part] = nxt
                dst = nxt
            dst[parts[-1]] = _copy(src)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
