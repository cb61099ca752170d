"""The chain-cover index of the auth DAG, persisted: SQL and caches for state resolution's auth
difference (rooms/fragments/v2-state-res.md, "Auth difference").

The design is :class:`homeserver.protocol.auth_chain.AuthChainIndex` (read its docstring): every
indexed event has a position ``(chain_id, sequence_number)``; an event reaches the earlier events
of its chain, and *links* ``(chain_id, from_seq, target_chain_id, target_seq)`` record, as deltas
over the chain predecessor, how far each event reaches into other chains (transitive closure).
Chain ids here are global to the server (allocated in Python; one writer process) and the chain a
``(room, type, state_key)`` extends is a row of ``event_auth_chain_keys``.

What is indexed (same rules as the pure index): **state events that are not rejected**, outliers
included (the auth chains of remote events run through outliers), and only once every auth event
is indexed — so the whole auth chain of an indexed event is indexed, and a position answers for
its chain exactly. Anything else (rejected events, events citing them, events whose auth events
we lack, events stored before the index until :meth:`AuthChainStore.backfill` ran) has no
position; :meth:`AuthChainStore.auth_chain_difference_or_unindexed` names those and the caller
(homeserver/rooms/state.py) walks them down to indexed events.

Writes happen inside the events store's persist transaction (:meth:`index_events_txn`, called
with the batch's state events in topological order). Positions are computed in Python from
caches of positions, per-chain state (length and links) and chain keys, read from the database on
a miss; what a transaction adds is kept apart and enters the caches only after it commits.
"""
from __future__ import annotations

import json
import logging
from bisect import bisect_right
from typing import Collection, Iterable, Sequence

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

from .database import Txn
from .lru import LruCache

logger = logging.getLogger(__name__)

ChainKey = tuple[str, str, str]  # (room_id, type, state_key)

#: ``(chain_id = ? AND sequence_number > ? AND sequence_number <= ?)`` terms per range query.
_RANGES_PER_QUERY = 100
_CHUNK = 500


class _Chain:
    """One chain's state: its length and its links ``(from_seq, target, target_seq)`` by from_seq.
    Objects in the cache are never mutated (a writer copies before extending)."""

    __slots__ = ("length", "links", "link_seqs")

    def __init__(self, length: int = 0, links: list[tuple[int, int, int]] | None = None):
        self.length = length
        self.links = links if links is not None else []
        self.link_seqs = [l[0] for l in self.links]

    def copy(self) -> "_Chain":
        return _Chain(self.length, list(self.links))

    def reach(self, seq: int) -> dict[int, int]:
        """What ``(this chain, seq)`` reaches in other chains: target chain -> highest seq."""
        out: dict[int, int] = {}
        for i in range(bisect_right(self.link_seqs, seq)):
            _, target, tseq = self.links[i]
            if tseq > out.get(target, 0):
                out[target] = tseq
        return out

    def add_link(self, seq: int, target: int, tseq: int) -> None:
        self.links.append((seq, target, tseq))
        self.link_seqs.append(seq)


class AuthChainStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        self._positions: LruCache[str, tuple[int, int]] = LruCache(500_000)
        self._chains: LruCache[int, _Chain] = LruCache(200_000)
        self._keys: LruCache[ChainKey, int] = LruCache(200_000)
        self._last_chain_id = self.db.run_sync(
            "auth_chains_init",
            lambda txn: txn.scalar("SELECT COALESCE(MAX(chain_id), 0) FROM event_auth_chains") or 0)
        on_start = getattr(hs, "on_start", None)
        if on_start is not None:
            on_start(self.backfill)

    def _new_chain_id(self) -> int:
        self._last_chain_id += 1
        return self._last_chain_id

    # --- writing ----------------------------------------------------------------------------
    def index_events_txn(self, txn: Txn, events: Sequence[Event], *,
                         maybe_indexed: Collection[str] = ()) -> int:
        """Give positions and links to ``events`` (state events, not rejected, in topological
        order: auth events before the events citing them) inside the caller's transaction.

        Events whose auth events are not all indexed are skipped; ``maybe_indexed`` are events that
        may have a position already (an outlier joining the DAG) and keep it. Returns how many
        events were indexed."""
        writer = _Writer(self, txn)
        writer.prefetch(events, maybe_indexed)
        added = sum(1 for ev in events if writer.add(ev, ev.event_id in maybe_indexed))
        writer.write()
        txn.call_after_commit(writer.publish)
        return added

    async def backfill(self) -> int:
        """Index the events of rooms stored before the index existed (the rooms listed in
        ``event_auth_chain_backfill``), one room per transaction, auth events first. Returns how
        many events were indexed."""
        total = 0
        while True:
            room_id = await self.db.run(
                "auth_chain_backfill_next",
                lambda txn: txn.scalar("SELECT room_id FROM event_auth_chain_backfill ORDER BY room_id LIMIT 1"),
                readonly=True)
            if room_id is None:
                break
            n = await self.db.run("auth_chain_backfill", self._backfill_room_txn, room_id)
            if n:
                logger.info("auth chain index: indexed %d events of %s", n, room_id)
            total += n
        return total

    def _backfill_room_txn(self, txn: Txn, room_id: str) -> int:
        txn.execute(
            "SELECT e.event_id, e.room_version, e.json FROM events e"
            " LEFT JOIN event_auth_chains c ON c.event_id = e.event_id"
            " WHERE e.room_id = ? AND e.state_key IS NOT NULL AND e.rejected_reason IS NULL"
            " AND c.event_id IS NULL", (room_id,))
        events = {}
        for event_id, rv, js in txn.fetchall():
            rv = KNOWN_ROOM_VERSIONS.get(rv)
            if rv is not None:
                events[event_id] = Event(json.loads(js), rv, event_id=event_id)
        added = self.index_events_txn(txn, _topological(events)) if events else 0
        txn.execute("DELETE FROM event_auth_chain_backfill WHERE room_id = ?", (room_id,))
        return added

    # --- reading ----------------------------------------------------------------------------
    async def auth_chain_difference(self, state_sets: Sequence[Collection[str]]) -> set[str] | None:
        """``∪Ci − ∩Ci`` with ``Ci = Si ∪ auth_chain(Si)`` (the reading of
        homeserver/protocol/auth_chain.py), from the index: positions of the sets' events, the
        links of their chains, then the events of each chain between the lowest and the highest
        reach. None when an event of the sets has no position (the caller walks instead)."""
        difference, _ = await self.auth_chain_difference_or_unindexed(state_sets)
        return difference

    async def auth_chain_difference_or_unindexed(
            self, state_sets: Sequence[Collection[str]]) -> tuple[set[str] | None, set[str]]:
        """``(difference, set())`` as :meth:`auth_chain_difference`, or ``(None, unindexed)`` with
        the events of the sets that have no position (one transaction either way)."""
        sets = [set(s) for s in state_sets]
        if not sets:
            return set(), set()
        return await self.db.run("auth_chain_difference", self._difference_txn, sets, readonly=True)

    def _difference_txn(self, txn: Txn, sets: list[set[str]]) -> tuple[set[str] | None, set[str]]:
        everything = set().union(*sets)
        positions = self._read_positions(txn, everything)
        if len(positions) < len(everything):
            return None, everything - set(positions)
        common = set.intersection(*sets)

        def tops(ids: Iterable[str]) -> dict[int, int]:
            top: dict[int, int] = {}
            for eid in ids:
                c, s = positions[eid]
                if s > top.get(c, 0):
                    top[c] = s
            return top

        common_top = tops(common)
        set_tops = [tops(s - common) for s in sets]
        chains = self._read_chains(txn, set(common_top).union(*set_tops))
        common_reach = _reach(common_top, chains)
        reaches = []
        for top in set_tops:
            r = dict(common_reach)
            for c, s in _reach(top, chains).items():
                if s > r.get(c, 0):
                    r[c] = s
            reaches.append(r)
        ranges = []
        for c in set().union(*reaches):
            seqs = [r.get(c, 0) for r in reaches]
            lo, hi = min(seqs), max(seqs)
            if hi > lo:
                ranges.append((c, lo, hi))
        return _select_ranges(txn, ranges), set()

    async def auth_chain_ids(self, event_ids: Collection[str]) -> set[str]:
        """The indexed events among ``event_ids`` with their whole auth chains, from the index (to
        prefetch what state resolution walks); events without a position are left out."""
        ids_ = set(event_ids)
        if not ids_:
            return set()
        return await self.db.run("auth_chain_ids", self._chain_ids_txn, ids_, readonly=True)

    def _chain_ids_txn(self, txn: Txn, event_ids: set[str]) -> set[str]:
        positions = self._read_positions(txn, event_ids)
        top: dict[int, int] = {}
        for c, s in positions.values():
            if s > top.get(c, 0):
                top[c] = s
        reach = _reach(top, self._read_chains(txn, list(top)))
        return _select_ranges(txn, [(c, 0, s) for c, s in reach.items()])

    async def get_positions(self, event_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``event_id -> (chain_id, sequence_number)`` of the indexed events among ``event_ids``."""
        ids_ = set(event_ids)
        return await self.db.run("auth_chain_positions", self._read_positions, ids_, readonly=True)

    def _read_positions(self, txn: Txn, event_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """Positions from the cache, else the database (readers never fill the caches: a reader's
        snapshot may be older than what the writer has cached)."""
        out = {}
        missing = []
        for eid in event_ids:
            p = self._positions.get(eid)
            if p is None:
                missing.append(eid)
            else:
                out[eid] = p
        out.update(_load_positions(txn, missing))
        return out

    def _read_chains(self, txn: Txn, chain_ids: Collection[int]) -> dict[int, _Chain]:
        out = {}
        missing = []
        for c in chain_ids:
            ch = self._chains.get(c)
            if ch is None:
                missing.append(c)
            else:
                out[c] = ch
        out.update(_load_chains(txn, missing))
        return out


class _Writer:
    """The positions one transaction adds: reads go overlay → cache → database; the overlay (and
    what was read from the database) enters the caches in :meth:`publish`, after the commit."""

    def __init__(self, store: AuthChainStore, txn: Txn):
        self.store = store
        self.txn = txn
        self.positions: dict[str, tuple[int, int] | None] = {}
        self.chains: dict[int, _Chain] = {}
        self.keys: dict[ChainKey, int | None] = {}
        self.dirty_chains: set[int] = set()
        self.dirty_keys: set[ChainKey] = set()
        self.new_positions: list[tuple[str, int, int]] = []
        self.new_links: list[tuple[int, int, int, int]] = []

    # reads
    def prefetch(self, events: Sequence[Event], maybe_indexed: Collection[str]) -> None:
        ids_ = {a for ev in events for a in ev.auth_event_ids} | {e for e in maybe_indexed}
        self._positions_for([e for e in ids_ if self.store._positions.get(e) is None])
        keys = [k for k in (_key(ev) for ev in events) if self.store._keys.get(k) is None]
        self._keys_for(keys)
        chain_ids = {p[0] for p in self.positions.values() if p is not None}
        chain_ids |= {c for c in self.keys.values() if c is not None}
        self._chains_for([c for c in chain_ids if self.store._chains.get(c) is None])

    def _positions_for(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        found = _load_positions(self.txn, event_ids)
        for eid in event_ids:
            self.positions[eid] = found.get(eid)

    def _keys_for(self, keys: list[ChainKey]) -> None:
        for start in range(0, len(keys), 100):
            chunk = keys[start:start + 100]
            cond = " OR ".join(["(room_id = ? AND type = ? AND state_key = ?)"] * len(chunk))
            self.txn.execute(f"SELECT room_id, type, state_key, chain_id FROM event_auth_chain_keys WHERE {cond}",
                             [v for k in chunk for v in k])
            found = {(r, t, s): c for r, t, s, c in self.txn.fetchall()}
            for k in chunk:
                self.keys[k] = found.get(k)

    def _chains_for(self, chain_ids: list[int]) -> None:
        if chain_ids:
            self.chains.update(_load_chains(self.txn, chain_ids))

    def position(self, event_id: str) -> tuple[int, int] | None:
        if event_id in self.positions:
            return self.positions[event_id]
        p = self.store._positions.get(event_id)
        if p is None:
            self._positions_for([event_id])
            p = self.positions[event_id]
        return p

    def chain(self, chain_id: int) -> _Chain:
        ch = self.chains.get(chain_id) or self.store._chains.get(chain_id)
        if ch is None:
            self._chains_for([chain_id])
            ch = self.chains[chain_id]
        return ch

    def key_chain(self, key: ChainKey) -> int | None:
        if key in self.keys:
            return self.keys[key]
        c = self.store._keys.get(key)
        if c is None:
            self._keys_for([key])
            c = self.keys[key]
        return c

    # the algorithm (AuthChainIndex.add)
    def add(self, ev: Event, maybe_indexed: bool) -> bool:
        if maybe_indexed and self.position(ev.event_id) is not None:
            return False
        top: dict[int, int] = {}
        for a in dict.fromkeys(ev.auth_event_ids):
            p = self.position(a)
            if p is None:
                return False  # an auth event without a position: the walk covers this event
            c, s = p
            if s > top.get(c, 0):
                top[c] = s
        reach = dict(top)
        for c, s in top.items():
            for target, tseq in self.chain(c).reach(s).items():
                if tseq > reach.get(target, 0):
                    reach[target] = tseq
        key = _key(ev)
        key_chain = chain_id = self.key_chain(key)
        if chain_id is not None and reach.get(chain_id, 0) >= self.chain(chain_id).length:
            chain = self.chain(chain_id)
            base = chain.reach(chain.length)
            if chain_id not in self.dirty_chains:
                chain = chain.copy()
                self.chains[chain_id] = chain
                self.dirty_chains.add(chain_id)
        else:
            chain_id = self.store._new_chain_id()
            chain = _Chain()
            self.chains[chain_id] = chain
            self.dirty_chains.add(chain_id)
            base = {}
        chain.length += 1
        seq = chain.length
        self.positions[ev.event_id] = (chain_id, seq)
        self.new_positions.append((ev.event_id, chain_id, seq))
        if key_chain != chain_id:
            self.keys[key] = chain_id
            self.dirty_keys.add(key)
        for target, tseq in sorted(reach.items()):
            if target != chain_id and tseq > base.get(target, 0):
                chain.add_link(seq, target, tseq)
                self.new_links.append((chain_id, seq, target, tseq))
        return True

    def write(self) -> None:
        txn = self.txn
        txn.executemany("INSERT INTO event_auth_chains (event_id, chain_id, sequence_number) VALUES (?, ?, ?)",
                        self.new_positions)
        txn.executemany("INSERT INTO event_auth_chain_links (chain_id, from_seq, target_chain_id, target_seq)"
                        " VALUES (?, ?, ?, ?)", self.new_links)
        txn.executemany(
            "INSERT INTO event_auth_chain_keys (room_id, type, state_key, chain_id) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (room_id, type, state_key) DO UPDATE SET chain_id = excluded.chain_id",
            [(*k, self.keys[k]) for k in self.dirty_keys])

    def publish(self) -> None:
        """After commit (reactor thread): what this transaction read and wrote enters the caches."""
        store = self.store
        for eid, p in self.positions.items():
            if p is not None:
                store._positions.set(eid, p)
        for c, ch in self.chains.items():
            store._chains.set(c, ch)
        for k, c in self.keys.items():
            if c is not None:
                store._keys.set(k, c)


def _key(ev: Event) -> ChainKey:
    t, sk = ev.state_tuple
    return (str(ev.room_id), t, sk)


def _reach(top: dict[int, int], chains: dict[int, _Chain]) -> dict[int, int]:
    """chain -> highest seq reachable from the events at ``top`` (themselves included)."""
    out = dict(top)
    for c, s in top.items():
        chain = chains[c]
        links = chain.links
        for i in range(bisect_right(chain.link_seqs, s)):
            _, target, tseq = links[i]
            if tseq > out.get(target, 0):
                out[target] = tseq
    return out


def _select_ranges(txn: Txn, ranges: list[tuple[int, int, int]]) -> set[str]:
    """The events at ``lo < sequence_number <= hi`` of each ``(chain_id, lo, hi)``."""
    out: set[str] = set()
    for start in range(0, len(ranges), _RANGES_PER_QUERY):
        chunk = ranges[start:start + _RANGES_PER_QUERY]
        cond = " OR ".join(["(chain_id = ? AND sequence_number > ? AND sequence_number <= ?)"] * len(chunk))
        txn.execute(f"SELECT event_id FROM event_auth_chains WHERE {cond}", [v for r in chunk for v in r])
        out.update(r[0] for r in txn.fetchall())
    return out


def _load_positions(txn: Txn, event_ids: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start:start + _CHUNK]
        txn.execute("SELECT event_id, chain_id, sequence_number FROM event_auth_chains"
                    f" WHERE event_id IN ({','.join('?' * len(chunk))})", chunk)
        out.update((e, (c, s)) for e, c, s in txn.fetchall())
    return out


def _load_chains(txn: Txn, chain_ids: list[int]) -> dict[int, _Chain]:
    lengths: dict[int, int] = {}
    links: dict[int, list[tuple[int, int, int]]] = {}
    for start in range(0, len(chain_ids), _CHUNK):
        chunk = chain_ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        txn.execute("SELECT chain_id, MAX(sequence_number) FROM event_auth_chains"
                    f" WHERE chain_id IN ({marks}) GROUP BY chain_id", chunk)
        lengths.update(txn.fetchall())
        txn.execute("SELECT chain_id, from_seq, target_chain_id, target_seq FROM event_auth_chain_links"
                    f" WHERE chain_id IN ({marks})", chunk)
        for c, f, t, ts in txn.fetchall():
            links.setdefault(c, []).append((f, t, ts))
    out = {}
    for c in chain_ids:
        ls = sorted(links.get(c, ()))
        out[c] = _Chain(lengths.get(c, 0), ls)
    return out


def _topological(events: dict[str, Event]) -> list[Event]:
    """``events`` with each after its auth events among them (Kahn's algorithm); events on an
    auth cycle are left out (they cannot be indexed)."""
    waiting = {eid: {a for a in ev.auth_event_ids if a in events and a != eid} for eid, ev in events.items()}
    dependents: dict[str, list[str]] = {eid: [] for eid in events}
    for eid, deps in waiting.items():
        for d in deps:
            dependents[d].append(eid)
    ready = sorted((eid for eid, deps in waiting.items() if not deps), reverse=True)
    out: list[Event] = []
    while ready:
        eid = ready.pop()
        out.append(events[eid])
        for child in dependents[eid]:
            waiting[child].discard(eid)
            if not waiting[child]:
                ready.append(child)
    return out
