"""Reading single events and rooms: /event, /initialSync, /timestamp_to_event (rooms.yaml,
room_initial_sync.yaml, room_event_by_timestamp.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.relations import RelationsService
from homeserver.http.errors import invalid_param, missing_param
from homeserver.rooms.client_rooms import ClientRoomService

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)
    relations = hs.get(RelationsService)

    async def get_event(request, roomId, eventId):
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}: the client event with its bundled
        aggregations (``unsigned["m.relations"]``, "Aggregations of child events"); 404
        M_NOT_FOUND when unknown or not visible under the history visibility rules."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        event = await rooms.get_event(requester, roomId, eventId)
        served = await relations.serialize_events([event], requester.user_id, device_id=requester.device_id)
        return 200, served[0]

    async def initial_sync(request, roomId):
        """GET /_matrix/client/v3/rooms/{roomId}/initialSync (deprecated): state, latest messages,
        membership and visibility of one room."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        return 200, await rooms.initial_sync(requester, roomId)

    async def timestamp_to_event(request, roomId):
        """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts&dir=f|b →
        ``{event_id, origin_server_ts}``; 404 when no event lies in that direction."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        ts_arg, direction = request.arg("ts"), request.arg("dir")
        if ts_arg is None:
            raise missing_param("Missing 'ts'")
        if direction is None:
            raise missing_param("Missing 'dir'")
        try:
            ts = int(ts_arg)
        except ValueError:
            raise invalid_param("'ts' must be an integer") from None
        if abs(ts) > 2**53 - 1:  # the integer range of appendices.md "Canonical JSON"
            raise invalid_param("'ts' is out of range")
        if direction not in ("f", "b"):
            raise invalid_param("'dir' must be 'f' or 'b'")
        event_id, origin_ts = await rooms.timestamp_to_event(requester, roomId, ts, direction)
        return 200, {"event_id": event_id, "origin_server_ts": origin_ts}

    router.add_client("GET", "/rooms/{roomId}/event/{eventId}", get_event)
    router.add_client("GET", "/rooms/{roomId}/initialSync", initial_sync)
    router.add("GET", "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", timestamp_to_event, "client")
