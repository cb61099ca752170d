"""Presence (client-server-api/modules/presence.md, presence.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.presence import PresenceService, parse_presence_body
from homeserver.http.errors import forbidden, not_found


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    presence = hs.get(PresenceService)

    async def put_status(request, userId):
        """PUT /_matrix/client/v3/presence/{userId}/status: set one's own presence (403 for
        others); accepted and ignored when presence is disabled."""
        requester = await auth.get_requester(request, allow_guest=True)
        if requester.user_id != userId:
            raise forbidden("You cannot set the presence state of another user")
        state, status_msg = parse_presence_body(request.json())
        await presence.set_state(userId, state, status_msg)
        return 200, {}

    async def get_status(request, userId):
        """GET /_matrix/client/v3/presence/{userId}/status: 403 unless the user shares a room with
        the requester, 404 for users this server does not know. Remote users: what their server
        last pushed (m.presence EDUs), to users sharing a room with them."""
        requester = await auth.get_requester(request, allow_guest=True)
        if not presence.is_mine(userId):
            if not await presence.may_see(requester.user_id, userId):
                raise not_found("Presence of this remote user is not available")
        elif requester.user_id != userId:
            if not await _user_exists(hs, userId):
                raise not_found("Unknown user")
            if not await presence.may_see(requester.user_id, userId):
                raise forbidden("You are not allowed to see this user's presence")
        return 200, await presence.get_status(userId)

    router.add_client("PUT", "/presence/{userId}/status", put_status)
    router.add_client("GET", "/presence/{userId}/status", get_status)


async def _user_exists(hs, user_id: str) -> bool:
    from homeserver.storage.accounts_store import AccountsStore
    return await hs.get(AccountsStore).user_exists(user_id)
