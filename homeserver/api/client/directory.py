"""Room aliases and directory visibility (client-server-api "Room aliases", directory.yaml;
"Published room directory", list_public_rooms.yaml ``/directory/list/room``)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.aliases import AliasService
from homeserver.directory.public_rooms import PublicRoomListService
from homeserver.http.errors import invalid_param


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    aliases = hs.get(AliasService)
    public_rooms = hs.get(PublicRoomListService)

    async def put_alias(request, roomAlias):
        """PUT /_matrix/client/v3/directory/room/{roomAlias}: map a local alias to a room the user is
        in. 400 M_INVALID_PARAM (bad or foreign alias), 403 (not in the room), 404 (unknown room),
        409 M_UNKNOWN (alias exists)."""
        requester = await auth.get_requester(request)
        body = request.json()
        await aliases.create_alias(requester, roomAlias, body.get("room_id"))
        return 200, {}

    async def get_alias(request, roomAlias):
        """GET /_matrix/client/v3/directory/room/{roomAlias}: resolve an alias (no auth required).
        400 M_INVALID_PARAM for bad aliases, 404 M_NOT_FOUND for unknown ones."""
        room_id, servers = await aliases.resolve(roomAlias)
        return 200, {"room_id": room_id, "servers": servers}

    async def delete_alias(request, roomAlias):
        """DELETE /_matrix/client/v3/directory/room/{roomAlias}: remove an alias (its creator, admins,
        room moderators); 403 otherwise, 404 when unknown."""
        requester = await auth.get_requester(request)
        await aliases.delete_alias(requester, roomAlias)
        return 200, {}

    async def local_aliases(request, roomId):
        """GET /_matrix/client/v3/rooms/{roomId}/aliases: this server's aliases of a room, for its
        members or anyone if the room is world_readable; 403 otherwise."""
        requester = await auth.get_requester(request)
        return 200, {"aliases": await aliases.get_local_aliases(requester, roomId)}

    async def get_visibility(request, roomId):
        """GET /_matrix/client/v3/directory/list/room/{roomId}: "public" or "private"; 404 unknown room."""
        return 200, {"visibility": await public_rooms.get_visibility(roomId)}

    async def put_visibility(request, roomId):
        """PUT /_matrix/client/v3/directory/list/room/{roomId}: publish/unpublish (default "public");
        room moderators and admins only (403), 404 unknown room, 400 bad visibility."""
        requester = await auth.get_requester(request)
        body = request.json(allow_empty=True)
        visibility = body.get("visibility", "public")
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        await public_rooms.set_visibility(requester, roomId, visibility)
        return 200, {}

    router.add_client("PUT", "/directory/room/{roomAlias}", put_alias)
    router.add_client("GET", "/directory/room/{roomAlias}", get_alias)
    router.add_client("DELETE", "/directory/room/{roomAlias}", delete_alias)
    router.add_client("GET", "/rooms/{roomId}/aliases", local_aliases)
    router.add_client("GET", "/directory/list/room/{roomId}", get_visibility)
    router.add_client("PUT", "/directory/list/room/{roomId}", put_visibility)
