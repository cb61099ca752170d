"""The /sync loader: fetches what changed since a token and hands it to the pure assembly.

Spec: client-server-api "Syncing", sync.yaml; the rules of what goes where live in
homeserver/sync/assembly.py. This module only reads (batched: one transaction for all rooms'
timelines, one for the since-states, one for the summaries; state maps and events come from the
stores' caches) and long-polls on the notifier.

* Incremental syncs only touch rooms with something new: rooms whose events stream moved past
  the since-token (known from the notifier in memory for tokens issued since start-up, else one
  query), rooms whose membership changed, and the per-user streams that moved.
* The user's memberships are cached and reloaded only when the notifier saw an events-stream
  change for that user (every membership change notifies its user).
* Lazy-loaded member events already sent to a device are remembered per (user, device) so
  incremental syncs do not repeat them (include_redundant_members false).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from twisted.internet import defer, task

from homeserver.client.account_data import AccountDataService
from homeserver.client.filtering import SyncFilter
from homeserver.client.presence import PresenceService
from homeserver.e2ee.device_lists import DeviceListService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.ephemeral.receipts import ReceiptsService, receipts_edu
from homeserver.ephemeral.typing import TypingService, typing_edu
from homeserver.protocol import visibility as vis_rules
from homeserver.protocol.events import Event
from homeserver.push.notification_counts import NotificationCounter
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.pipeline import RoomEventService
from homeserver.rooms.serialize import STRIPPED_STATE_TYPES, EventSerializer, strip_event
from homeserver.rooms.visibility import VisibilityService
from homeserver.storage.events_store import EventsStore, MembershipRow
from homeserver.storage.lru import LruCache
from homeserver.storage.room_extras_store import RoomExtrasStore
from homeserver.storage.state_store import StateKey, StateStore
from homeserver.storage.sync_store import SyncStore

from . import assembly
from .notifier import Notifier
from .tokens import RoomPosition, SyncToken, TokenError

logger = logging.getLogger(__name__)

IGNORED_USERS_TYPE = "m.ignored_user_list"
#: A timeline filter that drops events makes the loader fetch older ones this many times at most.
MAX_REFETCH = 3
MAX_TIMEOUT_MS = 10 * 60 * 1000


@dataclass
class _RoomWork:
    room_id: str
    row: MembershipRow
    left: bool
    lower: int
    upper: int
    full: bool
    check_newly_joined: bool = False
    candidates: list[tuple[int, Event]] = field(default_factory=list)
    exhausted: bool = True
    choice: assembly.TimelineChoice | None = None
    streams: dict[str, int] = field(default_factory=dict)


class SyncService:
    def __init__(self, hs):
        self.hs = hs
        self.events = hs.get(RoomEventService)
        self.store = hs.get(EventsStore)
        self.state_store = hs.get(StateStore)
        self.sync_store = hs.get(SyncStore)
        self.extras = hs.get(RoomExtrasStore)
        self.notifier = hs.get(Notifier)
        self.serializer = hs.get(EventSerializer)
        self.visibility = hs.get(VisibilityService)
        self.account_data = hs.get(AccountDataService)
        self.presence = hs.get(PresenceService)
        self.receipts = hs.get(ReceiptsService)
        self.typing = hs.get(TypingService)
        self.to_device = hs.get(ToDeviceService)
        self.device_lists = hs.get(DeviceListService)
        self.counter = hs.get(NotificationCounter)
        # Events-stream position from which the notifier's per-room index is complete.
        self._events_baseline = self.store.get_current_stream_token()
        self._memberships: LruCache[str, tuple[int, list[MembershipRow]]] = LruCache(50_000)
        self._ignored: LruCache[str, tuple[int, frozenset[str]]] = LruCache(50_000)
        self._lazy_sent: LruCache[tuple[str, str], dict[str, dict[str, str]]] = LruCache(20_000)
        self._to_device_acked: dict[tuple[str, str], int] = {}
        self.device_lists.sync_token_parser = self._device_lists_positions

    # --- tokens ---------------------------------------------------------------------------------
    def current_token(self) -> SyncToken:
        return SyncToken(
            events=self.store.get_current_stream_token(),
            account_data=self.account_data.current_token(),
            receipts=self.receipts.current_token(),
            typing=self.typing.current_token(),
            presence=self.presence.current_token(),
            to_device=self.to_device.current_position(),
            device_lists=self.device_lists.current_position(),
        )

    @staticmethod
    def _device_lists_positions(text: str) -> tuple[int, int | None]:
        try:
            token = SyncToken.parse(text)
        except TokenError as e:
            raise ValueError(str(e)) from None
        return token.device_lists, token.events

    # --- cached per-user reads ------------------------------------------------------------------
    async def memberships(self, user_id: str) -> list[MembershipRow]:
        """The user's membership rows (every room they are or were in), cached until the notifier
        sees an events-stream change for the user."""
        mark = self.notifier.latest("user", user_id, "events")
        cached = self._memberships.get(user_id)
        if cached is not None and cached[0] == mark:
            return cached[1]
        rows = await self.store.get_memberships_for_user(user_id)
        self._memberships.set(user_id, (mark, rows))
        return rows

    async def joined_rooms(self, user_id: str) -> list[str]:
        return [r.room_id for r in await self.memberships(user_id) if r.membership == "join"]

    async def _ignored_users(self, user_id: str) -> frozenset[str]:
        mark = self.notifier.latest("user", user_id, "account_data")
        cached = self._ignored.get(user_id)
        if cached is not None and cached[0] == mark:
            return cached[1]
        content = await self.account_data.get_global(user_id, IGNORED_USERS_TYPE) or {}
        ignored = content.get("ignored_users") if isinstance(content, dict) else None
        value = frozenset(ignored) if isinstance(ignored, dict) else frozenset()
        self._ignored.set(user_id, (mark, value))
        return value

    # --- the long-poll ----------------------------------------------------------------------------
    async def sync(self, requester, sync_filter: SyncFilter, since: SyncToken | None, *, full_state: bool = False,
                   timeout_ms: int = 0, set_presence: str | None = None, use_state_after: bool = False) -> dict:
        """GET /sync: the response for ``since`` (None: initial sync), waiting up to
        ``timeout_ms`` for something new on incremental syncs (not with ``full_state``)."""
        user_id = requester.user_id
        try:
            await self.presence.on_user_sync(user_id, set_presence or "online")
        except Exception:
            logger.exception("presence update on sync failed for %s", user_id)
        now = self.current_token()
        if since is not None:
            since = since.clamped(now)
        if since is None or full_state or timeout_ms <= 0:
            return await self._build(requester, sync_filter, since, now, full_state, use_state_after)
        timeout_ms = min(timeout_ms, MAX_TIMEOUT_MS)
        clock = self.hs.reactor
        deadline = clock.seconds() + timeout_ms / 1000.0
        wait_since = since
        while True:
            remaining_ms = int((deadline - clock.seconds()) * 1000)
            rooms = await self.joined_rooms(user_id)
            woke = False
            if remaining_ms > 0:
                woke = await self.notifier.wait_for(user_id, rooms, wait_since.as_dict(), remaining_ms)
            now = self.current_token()
            response = await self._build(requester, sync_filter, since, now, False, use_state_after)
            if not woke or not assembly.is_empty(response) or clock.seconds() >= deadline:
                return response
            if now.advanced_to(wait_since) == wait_since:
                # Woken for a position not committed yet (an earlier stream id still in flight).
                await task.deferLater(clock, 0.005, lambda: None)
            wait_since = wait_since.advanced_to(now)

    # --- one response ---------------------------------------------------------------------------
    async def _build(self, requester, flt: SyncFilter, since: SyncToken | None, now: SyncToken, full_state: bool,
                     use_state_after: bool) -> dict:
        user_id, device_id = requester.user_id, requester.device_id
        incremental = since is not None
        rows = await self.memberships(user_id)
        works, stripped_rows = await self._classify(user_id, flt, rows, since, now, full_state)
        joined_ids = [r.room_id for r in rows if r.membership == "join"]

        # Per-user streams, concurrently with the rooms.
        side = defer.gatherResults([defer.ensureDeferred(c) for c in (
            self._account_data(user_id, since, now),
            self._presence(user_id, since, now, flt),
            self._to_device(user_id, device_id, since, now),
            self.sync_store.get_user_counters(user_id, device_id),
            self._receipts(joined_ids, since, now, flt),
        )], consumeErrors=True)
        try:
            rooms = await self._rooms(requester, flt, works, since, now, use_state_after)
            stripped = await self._stripped(stripped_rows)
        finally:
            results = await side
        (global_ad, room_ad), presence, (to_device, to_device_pos), (counts, otk, fallback), receipts = results
        if otk is not None:
            otk.setdefault("signed_curve25519", 0)
        device_changed, device_left = await self._device_lists(user_id, since, now, works, rows)

        typing = self.typing.changed_rooms(joined_ids, since.typing if since else 0) \
            if not flt.ephemeral.excludes_everything else {}
        for room in rooms:
            if not room.left:
                if room.room_id in typing:
                    room.ephemeral.append(typing_edu(typing[room.room_id]))
                edu = receipts_edu(receipts.get(room.room_id, ()), user_id)
                if edu is not None:
                    room.ephemeral.append(edu)
                room.counts = counts.get(room.room_id)
            room.account_data = room_ad.get(room.room_id, [])
        # Rooms with only ephemeral or account data news on incremental syncs.
        present = {r.room_id for r in rooms}
        for room_id in joined_ids:
            if room_id in present or not flt.room_allowed(room_id):
                continue
            extra = []
            if room_id in typing:
                extra.append(typing_edu(typing[room_id]))
            edu = receipts_edu(receipts.get(room_id, ()), user_id)
            if edu is not None:
                extra.append(edu)
            if extra or room_id in room_ad:
                rooms.append(assembly.JoinedRoom(room_id, prev_batch=str(RoomPosition(None, now.events)),
                                                 ephemeral=extra, account_data=room_ad.get(room_id, []),
                                                 counts=counts.get(room_id)))

        next_token = now.copy_with(to_device=to_device_pos)
        data = assembly.SyncData(
            next_batch=str(next_token), incremental=incremental, rooms=rooms, stripped=stripped,
            account_data=global_ad, presence=presence, to_device=to_device,
            device_lists_changed=device_changed, device_lists_left=device_left,
            one_time_keys_count=otk, fallback_key_types=fallback)
        return assembly.assemble_response(data, flt, use_state_after=use_state_after)

    async def _classify(self, user_id: str, flt: SyncFilter, rows: list[MembershipRow], since: SyncToken | None,
                        now: SyncToken, full_state: bool) -> tuple[list[_RoomWork], list[MembershipRow]]:
        """Which rooms need timeline work, and the invites/knocks to show."""
        incremental = since is not None
        lower = since.events if since else 0
        works: list[_RoomWork] = []
        stripped: list[MembershipRow] = []
        leaving: list[MembershipRow] = []
        joined: list[MembershipRow] = []
        for r in rows:
            if not flt.room_allowed(r.room_id):
                continue
            changed = incremental and lower < r.stream_ordering <= now.events
            if r.membership == "join":
                joined.append(r)
            elif r.membership in ("leave", "ban"):
                if r.stream_ordering <= now.events and (changed or (not incremental and flt.include_leave)):
                    leaving.append(r)
            elif r.membership in ("invite", "knock"):
                if not incremental or changed:
                    stripped.append(r)
        if any(r.membership == "invite" for r in stripped) \
                and await self.hs.get(MembershipService).invites_blocked(user_id):
            # modules/invite_permission.md: a user blocking invites is not shown them (they
            # come back once unblocked, on an initial sync).
            stripped = [r for r in stripped if r.membership != "invite"]
        if joined:
            if incremental and not full_state:
                moved = await self._rooms_with_events([r.room_id for r in joined], lower, now.events)
            else:
                moved = {r.room_id for r in joined}
            for r in joined:
                newly = incremental and lower < r.stream_ordering <= now.events
                if r.room_id in moved or newly:
                    works.append(_RoomWork(r.room_id, r, False, lower, now.events, not incremental or full_state,
                                           check_newly_joined=newly and not full_state))
        if leaving:
            forgotten = await self.extras.get_forgotten_rooms(user_id)
            for r in leaving:
                if r.room_id in forgotten:
                    continue
                works.append(_RoomWork(r.room_id, r, True, lower, min(r.stream_ordering, now.events),
                                       not incremental or full_state, check_newly_joined=incremental and not full_state))
        return works, stripped

    async def _rooms_with_events(self, room_ids: list[str], lower: int, upper: int) -> set[str]:
        if lower >= self._events_baseline:
            return {r for r in room_ids if self.notifier.latest("room", r, "events") > lower}
        moved = await self.sync_store.get_rooms_with_events(lower, upper)
        return {r for r in room_ids if r in moved}

    # --- rooms ------------------------------------------------------------------------------------
    async def _rooms(self, requester, flt: SyncFilter, works: list[_RoomWork], since: SyncToken | None,
                     now: SyncToken, use_state_after: bool) -> list[assembly.JoinedRoom]:
        if not works:
            return []
        user_id = requester.user_id
        limit = assembly.timeline_limit(flt)
        ignored = await self._ignored_users(user_id)
        fetch = limit + 1 if assembly.filter_selects_all(flt.timeline) else limit * 3 + 1
        pending = works
        for attempt in range(MAX_REFETCH + 1):
            await self._load_windows(user_id, pending, fetch, ignored)
            again = []
            for w in pending:
                w.choice = assembly.select_timeline(w.room_id, [ev for _, ev in reversed(w.candidates)], flt.timeline,
                                                    limit, w.exhausted or attempt == MAX_REFETCH)
                if w.choice.need_more:
                    again.append(w)
            if not again:
                break
            pending = again
            fetch *= 4

        # State at the start of each timeline (and at the since-token where needed).
        metas = await self.store.get_event_metas(w.choice.events[0].event_id for w in works if w.choice.events)
        need_since = [(w.room_id, since.events) for w in works
                      if since is not None and not w.full
                      and (w.choice.gap or w.check_newly_joined or use_state_after)]
        since_groups = await self.sync_store.get_state_groups_at(need_since)
        plans = []
        for w in works:
            start = await self._state_at_start(w, metas, use_state_after)
            at_since = None
            if w.room_id in since_groups:
                at_since = await self.state_store.get_state_group(since_groups[w.room_id])
            full = w.full
            if w.check_newly_joined and not full:
                member = at_since.get(("m.room.member", user_id)) if at_since is not None else None
                was_joined = member is not None and await self._membership_of(member) == "join"
                full = not was_joined
            plans.append((w, start, at_since, full))

        # Summaries: full rooms, and rooms whose membership changed in this response.
        summary_rooms = []
        hero_rooms = []
        for w, start, at_since, full in plans:
            if w.left:
                continue
            members_moved = any(e.type == "m.room.member" for e in w.choice.events) or (
                at_since is not None and any(k[0] == "m.room.member" and at_since.get(k) != v
                                             for k, v in start.items()))
            if full or members_moved:
                summary_rooms.append(w.room_id)
                current = await self.events.get_current_state_ids(w.room_id)
                if ("m.room.name", "") not in current and ("m.room.canonical_alias", "") not in current:
                    hero_rooms.append(w.room_id)
        counts, heroes = await self.sync_store.get_summaries(summary_rooms, hero_rooms, user_id) \
            if summary_rooms else ({}, {})

        lazy = flt.state.lazy_load_members
        device_key = (user_id, requester.device_id or "")
        sent = self._lazy_sent.get(device_key) if since is not None else None
        if sent is None:
            sent = {}
        state_ids: dict[str, list[str]] = {}
        types_ok = assembly.state_type_checker(flt.state)
        for w, start, at_since, full in plans:
            state_ids[w.room_id] = assembly.compute_state_ids(
                user_id, start, state_at_since=at_since, timeline=w.choice.events, full=full,
                gap=w.choice.gap or use_state_after, lazy_load_members=lazy,
                include_redundant_members=flt.state.include_redundant_members,
                extra_members=[u for u, _ in heroes.get(w.room_id, ())], sent_members=sent.get(w.room_id),
                types_ok=types_ok, exclude_timeline=not use_state_after)
        loaded = await self.store.get_events(eid for ids in state_ids.values() for eid in ids)
        state_events = {room: [loaded[e] for e in ids if e in loaded and flt.state.matches(loaded[e].pdu, room)]
                        for room, ids in state_ids.items()}

        timeline_all = [ev for w in works for ev in w.choice.events]
        state_all = [ev for evs in state_events.values() for ev in evs]
        serialized_tl, serialized_st = await self._serialize(requester, flt, timeline_all, state_all)

        out = []
        for w, start, at_since, full in plans:
            tl = [serialized_tl[e.event_id] for e in w.choice.events]
            st = [serialized_st[e.event_id] for e in state_events[w.room_id]]
            if w.choice.events:
                first = w.choice.events[0]
                prev_batch = str(RoomPosition.before_event(_int(first.depth), w.streams[first.event_id]))
            else:
                prev_batch = str(RoomPosition(None, w.upper))
            summary = None
            if w.room_id in counts:
                j, i = counts[w.room_id]
                summary = assembly.room_summary(user_id, j, i, heroes.get(w.room_id, ()), w.room_id not in heroes)
            out.append(assembly.JoinedRoom(w.room_id, timeline=tl, limited=w.choice.limited, prev_batch=prev_batch,
                                           state=st, summary=summary, left=w.left))
            if lazy:
                room_sent = sent.setdefault(w.room_id, {})
                room_sent.update(assembly.members_sent(state_events[w.room_id], w.choice.events))
        if lazy:
            self._lazy_sent.set(device_key, sent)
        return out

    async def _load_windows(self, user_id: str, works: list[_RoomWork], fetch: int, ignored: frozenset[str]) -> None:
        # Recent events from memory when it covers the window (a woken long-poll), else the database.
        found: dict[str, list[tuple[int, str]]] = {}
        windows = []
        for w in works:
            rows = self.store.recent_window(w.room_id, w.lower, w.upper, fetch)
            if rows is None:
                windows.append((w.room_id, w.lower, w.upper, fetch))
            else:
                found[w.room_id] = rows
        if windows:
            found.update(await self.sync_store.get_room_windows(windows))
        events = await self.store.get_events(eid for rows in found.values() for _, eid in rows)
        for w in works:
            rows = found.get(w.room_id, [])
            w.exhausted = len(rows) < fetch
            cands = [(so, events[eid]) for so, eid in reversed(rows) if eid in events]
            w.streams = {ev.event_id: so for so, ev in cands}
            # History visibility: events before the user's latest membership change may predate
            # their join (modules/history_visibility.md); the others they saw as a member.
            early = [ev for so, ev in cands if so < w.row.stream_ordering]
            if early or ignored:
                visible = {e.event_id: e for e in await self._visible(user_id, w, early, ignored)}
                cands = [(so, ev if so >= w.row.stream_ordering else visible[ev.event_id]) for so, ev in cands
                         if (so >= w.row.stream_ordering or ev.event_id in visible)
                         and not (ignored and ev.sender in ignored and not ev.is_state())]
            w.candidates = cands

    async def _visible(self, user_id: str, w: _RoomWork, events: list[Event], ignored: frozenset[str]) -> list[Event]:
        if not events:
            return []
        if w.left:
            return await self.visibility.filter_events_for_user(user_id, events, ignored_users=ignored)
        # Joined now: "joined at some point after the event" holds for every earlier event.
        metas = await self.store.get_event_metas(e.event_id for e in events)
        groups = {m.state_group_before for m in metas.values() if m.state_group_before is not None}
        maps = {g: await self.state_store.get_state_group(g) for g in groups}
        keys = (vis_rules.HISTORY_VISIBILITY, ("m.room.member", user_id))
        loaded = await self.store.get_events({m[k] for m in maps.values() for k in keys if k in m}, allow_rejected=True)
        pairs = []
        for e in events:
            meta = metas.get(e.event_id)
            if meta is None or meta.state_group_before is None:
                if e.type == "m.room.create":
                    pairs.append((e, {}))
                continue
            m = maps[meta.state_group_before]
            pairs.append((e, {k: loaded[m[k]] for k in keys if k in m and m[k] in loaded}))
        erased = await self.visibility.erasures.erased_among({e.sender for e in events})
        return vis_rules.filter_events_for_user(user_id, pairs, joined_later=True, ignored_users=ignored,
                                                erased_senders=erased)

    async def _state_at_start(self, w: _RoomWork, metas, use_state_after: bool) -> Mapping[StateKey, str]:
        if w.choice.events and not use_state_after:
            meta = metas.get(w.choice.events[0].event_id)
            if meta is not None and meta.state_group_before is not None:
                return await self.state_store.get_state_group(meta.state_group_before)
        if w.left:
            return await self.events.get_state_ids_at(w.row.event_id) or {}
        return await self.events.get_current_state_ids(w.room_id)

    async def _membership_of(self, event_id: str) -> str | None:
        ev = await self.store.get_event(event_id, allow_rejected=True)
        return ev.membership if ev is not None else None

    async def _serialize(self, requester, flt: SyncFilter, timeline: list[Event], state: list[Event]
                         ) -> tuple[dict[str, dict], dict[str, dict]]:
        if flt.event_format == "federation":
            return ({e.event_id: dict(e.pdu) for e in timeline}, {e.event_id: dict(e.pdu) for e in state})
        tl, st = await defer.gatherResults([
            defer.ensureDeferred(self.serializer.serialize_events(
                timeline, user_id=requester.user_id, device_id=requester.device_id, include_room_id=False)),
            defer.ensureDeferred(self.serializer.serialize_events(
                state, user_id=requester.user_id, device_id=requester.device_id, include_room_id=False,
                with_prev_content=False)),
        ], consumeErrors=True)
        return ({e.event_id: s for e, s in zip(timeline, tl)}, {e.event_id: s for e, s in zip(state, st)})

    async def _stripped(self, rows: list[MembershipRow]) -> list[assembly.StrippedRoom]:
        """Invite/knock state: the event's ``unsigned.invite_room_state``/``knock_room_state``
        (set by the server that sent it), else stripped events of the room's current state; the
        membership event itself last (client-server-api "Stripped state")."""
        if not rows:
            return []
        events = await self.store.get_events((r.event_id for r in rows), allow_rejected=True)
        out = []
        for r in rows:
            ev = events.get(r.event_id)
            if ev is None:
                continue
            knock = r.membership == "knock"
            unsigned = ev.unsigned if isinstance(ev.unsigned, dict) else {}
            given = unsigned.get("knock_room_state" if knock else "invite_room_state")
            if isinstance(given, list):
                stripped = [s for s in given if isinstance(s, dict)]
            else:
                current = await self.events.get_current_state_ids(r.room_id)
                wanted = [current[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in current]
                loaded = await self.store.get_events(wanted)
                stripped = [strip_event(loaded[e]) for e in wanted if e in loaded]
            own = strip_event(ev)
            stripped = [s for s in stripped if not (s.get("type") == "m.room.member" and s.get("state_key") == ev.state_key)]
            stripped.append(own)
            out.append(assembly.StrippedRoom(r.room_id, stripped, knock=knock))
        return out

    # --- per-user streams -------------------------------------------------------------------------
    async def _account_data(self, user_id: str, since: SyncToken | None, now: SyncToken
                            ) -> tuple[list[dict], dict[str, list[dict]]]:
        if since is not None and since.account_data >= now.account_data:
            return [], {}
        changes = await self.account_data.get_changes_since(user_id, since.account_data if since else None,
                                                            now.account_data)
        return changes.global_events, changes.room_events

    async def _presence(self, user_id: str, since: SyncToken | None, now: SyncToken, flt: SyncFilter) -> list[dict]:
        if not self.presence.enabled or flt.presence.excludes_everything:
            return []
        if since is not None and since.presence >= now.presence:
            return []
        users = await self.device_lists.users_sharing_room_with(user_id)
        return await self.presence.get_changes_since(user_id, since.presence if since else None, now.presence,
                                                     interested_users=users)

    async def _to_device(self, user_id: str, device_id: str | None, since: SyncToken | None, now: SyncToken
                         ) -> tuple[list[dict], int]:
        if device_id is None:
            return [], now.to_device
        start = since.to_device if since is not None else 0
        key = (user_id, device_id)
        if since is not None and start > self._to_device_acked.get(key, 0):
            # send_to_device.md: messages up to the since-token were delivered.
            await self.to_device.delete_acknowledged(user_id, device_id, start)
            self._to_device_acked[key] = start
            if len(self._to_device_acked) > 100_000:
                self._to_device_acked.clear()
        if since is not None and start >= now.to_device:
            return [], max(start, now.to_device)
        return await self.to_device.get_to_device(user_id, device_id, start, to=now.to_device)

    async def _receipts(self, room_ids: list[str], since: SyncToken | None, now: SyncToken, flt: SyncFilter
                        ) -> dict[str, list]:
        if flt.ephemeral.excludes_everything or not room_ids:
            return {}
        start = since.receipts if since is not None else 0
        if start >= now.receipts:
            return {}
        out: dict[str, list] = {}
        for row in await self.receipts.get_receipts(room_ids, start, now.receipts):
            out.setdefault(row.room_id, []).append(row)
        return out

    async def _device_lists(self, user_id: str, since: SyncToken | None, now: SyncToken, works: list[_RoomWork],
                            rows: list[MembershipRow]) -> tuple[set[str], set[str]]:
        if since is None:
            return set(), set()
        members_moved = any(since.events < r.stream_ordering <= now.events for r in rows) or any(
            e.type == "m.room.member" for w in works if w.choice is not None for e in w.choice.events) or any(
            w.choice is not None and w.choice.gap for w in works)
        if since.device_lists >= now.device_lists and not members_moved:
            return set(), set()
        return await self.device_lists.get_device_list_changes(
            user_id, since.device_lists, now.device_lists, from_room_pos=since.events, to_room_pos=now.events)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
