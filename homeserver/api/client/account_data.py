"""Account data (client-server-api "Client Config", account-data.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.account_data import AccountDataService
from homeserver.http.errors import forbidden, not_found


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    account_data = hs.get(AccountDataService)

    async def _own(request, user_id: str, verb: str):
        requester = await auth.get_requester(request)
        if requester.user_id != user_id:
            raise forbidden(f"Cannot {verb} account data for other users.")
        return requester

    async def put_global(request, userId, type):
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type}: set global account data;
        403 for other users, 405 M_BAD_JSON for m.fully_read / m.push_rules."""
        await _own(request, userId, "add")
        body = request.json()
        account_data.check_type(type)
        await account_data.set_global(userId, type, body)
        return 200, {}

    async def get_global(request, userId, type):
        """GET /_matrix/client/v3/user/{userId}/account_data/{type}: 404 M_NOT_FOUND if unset."""
        await _own(request, userId, "get")
        content = await account_data.get_global(userId, type)
        if content is None:
            raise not_found("Account data not found.")
        return 200, content

    async def put_room(request, userId, roomId, type):
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}: set room
        account data; 400 M_INVALID_PARAM for a bad room ID, 405 for server-managed types."""
        await _own(request, userId, "add")
        account_data.check_room_id(roomId)
        body = request.json()
        account_data.check_type(type)
        await account_data.set_room(userId, roomId, type, body)
        return 200, {}

    async def get_room(request, userId, roomId, type):
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}."""
        await _own(request, userId, "get")
        account_data.check_room_id(roomId)
        content = await account_data.get_room(userId, roomId, type)
        if content is None:
            raise not_found("Room account data not found.")
        return 200, content

    router.add_client("PUT", "/user/{userId}/account_data/{type}", put_global)
    router.add_client("GET", "/user/{userId}/account_data/{type}", get_global)
    router.add_client("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", put_room)
    router.add_client("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", get_room)
