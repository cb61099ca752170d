"""Deprecated GET /events/{eventId} (old_sync.yaml, "Get a single event by event ID")."""
from __future__ import annotations

from homeserver.accounts.auth import AuthService
from homeserver.history.relations import RelationsService
from homeserver.rooms.event_lookup import EventLookupService


def register_routes(hs, router) -> None:
    auth = hs.get(AuthService)
    lookup = hs.get(EventLookupService)
    relations = hs.get(RelationsService)

    async def get_event(request, eventId):
        """GET /_matrix/client/v3/events/{eventId}: the client event, as
        /rooms/{roomId}/event/{eventId} serves it, if the requester may see it; else 404
        M_NOT_FOUND."""
        requester = await auth.get_requester(request, allow_guest=True)
        event = await lookup.get_visible_event(requester, eventId)
        served = await relations.serialize_events([event], requester.user_id, device_id=requester.device_id)
        return 200, served[0]

    router.add_client("GET", "/events/{eventId}", get_event)
