"""Redactions (client-server-api "Redactions", redaction.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.rooms.client_rooms import ClientRoomService

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)

    async def redact(request, roomId, eventId, txnId):
        """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} ``{reason?}`` →
        ``{"event_id"}`` of the redaction; idempotent per txnId. 403 when redacting another
        user's event without the ``redact`` power level."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        body = request.json(allow_empty=True)
        event = await rooms.redact(requester, roomId, eventId, txnId, body)
        return 200, {"event_id": event.event_id}

    router.add_client("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", redact)
