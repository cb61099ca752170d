"""Keeps the relations and search indexes in step with the timeline.

Registered once as a persist hook of the event pipeline (``RoomEventService.persist_hooks``): for
each event entering the timeline it returns the writes to run inside the event's own persist
transaction (relations), or to queue once that transaction has committed (search: written in
batches by homeserver/storage/search_store.py, which re-reads what a crash left out at start-up):

* an event whose content has ``m.relates_to`` with a ``rel_type`` → a row in ``event_relations``
  (and the thread's latest event for ``m.thread``);
* ``m.room.message`` / ``m.room.name`` / ``m.room.topic`` with text → a row in the search index;
* a redaction that applies to its target (the same rule as serving: homeserver/rooms/serialize.py
  ``redaction_applies``) → the target leaves both indexes (client-server-api "Aggregations of
  child events": a redacted child breaks the relationship; redacted text is no longer searchable).

Backfilled events (``RoomEventService.history_hooks``) are indexed the same way.

Limitations: a redaction received before the event it redacts does not remove that event from the
indexes (search results are still filtered by redaction when served); the start-up catch-up of
search rows covers live events only (a crash within the 50 ms before a backfilled event's row is
written leaves that old event unsearchable).
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_named_level, get_user_power_level
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.serialize import redaction_applies
from homeserver.storage.events_store import EventsStore, PersistItem
from homeserver.storage.relations_store import RelationRow, RelationsStore
from homeserver.storage.search_store import SearchRow, SearchStore

from .relation_rules import parse_relation, searchable_text

logger = logging.getLogger(__name__)

_LEVEL_KEYS = (("m.room.create", ""), ("m.room.power_levels", ""))


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class HistoryIndexer:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(EventsStore)
        self.search = hs.get(SearchStore)
        self.search.complete_to = self.events.stream_ids.current_token
        pipeline = hs.get(RoomEventService)
        pipeline.persist_hooks.append(self.persist_hook)
        pipeline.history_hooks.append(self.persist_hook)  # backfilled events are indexed too
        hs.on_start(self.catch_up_search)

    async def persist_hook(self, event: Event, state_after: Mapping[tuple[str, str], str]
                           ) -> Callable | None:
        """Decide (before the event is written) which index rows change with it."""
        writes: list[Callable] = []
        content = event.content
        rel = parse_relation(content)
        if rel is not None:
            writes.append(lambda txn, item: RelationsStore.add_relation_txn(txn, RelationRow(
                event.event_id, rel.parent_id, rel.rel_type, rel.key, event.room_id, event.type, event.sender,
                _int(event.depth), item.stream_ordering, _int(event.origin_server_ts))))
        text = searchable_text(event.type, content)
        if text is not None:
            writes.append(lambda txn, item: txn.call_after_commit(self.search.queue, [SearchRow(
                item.event_nid, event.event_id, event.room_id, event.sender, text[0], text[1],
                item.stream_ordering, _int(event.origin_server_ts))]))
        if event.type == "m.room.redaction" and isinstance(event.redacts, str):
            target = await self.events.get_event(event.redacts, allow_rejected=True)
            if target is not None and await self._applies(event, target, state_after):
                target_id = target.event_id
                writes.append(lambda txn, item: (RelationsStore.remove_relation_txn(txn, target_id),
                                                 txn.call_after_commit(self.search.queue, [target_id])))
        if not writes:
            return None

        def write_all(txn, item: PersistItem) -> None:
            if item.stream_ordering is None:
                return
            for w in writes:
                w(txn, item)
        return write_all

    async def catch_up_search(self) -> None:
        """Queue the search rows of the events past the index's recorded position (what a crash
        left in memory), and write them before the server serves."""
        position = await self.search.indexed_to()
        if position is None:  # the index was written with the events until now: it is complete
            await self.search.record_indexed_to(self.events.stream_ids.current_token())
            return
        pending = await self.search.timeline_events_after(position)
        for start in range(0, len(pending), 500):
            chunk = pending[start:start + 500]
            loaded = await self.events.get_events([event_id for _, event_id, _ in chunk])
            changes: list = []
            for event_nid, event_id, stream_ordering in chunk:
                event = loaded.get(event_id)
                if event is None:
                    continue
                text = searchable_text(event.type, event.content)
                if text is not None:
                    changes.append(SearchRow(event_nid, event_id, event.room_id, event.sender, text[0], text[1],
                                             stream_ordering, _int(event.origin_server_ts)))
                if event.type == "m.room.redaction" and isinstance(event.redacts, str):
                    # Without the power levels of the time: only the redactions that apply
                    # whoever sent them. Search results are filtered by redaction when served.
                    target = await self.events.get_event(event.redacts, allow_rejected=True)
                    if target is not None and redaction_applies(event, target):
                        changes.append(target.event_id)
            self.search.queue(changes)
        await self.search.flush()
        if pending:
            logger.info("search index: caught up %d events after position %d", len(pending), position)

    async def _applies(self, redaction: Event, target: Event, state: Mapping[tuple[str, str], str]) -> bool:
        if redaction_applies(redaction, target):
            return True
        ids = {k: state[k] for k in _LEVEL_KEYS if k in state}
        loaded = await self.events.get_events(ids.values())
        levels = {k: loaded[e] for k, e in ids.items() if e in loaded}
        return redaction_applies(redaction, target, get_user_power_level(redaction.sender, levels),
                                 get_named_level(levels, "redact", 50))
