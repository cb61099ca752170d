"""Checks shared by the rooms endpoints (path IDs, ``user_id`` bodies; other body fields:
homeserver/http/body.py)."""
from __future__ import annotations

from typing import Any, Mapping

from homeserver.http.errors import bad_json, invalid_param, missing_param
from homeserver.protocol import ids


def check_room_id(room_id: str) -> str:
    """400 M_INVALID_PARAM unless ``room_id`` is a room ID (appendices "Room IDs")."""
    if not ids.is_valid_room_id(room_id):
        raise invalid_param(f"Invalid room ID {room_id!r}")
    return room_id


def required_user_id(body: Mapping[str, Any], key: str = "user_id") -> str:
    """The body's ``user_id``: 400 M_MISSING_PARAM when absent, M_BAD_JSON when not a string,
    M_INVALID_PARAM when not a user ID."""
    if key not in body:
        raise missing_param(f"Missing '{key}'")
    value = body[key]
    if not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    if not ids.is_valid_user_id(value):
        raise invalid_param(f"Invalid user ID {value!r}")
    return value
