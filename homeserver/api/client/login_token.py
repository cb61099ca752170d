"""POST /_matrix/client/v1/login/get_token (client-server-api "Login", login_token.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.login_token_issuer import LoginTokenIssuer
from homeserver.accounts.uia import UiaService

from .account import PASSWORD_FLOWS


def register_routes(hs, router) -> None:
    issuer = hs.get(LoginTokenIssuer)
    if not issuer.enabled:
        return  # "Optional endpoint": unserved, so 404 M_UNRECOGNIZED like Synapse
    auth = hs.get(AuthService)
    uia = hs.get(UiaService)

    async def get_token(request):
        """POST /_matrix/client/v1/login/get_token: UIA (m.login.password) on every call, then a
        single-use m.login.token token and its lifetime in ms."""
        requester = await auth.get_requester(request)
        body = request.json()
        if issuer.require_ui_auth:
            session = await uia.check(request, body, PASSWORD_FLOWS, requester=requester)
            uia.finish(session)
        return 200, await issuer.issue(requester)

    router.add("POST", "/_matrix/client/v1/login/get_token", get_token, "client")
