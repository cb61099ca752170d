"""Push actions and unread notification counts, computed when an event is persisted.

Spec: client-server-api "Receiving notifications" (``unread_notifications``: notifications since
the user's latest read receipt; ``highlight_count``: those with the ``highlight`` tweak),
modules/push.md "Push Rules" (the rules and their evaluation), modules/threading.md "Receipts" and
"Unread notification counts" (counts per thread with ``unread_thread_notifications``).

:class:`NotificationCounter` registers a persist hook with the event pipeline: for each event
entering the timeline it evaluates the push rules of every local joined member (and a local
invitee of an invite) with the pure evaluator (homeserver/client/push_rules.py) and returns a
write that stores the notifying ones inside the event's own persist transaction — so the counts
are committed before the notifier wakes any /sync. Read receipts clear them
(homeserver/ephemeral/receipts.py → ReceiptsStore.upsert_receipt).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from homeserver.client import push_rules
from homeserver.client.push_service import PushRulesService
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import get_user_power_level
from homeserver.rooms.pipeline import RoomEventService
from homeserver.storage.events_store import EventsStore
from homeserver.storage.receipts_store import MAIN_THREAD, PushActionRow, ReceiptsStore
from homeserver.storage.state_store import StateKey

logger = logging.getLogger(__name__)

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")


def thread_of(event: Event) -> str:
    """The thread an event belongs to: the root's event ID for an ``m.thread`` relation, else
    "main" (modules/threading.md)."""
    content = event.content if isinstance(event.content, dict) else {}
    rel = content.get("m.relates_to")
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return MAIN_THREAD


@dataclass
class _RoomContext:
    """What push evaluation needs of a room's state, cached per state map."""

    local_joined: list[str]
    member_count: int
    display_names: dict[str, str]
    levels_state: dict[StateKey, Event]
    power_levels: dict | None


class NotificationCounter:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.store = hs.get(EventsStore)
        self.receipts = hs.get(ReceiptsStore)
        self.push_rules = hs.get(PushRulesService)
        self._contexts: dict[str, tuple[Mapping, _RoomContext]] = {}
        #: ``fn(txn, rows: list[PushActionRow], now_ms)`` run inside the persist transaction after
        #: the push actions are written (homeserver/push/pusher_pool.py: history, pusher wake-up).
        self.on_push_actions: list = []
        self.events.persist_hooks.append(self.actions_for_event)

    def _is_local(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    async def _context(self, room_id: str, state: Mapping[StateKey, str], event: Event) -> _RoomContext:
        """The room's push context for ``state`` (which may cite ``event``, not stored yet)."""
        cached = self._contexts.get(room_id)
        if cached is not None and cached[0] is state:
            return cached[1]
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        keys = [k for k in (CREATE, POWER_LEVELS) if k in state]
        loaded = await self.store.get_events([e for e in member_ids + [state[k] for k in keys] if e != event.event_id])
        loaded[event.event_id] = event
        joined: list[str] = []
        names: dict[str, str] = {}
        for eid in member_ids:
            ev = loaded.get(eid)
            if ev is None or ev.membership != "join" or not isinstance(ev.state_key, str):
                continue
            joined.append(ev.state_key)
            name = ev.content.get("displayname") if isinstance(ev.content, dict) else None
            if isinstance(name, str):
                names[ev.state_key] = name
        levels_state = {k: loaded[state[k]] for k in keys if state[k] in loaded}
        pl = levels_state.get(POWER_LEVELS)
        ctx = _RoomContext([u for u in joined if self._is_local(u)], len(joined), names, levels_state,
                           pl.content if pl is not None and isinstance(pl.content, dict) else None)
        if len(self._contexts) > 10_000:
            self._contexts.clear()
        self._contexts[room_id] = (state, ctx)
        return ctx

    async def actions_for_event(self, event: Event, state_after: Mapping[StateKey, str]):
        """Persist hook: the push-action write for ``event`` (None when it notifies nobody)."""
        ctx = await self._context(event.room_id, state_after, event)
        recipients = [u for u in ctx.local_joined if u != event.sender]
        if (event.type == "m.room.member" and event.membership == "invite" and isinstance(event.state_key, str)
                and self._is_local(event.state_key) and event.state_key not in recipients):
            recipients.append(event.state_key)
        if not recipients:
            return None
        sender_level = get_user_power_level(event.sender, ctx.levels_state) if ctx.levels_state else 0
        thread = thread_of(event)
        found: list[tuple[str, list, bool]] = []
        # One EventFacts for all recipients: each distinct condition is evaluated once per event.
        facts = push_rules.EventFacts(event.pdu, ctx.member_count, ctx.power_levels, sender_level)
        for user_id in recipients:
            rules = await self.push_rules.get_compiled_ruleset(user_id)
            actions = rules.evaluate(facts, user_id, ctx.display_names.get(user_id))
            if push_rules.should_notify(actions):
                found.append((user_id, actions, push_rules.is_highlight(actions)))
        if not found:
            return None
        now = self.hs.clock_ms()

        def write(txn, item) -> None:
            rows = [PushActionRow(u, event.room_id, item.stream_ordering, event.event_id, thread, hl, actions)
                    for u, actions, hl in found]
            ReceiptsStore.add_push_actions_txn(txn, rows, now)
            for hook in list(self.on_push_actions):
                hook(txn, rows, now)
        return write

    async def get_counts(self, user_id: str) -> dict[str, dict[str, tuple[int, int]]]:
        """``{room_id: {thread_id: (notification_count, highlight_count)}}`` (see ReceiptsStore)."""
        return await self.receipts.get_notification_counts(user_id)
