"""Answers to other servers' reads of rooms: events, state, missing events, backfill, auth chains.

server-server-api.md "Retrieving events" (events.yaml), "Backfilling and retrieving missing
events" (backfill.yaml), "Retrieving event authorisation information" (event_auth.yaml).

Who may read: a server with a member in the room whose membership is join, invite or knock, or
anyone when the room's history is ``world_readable``; everything else is 403 M_FORBIDDEN; unknown
rooms and events are 404 M_NOT_FOUND.

Then per event, the history visibility at it (homeserver/protocol/visibility.py
``is_event_visible_to_server``: one of the server's users could see it; ``shared`` history counts
as seen by a server with a user joined now): ``/event`` of an event the server may not see is 404
(as Synapse), ``/state`` and ``/state_ids`` at it 403; ``/backfill`` and ``/get_missing_events``
send such events redacted (the DAG stays whole, the content does not leak). Events without known
state (outliers) are judged with the current state. Events of erased accounts
(homeserver/accounts/erasure.py) are always sent redacted: /event, /state, /backfill and
/get_missing_events.
"""
from __future__ import annotations

import heapq
from typing import Iterable

from homeserver.accounts.erasure import ErasureService
from homeserver.http.errors import forbidden, not_found
from homeserver.protocol import ids
from homeserver.protocol import visibility as rules
from homeserver.protocol.events import Event
from homeserver.protocol.redaction import redact
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.events_store import EventsStore
from homeserver.storage.state_store import StateStore

from .acl import ServerAclChecker

MAX_MISSING_EVENTS = 20
MAX_BACKFILL = 100
_MEMBERSHIPS_THAT_SEE = ("join", "invite", "knock")


class FederationReadsHandler:
    def __init__(self, hs):
        self.hs = hs
        self.events: RoomEventService = hs.get(RoomEventService)
        self.store: EventsStore = hs.get(EventsStore)

    async def check_server_in_room(self, origin: str, room_id: str, *, acl: bool = True) -> None:
        """404 for unknown rooms; 403 when the room's server ACL denies ``origin`` (for the
        endpoints server-server-api.md "Server Access Control Lists" protects) or it may not read."""
        if await self.events.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if acl:
            await self.hs.get(ServerAclChecker).check(origin, room_id)
        if not await self.server_can_read(origin, room_id):
            raise forbidden("Your server is not in this room")

    async def server_can_read(self, origin: str, room_id: str) -> bool:
        for member in await self.events.get_joined_members(room_id):
            if ids.domain_or_none(member) == origin:
                return True
        state = await self.events.get_current_state_ids(room_id)
        hv = state.get(("m.room.history_visibility", ""))
        if hv is not None:
            ev = await self.store.get_event(hv)
            if ev is not None and ev.content.get("history_visibility") == "world_readable":
                return True
        member_ids = [eid for (t, sk), eid in state.items()
                      if t == "m.room.member" and ids.domain_or_none(sk) == origin]
        for ev in (await self.store.get_events(member_ids)).values():
            if ev.membership in _MEMBERSHIPS_THAT_SEE:
                return True
        return False

    async def get_event(self, origin: str, event_id: str) -> dict:
        """events.yaml GET /event/{eventId}: the PDU in a transaction."""
        ev = await self.store.get_event(event_id)
        if ev is None:
            raise not_found("Event not found")
        await self.check_server_in_room(origin, ev.room_id, acl=False)
        if ev.event_id not in await self.visible_ids(origin, ev.room_id, [ev]):
            raise not_found("Event not found")
        return {**self._transaction([]), "pdus": await self._erasure_redacted([ev])}

    async def visible_ids(self, origin: str, room_id: str, events: list[Event]) -> set[str]:
        """The IDs of ``events`` (of ``room_id``) that ``origin`` may see (module docstring)."""
        if not events:
            return set()
        metas = await self.store.get_event_metas(e.event_id for e in events)
        state_store = self.hs.get(StateStore)
        groups = {m.state_group_before for m in metas.values() if m.state_group_before is not None}
        maps: dict = {g: await state_store.get_state_group(g) for g in groups}
        current = None
        if any(e.event_id not in metas or metas[e.event_id].state_group_before is None for e in events):
            current = await self.events.get_current_state_ids(room_id)

        def relevant(state: dict) -> dict:
            return {k: v for k, v in state.items()
                    if k == rules.HISTORY_VISIBILITY
                    or (k[0] == "m.room.member" and ids.domain_or_none(k[1]) == origin)}
        small_maps = {g: relevant(m) for g, m in maps.items()}
        small_current = relevant(current) if current is not None else {}
        loaded = await self.store.get_events(
            {eid for m in [*small_maps.values(), small_current] for eid in m.values()}, allow_rejected=True)
        joined_now = any(ids.domain_or_none(m) == origin for m in await self.events.get_joined_members(room_id))
        out: set[str] = set()
        for ev in events:
            meta = metas.get(ev.event_id)
            if ev.type == "m.room.create" and not ev.prev_event_ids:
                state = {}
            elif meta is not None and meta.state_group_before is not None:
                state = small_maps[meta.state_group_before]
            else:
                state = small_current
            resolved = {k: loaded[v] for k, v in state.items() if v in loaded}
            if rules.is_event_visible_to_server(origin, ev, resolved, server_joined_later=joined_now):
                out.add(ev.event_id)
        return out

    async def _filtered_pdus(self, origin: str, room_id: str, events: list[Event]) -> list[dict]:
        """PDUs of ``events``, those ``origin`` may not see redacted."""
        visible = await self.visible_ids(origin, room_id, events)
        erased = await self.hs.get(ErasureService).erased_among({ev.sender for ev in events})
        return [ev.pdu if ev.event_id in visible and ev.sender not in erased else redact(ev.pdu, ev.room_version)
                for ev in events]

    async def _erasure_redacted(self, events: Iterable[Event]) -> list[dict]:
        """PDUs of ``events``, those of erased senders redacted (account_deactivation.yaml
        ``erase``; other servers always get the redacted copy, as from Synapse)."""
        events = list(events)
        erased = await self.hs.get(ErasureService).erased_among({ev.sender for ev in events})
        return [redact(ev.pdu, ev.room_version) if ev.sender in erased else ev.pdu for ev in events]

    async def _state_before(self, origin: str, room_id: str, event_id: str | None) -> dict:
        await self.check_server_in_room(origin, room_id)
        if not event_id:
            raise not_found("event_id is required")
        meta = (await self.store.get_event_metas([event_id])).get(event_id)
        if meta is None or meta.room_id != room_id:
            raise not_found("Event not found in this room")
        state = await self.events.get_state_ids_before(event_id)
        if state is None:
            raise not_found("The state at this event is not known")
        event = await self.store.get_event(event_id, allow_rejected=True)
        if event is None or event.event_id not in await self.visible_ids(origin, room_id, [event]):
            raise forbidden("You are not allowed to see the state at this event")
        return state

    async def state_ids(self, origin: str, room_id: str, event_id: str | None) -> dict:
        """events.yaml GET /state_ids/{roomId}?event_id: the state before the event and its auth chain."""
        state = await self._state_before(origin, room_id, event_id)
        chain = await self.store.get_auth_chain_ids(sorted(set(state.values())))
        return {"pdu_ids": sorted(set(state.values())), "auth_chain_ids": sorted(chain)}

    async def state(self, origin: str, room_id: str, event_id: str | None) -> dict:
        """events.yaml GET /state/{roomId}?event_id: the same as full PDUs."""
        state = await self._state_before(origin, room_id, event_id)
        state_ids = sorted(set(state.values()))
        chain = await self.store.get_auth_chain_ids(state_ids)
        loaded = await self.store.get_events(set(state_ids) | chain, allow_rejected=True)
        return {"pdus": await self._erasure_redacted(loaded[e] for e in state_ids if e in loaded),
                "auth_chain": await self._erasure_redacted(loaded[e] for e in sorted(chain) if e in loaded)}

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict:
        """event_auth.yaml: the full auth chain of an event."""
        await self.check_server_in_room(origin, room_id)
        meta = (await self.store.get_event_metas([event_id])).get(event_id)
        if meta is None or meta.room_id != room_id:
            raise not_found("Event not found in this room")
        chain = await self.store.get_auth_chain_ids([event_id])
        loaded = await self.store.get_events(chain, allow_rejected=True)
        return {"auth_chain": [loaded[e].pdu for e in sorted(chain) if e in loaded]}

    async def get_missing_events(self, origin: str, room_id: str, earliest: list[str], latest: list[str],
                                 limit: int, min_depth: int) -> dict:
        """events.yaml POST /get_missing_events: walking back from ``latest_events`` over
        prev_events and stopping at ``earliest_events``, the deepest events first, at most
        ``limit``, none below ``min_depth``; answered oldest first."""
        await self.check_server_in_room(origin, room_id)
        limit = max(0, min(limit, MAX_MISSING_EVENTS))
        stop = set(earliest)
        seen = set(latest) | stop
        starts = await self.store.get_events(latest)
        frontier = [eid for ev in starts.values() if ev.room_id == room_id for eid in ev.prev_event_ids]
        out = await self._walk_back(room_id, frontier, seen, limit, min_depth)
        ordered = sorted(out, key=lambda e: (e.depth, e.event_id))
        return {"events": await self._filtered_pdus(origin, room_id, ordered)}

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int) -> dict:
        """backfill.yaml GET /backfill/{roomId}?v=…&limit=…: the given events and those before
        them, deepest first, at most ``limit``."""
        await self.check_server_in_room(origin, room_id)
        limit = max(0, min(limit, MAX_BACKFILL))
        out = await self._walk_back(room_id, list(from_ids), set(), limit, 0)
        ordered = sorted(out, key=lambda e: (-e.depth, e.event_id))
        return {"origin": self.hs.hostname, "origin_server_ts": self.hs.clock_ms(),
                "pdus": await self._filtered_pdus(origin, room_id, ordered)}

    async def _walk_back(self, room_id: str, frontier: Iterable[str], seen: set[str], limit: int,
                         min_depth: int) -> list[Event]:
        """Breadth by depth: the deepest not-yet-seen events first, following prev_events."""
        heap: list[tuple[int, str]] = []
        out: list[Event] = []
        pending = [e for e in dict.fromkeys(frontier) if e not in seen]
        seen.update(pending)
        while len(out) < limit:
            if pending:
                loaded = await self.store.get_events(pending)
                for eid, ev in loaded.items():
                    if ev.room_id == room_id and ev.depth >= min_depth:
                        heapq.heappush(heap, (-ev.depth, eid))
                pending = []
            if not heap:
                break
            _, eid = heapq.heappop(heap)
            ev = await self.store.get_event(eid)
            if ev is None:
                continue
            out.append(ev)
            for p in ev.prev_event_ids:
                if p not in seen:
                    seen.add(p)
                    pending.append(p)
        return out

    def _transaction(self, events: list[Event]) -> dict:
        return {"origin": self.hs.hostname, "origin_server_ts": self.hs.clock_ms(),
                "pdus": [ev.pdu for ev in events]}
