"""The published room directory listing (client-server-api "Published room directory",
list_public_rooms.yaml ``/publicRooms``)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.public_rooms import PublicRoomListService
from homeserver.http.errors import invalid_param


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    service = hs.get(PublicRoomListService)
    anonymous_ok = bool(getattr(hs.config, "allow_public_rooms_without_auth", False))

    async def get_public_rooms(request):
        """GET /_matrix/client/v3/publicRooms: a page of the directory (limit, since, server).
        Without a token only when allow_public_rooms_without_auth is set (else 401)."""
        if anonymous_ok:
            await auth.get_optional_requester(request, allow_guest=True)
        else:
            await auth.get_requester(request, allow_guest=True)
        return 200, await service.list_rooms(limit=request.arg("limit"), since=request.arg("since"),
                                             server=request.arg("server"))

    async def post_public_rooms(request):
        """POST /_matrix/client/v3/publicRooms: as GET, with filter.generic_search_term,
        filter.room_types, include_all_networks and third_party_instance_id."""
        await auth.get_requester(request, allow_guest=True)
        body = request.json(allow_empty=True)
        flt = body.get("filter")
        if flt is None:
            flt = {}
        if not isinstance(flt, dict):
            raise invalid_param("filter must be an object")
        return 200, await service.list_rooms(
            limit=body.get("limit"), since=body.get("since"), server=request.arg("server"),
            search_term=flt.get("generic_search_term"), room_types=flt.get("room_types"),
            include_all_networks=body.get("include_all_networks", False),
            third_party_instance_id=body.get("third_party_instance_id"))

    router.add_client("GET", "/publicRooms", get_public_rooms)
    router.add_client("POST", "/publicRooms", post_public_rooms)
