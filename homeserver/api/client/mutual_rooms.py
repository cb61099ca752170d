"""Mutual rooms (client-server-api modules/mutual_rooms.md, mutual_rooms.yaml, v1.19; MSC2666)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.user_directory import UserDirectoryService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    service = hs.get(UserDirectoryService)

    async def mutual_rooms(request):
        """GET /_matrix/client/v1/mutual_rooms?user_id=…&from=…: rooms both the caller and user_id are
        joined to, in batches. 400 for a missing, invalid or own user ID, or a bad token."""
        requester = await auth.get_requester(request)
        return 200, await service.mutual_rooms(requester, request.arg("user_id"), request.arg("from"))

    router.add("GET", "/_matrix/client/v1/mutual_rooms", mutual_rooms, "client")
    router.add("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms", mutual_rooms, "client")
