"""PUT /rooms/{roomId}/typing/{userId} (client-server-api "Typing Notifications", typing.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.api.client.room_common import check_room_id
from homeserver.ephemeral.typing import TypingService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    typing = hs.get(TypingService)

    async def put_typing(request, roomId, userId):
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}: start (for ``timeout`` ms) or
        stop typing; only for oneself (403) in a room one is joined to (403)."""
        requester = await auth.get_requester(request, allow_guest=True)
        check_room_id(roomId)
        await typing.set_typing(requester.user_id, roomId, userId, request.json())
        return 200, {}

    router.add_client("PUT", "/rooms/{roomId}/typing/{userId}", put_typing)
