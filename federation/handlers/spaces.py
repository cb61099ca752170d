"""Space hierarchies and event lookups by time between servers: space_hierarchy.yaml
(``GET /_matrix/federation/v1/hierarchy/{roomId}``, and the seam
``SpaceHierarchyService.remote_summaries`` asking it of others) and ``GET
/_matrix/federation/v1/timestamp_to_event/{roomId}`` (server-server-api.md "Spaces",
events.yaml)."""
from __future__ import annotations

import logging
from urllib.parse import quote

from homeserver.directory.hierarchy import child_sort_key, is_valid_child, stripped_child
from homeserver.directory.stats import RoomStatsService, is_room_accessible, summary_chunk
from homeserver.http.errors import not_found
from homeserver.rooms.pipeline import RoomEventService

from .reads import FederationReadsHandler

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"


class FederationSpacesHandler:
    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)
        self.reads: FederationReadsHandler = hs.get(FederationReadsHandler)

    async def _accessible(self, origin: str, room_id: str):
        """The room's stats when ``origin``'s users could peek or join it (or already are in it)."""
        stats = await self.hs.get(RoomStatsService).get_stats(room_id)
        if stats is None:
            return None
        rv = await self.events.get_room_version(room_id)
        if is_room_accessible(stats, rv, None) or await self.reads.server_can_read(origin, room_id):
            return stats
        return None

    async def hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> dict:
        """``{room, children, inaccessible_children}``: the space with its m.space.child state and
        the children we know; 404 when unknown to us or not accessible to ``origin``."""
        stats = await self._accessible(origin, room_id)
        if stats is None:
            raise not_found("Room not found or not accessible")
        state = await self.events.get_current_state_ids(room_id)
        loaded = await self.events.get_events([e for (t, _), e in state.items() if t == "m.space.child"])
        children_events = sorted((ev for ev in loaded.values() if is_valid_child(ev)), key=child_sort_key)
        if suggested_only:
            children_events = [ev for ev in children_events if ev.content.get("suggested") is True]
        room = summary_chunk(stats, extended=True)
        room["children_state"] = [stripped_child(ev) for ev in children_events]
        children, inaccessible = [], []
        for ev in children_events:
            child = ev.state_key
            if await self.events.get_room_version(child) is None:
                continue  # we cannot tell: left out (space_hierarchy.yaml)
            child_stats = await self._accessible(origin, child)
            if child_stats is None:
                inaccessible.append(child)
            else:
                children.append(summary_chunk(child_stats, extended=True))
        return {"room": room, "children": children, "inaccessible_children": inaccessible}

    async def remote_summary(self, room_id: str, via: list[str]) -> dict | None:
        """The seam: a room's summary chunk (with children_state) from the first ``via`` server
        that answers."""
        from ..client import FederationClient, FederationError, FederationUnreachable
        client = self.hs.get(FederationClient)
        for server in [s for s in dict.fromkeys(via) if s != self.hs.hostname]:
            try:
                resp = await client.get_json(server, f"{FED_V1}/hierarchy/{quote(room_id, safe='')}",
                                             timeout_s=15.0)
            except (FederationError, FederationUnreachable) as e:
                logger.info("hierarchy of %s from %s: %s", room_id, server, e)
                continue
            room = resp.get("room")
            if isinstance(room, dict) and room.get("room_id") == room_id:
                if not isinstance(room.get("children_state"), list):
                    room["children_state"] = []
                return room
        return None

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, forwards: bool) -> dict:
        """``{event_id, origin_server_ts}`` of the timeline event closest to ``ts`` in the direction."""
        await self.reads.check_server_in_room(origin, room_id)
        from homeserver.storage.room_extras_store import RoomExtrasStore
        found = await self.hs.get(RoomExtrasStore).get_event_by_timestamp(room_id, ts, forwards)
        if found is None:
            raise not_found(f"Unable to find an event from {ts} in that direction")
        return {"event_id": found[0], "origin_server_ts": found[1]}
