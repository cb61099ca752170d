"""Room state for the pipeline: the in-memory current state of hot rooms, the state at events and
state resolution run off the reactor thread.

State maps here are ``(type, state_key) -> event_id``; events are loaded only when needed (auth
checks, resolution) through the events store's cache. The current state of a room lives in a
:class:`RoomSnapshot` (kept in an LRU weighed by state size) that the pipeline updates under the
room's lock after each commit, so sending a message reads no state from the database.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping

from twisted.internet import threads

from homeserver.protocol import event_auth, state_res
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import RoomVersion, StateResAlgorithm
from homeserver.storage.events_store import EventsStore
from homeserver.storage.lru import LruCache
from homeserver.storage.state_store import NewStateGroup, StateKey, StateStore

logger = logging.getLogger(__name__)

CREATE = ("m.room.create", "")
#: Most events without an index position the auth difference walks in memory before it falls
#: back to walking the auth edges in SQL.
MAX_UNINDEXED_WALK = 5_000
# Unconflicted state that the auth checks of resolution usually need.
_AUTH_TYPES = {"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.third_party_invite"}


class MissingEventsError(Exception):
    """Events needed to process an event are not stored (federation must fetch them first).

    ``kind`` is "auth_events", "prev_events" or "state"."""

    def __init__(self, kind: str, event_ids: Iterable[str]):
        self.kind = kind
        self.event_ids = sorted(set(event_ids))
        super().__init__(f"missing {kind}: {', '.join(self.event_ids[:5])}"
                         + (" …" if len(self.event_ids) > 5 else ""))


@dataclass
class RoomSnapshot:
    """A room's present: version, current state (do not mutate ``state``: it is replaced on each
    change), the state group holding it and the forward extremities with their depths."""

    room_id: str
    room_version: RoomVersion
    state: dict[StateKey, str]
    state_group: int | None
    delta_depth: int
    extremities: dict[str, int]


@dataclass
class StateAt:
    """The state at some point of the DAG: its map, its group (already stored, or ``new_group``
    to be written with the event) and that group's delta depth."""

    state: dict[StateKey, str]
    state_group: int | None
    delta_depth: int
    new_group: NewStateGroup | None = None


class RoomStateService:
    def __init__(self, hs):
        self.hs = hs
        self.store = hs.get(EventsStore)
        self.state_store = hs.get(StateStore)
        self._snapshots: LruCache[str, RoomSnapshot] = LruCache(
            max_weight=1_000_000, weigher=lambda s: len(s.state) + 10)
        self._generation: dict[str, int] = {}

    # --- current state ------------------------------------------------------------------------
    async def get_snapshot(self, room_id: str) -> RoomSnapshot | None:
        """The room's current snapshot (cached; loaded from the database on a miss)."""
        snap = self._snapshots.get(room_id)
        if snap is not None:
            return snap
        gen = self._generation.get(room_id, 0)
        row = await self.store.load_room_snapshot(room_id)
        if row is None:
            return None
        self.state_store.remember_keys(row.key_nids)
        snap = RoomSnapshot(room_id, row.room_version, row.state, row.state_group, row.delta_depth,
                            row.extremities)
        if self._generation.get(room_id, 0) == gen:
            self._snapshots.set(room_id, snap)
            if row.state_group is not None:
                self.state_store.cache_group(row.state_group, row.state, row.delta_depth)
        return snap

    def set_snapshot(self, snap: RoomSnapshot) -> None:
        """Install a room's new snapshot (called by the pipeline, under the room lock, after commit)."""
        self._generation[snap.room_id] = self._generation.get(snap.room_id, 0) + 1
        self._snapshots.set(snap.room_id, snap)

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        snap = await self.get_snapshot(room_id)
        return snap.state if snap is not None else {}

    # --- state at events --------------------------------------------------------------------
    async def get_state_after(self, event_id: str) -> dict[StateKey, str] | None:
        meta = (await self.store.get_event_metas([event_id])).get(event_id)
        if meta is None or meta.state_group is None:
            return None
        return await self.state_store.get_state_group(meta.state_group)

    async def get_state_before(self, event_id: str) -> dict[StateKey, str] | None:
        meta = (await self.store.get_event_metas([event_id])).get(event_id)
        if meta is None or meta.state_group_before is None:
            return None
        return await self.state_store.get_state_group(meta.state_group_before)

    async def state_after_prevs(self, room_version: RoomVersion, room_id: str,
                                prev_event_ids: Iterable[str]) -> StateAt:
        """The state before an event with these prev_events: the state after each, resolved when
        they differ (rooms/fragments/v2-state-res.md, introduction). Raises MissingEventsError if a
        prev event is unknown or an outlier (its state is unknown)."""
        prev_event_ids = list(dict.fromkeys(prev_event_ids))
        metas = await self.store.get_event_metas(prev_event_ids)
        missing = [e for e in prev_event_ids if e not in metas or metas[e].state_group is None]
        if missing:
            raise MissingEventsError("prev_events", missing)
        groups = list(dict.fromkeys(metas[e].state_group for e in prev_event_ids))
        return await self.state_of_groups(room_version, room_id, groups)

    async def state_of_groups(self, room_version: RoomVersion, room_id: str, groups: list[int]) -> StateAt:
        """The resolved state of several groups, stored as a new group when it is a new state."""
        if not groups:
            return StateAt({}, None, 0)
        maps = [await self.state_store.get_state_group(g) for g in groups]
        if len(groups) == 1 or all(m == maps[0] for m in maps[1:]):
            return StateAt(maps[0], groups[0], self._depth(groups[0]))
        resolved = await self.resolve(room_version, maps)
        for g, m in zip(groups, maps):
            if m == resolved:
                return StateAt(m, g, self._depth(g))
        # Store the resolution as a delta over the closest input group.
        base_i = min(range(len(maps)), key=lambda i: _delta_size(maps[i], resolved))
        new_group = await self.new_group(room_id, groups[base_i], maps[base_i], resolved)
        return StateAt(resolved, new_group.state_group, new_group.delta_depth, new_group)

    def _depth(self, group: int) -> int:
        depth = self.state_store.group_delta_depth(group)
        return depth if depth is not None else 0

    async def new_group(self, room_id: str, prev_group: int | None, prev_state: Mapping[StateKey, str] | None,
                        new_state: dict[StateKey, str], *, prev_depth: int | None = None,
                        extra_nids: Mapping[str, int] | None = None) -> NewStateGroup:
        """A state group for ``new_state`` (to be written with the event), as a delta over
        ``prev_group`` whose full map is ``prev_state`` when possible. ``prev_depth`` is
        ``prev_group``'s delta depth when the caller knows it (required when that group is not
        stored yet); ``extra_nids`` gives the nids of events not stored yet."""
        prev_state = prev_state or {}
        delta: dict[StateKey, str | None] = {k: v for k, v in new_state.items() if prev_state.get(k) != v}
        for k in prev_state:
            if k not in new_state:
                delta[k] = None
        if prev_depth is None and prev_group is not None:
            prev_depth = self.state_store.group_delta_depth(prev_group)
        if prev_group is not None and prev_depth is None:
            await self.state_store.get_state_group(prev_group)
            prev_depth = self.state_store.group_delta_depth(prev_group)
        snapshot = self.state_store.needs_snapshot(prev_group, prev_depth, len(delta), len(new_state))
        needed = new_state if snapshot else {k: v for k, v in delta.items() if v is not None}
        keys = new_state.keys() if snapshot else delta.keys()
        key_nids = await self.state_store.intern_keys(keys)
        extra_nids = extra_nids or {}
        event_nids = await self.store.get_event_nids(e for e in needed.values() if e not in extra_nids)
        event_nids.update(extra_nids)
        missing = [e for e in needed.values() if e not in event_nids]
        if missing:
            raise MissingEventsError("state", missing)
        return self.state_store.prepare_group(room_id, None if snapshot else prev_group,
                                              None if snapshot else prev_depth, new_state, delta,
                                              key_nids, event_nids)

    # --- auth state -------------------------------------------------------------------------
    async def auth_state_for(self, event: Event, state: Mapping[StateKey, str]) -> dict[StateKey, Event]:
        """The events of ``state`` the auth rules may read for ``event`` (its auth selection plus
        the create event), as a ``(type, state_key) -> Event`` map."""
        keys = set(event_auth.auth_types_for_event(event.room_version, event))
        keys.add(CREATE)
        ids = {k: state[k] for k in keys if k in state}
        events = await self.store.get_events(ids.values(), allow_rejected=True)
        return {k: events[e] for k, e in ids.items() if e in events}

    # --- resolution -------------------------------------------------------------------------
    async def resolve(self, room_version: RoomVersion, maps: list[Mapping[StateKey, str]], *,
                      unstored: Mapping[str, Event] | None = None) -> dict[StateKey, str]:
        """State resolution of ``maps`` (state_res.resolve_state) in a worker thread.

        The auth difference (``∪Ci − ∩Ci`` of homeserver/protocol/auth_chain.py) is computed here
        from the persisted chain-cover index (homeserver/storage/auth_chain_store.py), walking
        only events without a position in memory; by walking the stored auth edges in SQL when
        there are too many of those. The events
        resolution reads are prefetched; the loader falls back to a blocking fetch through the
        reactor for anything else. ``unstored`` are events the maps cite that are not persisted
        yet (the event being processed)."""
        unconflicted, conflicted = state_res.separate(maps)
        if not conflicted:
            return unconflicted
        sets = [set(m.values()) for m in maps]
        common = set.intersection(*sets)
        specific = [s - common for s in sets]
        prefetch: set[str] = set().union(*specific)
        difference: set[str] | None = None
        if room_version.state_res != StateResAlgorithm.V1:
            difference = await self._auth_difference_from_index(sets, unstored)
            if difference is None:
                difference, union = await self._auth_difference_walk(common, specific, unstored)
                prefetch |= union
            elif room_version.state_res == StateResAlgorithm.V2_1:
                # The conflicted state subgraph (rooms/v12.md) walks the conflicted events' chains.
                prefetch |= await self._indexed_chain(set().union(*conflicted.values()), unstored)
            prefetch |= difference
        else:
            prefetch |= set(unconflicted.values())
        loaded = await self.store.get_events(prefetch - set(unstored or ()), allow_rejected=True)
        loaded.update(unstored or {})
        if difference is not None:
            # The iterative auth checks read the auth events of the full conflicted set.
            auth_ids = {a for ev in loaded.values() for a in ev.auth_event_ids} - set(loaded)
            loaded.update(await self.store.get_events(auth_ids, allow_rejected=True))
        # Unconflicted events the auth checks read: create, power levels, join rules, and the
        # memberships of the senders and targets among the loaded events.
        people = {ev.sender for ev in loaded.values()} | {
            ev.state_key for ev in loaded.values() if ev.type == "m.room.member" and ev.state_key}
        extra = [eid for (t, sk), eid in unconflicted.items()
                 if t in _AUTH_TYPES or (t == "m.room.member" and sk in people)]
        loaded.update(await self.store.get_events(extra, allow_rejected=True))

        reactor = self.hs.reactor
        store = self.store

        def get_event(event_id: str) -> Event | None:
            ev = loaded.get(event_id)
            if ev is None:
                ev = store.get_cached_event(event_id)
                if ev is None:
                    ev = threads.blockingCallFromThread(
                        reactor, lambda: _as_deferred(store.get_event(event_id, allow_rejected=True)))
                if ev is not None:
                    loaded[event_id] = ev
            return ev

        auth_difference = (lambda _sets: difference) if difference is not None else None
        return await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), state_res.resolve_state, room_version, maps, get_event,
            auth_difference)


    async def _auth_difference_from_index(self, sets: list[set[str]],
                                          unstored: Mapping[str, Event] | None) -> set[str] | None:
        """The auth difference from the chain-cover index, walking in memory only the events
        without a position (not stored yet, pending in the persist queue, or stored before the
        index): None when those are more than :data:`MAX_UNINDEXED_WALK` (the SQL walk then).

        An indexed event's whole auth chain is indexed, so the events without a position that
        ``Ci`` holds are those reached from ``Si`` through such events only (``Ui``), and
        ``∪Ci − ∩Ci = (∪Ui − ∩Ui) ∪ difference of the indexed rest``."""
        unindexed: dict[str, Event | None] = dict(unstored or {})  # None: an event we do not have
        outside: list[set[str]] = [set() for _ in sets]  # Ui
        indexed = [set(s) for s in sets]
        walked = 0
        while True:
            for i, ids_ in enumerate(indexed):
                stack = [e for e in ids_ if e in unindexed]
                ids_.difference_update(stack)
                while stack:
                    eid = stack.pop()
                    if eid in outside[i]:
                        continue
                    outside[i].add(eid)
                    walked += 1
                    ev = unindexed[eid]
                    for a in (ev.auth_event_ids if ev is not None else ()):
                        if a in unindexed:
                            stack.append(a)
                        else:
                            ids_.add(a)
            if walked > MAX_UNINDEXED_WALK:
                return None
            difference, missing = await self.store.auth_chains.auth_chain_difference_or_unindexed(indexed)
            if difference is not None:
                break
            found = await self.store.get_events(missing, allow_rejected=True)
            for eid in missing:
                unindexed[eid] = found.get(eid)
        if any(outside):
            difference |= set().union(*outside) - set.intersection(*outside)
        return difference

    async def _indexed_chain(self, event_ids: set[str], unstored: Mapping[str, Event] | None) -> set[str]:
        """The indexed ones of ``event_ids`` (unstored ones: their auth events) with their auth
        chains, from the index."""
        unstored = unstored or {}
        ids_ = {e for e in event_ids if e not in unstored}
        for e in event_ids & set(unstored):
            ids_.update(unstored[e].auth_event_ids)
        return await self.store.auth_chains.auth_chain_ids(ids_)

    async def _auth_difference_walk(self, common: set[str], specific: list[set[str]],
                                    unstored: Mapping[str, Event] | None) -> tuple[set[str], set[str]]:
        """The auth difference by walking the stored auth edges in SQL (for events the index
        lacks): ``(∪Ki − ∩Ki) − (U ∪ chain(U))`` where U is the events common to all sets and Ki
        the set-specific events with their auth chains. Returns it with ``∪Ki`` (to prefetch)."""
        chains = [s | await self._auth_chain(s, unstored) for s in specific]
        union = set().union(*chains)
        candidates = union - set.intersection(*chains)
        if candidates:
            common_chain = await self.store.get_auth_chain_ids(sorted(common))
            candidates -= common
            candidates -= common_chain
        return candidates, union

    async def _auth_chain(self, event_ids: set[str], unstored: Mapping[str, Event] | None) -> set[str]:
        """The auth chain of ``event_ids`` (IDs only, from the stored auth edges); events not
        stored yet contribute their own auth events and those events' chains."""
        unstored = unstored or {}
        starts = {e for e in event_ids if e not in unstored}
        direct: set[str] = set()
        for e in event_ids:
            if e in unstored:
                direct.update(unstored[e].auth_event_ids)
        starts |= direct
        return direct | await self.store.get_auth_chain_ids(sorted(starts))


def _as_deferred(coro):
    from twisted.internet import defer
    return defer.ensureDeferred(coro)


def _delta_size(a: Mapping, b: Mapping) -> int:
    return sum(1 for k, v in b.items() if a.get(k) != v) + sum(1 for k in a if k not in b)
