"""GET /_matrix/client/v1/auth_metadata (client-server-api "Authentication API discovery",
oauth_server_metadata.yaml).

uzel offers only the legacy authentication API (/login, /register, UIA); it has no OAuth 2.0
authorisation server. "the server SHOULD respond with 404 and an M_UNRECOGNIZED error code if the
corresponding API is not supported", so the route exists only to say so explicitly (with the
spec's example wording) rather than by falling through the router.
"""
from __future__ import annotations

from homeserver.http.errors import unrecognized


def register_routes(hs, router) -> None:
    async def auth_metadata(request):
        """GET /_matrix/client/v1/auth_metadata: 404 M_UNRECOGNIZED (no OAuth 2.0 API)."""
        raise unrecognized(404, "Legacy authentication is in use on this homeserver.")

    router.add("GET", "/_matrix/client/v1/auth_metadata", auth_metadata, "client")
