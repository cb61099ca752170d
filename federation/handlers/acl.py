"""Applying a room's server ACL to requests from other servers (server-server-api.md "Server
Access Control Lists (ACLs)"; the rule itself is homeserver/protocol/server_acl.py)."""
from __future__ import annotations

from homeserver.http.errors import forbidden
from homeserver.protocol.server_acl import server_allowed
from homeserver.rooms.pipeline import RoomEventService


class ServerAclChecker:
    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)

    async def is_allowed(self, origin: str, room_id: str) -> bool:
        event = await self.events.get_current_state_event(room_id, "m.room.server_acl")
        content = event.content if event is not None and isinstance(event.content, dict) else None
        return server_allowed(origin, content)

    async def check(self, origin: str, room_id: str) -> None:
        """403 M_FORBIDDEN when the room's ACL denies ``origin``."""
        if not await self.is_allowed(origin, room_id):
            raise forbidden("Server is banned from this room")
