"""GET /_matrix/federation/v1/openid/userinfo (server-server-api "OpenID", openid.yaml).

Served on both the ``federation`` and the ``openid`` listener resources (Synapse's ``openid``
resource exposes only this endpoint). It needs no X-Matrix signature: the caller is a third
party (a widget, an Element Call service) holding a token the user gave it.
"""
from __future__ import annotations

from homeserver.accounts.openid import OpenIdService
from homeserver.http.errors import MatrixError

PATH = "/_matrix/federation/v1/openid/userinfo"


def register_routes(hs, router) -> None:
    openid = hs.get(OpenIdService)

    async def userinfo(request):
        """``{"sub": user_id}`` for a live OpenID token; 401 M_UNKNOWN_TOKEN when it is unknown
        or expired, 401 M_MISSING_TOKEN when ``access_token`` is absent (as Synapse)."""
        token = request.arg("access_token")
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Access Token required")
        user_id = await openid.user_for_token(token)
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access Token unknown or expired")
        return 200, {"sub": user_id}

    router.add("GET", PATH, userinfo, "federation")
    router.add("GET", PATH, userinfo, "openid")
