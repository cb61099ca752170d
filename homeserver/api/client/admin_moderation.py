"""Account moderation endpoints (client-server-api "Server administration", admin.yaml, v1.18):
``GET``/``PUT /_matrix/client/v1/admin/suspend/{userId}`` and ``/admin/lock/{userId}``."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.moderation import LOCKED, SUSPENDED, AccountModerationService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    moderation = hs.get(AccountModerationService)

    def _routes(flag: str, path: str):
        async def get_status(request, userId):
            requester = await auth.get_requester(request)
            return 200, {flag: await moderation.get_flag(requester, userId, flag)}

        async def set_status(request, userId):
            requester = await auth.get_requester(request)
            body = request.json()
            return 200, {flag: await moderation.set_flag(requester, userId, flag, body.get(flag))}

        get_status.__doc__ = (f"GET /_matrix/client/v1/admin/{path}/{{userId}} → ``{{\"{flag}\": bool}}``; server "
                              "admins only (403), local (400 M_INVALID_PARAM) and existing (404) users.")
        set_status.__doc__ = (f"PUT /_matrix/client/v1/admin/{path}/{{userId}} ``{{\"{flag}\": bool}}`` → the new "
                              "status; as GET, and 403 for the admin's own account or another admin.")
        template = f"/_matrix/client/v1/admin/{path}/{{userId}}"
        router.add("GET", template, get_status, "client")
        router.add("PUT", template, set_status, "client")

    _routes(SUSPENDED, "suspend")
    _routes(LOCKED, "lock")
