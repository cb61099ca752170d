"""Filters (client-server-api "Filtering", filter.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.filters import FilterService
from homeserver.http.errors import forbidden


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    filters = hs.get(FilterService)

    async def create_filter(request, userId):
        """POST /_matrix/client/v3/user/{userId}/filter: validate and store a filter; 403 for
        another user's ID, 400 M_BAD_JSON / M_INVALID_PARAM for a malformed filter."""
        requester = await auth.get_requester(request, allow_guest=True)
        if requester.user_id != userId:
            raise forbidden("Cannot create filters for other users")
        body = request.json()
        return 200, {"filter_id": await filters.create_filter(userId, body)}

    async def get_filter(request, userId, filterId):
        """GET /_matrix/client/v3/user/{userId}/filter/{filterId}: the stored filter; 403 for
        another user's ID, 404 M_NOT_FOUND for an unknown filter."""
        requester = await auth.get_requester(request, allow_guest=True)
        if requester.user_id != userId:
            raise forbidden("Cannot get filters for other users")
        return 200, await filters.get_filter_json(userId, filterId)

    router.add_client("POST", "/user/{userId}/filter", create_filter)
    router.add_client("GET", "/user/{userId}/filter/{filterId}", get_filter)
