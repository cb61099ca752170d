"""``GET /_matrix/federation/v1/query/{directory,profile}`` (query.yaml) and ``/version`` (version.yaml)."""
from __future__ import annotations

from ..handlers.queries import FederationQueryHandler
from .common import origin_of

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    queries = hs.get(FederationQueryHandler)

    async def query_directory(request):
        """GET /_matrix/federation/v1/query/directory?room_alias → ``{room_id, servers}``; 404 when unknown."""
        await origin_of(hs, request)
        return 200, await queries.query_directory(request.arg("room_alias"))

    async def query_profile(request):
        """GET /_matrix/federation/v1/query/profile?user_id&field → the profile or one field; 404 when unknown."""
        await origin_of(hs, request)
        return 200, await queries.query_profile(request.arg("user_id"), request.arg("field"))

    async def version(request):
        """GET /_matrix/federation/v1/version → ``{server: {name, version}}`` (no authentication)."""
        from homeserver.app import _version
        return 200, {"server": {"name": "uzel", "version": _version()}}

    router.add("GET", f"{V1}/query/directory", query_directory, "federation")
    router.add("GET", f"{V1}/query/profile", query_profile, "federation")
    router.add("GET", f"{V1}/version", version, "federation")
