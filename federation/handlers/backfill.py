"""Backfilling: history older than what this server holds, fetched from another server when a
client paginates ``/messages`` back into a gap (a late joiner reaching its own join event).

server-server-api.md "Backfilling and retrieving missing events" (backfill.yaml): ``GET
/backfill/{roomId}?v=<event IDs>&limit=N`` asks a server in the room for the given events and
those before them. The events are checked like pushed PDUs (format, signatures; the pipeline
checks hashes and auth against the state before each) and stored as *backfilled history*
(:meth:`RoomEventService.handle_backfilled_event`): never forward extremities, never current
state, negative stream orderings so /messages orders them before what we had.

``hs.get(FederationBackfillHandler).maybe_backfill(room_id, min_depth, max_depth)`` is the
/messages seam (``MessagesService.remote_backfill``): the backward extremities cited by timeline
events between those depths (homeserver/storage/history_store.py ``backward_extremities``) are
asked from the servers whose users were joined at the citing event, most members first. A gap
no server could fill is not asked again for :data:`RETRY_AFTER_MS`.
"""
from __future__ import annotations

import logging
from collections import Counter

from twisted.internet import defer

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import RoomVersion
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.state import MissingEventsError
from homeserver.storage.events_store import EventsStore
from homeserver.storage.history_store import HistoryStore

from .events import FED_V1, FederationEventHandler, PduRejected, path_id

logger = logging.getLogger(__name__)

#: Events asked for in one /backfill request (Synapse serves at most 100).
BACKFILL_LIMIT = 100
#: Servers tried, one after the other, for one gap.
MAX_SERVERS_TRIED = 5
#: A gap no server filled is not asked about again before this.
RETRY_AFTER_MS = 60_000


class FederationBackfillHandler:
    def __init__(self, hs):
        self.hs = hs
        self.history: HistoryStore = hs.get(HistoryStore)
        self.events: RoomEventService = hs.get(RoomEventService)
        self.store: EventsStore = hs.get(EventsStore)
        self.fed: FederationEventHandler = hs.get(FederationEventHandler)
        self._failed: dict[tuple[str, frozenset], int] = {}
        self._running: dict[str, list[defer.Deferred]] = {}

    @property
    def client(self):
        from ..client import FederationClient
        return self.hs.get(FederationClient)

    async def maybe_backfill(self, room_id: str, min_depth: int | None, max_depth: int) -> bool:
        """Fill the gaps behind the timeline events of depth ``min_depth..max_depth`` (no lower
        bound when None) from other servers. True when events were stored (a caller re-reads);
        one backfill per room at a time (concurrent callers wait for it and re-read)."""
        waiters = self._running.get(room_id)
        if waiters is not None:
            d: defer.Deferred = defer.Deferred()
            waiters.append(d)
            return await d
        self._running[room_id] = []
        result = False
        try:
            result = await self._backfill(room_id, min_depth, max_depth)
        except Exception:
            logger.exception("backfilling %s failed", room_id)
        finally:
            for d in self._running.pop(room_id, []):
                d.callback(result)
        return result

    async def _backfill(self, room_id: str, min_depth: int | None, max_depth: int) -> bool:
        gaps = await self.history.backward_extremities(room_id, min_depth, max_depth)
        if not gaps:
            return False
        key = (room_id, frozenset(g[0] for g in gaps))
        now = self.hs.clock_ms()
        if self._failed.get(key, 0) > now:
            return False
        rv = await self.events.get_room_version(room_id)
        if rv is None:
            return False
        from ..client import FederationError, FederationUnreachable
        wanted = [g[0] for g in gaps]
        for server in (await self._servers_for(room_id, [g[1] for g in gaps]))[:MAX_SERVERS_TRIED]:
            try:
                resp = await self.client.get_json(server, f"{FED_V1}/backfill/{path_id(room_id)}",
                                                  {"v": wanted, "limit": BACKFILL_LIMIT})
            except (FederationError, FederationUnreachable) as e:
                logger.info("backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = resp.get("pdus")
            if not isinstance(pdus, list):
                continue
            if await self._store_batch(server, room_id, rv, pdus[:BACKFILL_LIMIT]):
                self._failed.pop(key, None)
                return True
        self._failed[key] = now + RETRY_AFTER_MS
        if len(self._failed) > 10_000:
            self._failed = {k: t for k, t in self._failed.items() if t > now}
        return False

    async def _servers_for(self, room_id: str, citing: list[str]) -> list[str]:
        """Servers with users joined in the state before the citing events (the current state
        when unknown), most joined users first; never this server."""
        counts: Counter = Counter()
        state = None
        for event_id in citing:
            state = await self.events.get_state_ids_before(event_id)
            if state:
                break
        if not state:
            state = await self.events.get_current_state_ids(room_id)
        members = await self.store.get_events(eid for (t, _), eid in state.items() if t == "m.room.member")
        for ev in members.values():
            if ev.membership == "join" and isinstance(ev.state_key, str):
                try:
                    counts[ids.get_domain(ev.state_key)] += 1
                except ValueError:
                    continue
        counts.pop(self.hs.hostname, None)
        return [server for server, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    async def _store_batch(self, server: str, room_id: str, rv: RoomVersion, pdus: list) -> bool:
        """Check the PDUs and store the new ones as history, oldest first; True when any was."""
        checked = await self.fed.check_pdus(pdus, rv, room_id)
        metas = await self.store.get_event_metas(checked)
        new = [ev for eid, ev in checked.items() if eid not in metas or metas[eid].outlier]
        stored = 0
        for ev in sorted(new, key=lambda e: (_depth(e), e.origin_server_ts if isinstance(e.origin_server_ts, int)
                                              else 0, e.event_id)):
            try:
                await self._store_one(server, ev)
                stored += 1
            except (PduRejected, MissingEventsError) as e:
                logger.info("backfilled event %s from %s not stored: %s", ev.event_id, server, e)
        return stored > 0

    async def _store_one(self, server: str, event: Event) -> Event:
        state_before = None
        for _ in range(4):
            try:
                return await self.events.handle_backfilled_event(event, state_before=state_before)
            except MissingEventsError as e:
                if e.kind == "prev_events" and state_before is None:
                    # The oldest events of a batch: their prev_events are further back.
                    state_before = await self.fed.remote_state_before(server, event.room_id, event.room_version,
                                                                      event.event_id)
                    continue
                fetched = await self.fed.fetch_outliers(server, event.room_id, event.room_version, e.event_ids)
                if not set(e.event_ids) <= set(fetched):
                    raise PduRejected(f"could not fetch the {e.kind} of {event.event_id} from {server}") from None
        raise PduRejected(f"could not complete the missing events of {event.event_id}")


def _depth(event: Event) -> int:
    depth = event.depth
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else 0
