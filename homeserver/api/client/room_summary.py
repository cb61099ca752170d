"""Room summaries (client-server-api "Room Summaries", room_summary.yaml; MSC3266)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.hierarchy import SpaceHierarchyService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    service = hs.get(SpaceHierarchyService)

    async def get_summary(request, roomIdOrAlias):
        """GET /_matrix/client/v1/room_summary/{roomIdOrAlias}: the summary of a room the caller may
        see (anonymous callers too, for public, knockable or world-readable rooms); 404 otherwise."""
        requester = await auth.get_optional_requester(request, allow_guest=True)
        return 200, await service.get_room_summary(requester, roomIdOrAlias)

    router.add("GET", "/_matrix/client/v1/room_summary/{roomIdOrAlias}", get_summary, "client")
    # MSC3266's unstable paths, still used by some clients.
    router.add("GET", "/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", get_summary, "client")
    router.add("GET", "/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", get_summary,
               "client")
