"""Space hierarchy (client-server-api modules/spaces.md, space_hierarchy.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.directory.hierarchy import SpaceHierarchyService
from homeserver.http.errors import invalid_param
from homeserver.http.params import bool_arg


def _int_arg(request, name: str) -> int | None:
    value = request.arg(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid_param(f"{name} must be an integer")


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    service = hs.get(SpaceHierarchyService)

    async def get_hierarchy(request, roomId):
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy: a page of the space tree under roomId,
        depth first (suggested_only, limit, max_depth, from). 403 when the user may not see the
        root, 400 for bad parameters or tokens."""
        requester = await auth.get_requester(request)
        return 200, await service.get_hierarchy(
            requester, roomId, suggested_only=bool_arg(request, "suggested_only"),
            max_depth=_int_arg(request, "max_depth"), limit=_int_arg(request, "limit"),
            from_token=request.arg("from"))

    router.add("GET", "/_matrix/client/v1/rooms/{roomId}/hierarchy", get_hierarchy, "client")
