"""``/.well-known/matrix/client`` and ``/.well-known/matrix/server`` (client-server-api "Server
Discovery"; server-server-api "Resolving server names")."""
from __future__ import annotations

from homeserver.http.errors import not_found


def register_routes(hs, router) -> None:
    config = hs.config

    async def client_well_known(request):
        body = {"m.homeserver": {"base_url": config.public_baseurl.rstrip("/")}}
        body.update(getattr(config, "extra_well_known_client_content", None) or {})
        return 200, body

    async def server_well_known(request):
        delegated = getattr(config, "serve_server_wellknown", False)
        if not delegated:
            raise not_found(".well-known/matrix/server is not served by this server")
        federation_port = next((lst.port for lst in config.listeners if "federation" in lst.resources
                                and lst.tls), 8448)
        return 200, {"m.server": f"{config.server_name.split(':')[0]}:{federation_port}"}

    router.add("GET", "/.well-known/matrix/client", client_well_known, "client")
    router.add("GET", "/.well-known/matrix/server", server_well_known, "federation")
