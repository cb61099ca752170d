"""POST /rooms/{roomId}/receipt/{receiptType}/{eventId} (client-server-api "Receipts",
receipts.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.ephemeral.receipts import ReceiptsService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    receipts = hs.get(ReceiptsService)

    async def post_receipt(request, roomId, receiptType, eventId):
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}: ``m.read``,
        ``m.read.private`` (optionally threaded with ``thread_id``) or ``m.fully_read``;
        400 M_INVALID_PARAM for other types or a bad ``thread_id``, 403 when not joined."""
        requester = await auth.get_requester(request, allow_guest=True)
        body = request.json(allow_empty=True)
        await receipts.send_receipt(requester.user_id, roomId, receiptType, eventId, body.get("thread_id"))
        return 200, {}

    router.add_client("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", post_receipt)
