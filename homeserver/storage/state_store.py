"""Compact room state: interned (type, state_key) keys and state groups stored as deltas.

A *state group* is one room state (``(type, state_key) -> event_id``). It is stored as a delta over
``prev_group`` (rows ``key_nid -> event_nid``, ``event_nid`` NULL meaning "key removed"), or as a full
snapshot when ``prev_group`` is NULL. Every :data:`SNAPSHOT_INTERVAL` deltas a snapshot is written,
so reading a group walks at most that many deltas (one recursive query for the chain, one for the
rows). Full maps of recently used groups are kept in a weighted LRU cache.

Every event records two groups (``events.state_group_before`` and ``events.state_group``): the state
before it and the state after it. They are the same group for non-state events and rejected events.
Soft-failed state events do get a new "after" group (they passed auth against the state before
them, so later events that cite them see them), but they never change the room's current state.

The keys and groups written with an event are written inside the event's persist transaction
(:meth:`write_groups_txn`), so an event never points at a group that is not stored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .database import Txn
from .lru import LruCache

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]

#: A full snapshot is written after this many consecutive deltas.
SNAPSHOT_INTERVAL = 100


@dataclass
class NewStateGroup:
    """A state group to be written by :meth:`StateStore.write_groups_txn`.

    ``entries`` are ``(key_nid, event_nid or None)``; ``state`` is the group's full map (cached once
    the transaction commits)."""

    state_group: int
    room_id: str
    prev_group: int | None
    delta_depth: int
    entries: list[tuple[int, int | None]]
    state: dict[StateKey, str] = field(repr=False, default_factory=dict)


class StateStore:
    def __init__(self, hs):
        self.db = hs.db
        self._key_nids: dict[StateKey, int] = {}
        self._keys_by_nid: dict[int, StateKey] = {}
        #: key_nid -> key allocated by intern_keys, written by the next persist transaction.
        self._pending_keys: dict[int, StateKey] = {}
        # state_group -> (full state map, delta_depth); weighed by the number of keys. Every
        # state event of a big room adds a full map (a join into a 1,000-member room: 1,000
        # entries, ~40 kB of dict), so the budget is kept to what recent reads use: 100,000
        # entries, ~4 MB (issue 9: 200,000 held 8.3 MB after the full-scale benchmark's joins).
        self._groups: LruCache[int, tuple[dict[StateKey, str], int]] = LruCache(
            max_weight=100_000, weigher=lambda v: len(v[0]) + 1)
        self._last_key_nid, self._last_group = self.db.run_sync("state_store_init", self._init_txn)

    @staticmethod
    def _init_txn(txn: Txn) -> tuple[int, int]:
        return (txn.scalar("SELECT COALESCE(MAX(key_nid), 0) FROM state_keys") or 0,
                txn.scalar("SELECT COALESCE(MAX(state_group), 0) FROM state_groups") or 0)

    # --- keys ---------------------------------------------------------------------------------
    def remember_keys(self, key_nids: Mapping[StateKey, int]) -> None:
        """Record key nids read elsewhere (e.g. with a room's current state)."""
        self._key_nids.update(key_nids)
        self._keys_by_nid.update({v: k for k, v in key_nids.items()})

    def cached_key_nid(self, key: StateKey) -> int | None:
        return self._key_nids.get(key)

    async def intern_keys(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        """The key_nid of every key, allocating the missing ones.

        Keys not cached are looked up (a read); the ones not stored get a new nid here, and
        their rows are written by the next events persist transaction
        (:meth:`pending_keys` / :meth:`keys_written`), so a new state key costs no transaction
        of its own. Every event citing a new key is persisted by a transaction that starts
        after the key was allocated, so it writes the key too unless an earlier one committed it."""
        keys = set(keys)
        out = {k: self._key_nids[k] for k in keys if k in self._key_nids}
        missing = [k for k in keys if k not in out]
        if missing:
            found = await self.db.run("lookup_state_keys", self._lookup_txn, missing, readonly=True)
            for k in missing:
                nid = self._key_nids.get(k)  # allocated by another caller while we read
                if nid is None:
                    nid = found.get(k)
                    if nid is None:
                        self._last_key_nid += 1
                        nid = self._last_key_nid
                        self._pending_keys[nid] = k
                    self._key_nids[k] = nid
                    self._keys_by_nid[nid] = k
                out[k] = nid
        return out

    @staticmethod
    def _lookup_txn(txn: Txn, keys: list[StateKey]) -> dict[StateKey, int]:
        out = {}
        for etype, skey in keys:
            nid = txn.scalar("SELECT key_nid FROM state_keys WHERE type = ? AND state_key = ?", (etype, skey))
            if nid is not None:
                out[(etype, skey)] = int(nid)
        return out

    def pending_keys(self) -> dict[int, StateKey]:
        """Keys allocated by :meth:`intern_keys` and not yet known to be stored (a copy, taken on
        the reactor before a persist transaction starts)."""
        return dict(self._pending_keys)

    def keys_written(self, written: Mapping[int, StateKey]) -> None:
        """``written`` (from :meth:`pending_keys`) were committed."""
        for nid in written:
            self._pending_keys.pop(nid, None)

    @staticmethod
    def write_keys_txn(txn: Txn, keys: Mapping[int, StateKey]) -> None:
        if keys:
            txn.executemany("INSERT INTO state_keys (key_nid, type, state_key) VALUES (?, ?, ?)"
                            " ON CONFLICT DO NOTHING", [(nid, t, sk) for nid, (t, sk) in keys.items()])

    # --- writing groups -------------------------------------------------------------------------
    def allocate_group(self) -> int:
        self._last_group += 1
        return self._last_group

    def group_delta_depth(self, group: int) -> int | None:
        cached = self._groups.get(group)
        return cached[1] if cached is not None else None

    @staticmethod
    def needs_snapshot(prev_group: int | None, prev_depth: int | None, delta_size: int, state_size: int) -> bool:
        """Whether a new group is written as a full snapshot: no usable previous group, the delta
        chain would reach :data:`SNAPSHOT_INTERVAL`, or the delta is bigger than half the state."""
        return prev_group is None or prev_depth is None or prev_depth + 1 >= SNAPSHOT_INTERVAL \
            or delta_size * 2 > state_size + 1

    def prepare_group(self, room_id: str, prev_group: int | None, prev_depth: int | None,
                      new_state: dict[StateKey, str], delta: Mapping[StateKey, str | None],
                      key_nids: Mapping[StateKey, int], event_nids: Mapping[str, int]) -> NewStateGroup:
        """A new group for ``new_state``: a delta (``delta``) over ``prev_group``, or a snapshot
        when there is no previous group or its chain is :data:`SNAPSHOT_INTERVAL` long.

        ``key_nids``/``event_nids`` must cover the keys and events that will be written (the
        delta's, or the whole state's for a snapshot)."""
        group = self.allocate_group()
        if self.needs_snapshot(prev_group, prev_depth, len(delta), len(new_state)):
            entries = [(key_nids[k], event_nids[e]) for k, e in new_state.items()]
            return NewStateGroup(group, room_id, None, 0, entries, new_state)
        entries = [(key_nids[k], event_nids[e] if e is not None else None) for k, e in delta.items()]
        return NewStateGroup(group, room_id, prev_group, prev_depth + 1, entries, new_state)

    @staticmethod
    def write_groups_txn(txn: Txn, groups: list[NewStateGroup]) -> None:
        if not groups:
            return
        txn.executemany(
            "INSERT INTO state_groups (state_group, room_id, prev_group, delta_depth) VALUES (?, ?, ?, ?)",
            [(g.state_group, g.room_id, g.prev_group, g.delta_depth) for g in groups])
        txn.executemany(
            "INSERT INTO state_group_entries (state_group, key_nid, event_nid) VALUES (?, ?, ?)",
            [(g.state_group, k, e) for g in groups for k, e in g.entries])

    def groups_written(self, groups: list[NewStateGroup]) -> None:
        """Cache the maps of groups whose transaction committed."""
        for g in groups:
            self._groups.set(g.state_group, (g.state, g.delta_depth))

    def cache_group(self, group: int, state: dict[StateKey, str], delta_depth: int) -> None:
        self._groups.set(group, (state, delta_depth))

    # --- reading groups -------------------------------------------------------------------------
    async def get_state_group(self, group: int) -> dict[StateKey, str]:
        """The full state map of ``group`` (shared with the cache: do not mutate)."""
        cached = self._groups.get(group)
        if cached is not None:
            return cached[0]
        state, depth = await self.db.run("get_state_group", self._load_group_txn, group, readonly=True)
        self._groups.set(group, (state, depth))
        return state

    async def get_state_groups(self, groups: Iterable[int]) -> dict[int, dict[StateKey, str]]:
        return {g: await self.get_state_group(g) for g in set(groups)}

    def get_state_group_sync(self, txn: Txn, group: int) -> dict[StateKey, str]:
        """As :meth:`get_state_group`, inside a transaction already running on a worker thread."""
        cached = self._groups.get(group)
        if cached is not None:
            return cached[0]
        state, depth = self._load_group_txn(txn, group)
        self._groups.set(group, (state, depth))
        return state

    def _load_group_txn(self, txn: Txn, group: int) -> tuple[dict[StateKey, str], int]:
        txn.execute(
            "WITH RECURSIVE chain(sg, prev, depth) AS ("
            " SELECT state_group, prev_group, delta_depth FROM state_groups WHERE state_group = ?"
            " UNION ALL"
            " SELECT g.state_group, g.prev_group, g.delta_depth FROM state_groups g"
            " JOIN chain c ON g.state_group = c.prev"
            ") SELECT sg, prev, depth FROM chain", (group,))
        chain = txn.fetchall()
        if not chain:
            raise KeyError(f"unknown state group {group}")
        head_depth = chain[0][2]
        # Stop at the first group (walking back) whose full map is cached.
        base: dict[StateKey, str] = {}
        to_load: list[int] = []
        for sg, _prev, _depth in chain:
            cached = self._groups.get(sg) if sg != group else None
            if cached is not None:
                base = dict(cached[0])
                break
            to_load.append(sg)
        rows_by_group: dict[int, list[tuple[str, str, str | None]]] = {sg: [] for sg in to_load}
        for start in range(0, len(to_load), 500):
            chunk = to_load[start:start + 500]
            marks = ",".join("?" * len(chunk))
            txn.execute(
                "SELECT g.state_group, k.type, k.state_key, e.event_id FROM state_group_entries g"
                " JOIN state_keys k ON k.key_nid = g.key_nid"
                " LEFT JOIN events e ON e.event_nid = g.event_nid"
                f" WHERE g.state_group IN ({marks})", chunk)
            for sg, etype, skey, event_id in txn.fetchall():
                rows_by_group[sg].append((etype, skey, event_id))
        state = base
        for sg in reversed(to_load):  # oldest (snapshot or cached base) first
            for etype, skey, event_id in rows_by_group[sg]:
                if event_id is None:
                    state.pop((etype, skey), None)
                else:
                    state[(etype, skey)] = event_id
        return state, head_depth
