"""``GET``/``POST /_matrix/federation/v1/publicRooms`` (public_rooms.yaml): our published room
directory for other servers, only when ``allow_public_rooms_over_federation`` is set (else 403)."""
from __future__ import annotations

from homeserver.directory.public_rooms import PublicRoomListService
from homeserver.http.errors import forbidden, invalid_param

from .common import origin_of

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    service = hs.get(PublicRoomListService)

    async def _allowed(request) -> None:
        await origin_of(hs, request)
        if not hs.config.allow_public_rooms_over_federation:
            raise forbidden("This server does not publish its room directory over federation")

    async def get_public_rooms(request):
        """GET /_matrix/federation/v1/publicRooms?limit&since&include_all_networks&third_party_instance_id."""
        await _allowed(request)
        include_all = (request.arg("include_all_networks") or "false").lower() == "true"
        return 200, await service.list_rooms(limit=request.arg("limit"), since=request.arg("since"),
                                             include_all_networks=include_all,
                                             third_party_instance_id=request.arg("third_party_instance_id"))

    async def post_public_rooms(request):
        """POST /_matrix/federation/v1/publicRooms ``{limit, since, filter, include_all_networks,
        third_party_instance_id}``."""
        await _allowed(request)
        body = request.json(allow_empty=True)
        flt = body.get("filter") or {}
        if not isinstance(flt, dict):
            raise invalid_param("filter must be an object")
        return 200, await service.list_rooms(
            limit=body.get("limit"), since=body.get("since"), search_term=flt.get("generic_search_term"),
            room_types=flt.get("room_types"), include_all_networks=body.get("include_all_networks", False),
            third_party_instance_id=body.get("third_party_instance_id"))

    router.add("GET", f"{V1}/publicRooms", get_public_rooms, "federation")
    router.add("POST", f"{V1}/publicRooms", post_public_rooms, "federation")
