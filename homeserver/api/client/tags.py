"""Room tagging (client-server-api/modules/tags.md, tags.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.account_data import AccountDataService
from homeserver.http.errors import forbidden


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    account_data = hs.get(AccountDataService)

    async def _own(request, user_id: str):
        requester = await auth.get_requester(request)
        if requester.user_id != user_id:
            raise forbidden("Cannot access tags of other users.")

    async def get_tags(request, userId, roomId):
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags: ``{"tags": {...}}``."""
        await _own(request, userId)
        account_data.check_room_id(roomId)
        return 200, {"tags": await account_data.get_tags(userId, roomId)}

    async def put_tag(request, userId, roomId, tag):
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}: add or replace a tag
        (body: the tag object, e.g. ``{"order": 0.25}``)."""
        await _own(request, userId)
        account_data.check_room_id(roomId)
        body = account_data.check_tag(tag, request.json())
        await account_data.add_tag(userId, roomId, tag, body)
        return 200, {}

    async def delete_tag(request, userId, roomId, tag):
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}: 200 even if unset."""
        await _own(request, userId)
        account_data.check_room_id(roomId)
        await account_data.remove_tag(userId, roomId, tag)
        return 200, {}

    router.add_client("GET", "/user/{userId}/rooms/{roomId}/tags", get_tags)
    router.add_client("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", put_tag)
    router.add_client("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", delete_tag)
