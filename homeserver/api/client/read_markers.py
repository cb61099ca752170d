"""POST /rooms/{roomId}/read_markers (client-server-api "Fully read markers", read_markers.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.ephemeral.receipts import ReceiptsService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    receipts = hs.get(ReceiptsService)

    async def post_read_markers(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers: move ``m.fully_read`` and, when
        given, the ``m.read``/``m.read.private`` receipts."""
        requester = await auth.get_requester(request, allow_guest=True)
        await receipts.set_read_markers(requester.user_id, roomId, request.json())
        return 200, {}

    router.add_client("POST", "/rooms/{roomId}/read_markers", post_read_markers)
