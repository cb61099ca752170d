"""Reporting content (client-server-api "Reporting content", report_content.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.rooms.client_rooms import ClientRoomService

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)

    async def report_event(request, roomId, eventId):
        """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} ``{reason?}`` → ``{}``;
        404 unless the reporter is joined and the event is in the room (``score``, removed in
        v1.18, is accepted and not checked)."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        body = request.json(allow_empty=True)
        await rooms.report_event(requester, roomId, eventId, body.get("reason"), body.get("score"))
        return 200, {}

    async def report_room(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/report ``{reason}`` → ``{}``; 404 for unknown rooms."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        body = request.json()
        await rooms.report_room(requester, roomId, body.get("reason"))
        return 200, {}

    async def report_user(request, userId):
        """POST /_matrix/client/v3/users/{userId}/report ``{reason}`` → ``{}``; 404 for unknown users."""
        requester = await auth.get_requester(request)
        body = request.json()
        await rooms.report_user(requester, userId, body.get("reason"))
        return 200, {}

    router.add_client("POST", "/rooms/{roomId}/report/{eventId}", report_event)
    router.add_client("POST", "/rooms/{roomId}/report", report_room)
    router.add_client("POST", "/users/{userId}/report", report_user)
