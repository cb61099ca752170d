"""GET /admin/whois/{userId} (client-server-api "Server administration", admin.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.accounts.whois import WhoisService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    whois = hs.get(WhoisService)

    async def get_whois(request, userId):
        """GET /_matrix/client/v3/admin/whois/{userId}: the user's devices with the IP address,
        time and user agent last seen; for the user themself or a server admin (else 403)."""
        requester = await auth.get_requester(request)
        return 200, await whois.whois(requester, userId)

    router.add_client("GET", "/admin/whois/{userId}", get_whois)
