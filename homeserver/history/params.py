"""Query parameters shared by the history endpoints: directions, pagination tokens and filters
(limits and booleans: homeserver/http/params.py). Each raises 400 with the spec's error code
instead of letting bad input through."""
from __future__ import annotations

import json

from homeserver.client.filtering import FilterError, RoomEventFilter, parse_room_event_filter
from homeserver.http.errors import MatrixError, invalid_param
from homeserver.sync.tokens import RoomPosition, TokenError, parse_room_position

MAX_INT64 = 2**63 - 1


def parse_dir(text: str | None, default: str = "b") -> bool:
    """``dir``: True for backwards (``b``), False for forwards (``f``)."""
    value = default if text is None else text
    if value not in ("b", "f"):
        raise invalid_param("dir must be 'b' or 'f'")
    return value == "b"


def parse_position(text: str | None, name: str) -> RoomPosition | None:
    """A room pagination token (homeserver/sync/tokens.py), or None when absent."""
    if text is None:
        return None
    try:
        pos = parse_room_position(text)
    except TokenError as e:
        raise invalid_param(f"Invalid {name} token: {e}") from None
    # Tokens allow 19 digits; the database holds signed 64-bit integers.
    return RoomPosition(None if pos.depth is None else min(pos.depth, MAX_INT64), min(pos.stream, MAX_INT64))


def parse_filter_json(text: str | None) -> RoomEventFilter | None:
    """The ``filter`` query parameter: a JSON RoomEventFilter (room_event_filter.yaml)."""
    if text is None or text == "":
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        raise MatrixError(400, "M_NOT_JSON", "filter is not valid JSON") from None
    return parse_filter_obj(obj)


def parse_filter_obj(obj) -> RoomEventFilter:
    try:
        return parse_room_event_filter(obj)
    except FilterError as e:
        raise MatrixError(400, e.errcode, e.message) from None
