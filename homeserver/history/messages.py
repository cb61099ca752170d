"""Reading a room's history: GET /messages and GET /context.

Spec: client-server-api "Getting events for a room" (message_pagination.yaml, event_context.yaml),
"Lazy-loading room members", modules/history_visibility.md (through the rooms visibility service),
"Aggregations of child events" (bundled through :class:`RelationsService`).

Order and tokens: events are paged in (depth, stream_ordering) order; tokens are the room
positions of homeserver/sync/tokens.py, so a sync timeline's ``prev_batch`` and a sync
``next_batch`` are valid ``from``/``to`` values. A stream-only position is turned into a
(depth, stream) one by the depth of the room's last event at or before it.

Backfill: paging backwards into a gap of the room's history (events cited by the timeline but not
held, as behind a late joiner's join) asks other servers for it first (``remote_backfill``).

Who reads what: joined users read everything history visibility lets them; users who left or
were banned read up to their departure (the page is cut at their leave event); anyone reads a
world_readable room; everyone else gets 403 M_FORBIDDEN (unknown rooms too, so room IDs cannot be
probed).
"""
from __future__ import annotations

from dataclasses import dataclass

from homeserver.client.filtering import RoomEventFilter
from homeserver.http.errors import MatrixError, forbidden, not_found
from homeserver.protocol.events import Event
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.visibility import RoomAccess, VisibilityService
from homeserver.storage.events_store import EventsStore
from homeserver.storage.history_store import HistoryStore, PageRead, TimelineRow
from homeserver.sync.tokens import RoomPosition

from .relations import RelationsService

#: Most events examined for one page when filters or visibility drop events.
MAX_SCAN = 2000


@dataclass
class Page:
    events: list[Event]
    rows: list[TimelineRow]  # of ``events``
    next_pos: RoomPosition  # where the next page starts
    exhausted: bool  # nothing further in this direction
    #: The first batch's read (rows with what serving them needs), and whether every event picked
    #: came from it (then its redactions, transaction IDs and aggregations cover the page).
    first: PageRead | None = None
    first_covers: bool = False


class MessagesService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(HistoryStore)
        self.events = hs.get(EventsStore)
        self.pipeline = hs.get(RoomEventService)
        self.visibility = hs.get(VisibilityService)
        self.relations = hs.get(RelationsService)
        #: ``async fn(room_id, min_depth, max_depth) -> bool``: fill the gaps in the room's history
        #: behind the timeline events of those depths from other servers (True when events were
        #: stored). Set by federation (federation/handlers/backfill.py); None without federation.
        self.remote_backfill = None

    async def _access(self, user_id: str, room_id: str,
                      membership_row: tuple[str, str] | None | bool = False) -> RoomAccess:
        try:
            return await self.visibility.room_access(user_id, room_id, membership_row=membership_row)
        except MatrixError as e:
            if e.code == 404:
                raise forbidden("You aren't a member of the room and weren't previously a member of the room.")
            raise

    async def _departure(self, access: RoomAccess) -> RoomPosition | None:
        """The point after a departed user's leave/ban event (they read nothing later)."""
        if access.at_event_id is None:
            return None
        meta = (await self.events.get_event_metas([access.at_event_id])).get(access.at_event_id)
        if meta is None or meta.stream_ordering is None:
            return None
        return RoomPosition.after_event(meta.depth, meta.stream_ordering)

    async def _topological(self, room_id: str, pos: RoomPosition | None) -> RoomPosition | None:
        if pos is None or pos.depth is not None:
            return pos
        return await self.store.topological_position(room_id, pos.stream)

    # --- scanning ---------------------------------------------------------------------------------
    async def scan(self, user_id: str, room_id: str, from_pos: RoomPosition, to_pos: RoomPosition | None, *,
                   backwards: bool, limit: int, event_filter: RoomEventFilter | None,
                   ignored_users: set[str], prefetch: bool = False, device_id: str | None = None,
                   gap_check: bool = False, first_read: PageRead | None = None) -> Page:
        """Up to ``limit`` events after ``from_pos`` in the page direction that pass the filter and
        the user's history visibility, reading the database in batches. With ``prefetch`` the
        first batch is read with what serving it to ``device_id`` needs in one transaction
        (HistoryStore.read_page, which also takes ``gap_check``); ``first_read``: that read,
        already made by the caller with these arguments."""
        picked: list[Event] = []
        picked_rows: list[TimelineRow] = []
        pos = from_pos
        scanned = 0
        batch = limit
        first: PageRead | None = None
        while len(picked) < limit and scanned < MAX_SCAN:
            if prefetch and first is None:
                first = first_read if first_read is not None else await self.store.read_page(
                    room_id, pos, to_pos, backwards=backwards, limit=batch, user_id=user_id, device_id=device_id,
                    ignored_users=ignored_users, gap_check=gap_check)
                rows = first.rows
            else:
                rows = await self.store.paginate(room_id, pos, to_pos, backwards=backwards, limit=batch)
            scanned += len(rows)
            loaded = await self.events.get_events(r.event_id for r in rows)
            candidates = [loaded[r.event_id] for r in rows if r.event_id in loaded]
            if event_filter is not None:
                candidates = [e for e in candidates if event_filter.matches(_filter_view(e))]
            known_members = {room_id: first.member_streams} if first is not None else None
            visible = {e.event_id: e for e in await self.visibility.filter_events_for_user(
                user_id, candidates, ignored_users=ignored_users,
                member_streams=known_members)}  # erased senders: redacted copies
            consumed = 0
            for r in rows:
                consumed += 1
                if r.event_id in visible:
                    picked.append(visible[r.event_id])
                    picked_rows.append(r)
                    if len(picked) == limit:
                        break
            if consumed:  # the next page starts past the last row consumed
                pos = rows[consumed - 1].before if backwards else rows[consumed - 1].after
            if len(rows) < batch and consumed == len(rows):
                return self._page(picked, picked_rows, pos, True, first)
            batch = min(max(2 * (limit - len(picked)), 50), 500)
        return self._page(picked, picked_rows, pos, False, first)

    @staticmethod
    def _page(picked: list[Event], rows: list[TimelineRow], pos: RoomPosition, exhausted: bool,
              first: PageRead | None) -> Page:
        first_ids = {r.event_id for r in first.rows} if first is not None else set()
        return Page(picked, rows, pos, exhausted, first, all(r.event_id in first_ids for r in rows))

    # --- GET /messages ---------------------------------------------------------------------------
    async def get_messages(self, user_id: str, room_id: str, *, from_pos: RoomPosition | None,
                           from_text: str | None, to_pos: RoomPosition | None, backwards: bool, limit: int,
                           event_filter: RoomEventFilter | None, device_id: str | None = None) -> dict:
        """message_pagination.yaml: ``chunk``, ``start``, ``end`` (absent when nothing further can
        be read) and, with ``lazy_load_members``, ``state`` (the senders' member events)."""
        # For a ``from`` with a depth, the page's first read (HistoryStore.read_page) comes
        # first and brings the user's membership row for the access check: that read does not
        # depend on the check unless the user departed the room (their page is then cut at
        # their departure: the read is dropped, and nothing of it is served either way).
        ignored = await self.relations.ignored_users(user_id)
        early: PageRead | None = None
        if limit > 0 and from_pos is not None and from_pos.depth is not None \
                and (to_pos is None or to_pos.depth is not None) \
                and (event_filter is None or event_filter.room_allowed(room_id)):
            early = await self.store.read_page(
                room_id, from_pos, to_pos, backwards=backwards, limit=limit, user_id=user_id,
                device_id=device_id, ignored_users=ignored,
                gap_check=backwards and self.remote_backfill is not None, with_membership=True)
        access = await self._access(user_id, room_id, early.membership if early is not None else False)
        departure = await self._departure(access)
        start = await self._topological(room_id, from_pos)
        to = await self._topological(room_id, to_pos)
        if start is None:
            start = await self.store.end_position(room_id) if backwards else RoomPosition(0, 0)
        if departure is not None:
            if backwards and (start.depth, start.stream) > (departure.depth, departure.stream):
                start = departure
            elif not backwards and (to is None or (to.depth, to.stream) > (departure.depth, departure.stream)):
                to = departure
        result: dict = {"start": from_text if from_text is not None else str(start), "chunk": []}
        if early is not None and (start != from_pos or to != to_pos):
            early = None  # cut at the departure: read again below
        if limit == 0:
            result["end"] = str(start)
            return result
        if event_filter is not None and not event_filter.room_allowed(room_id):
            return result
        backfilling = backwards and self.remote_backfill is not None and start.depth is not None
        page = await self.scan(user_id, room_id, start, to, backwards=backwards, limit=limit,
                               event_filter=event_filter, ignored_users=ignored, prefetch=True,
                               device_id=device_id, gap_check=backfilling, first_read=early)
        if backfilling:
            # Paging back into a gap (a late joiner reaching its join): fetch the older history
            # from other servers and read the page again; while more may follow, keep ``end``.
            # The page's read already looked for gaps over the same depths when it covered them:
            # with none there, asking (which would find none either) is skipped.
            lowest = page.rows[-1].depth if page.rows and not page.exhausted else None
            known_clear = (page.first is not None and page.first.gap_checked and not page.first.has_gap
                           and page.first.gap_min_depth == lowest)
            if not known_clear and await self.remote_backfill(room_id, lowest, start.depth):
                page = await self.scan(user_id, room_id, start, to, backwards=backwards, limit=limit,
                                       event_filter=event_filter, ignored_users=ignored, device_id=device_id)
                page.exhausted = False
        extra = {}
        if page.first is not None and page.first_covers:
            extra = {"redaction_ids": page.first.redaction_ids, "txn_ids": page.first.txn_ids,
                     "aggregation_rows": page.first.aggregations}
        result["chunk"] = await self.relations.serialize_events(page.events, user_id, device_id=device_id,
                                                                ignored_users=ignored, **extra)
        if not page.exhausted:
            result["end"] = str(page.next_pos)
        if event_filter is not None and event_filter.lazy_load_members and page.events:
            result["state"] = await self._member_state(page.events[0], {e.sender for e in page.events},
                                                       user_id, device_id)
        return result

    async def _member_state(self, at: Event, senders: set[str], user_id: str, device_id: str | None) -> list[dict]:
        """The member events of ``senders`` in the state after ``at`` (lazy-loading members)."""
        state = await self.pipeline.get_state_ids_at(at.event_id) or {}
        ids = [state[("m.room.member", s)] for s in sorted(senders) if ("m.room.member", s) in state]
        loaded = await self.events.get_events(ids)
        members = [loaded[i] for i in ids if i in loaded]
        return await self.relations.serializer.serialize_events(members, user_id=user_id, device_id=device_id)

    # --- GET /context -----------------------------------------------------------------------------
    async def get_context(self, user_id: str, room_id: str, event_id: str, *, limit: int,
                          event_filter: RoomEventFilter | None, device_id: str | None = None) -> dict:
        """event_context.yaml: the event with up to ``limit`` events around it (⌊limit/2⌋ before,
        the rest after), ``start``/``end`` tokens for /messages and the state at the last event
        returned (only the senders' members with ``lazy_load_members``). 404 when the event is
        not in the room or not visible to the user."""
        access = await self._access(user_id, room_id)
        event = await self.events.get_event(event_id)
        meta = (await self.events.get_event_metas([event_id])).get(event_id)
        if event is None or event.room_id != room_id or meta is None or meta.stream_ordering is None \
                or (event := await self.visibility.visible_event(user_id, event)) is None:
            raise not_found("Event not found.")
        ignored = await self.relations.ignored_users(user_id)
        here = TimelineRow(event_id, meta.depth, meta.stream_ordering)
        before_limit = limit // 2
        after_limit = limit - before_limit
        departure = await self._departure(access)
        before = await self.scan(user_id, room_id, here.before, None, backwards=True, limit=before_limit,
                                 event_filter=event_filter, ignored_users=ignored)
        after = await self.scan(user_id, room_id, here.after, departure, backwards=False, limit=after_limit,
                                event_filter=event_filter, ignored_users=ignored)
        serialized = await self.relations.serialize_events([event, *before.events, *after.events], user_id,
                                                           device_id=device_id, ignored_users=ignored)
        last = after.events[-1] if after.events else event
        result = {
            "event": serialized[0],
            "events_before": serialized[1:1 + len(before.events)],
            "events_after": serialized[1 + len(before.events):],
            "start": str(before.rows[-1].before if before.rows else here.before),
            "end": str(after.rows[-1].after if after.rows else here.after),
        }
        shown = [event, *before.events, *after.events]
        if event_filter is not None and event_filter.lazy_load_members:
            result["state"] = await self._member_state(last, {e.sender for e in shown}, user_id, device_id)
        else:
            state = await self.pipeline.get_state_ids_at(last.event_id) or {}
            loaded = await self.events.get_events(state.values())
            state_events = [loaded[e] for e in state.values() if e in loaded]
            if event_filter is not None:
                state_events = [e for e in state_events if event_filter.matches(_filter_view(e))]
            result["state"] = await self.relations.serializer.serialize_events(
                state_events, user_id=user_id, device_id=device_id)
        return result


def _filter_view(event: Event) -> dict:
    """What filters match on (client-format fields)."""
    return {"type": event.type, "sender": event.sender, "room_id": event.room_id, "content": event.content}
