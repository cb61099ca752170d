"""VoIP TURN credentials (client-server-api/modules/voip_events.md, voip.yaml)."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.client.voip import guests_allowed, turn_server_response
from homeserver.http.errors import forbidden


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)

    async def turn_server(request):
        """GET /_matrix/client/v3/voip/turnServer: time-limited TURN credentials from the
        turn_* configuration; ``{}`` when none is configured; 403 for guests unless allowed."""
        requester = await auth.get_requester(request, allow_guest=True)
        if requester.is_guest and not guests_allowed(hs.config):
            raise forbidden("Guest access to TURN credentials is disabled")
        return 200, turn_server_response(hs.config, requester.user_id, hs.clock_ms())

    router.add_client("GET", "/voip/turnServer", turn_server)
