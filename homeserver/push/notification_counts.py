"""Push actions and unread notification counts, computed when an event is persisted.

Spec: client-server-api "Receiving notifications" (``unread_notifications``: notifications since
the user's latest read receipt; ``highlight_count``: those with the ``highlight`` tweak),
modules/push.md "Push Rules" (the rules and their evaluation), modules/threading.md "Receipts" and
"Unread notification counts" (counts per thread with ``unread_thread_notifications``).

:class:`NotificationCounter` registers a persist hook with the event pipeline: for each event
entering the timeline it evaluates the push rules of every local joined member (and a local
invitee of an invite) with the pure evaluator (homeserver/client/push_rules.py) and returns a
write that stages the notifying ones as one row inside the event's own persist transaction — so
the counts (which add staged rows) are committed before the notifier wakes any /sync. A fold
within FOLD_DELAY_S moves the staged rows into the per-user tables in one transaction for many
events (ReceiptsStore.fold_staged_txn). Read receipts fold, then clear
(homeserver/ephemeral/receipts.py → ReceiptsStore.upsert_receipt).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from twisted.internet import defer

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

#: Staged push actions are folded into the per-user tables at most this long after their event.
FOLD_DELAY_S = 0.1

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
    """What push evaluation needs of a room's state, cached per state map and carried forward
    from one state map to the next when an event changes one key (a join costs no reload)."""

    local_joined: dict[str, None]  # insertion-ordered set
    member_count: int
    display_names: dict[str, str]
    levels_state: dict[StateKey, Event]
    power_levels: dict | None
    #: Local joined users whose IDs are not plain (push_rules.is_plain_user_id): always
    #: evaluated one by one.
    odd_local: set[str]


class _Reload(Exception):
    """The context cannot be carried forward without loading an event: rebuild it."""


class NotificationCounter:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.store = hs.get(EventsStore)
        self.receipts = hs.get(ReceiptsStore)
        self.push_rules = hs.get(PushRulesService)
        self._contexts: dict[str, tuple[Mapping, _RoomContext]] = {}
        #: ``fn(txn, rows: list[PushActionRow], received_ts)`` run inside the transaction that
        #: folds an event's staged push actions into the per-user tables
        #: (homeserver/push/pusher_pool.py: history, pusher wake-up).
        self.on_push_actions: list = []
        self._fold_call = None
        self.receipts.on_fold.append(self._on_fold)
        self.events.persist_hooks.append(self.actions_for_event)

    def _is_local(self, user_id: str) -> bool:
        try:
            return ids.get_domain(user_id) == self.hs.hostname
        except ValueError:
            return False

    async def _context(self, room_id: str, state: Mapping[StateKey, str], event: Event) -> _RoomContext:
        """The room's push context for ``state`` (which may cite ``event``, not stored yet)."""
        cached = self._contexts.get(room_id)
        if cached is not None:
            if cached[0] is state:
                return cached[1]
            ctx = self._carried_forward(cached[0], cached[1], state, event)
            if ctx is not None:
                self._contexts[room_id] = (state, ctx)
                return ctx
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
        local = {u: None for u in joined if self._is_local(u)}
        ctx = _RoomContext(local, len(joined), names, levels_state,
                           pl.content if pl is not None and isinstance(pl.content, dict) else None,
                           {u for u in local if not push_rules.is_plain_user_id(u)})
        if len(self._contexts) > 10_000:
            self._contexts.clear()
        self._contexts[room_id] = (state, ctx)
        return ctx

    def _carried_forward(self, old_state: Mapping[StateKey, str], old: _RoomContext,
                         state: Mapping[StateKey, str], event: Event) -> _RoomContext | None:
        """The context for ``state`` when it is ``old_state`` with only ``event`` set (the usual
        step from one event to the next); None otherwise."""
        if not event.is_state() or not isinstance(event.state_key, str):
            return None
        key = event.state_tuple
        if state.get(key) != event.event_id or len(state) - len(old_state) != (key not in old_state) \
                or {**old_state, key: event.event_id} != state:
            return None
        if key[0] == "m.room.member":
            user = event.state_key
            was_joined = user in old.display_names or user in old.local_joined or \
                self._was_joined(old_state, key)
            joined = event.membership == "join"
            local, names, odd = old.local_joined, old.display_names, old.odd_local
            if joined or was_joined:
                local, names, odd = dict(local), dict(names), set(odd)
                local.pop(user, None)
                names.pop(user, None)
                odd.discard(user)
                if joined:
                    if self._is_local(user):
                        local[user] = None
                        if not push_rules.is_plain_user_id(user):
                            odd.add(user)
                    name = event.content.get("displayname") if isinstance(event.content, dict) else None
                    if isinstance(name, str):
                        names[user] = name
            count = old.member_count + (1 if joined else 0) - (1 if was_joined else 0)
            return _RoomContext(local, count, names, old.levels_state, old.power_levels, odd)
        if key in (CREATE, POWER_LEVELS):
            levels_state = dict(old.levels_state)
            levels_state[key] = event
            pl = levels_state.get(POWER_LEVELS)
            return _RoomContext(old.local_joined, old.member_count, old.display_names, levels_state,
                                pl.content if pl is not None and isinstance(pl.content, dict) else None,
                                old.odd_local)
        return old

    def _was_joined(self, old_state: Mapping[StateKey, str], key: StateKey) -> bool:
        """Whether the member event ``old_state`` holds for ``key`` is a join (remote members
        without a display name are not in the context's maps)."""
        eid = old_state.get(key)
        ev = self.store.get_cached_event(eid) if eid is not None else None
        if ev is None and eid is not None:
            raise _Reload()
        return ev is not None and ev.membership == "join"

    async def actions_for_event(self, event: Event, state_after: Mapping[StateKey, str]):
        """Persist hook: the push-action write for ``event`` (None when it notifies nobody).

        Users without push rules of their own share the default template: the event is
        evaluated once for all of them, and one by one only for those a placeholder condition
        names (the invitee of an invite, the users of ``m.mentions``) or whose user ID is not
        plain; users with rules of their own are evaluated one by one."""
        try:
            ctx = await self._context(event.room_id, state_after, event)
        except _Reload:
            self._contexts.pop(event.room_id, None)
            ctx = await self._context(event.room_id, state_after, event)
        local_joined = ctx.local_joined
        invitee = None
        if (event.type == "m.room.member" and event.membership == "invite" and isinstance(event.state_key, str)
                and self._is_local(event.state_key) and event.state_key not in local_joined):
            invitee = event.state_key
        if invitee is None and (not local_joined or (len(local_joined) == 1 and event.sender in local_joined)):
            return None  # nobody but the sender to notify (a new room's events, a lone sender)
        sender_level = get_user_power_level(event.sender, ctx.levels_state) if ctx.levels_state else 0
        thread = thread_of(event)
        facts = push_rules.EventFacts(event.pdu, ctx.member_count, ctx.power_levels, sender_level)
        template = push_rules.default_ruleset()
        named = template.users_to_check(facts)
        one_by_one: set[str] = set(ctx.odd_local)
        one_by_one.update(self.push_rules.customised_users.intersection(local_joined)
                          if len(local_joined) < len(self.push_rules.customised_users)
                          else (u for u in local_joined if u in self.push_rules.customised_users))
        if named is None:
            one_by_one.update(local_joined)
        else:
            one_by_one.update(u for u in named if u in local_joined)
        if invitee is not None:
            one_by_one.add(invitee)
        one_by_one.discard(event.sender)
        found: list[tuple[str, list, bool]] = []
        generic = template.evaluate_for_nobody(facts) if named is not None else []
        if push_rules.should_notify(generic):
            highlight = push_rules.is_highlight(generic)
            found.extend((u, generic, highlight) for u in local_joined if u not in one_by_one and u != event.sender)
        for user_id in sorted(one_by_one):
            if user_id in self.push_rules.customised_users or not push_rules.is_plain_user_id(user_id):
                rules = await self.push_rules.get_compiled_ruleset(user_id)
            else:
                rules = template
            actions = rules.evaluate(facts, user_id, ctx.display_names.get(user_id))
            if push_rules.should_notify(actions):
                found.append((user_id, actions, push_rules.is_highlight(actions)))
        if not found:
            return None
        now = self.hs.clock_ms()

        def write(txn, item) -> None:
            ReceiptsStore.stage_push_actions_txn(txn, event.room_id, event.event_id, item.stream_ordering, thread,
                                                 found, now)
            txn.call_after_commit(self._staged)
        return write

    # --- folding the staged rows -------------------------------------------------------------------
    def _staged(self) -> None:
        """A persist staged push actions: fold them within :data:`FOLD_DELAY_S` (one
        transaction for every event staged meanwhile)."""
        self.receipts.maybe_staged = True
        if self._fold_call is None or not self._fold_call.active():
            self._fold_call = self.hs.reactor.callLater(FOLD_DELAY_S, self._fold)

    def _fold(self) -> None:
        self._fold_call = None

        def failed(f):
            logger.error("folding staged push actions failed: %s", f.getTraceback())
            self._staged()
        defer.ensureDeferred(self.receipts.fold_staged()).addErrback(failed)

    def _on_fold(self, txn, rows: list[PushActionRow], received_ts: int) -> None:
        for hook in list(self.on_push_actions):
            hook(txn, rows, received_ts)
