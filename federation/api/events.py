"""Room reads for other servers: events.yaml (``/event``, ``/state``, ``/state_ids``,
``/get_missing_events``), backfill.yaml, event_auth.yaml."""
from __future__ import annotations

from homeserver.http.errors import bad_json, missing_param

from ..handlers.reads import FederationReadsHandler
from .common import event_id_param, int_arg, origin_of, room_id_param

V1 = "/_matrix/federation/v1"


def register_routes(hs, router) -> None:
    reads = hs.get(FederationReadsHandler)

    async def get_event(request, eventId: str):
        """GET /_matrix/federation/v1/event/{eventId} → a transaction holding the PDU."""
        origin = await origin_of(hs, request)
        return 200, await reads.get_event(origin, event_id_param(eventId))

    async def get_state(request, roomId: str):
        """GET /_matrix/federation/v1/state/{roomId}?event_id → ``{pdus, auth_chain}`` (state before)."""
        origin = await origin_of(hs, request)
        event_id = request.arg("event_id")
        if event_id is None:
            raise missing_param("event_id is required")
        return 200, await reads.state(origin, room_id_param(roomId), event_id)

    async def get_state_ids(request, roomId: str):
        """GET /_matrix/federation/v1/state_ids/{roomId}?event_id → ``{pdu_ids, auth_chain_ids}``."""
        origin = await origin_of(hs, request)
        event_id = request.arg("event_id")
        if event_id is None:
            raise missing_param("event_id is required")
        return 200, await reads.state_ids(origin, room_id_param(roomId), event_id)

    async def get_missing_events(request, roomId: str):
        """POST /_matrix/federation/v1/get_missing_events/{roomId} ``{earliest_events,
        latest_events, limit?, min_depth?}`` → ``{events}``."""
        origin = await origin_of(hs, request)
        body = request.json()
        earliest, latest = body.get("earliest_events"), body.get("latest_events")
        limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
        if not isinstance(earliest, list) or not isinstance(latest, list) \
                or not all(isinstance(e, str) for e in earliest + latest):
            raise bad_json("earliest_events and latest_events must be lists of event IDs")
        if isinstance(limit, bool) or not isinstance(limit, int) or isinstance(min_depth, bool) \
                or not isinstance(min_depth, int):
            raise bad_json("limit and min_depth must be integers")
        return 200, await reads.get_missing_events(origin, room_id_param(roomId), earliest, latest, limit, min_depth)

    async def backfill(request, roomId: str):
        """GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=… → a transaction."""
        origin = await origin_of(hs, request)
        from_ids = request.args("v")
        if not from_ids:
            raise missing_param("v is required")
        limit = int_arg(request, "limit", 10)
        return 200, await reads.backfill(origin, room_id_param(roomId), from_ids, limit)

    async def event_auth(request, roomId: str, eventId: str):
        """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} → ``{auth_chain}``."""
        origin = await origin_of(hs, request)
        return 200, await reads.event_auth(origin, room_id_param(roomId), event_id_param(eventId))

    router.add("GET", f"{V1}/event/{{eventId}}", get_event, "federation")
    router.add("GET", f"{V1}/state/{{roomId}}", get_state, "federation")
    router.add("GET", f"{V1}/state_ids/{{roomId}}", get_state_ids, "federation")
    router.add("POST", f"{V1}/get_missing_events/{{roomId}}", get_missing_events, "federation")
    router.add("GET", f"{V1}/backfill/{{roomId}}", backfill, "federation")
    router.add("GET", f"{V1}/event_auth/{{roomId}}/{{eventId}}", event_auth, "federation")
