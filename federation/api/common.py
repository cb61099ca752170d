"""Shared by the federation endpoints: who is asking, and the shapes of path and query values."""
from __future__ import annotations

from homeserver.http.errors import invalid_param
from homeserver.protocol import ids

from ..request_auth import authenticate_request


async def origin_of(hs, request) -> str:
    """The verified origin of a federation request (server-server-api.md "Request
    Authentication"); a server we were backing off from is retried now that it talks to us."""
    origin = await authenticate_request(hs, request)
    from ..sender import FederationSender
    hs.get(FederationSender).on_inbound_request(origin)
    return origin


def room_id_param(room_id: str) -> str:
    if not ids.is_valid_room_id(room_id):
        raise invalid_param(f"{room_id!r} is not a room ID")
    return room_id


def event_id_param(event_id: str) -> str:
    if not ids.is_valid_event_id(event_id):
        raise invalid_param(f"{event_id!r} is not an event ID")
    return event_id


def int_arg(request, name: str, default: int) -> int:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid_param(f"{name} must be an integer") from None
