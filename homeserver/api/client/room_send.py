"""Sending message events (client-server-api "Sending events to a room", room_send.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.rooms.client_rooms import ClientRoomService

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)

    async def send(request, roomId, eventType, txnId):
        """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} → ``{"event_id"}``.
        A retransmission (same device, room, type and txnId) returns the first event. 403 for
        non-members and events the power levels refuse, 404 for unknown rooms, 413 M_TOO_LARGE
        over 64 KiB, 429 (rc_message). ``m.room.redaction`` is accepted in every room version."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        content = request.json()
        event = await rooms.send_message(requester, roomId, eventType, content, txnId)
        return 200, {"event_id": event.event_id}

    router.add_client("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", send)
