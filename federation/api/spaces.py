"""``GET /_matrix/federation/v1/hierarchy/{roomId}`` (space_hierarchy.yaml) and
``GET /_matrix/federation/v1/timestamp_to_event/{roomId}`` (events.yaml)."""
from __future__ import annotations

from homeserver.http.errors import invalid_param, missing_param

from ..handlers.spaces import FederationSpacesHandler
from .common import origin_of, room_id_param

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    spaces = hs.get(FederationSpacesHandler)

    async def hierarchy(request, roomId: str):
        """GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only → ``{room, children,
        inaccessible_children}``; 404 when unknown or not accessible."""
        origin = await origin_of(hs, request)
        suggested = (request.arg("suggested_only") or "false").lower() == "true"
        return 200, await spaces.hierarchy(origin, room_id_param(roomId), suggested)

    async def timestamp_to_event(request, roomId: str):
        """GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts&dir=f|b → ``{event_id, origin_server_ts}``."""
        origin = await origin_of(hs, request)
        raw_ts, direction = request.arg("ts"), request.arg("dir")
        if raw_ts is None or direction is None:
            raise missing_param("ts and dir are required")
        if direction not in ("f", "b"):
            raise invalid_param("dir must be 'f' or 'b'")
        try:
            ts = int(raw_ts)
        except ValueError:
            raise invalid_param("ts must be an integer") from None
        return 200, await spaces.timestamp_to_event(origin, room_id_param(roomId), ts, direction == "f")

    router.add("GET", f"{V1}/hierarchy/{{roomId}}", hierarchy, "federation")
    router.add("GET", f"{V1}/timestamp_to_event/{{roomId}}", timestamp_to_event, "federation")
