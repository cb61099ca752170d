"""Room upgrades (modules/room_upgrades.md, room_upgrades.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.http.errors import missing_param
from homeserver.rooms.upgrade import RoomUpgradeService

from .room_common import check_room_id


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    upgrades = hs.get(RoomUpgradeService)

    async def upgrade(request, roomId):
        """POST /_matrix/client/v3/rooms/{roomId}/upgrade ``{new_version, additional_creators?}`` →
        ``{"replacement_room"}``; 400 M_UNSUPPORTED_ROOM_VERSION, 403 without the tombstone level."""
        requester = await auth.get_requester(request)
        check_room_id(roomId)
        body = request.json()
        if "new_version" not in body:
            raise missing_param("Missing 'new_version'")
        new_room = await upgrades.upgrade_room(requester, roomId, body["new_version"],
                                               body.get("additional_creators"))
        return 200, {"replacement_room": new_room}

    router.add_client("POST", "/rooms/{roomId}/upgrade", upgrade)
