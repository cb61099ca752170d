"""Finding an event by its ID alone, for the deprecated ``GET /events/{eventId}`` (old_sync.yaml):
"You must have permission to retrieve this event e.g. by being a member in the room for this
event". The room comes from the event; visibility is the one of
``GET /rooms/{roomId}/event/{eventId}`` (ClientRoomService.get_event)."""
from __future__ import annotations

from homeserver.http.errors import not_found
from homeserver.protocol import ids
from homeserver.protocol.events import Event

from .client_rooms import ClientRoomService
from .pipeline import RoomEventService


class EventLookupService:
    def __init__(self, hs):
        self.events = hs.get(RoomEventService)
        self.rooms = hs.get(ClientRoomService)

    async def get_visible_event(self, requester, event_id: str) -> Event:
        """The event if the requester may see it; 404 M_NOT_FOUND when it is unknown, rejected,
        not an event ID, or hidden by the history visibility rules (the same answer for all, so
        nothing leaks)."""
        event = await self.events.get_event(event_id) if ids.is_valid_event_id(event_id) else None
        if event is None:
            raise not_found("Event not found.")
        return await self.rooms.get_event(requester, event.room_id, event_id)
