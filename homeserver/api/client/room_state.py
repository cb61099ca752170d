"""Room state: reading and sending state events (rooms.yaml, room_state.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.http.errors import invalid_param
from homeserver.rooms.client_rooms import ClientRoomService
from homeserver.rooms.serialize import EventSerializer

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)
    serializer = hs.get(EventSerializer)

    async def get_state_event(request, roomId, eventType, stateKey=""):
        """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}?format=content|event:
        the content (or the whole client event) of the state the requester may read — current
        state, or the state when they left; 403 if never a member, 404 if no such state."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        fmt = request.arg("format", "content")
        if fmt not in ("content", "event"):
            raise invalid_param("format must be 'content' or 'event'")
        event = await rooms.get_state_event(requester, roomId, eventType, stateKey)
        served = await serializer.serialize_one(event, user_id=requester.user_id, device_id=requester.device_id)
        return 200, served if fmt == "event" else served["content"]

    async def get_state(request, roomId):
        """GET /_matrix/client/v3/rooms/{roomId}/state → list of client events (the state at the
        requester's departure if they left); 403 if never a member."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        events = await rooms.get_state(requester, roomId)
        return 200, await serializer.serialize_events(events, user_id=requester.user_id,
                                                      device_id=requester.device_id)

    async def put_state(request, roomId, eventType, stateKey=""):
        """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} → ``{"event_id"}``;
        400 M_BAD_ALIAS / M_INVALID_PARAM for canonical aliases, 403 when not allowed."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        content = request.json()
        event = await rooms.send_state(requester, roomId, eventType, stateKey, content)
        return 200, {"event_id": event.event_id}

    router.add_client("GET", "/rooms/{roomId}/state", get_state)
    router.add_client("GET", "/rooms/{roomId}/state/{eventType}/{stateKey?}", get_state_event)
    router.add_client("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey?}", put_state)
