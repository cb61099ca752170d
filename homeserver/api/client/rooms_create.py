"""Room creation (client-server-api "Room creation", create_room.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.rooms.client_rooms import ClientRoomService, parse_create_room


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    rooms = hs.get(ClientRoomService)

    async def create_room(request):
        """POST /_matrix/client/v3/createRoom → ``{"room_id"}``. 400 M_BAD_JSON (wrong types),
        M_INVALID_PARAM, M_ROOM_IN_USE (alias taken), M_INVALID_ROOM_STATE (initial state the
        power levels refuse), M_UNSUPPORTED_ROOM_VERSION, M_SERVER_NOT_TRUSTED (invite_3pid: no
        identity server); 429 M_LIMIT_EXCEEDED (rc_message)."""
        requester = await auth.get_requester(request)
        req = parse_create_room(request.json())
        return 200, {"room_id": await rooms.create_room(requester, req)}

    router.add_client("POST", "/createRoom", create_room)
