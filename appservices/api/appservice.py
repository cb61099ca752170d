"""Client-server endpoints of the application service API, and the start of delivery.

Spec: application-service-api.md "Client-Server API Extensions" (appservice_ping.yaml,
appservice_room_directory.yaml), "Third-party networks" through the client-server
``/thirdparty`` endpoints (third_party_lookup.yaml), and uzel's admin view of delivery backlogs.

Loading the registrations happens here, when the routes are registered: an invalid file stops
start-up with a ConfigError naming the file and the field.
"""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.storage.directory_store import DirectoryStore

from ..client import AppServiceClient, AppServiceUnreachable
from ..pusher import AppServiceDistributor
from ..service import AppServices

_NOT_FORWARDED = ("access_token", "user_id", "device_id", "ts")


def register_routes(hs, router) -> None:
    appservices = hs.get(AppServices)
    appservices.install()
    distributor = hs.get(AppServiceDistributor)
    if appservices.services:
        hs.on_start(lambda: distributor.start(appservices.services))

        def _seen(service):
            sender = distributor.senders.get(service.id)
            if sender is not None:
                sender.service_seen()
        appservices.on_service_seen.append(_seen)
    auth = hs.get(AuthService)
    client = hs.get(AppServiceClient)

    async def ping(request, appserviceId):
        """POST /_matrix/client/v1/appservice/{appserviceId}/ping: the homeserver pings the
        service (POST /_matrix/app/v1/ping) and reports how long it took. 403 M_FORBIDDEN for
        another token, 400 M_URL_NOT_SET, 502 M_BAD_STATUS / M_CONNECTION_FAILED, 504
        M_CONNECTION_TIMEOUT."""
        requester = await auth.get_requester(request)
        service = requester.app_service
        if service is None or service.id != appserviceId:
            raise forbidden("Provided access token is not the application service's token for this ID")
        body = request.json(allow_empty=True)
        txn_id = body.get("transaction_id")
        if txn_id is not None and not isinstance(txn_id, str):
            raise bad_json("'transaction_id' must be a string")
        if service.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "Application service URL is not set")
        try:
            resp, duration_ms = await client.ping(service, txn_id)
        except AppServiceUnreachable as e:
            if e.timed_out:
                raise MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out")
            raise MatrixError(502, "M_CONNECTION_FAILED", f"Connection to application service failed: {e.reason}")
        if not resp.ok:
            raise MatrixError(502, "M_BAD_STATUS", "Application service returned a non-2xx status",
                              status=resp.code, body=resp.body.decode("utf-8", "replace"))
        sender = distributor.senders.get(service.id)
        if sender is not None:
            sender.service_seen()
        return 200, {"duration_ms": duration_ms}

    async def publish(request, networkId, roomId):
        """PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}: publish (or with
        ``visibility: private`` unpublish) a room in the service's directory for one network;
        application services only (403)."""
        requester = await auth.get_requester(request)
        if requester.app_service is None:
            raise forbidden("Only application services can publish to a network's room directory")
        body = request.json()
        visibility = body.get("visibility")
        if visibility not in ("public", "private"):
            raise invalid_param("'visibility' must be 'public' or 'private'")
        if not ids.is_valid_room_id(roomId):
            raise invalid_param("Invalid room ID")
        await hs.get(DirectoryStore).set_appservice_room_visibility(
            requester.app_service.id, networkId, roomId, visibility == "public")
        return 200, {}

    async def protocols(request):
        """GET /_matrix/client/v3/thirdparty/protocols: the protocols the services provide."""
        await auth.get_requester(request)
        return 200, await appservices.get_protocols()

    async def protocol(request, protocol):
        """GET /_matrix/client/v3/thirdparty/protocol/{protocol}: one protocol; 404 unknown."""
        await auth.get_requester(request)
        found = (await appservices.get_protocols()).get(protocol) if appservices.services_for_protocol(protocol) \
            else None
        if found is None:
            raise not_found("The protocol is unknown.")
        return 200, found

    def _lookup(kind: str, query_key: str | None):
        async def handler(request, protocol=None):
            """GET /_matrix/client/v3/thirdparty/{location,user}[/{protocol}]: asked of the
            services providing the protocol (or any, with ?alias= / ?userid=); 404 when none answer."""
            await auth.get_requester(request)
            args = {k: v for k, v in request.query.items() if k not in _NOT_FORWARDED}
            if protocol is None and not request.arg(query_key):
                raise invalid_param(f"Missing '{query_key}' query parameter")
            if protocol is not None and not appservices.services_for_protocol(protocol):
                raise not_found("The protocol is unknown.")
            results = await appservices.query_thirdparty_list(kind, protocol, args)
            if not results:
                raise not_found(f"No third-party {kind}s were found.")
            return 200, results
        return handler

    async def admin_status(request):
        """GET /_uzel/admin/v1/appservices: every registered service with its delivery backlog
        (server admins only)."""
        requester = await auth.get_requester(request)
        if not await auth.is_server_admin(requester.user_id):
            raise forbidden("You are not a server admin")
        status = await distributor.status() if distributor.senders else []
        known = {s["id"] for s in status}
        for s in appservices.services:
            if s.id not in known:
                status.append({"id": s.id, "url": None, "sender": s.sender, "state": "no url",
                               "pending_transactions": 0})
        return 200, {"appservices": status}

    router.add_client("POST", "/appservice/{appserviceId}/ping", ping, versions=("v1",))
    router.add_client("PUT", "/directory/list/appservice/{networkId}/{roomId}", publish)
    router.add_client("GET", "/thirdparty/protocols", protocols)
    router.add_client("GET", "/thirdparty/protocol/{protocol}", protocol)
    router.add_client("GET", "/thirdparty/location/{protocol}", _lookup("location", None))
    router.add_client("GET", "/thirdparty/user/{protocol}", _lookup("user", None))
    router.add_client("GET", "/thirdparty/location", _lookup("location", "alias"))
    router.add_client("GET", "/thirdparty/user", _lookup("user", "userid"))
    router.add("GET", "/_uzel/admin/v1/appservices", admin_status, "client")
