"""POST /user/{userId}/openid/request_token (client-server-api "OpenID", openid.yaml)."""
from __future__ import annotations

from homeserver.accounts.account import AccountService
from homeserver.accounts.auth import AuthService
from homeserver.accounts.openid import OpenIdService
from homeserver.http.errors import forbidden


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    openid = hs.get(OpenIdService)

    async def revoke_openid_tokens(user_id: str, erase: bool) -> None:
        await openid.revoke_user_tokens(user_id)

    hs.get(AccountService).on_deactivate.append(revoke_openid_tokens)

    async def request_token(request, userId):
        """POST /_matrix/client/v3/user/{userId}/openid/request_token: an OpenID token for the
        requester; 403 M_FORBIDDEN for any other user. The body must be a JSON object (an empty
        one, "reserved for future expansion")."""
        requester = await auth.get_requester(request)
        if userId != requester.user_id:
            raise forbidden("Cannot request tokens for other users.")
        request.json()
        return 200, await openid.issue_token(requester.user_id)

    router.add_client("POST", "/user/{userId}/openid/request_token", request_token)
