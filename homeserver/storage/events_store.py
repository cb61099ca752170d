"""Events, the room DAG, current state and memberships: SQL and caches, no policy.

Events are stored once (``events.json``) with an integer ``event_nid`` (used by state storage) and a
``stream_ordering`` (the events stream position, NULL for events outside the timeline). Writes go
through one *persist queue*: :meth:`EventsStore.persist` enqueues a :class:`PersistItem` and the queue
drains everything pending into one transaction (group commit), allocating stream orderings in commit
order. The decisions (auth, state, extremities) are made by ``homeserver.rooms``; this module only
writes what it is given and serves reads through caches:

* queued events are *pending* until their transaction commits: :meth:`EventsStore.get_events` and
  :meth:`EventsStore.get_event_nids` already return them (the pipeline builds a room's next event on
  top of its previous one before that one is committed), and an item citing (prev or auth events) a
  pending event whose write failed fails too, never reaching the database;

* an LRU of :class:`~homeserver.protocol.events.Event` objects by event ID (JSON parsed once);
* an LRU of :class:`EventMeta` (nid, state groups, flags) by event ID;
* the room version of each room.
"""
from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from twisted.internet import defer

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

from .auth_chain_store import AuthChainStore
from .database import Txn
from .id_generator import StreamIdGenerator
from .lru import LruCache
from .state_store import NewStateGroup, StateKey, StateStore

logger = logging.getLogger(__name__)

#: Most events persisted in one transaction.
MAX_BATCH = 200
#: How many IDs of events whose write failed are remembered (to fail the events citing them).
FAILED_MEMORY = 10_000
#: Client transaction IDs held in memory (all of a device's, loaded on its first send); a device
#: with more than TXN_IDS_PER_DEVICE is looked up in the database send by send.
TXN_IDS_CACHED = 200_000
TXN_IDS_PER_DEVICE = 20_000
#: Recent timeline events kept in memory per room for incremental /sync (recent_window), and
#: how many rooms keep them.
RECENT_PER_ROOM = 64
RECENT_ROOMS = 20_000


class DependencyFailed(Exception):
    """An item cites (prev or auth events) a queued event whose write failed: it is not written."""


@dataclass(frozen=True)
class EventMeta:
    """What storage knows about an event besides its JSON."""

    event_id: str
    event_nid: int
    room_id: str
    stream_ordering: int | None
    depth: int
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    state_group_before: int | None
    state_group: int | None


@dataclass
class CurrentStateDelta:
    """Changes to a room's current state: keys set (key_nid -> event_nid), keys removed, the
    membership rows that change with them ``(user_id, membership, event_id, sender)`` and the users
    whose membership left the state (state resolution can drop a key)."""

    room_id: str
    state_group: int
    to_set: dict[int, int] = field(default_factory=dict)
    to_remove: list[int] = field(default_factory=list)
    memberships: list[tuple[str, str, str, str]] = field(default_factory=list)
    memberships_removed: list[str] = field(default_factory=list)


@dataclass
class PersistItem:
    """One event to persist with everything that changes with it."""

    event: Event
    event_nid: int
    outlier: bool = False
    rejected_reason: str | None = None
    soft_failed: bool = False
    state_group_before: int | None = None
    state_group: int | None = None
    new_groups: list[NewStateGroup] = field(default_factory=list)
    current_state: CurrentStateDelta | None = None
    # (event IDs no longer forward extremities, event IDs that become ones)
    extremities: tuple[list[str], list[str]] | None = None
    txn_key: tuple[str, str, str] | None = None  # (user_id, device_id, txn_id)
    new_room: tuple[str | None, bool] | None = None  # (creator, is_public)
    # An outlier membership for a room we are not in (e.g. a remote invite): recorded in
    # room_memberships with a stream position of its own.
    out_of_band_membership: bool = False
    # The event is already stored as an outlier and now joins the DAG.
    de_outlier: bool = False
    # Backfilled history (events older than the room's earliest known ones, fetched from another
    # server): its stream ordering is negative, below every other event's (see :meth:`EventsStore._write`).
    backfilled: bool = False
    stream_ordering: int | None = None
    # Extra writes ``fn(txn, item)`` run in the persist transaction after the event's rows (with
    # ``item.stream_ordering`` set): the pipeline's persist hooks add them (push actions).
    extra_writes: list = field(default_factory=list)

    @property
    def in_timeline(self) -> bool:
        return not self.outlier and self.rejected_reason is None and not self.soft_failed

    @property
    def needs_stream_id(self) -> bool:
        return (self.in_timeline or self.out_of_band_membership) and not self.backfilled


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class EventsStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        self.state = hs.get(StateStore)
        self.auth_chains = hs.get(AuthChainStore)
        self._events: LruCache[str, Event] = LruCache(20_000)  # ~2 KB an event: at most ~40 MB
        self._meta: LruCache[str, EventMeta] = LruCache(100_000)
        self._room_versions: dict[str, RoomVersion] = {}
        #: room_id -> [floor, [(stream_ordering, event_id), ...] ascending]: every timeline event
        #: of the room with a stream ordering above ``floor`` (noted on commit), the newest
        #: RECENT_PER_ROOM of them.
        self._recent: OrderedDict[str, list] = OrderedDict()
        last_nid, last_stream, first_stream = self.db.run_sync("events_store_init", self._init_txn)
        self._last_nid = last_nid
        self.stream_ids = StreamIdGenerator(last_stream)
        #: The lowest stream ordering given so far; backfilled events count down from it.
        self._backfill_stream = min(first_stream, 0)
        self._queue: list[tuple[PersistItem, defer.Deferred]] = []
        self._draining = False
        #: Queued (or staged) items by event ID, until committed or failed.
        self._pending: dict[str, PersistItem] = {}
        #: IDs of queued events whose write failed (insertion-ordered, bounded).
        self._failed: dict[str, None] = {}
        #: (user_id, device_id) -> {txn_id: event_id}, every stored txn ID of the device; devices
        #: being loaded collect the txn IDs committed meanwhile; devices with too many are not held.
        self._txn_ids: LruCache[tuple[str, str], dict[str, str]] = LruCache(
            TXN_IDS_CACHED, weigher=lambda m: len(m) + 1)
        self._txn_loading: dict[tuple[str, str], dict[str, str]] = {}
        self._txn_uncached: LruCache[tuple[str, str], bool] = LruCache(10_000)
        self.batches_committed = 0

    @staticmethod
    def _init_txn(txn: Txn) -> tuple[int, int, int]:
        nid = txn.scalar("SELECT COALESCE(MAX(event_nid), 0) FROM events") or 0
        stream = max(txn.scalar("SELECT COALESCE(MAX(stream_ordering), 0) FROM events") or 0,
                     txn.scalar("SELECT COALESCE(MAX(stream_ordering), 0) FROM room_memberships") or 0)
        first = txn.scalar("SELECT COALESCE(MIN(stream_ordering), 0) FROM events") or 0
        return nid, stream, first

    # --- ids --------------------------------------------------------------------------------
    def allocate_event_nid(self) -> int:
        self._last_nid += 1
        return self._last_nid

    def get_current_stream_token(self) -> int:
        """The events stream position below which every event has been persisted."""
        return self.stream_ids.current_token()

    # --- persisting -------------------------------------------------------------------------
    def persist(self, items: Sequence[PersistItem]) -> defer.Deferred:
        """Queue ``items`` (written together, in this order, all or nothing) and return a Deferred
        firing with the list of items once committed. Items queued by concurrent callers are
        written in the same transaction (group commit)."""
        d: defer.Deferred = defer.Deferred()
        items = list(items)
        self.stage(items)
        self._queue.append((items, d))
        if not self._draining:
            self._draining = True
            defer.ensureDeferred(self._drain())
        return d

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, size = [], 0
                while self._queue and (not batch or size + len(self._queue[0][0]) <= MAX_BATCH):
                    group = self._queue.pop(0)
                    batch.append(group)
                    size += len(group[0])
                await self._persist_batch(batch)
        finally:
            self._draining = False

    def stage(self, items: Iterable[PersistItem]) -> None:
        """Make items pending before they are queued (a batch being built: its later events read
        the earlier ones). :meth:`persist` stages what it queues; :meth:`unstage` drops items
        that will not be queued."""
        for item in items:
            self._pending.setdefault(item.event.event_id, item)

    def unstage(self, items: Iterable[PersistItem]) -> None:
        for item in items:
            if self._pending.get(item.event.event_id) is item:
                del self._pending[item.event.event_id]

    def _group_failed(self, group: list[PersistItem], d: defer.Deferred, error: Exception) -> None:
        for item in group:
            self._failed[item.event.event_id] = None
        while len(self._failed) > FAILED_MEMORY:
            del self._failed[next(iter(self._failed))]
        self.unstage(group)
        d.errback(error)

    def _failed_dependency(self, group: list[PersistItem]) -> str | None:
        if not self._failed:
            return None
        for item in group:
            for cited in (*item.event.prev_event_ids, *item.event.auth_event_ids):
                if cited in self._failed:
                    return cited
        return None

    async def _persist_batch(self, batch: list[tuple[list[PersistItem], defer.Deferred]]) -> None:
        if self._failed:
            kept = []
            for group, d in batch:
                cited = self._failed_dependency(group)
                if cited is None:
                    kept.append((group, d))
                else:
                    self._group_failed(group, d, DependencyFailed(f"cites {cited}, whose write failed"))
            batch = kept
            if not batch:
                return
        items = [item for group, _ in batch for item in group]
        try:
            await self._write(items)
        except Exception as e:
            if len(batch) == 1:
                self._group_failed(batch[0][0], batch[0][1], e)
                return
            # One bad group must not fail the others: write them one by one.
            logger.warning("batched persist of %d events failed (%s); retrying one by one", len(items), e)
            for one in batch:
                await self._persist_batch([one])
            return
        for group, d in batch:
            d.callback(group)

    async def _write(self, items: list[PersistItem]) -> None:
        need = [item for item in items if item.needs_stream_id]
        ids = self.stream_ids.allocate(len(need)) if need else []
        for item, sid in zip(need, ids):
            item.stream_ordering = sid
        # Backfilled events sort before everything known (at equal depth) and never reach the
        # events stream that /sync and the notifier follow (positions > 0): negative orderings.
        for item in items:
            if item.backfilled and item.in_timeline:
                self._backfill_stream -= 1
                item.stream_ordering = self._backfill_stream
        keys = self.state.pending_keys()
        try:
            await self.db.run("persist_events", self._persist_with_keys_txn, items, self.hs.clock_ms(), keys)
        except Exception:
            for item in items:
                if item.needs_stream_id or item.backfilled:
                    item.stream_ordering = None
            raise
        finally:
            self.stream_ids.finish(ids)
        self.state.keys_written(keys)
        self.batches_committed += 1
        for item in items:
            self._after_persist(item)

    def _persist_with_keys_txn(self, txn: Txn, items: list[PersistItem], now: int,
                               keys: Mapping[int, StateKey]) -> None:
        """The chain-cover index of the batch's accepted state events (items are in topological
        order), the state keys allocated since the last commit (StateStore.intern_keys), then the
        events. The index goes first: its reads then precede every write, and PostgreSQL gets the
        writes in one batch (Txn.batch_writes)."""
        txn.batch_writes()
        indexable = [item.event for item in items if item.rejected_reason is None and _indexable(item.event)]
        if indexable:
            self.auth_chains.index_events_txn(
                txn, indexable, maybe_indexed={item.event.event_id for item in items if item.de_outlier})
        StateStore.write_keys_txn(txn, keys)
        self._persist_txn(txn, items, now)

    def _persist_txn(self, txn: Txn, items: list[PersistItem], now: int) -> None:
        for item in items:
            ev = item.event
            stream = item.stream_ordering if item.in_timeline else None
            if item.de_outlier:
                txn.execute(
                    "UPDATE events SET outlier = ?, stream_ordering = ?, rejected_reason = ?, soft_failed = ?,"
                    " state_group_before = ?, state_group = ? WHERE event_id = ?",
                    (False, stream, item.rejected_reason, item.soft_failed, item.state_group_before,
                     item.state_group, ev.event_id))
            else:
                txn.execute(
                    "INSERT INTO events (event_nid, event_id, stream_ordering, room_id, room_version, type,"
                    " state_key, sender, depth, origin_server_ts, received_ts, outlier, rejected_reason,"
                    " soft_failed, state_group_before, state_group, json)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.event_nid, ev.event_id, stream, ev.room_id, ev.room_version.identifier, ev.type,
                     ev.state_key if ev.is_state() else None, ev.sender, _int(ev.depth),
                     _int(ev.origin_server_ts), now, item.outlier, item.rejected_reason, item.soft_failed,
                     item.state_group_before, item.state_group, _dumps(ev.pdu)))
                txn.executemany(
                    "INSERT INTO event_edges (event_id, prev_event_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [(ev.event_id, p) for p in dict.fromkeys(ev.prev_event_ids)])
                txn.executemany(
                    "INSERT INTO event_auth_edges (event_id, auth_event_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [(ev.event_id, a) for a in dict.fromkeys(ev.auth_event_ids)])
                if ev.type == "m.room.redaction" and isinstance(ev.redacts, str):
                    txn.execute("INSERT INTO redactions (event_id, redacts) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                (ev.event_id, ev.redacts))
            StateStore.write_groups_txn(txn, item.new_groups)
            if item.new_room is not None:
                creator, is_public = item.new_room
                txn.execute(
                    "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id) DO NOTHING",
                    (ev.room_id, ev.room_version.identifier, creator, is_public, now))
            cs = item.current_state
            if cs is not None:
                txn.execute("UPDATE rooms SET current_state_group = ? WHERE room_id = ?",
                            (cs.state_group, cs.room_id))
                txn.executemany("DELETE FROM current_state WHERE room_id = ? AND key_nid = ?",
                                [(cs.room_id, k) for k in cs.to_remove])
                txn.executemany(
                    "INSERT INTO current_state (room_id, key_nid, event_nid) VALUES (?, ?, ?)"
                    " ON CONFLICT (room_id, key_nid) DO UPDATE SET event_nid = excluded.event_nid",
                    [(cs.room_id, k, e) for k, e in cs.to_set.items()])
                txn.executemany("DELETE FROM room_memberships WHERE room_id = ? AND user_id = ?",
                                [(cs.room_id, u) for u in cs.memberships_removed])
            memberships = list(cs.memberships) if cs is not None else []
            if item.out_of_band_membership:
                memberships.append((ev.state_key, ev.membership, ev.event_id, ev.sender))
            if memberships:
                txn.executemany(
                    "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET"
                    " membership = excluded.membership, event_id = excluded.event_id,"
                    " sender = excluded.sender, stream_ordering = excluded.stream_ordering",
                    [(ev.room_id, u, m, e, s, item.stream_ordering) for u, m, e, s in memberships])
            if item.extremities is not None:
                removed, added = item.extremities
                txn.executemany("DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
                                [(ev.room_id, e) for e in removed])
                txn.executemany(
                    "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [(ev.room_id, e) for e in added])
            if item.txn_key is not None:
                user_id, device_id, txn_id = item.txn_key
                txn.execute(
                    "INSERT INTO event_txn_ids (user_id, device_id, txn_id, room_id, event_id, inserted_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (user_id, device_id, txn_id, ev.room_id, ev.event_id, now))
            for write in item.extra_writes:
                write(txn, item)

    def _after_persist(self, item: PersistItem) -> None:
        ev = item.event
        if item.rejected_reason is not None and ev.rejected_reason != item.rejected_reason:
            ev = Event(ev.pdu, ev.room_version, event_id=ev.event_id, rejected_reason=item.rejected_reason)
            item.event = ev
        self._events.set(ev.event_id, ev)
        self._meta.set(ev.event_id, EventMeta(
            ev.event_id, item.event_nid, ev.room_id, item.stream_ordering if item.in_timeline else None,
            _int(ev.depth), item.outlier, item.rejected_reason, item.soft_failed,
            item.state_group_before, item.state_group))
        self.state.groups_written(item.new_groups)
        if item.in_timeline and item.stream_ordering is not None and item.stream_ordering > 0:
            self._note_recent(ev.room_id, item.stream_ordering, ev.event_id)
        if item.new_room is not None:
            self._room_versions[ev.room_id] = ev.room_version
        if self._pending.get(ev.event_id) is item:
            del self._pending[ev.event_id]
        if item.txn_key is not None:
            user_id, device_id, txn_id = item.txn_key
            known = self._txn_ids.get((user_id, device_id))
            if known is None:
                known = self._txn_loading.get((user_id, device_id))
            if known is not None:
                known.setdefault(txn_id, ev.event_id)
                if len(known) > TXN_IDS_PER_DEVICE:
                    self._txn_ids.pop((user_id, device_id))  # the next lookup marks it uncached

    def _note_recent(self, room_id: str, stream_ordering: int, event_id: str) -> None:
        ring = self._recent.get(room_id)
        if ring is None:
            if len(self._recent) >= RECENT_ROOMS:
                self._recent.popitem(last=False)
            # Complete only above every id allocated so far: those are all committed (and noted)
            # from now on; earlier ones may have been committed before the ring existed.
            ring = self._recent[room_id] = [self.stream_ids.last_allocated(), []]
        else:
            self._recent.move_to_end(room_id)
        events = ring[1]
        bisect.insort(events, (stream_ordering, event_id))
        if len(events) > RECENT_PER_ROOM:
            dropped = events.pop(0)
            ring[0] = max(ring[0], dropped[0])

    def recent_window(self, room_id: str, lower: int, upper: int, limit: int) -> list[tuple[int, str]] | None:
        """The room's timeline events with ``lower < stream_ordering <= upper``, newest first, at
        most ``limit``, as ``(stream_ordering, event_id)`` — what SyncStore.get_room_windows
        reads — from memory; None when the memory does not cover ``lower`` (ask the database)."""
        ring = self._recent.get(room_id)
        if ring is None or lower < ring[0]:
            return None
        out = []
        for so, eid in reversed(ring[1]):
            if so <= lower or len(out) >= limit:
                break
            if so <= upper:
                out.append((so, eid))
        return out

    # --- reading events -----------------------------------------------------------------------
    async def get_events(self, event_ids: Iterable[str], *, allow_rejected: bool = False) -> dict[str, Event]:
        """The known events among ``event_ids`` (rejected ones only with ``allow_rejected``)."""
        out: dict[str, Event] = {}
        missing = []
        for eid in dict.fromkeys(event_ids):
            ev = self._events.get(eid)
            if ev is None:
                pending = self._pending.get(eid)
                if pending is None:
                    missing.append(eid)
                elif pending.rejected_reason is None:
                    out[eid] = pending.event
                elif allow_rejected:
                    out[eid] = Event(pending.event.pdu, pending.event.room_version, event_id=eid,
                                     rejected_reason=pending.rejected_reason)
            else:
                out[eid] = ev
        if missing:
            loaded = await self.db.run("get_events", self._load_events_txn, missing, readonly=True)
            for ev, meta in loaded:
                self._events.set(ev.event_id, ev)
                self._meta.set(ev.event_id, meta)
                out[ev.event_id] = ev
        if not allow_rejected:
            out = {k: v for k, v in out.items() if v.rejected_reason is None}
        return out

    async def get_event(self, event_id: str, *, allow_rejected: bool = False) -> Event | None:
        return (await self.get_events([event_id], allow_rejected=allow_rejected)).get(event_id)

    def get_cached_event(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def load_events_blocking(self, txn: Txn, event_ids: list[str]) -> dict[str, Event]:
        """For code already running in a worker thread (state resolution loaders)."""
        out = {}
        for ev, meta in self._load_events_txn(txn, event_ids):
            out[ev.event_id] = ev
        return out

    _EVENT_COLS = ("event_id, event_nid, room_id, room_version, stream_ordering, depth, outlier,"
                   " rejected_reason, soft_failed, state_group_before, state_group")

    def _load_events_txn(self, txn: Txn, event_ids: list[str]) -> list[tuple[Event, EventMeta]]:
        out = []
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            txn.execute(f"SELECT {self._EVENT_COLS}, json FROM events WHERE event_id IN ({marks})", chunk)
            for row in txn.fetchall():
                meta = _meta_from_row(row)
                rv = KNOWN_ROOM_VERSIONS[row[3]]
                ev = Event(json.loads(row[11]), rv, event_id=row[0], rejected_reason=row[7])
                out.append((ev, meta))
        return out

    async def get_event_metas(self, event_ids: Iterable[str]) -> dict[str, EventMeta]:
        """Storage metadata (nid, state groups, flags) of the known events among ``event_ids``."""
        out: dict[str, EventMeta] = {}
        missing = []
        for eid in dict.fromkeys(event_ids):
            meta = self._meta.get(eid)
            if meta is None:
                missing.append(eid)
            else:
                out[eid] = meta
        if missing:
            for meta in await self.db.run("get_event_metas", self._load_metas_txn, missing, readonly=True):
                self._meta.set(meta.event_id, meta)
                out[meta.event_id] = meta
        return out

    def _load_metas_txn(self, txn: Txn, event_ids: list[str]) -> list[EventMeta]:
        out = []
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            txn.execute(f"SELECT {self._EVENT_COLS} FROM events WHERE event_id IN ({marks})", chunk)
            out.extend(_meta_from_row(row) for row in txn.fetchall())
        return out

    async def get_event_nids(self, event_ids: Iterable[str]) -> dict[str, int]:
        """The nids of the known events among ``event_ids``, pending ones included."""
        event_ids = list(event_ids)
        out = {eid: self._pending[eid].event_nid for eid in event_ids if eid in self._pending}
        rest = [eid for eid in event_ids if eid not in out]
        if rest:
            out.update((eid, m.event_nid) for eid, m in (await self.get_event_metas(rest)).items())
        return out

    async def get_auth_chain_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Every event reachable from ``event_ids`` over auth edges (the starts excluded unless
        reachable), in one recursive query."""
        if not event_ids:
            return set()
        return await self.db.run("get_auth_chain_ids", self.auth_chain_ids_txn, list(event_ids), readonly=True)

    @staticmethod
    def auth_chain_ids_txn(txn: Txn, event_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            txn.execute(
                "WITH RECURSIVE chain(event_id) AS ("
                f" SELECT auth_event_id FROM event_auth_edges WHERE event_id IN ({marks})"
                " UNION"
                " SELECT a.auth_event_id FROM event_auth_edges a JOIN chain c ON a.event_id = c.event_id"
                ") SELECT event_id FROM chain", chunk)
            out.update(r[0] for r in txn.fetchall())
        return out

    # --- rooms ------------------------------------------------------------------------------
    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        rv = self._room_versions.get(room_id)
        if rv is None:
            ident = await self.db.run(
                "get_room_version",
                lambda txn: txn.scalar("SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)),
                readonly=True)
            if ident is None:
                return None
            rv = KNOWN_ROOM_VERSIONS[ident]
            self._room_versions[room_id] = rv
        return rv

    async def load_room_snapshot(self, room_id: str) -> "RoomSnapshotRow | None":
        """Everything the pipeline keeps in memory about a room's present (one transaction)."""
        return await self.db.run("load_room_snapshot", self._load_room_txn, room_id, readonly=True)

    @staticmethod
    def _load_room_txn(txn: Txn, room_id: str) -> "RoomSnapshotRow | None":
        row = txn.execute("SELECT room_version, current_state_group FROM rooms WHERE room_id = ?",
                          (room_id,)).fetchone()
        if row is None:
            return None
        txn.execute(
            "SELECT k.type, k.state_key, e.event_id, c.key_nid FROM current_state c"
            " JOIN state_keys k ON k.key_nid = c.key_nid JOIN events e ON e.event_nid = c.event_nid"
            " WHERE c.room_id = ?", (room_id,))
        state = {}
        key_nids = {}
        for etype, skey, event_id, key_nid in txn.fetchall():
            state[(etype, skey)] = event_id
            key_nids[(etype, skey)] = key_nid
        txn.execute(
            "SELECT x.event_id, e.depth FROM event_forward_extremities x"
            " JOIN events e ON e.event_id = x.event_id WHERE x.room_id = ?", (room_id,))
        extremities = {eid: depth for eid, depth in txn.fetchall()}
        delta_depth = txn.scalar("SELECT delta_depth FROM state_groups WHERE state_group = ?", (row[1],))
        return RoomSnapshotRow(KNOWN_ROOM_VERSIONS[row[0]], row[1], delta_depth or 0, state, key_nids,
                               extremities)

    async def get_current_state_ids_db(self, room_id: str) -> dict[StateKey, str]:
        def txn_fn(txn: Txn):
            txn.execute(
                "SELECT k.type, k.state_key, e.event_id FROM current_state c"
                " JOIN state_keys k ON k.key_nid = c.key_nid JOIN events e ON e.event_nid = c.event_nid"
                " WHERE c.room_id = ?", (room_id,))
            return {(t, s): e for t, s, e in txn.fetchall()}
        return await self.db.run("get_current_state_ids", txn_fn, readonly=True)

    async def get_forward_extremities(self, room_id: str) -> set[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room_id,))
            return {r[0] for r in txn.fetchall()}
        return await self.db.read_now("get_forward_extremities", txn_fn)

    # --- memberships ------------------------------------------------------------------------
    async def get_membership(self, room_id: str, user_id: str) -> tuple[str, str] | None:
        """(membership, event_id) of the user's current membership, or None."""
        def txn_fn(txn: Txn):
            return txn.execute("SELECT membership, event_id FROM room_memberships WHERE room_id = ? AND user_id = ?",
                               (room_id, user_id)).fetchone()
        row = await self.db.read_now("get_membership", txn_fn)
        return (row[0], row[1]) if row else None

    async def get_members(self, room_id: str, membership: str = "join") -> list[str]:
        def txn_fn(txn: Txn):
            txn.execute("SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = ?",
                        (room_id, membership))
            return sorted(r[0] for r in txn.fetchall())
        return await self.db.run("get_members", txn_fn, readonly=True)

    async def get_rooms_for_user(self, user_id: str, memberships: Sequence[str] = ("join",)) -> list[str]:
        return [r.room_id for r in await self.get_memberships_for_user(user_id, memberships)]

    async def get_memberships_for_user(self, user_id: str,
                                       memberships: Sequence[str] | None = None) -> list["MembershipRow"]:
        """The user's membership rows (optionally only these memberships), by room ID."""
        def txn_fn(txn: Txn):
            sql = ("SELECT room_id, membership, event_id, sender, stream_ordering FROM room_memberships"
                   " WHERE user_id = ?")
            args: list = [user_id]
            if memberships is not None:
                sql += f" AND membership IN ({','.join('?' * len(memberships))})"
                args.extend(memberships)
            txn.execute(sql + " ORDER BY room_id", args)
            return [MembershipRow(*r) for r in txn.fetchall()]
        if memberships is not None and not memberships:
            return []
        return await self.db.run("get_memberships_for_user", txn_fn, readonly=True)

    async def get_membership_changes(self, user_id: str, from_exclusive: int,
                                     to_inclusive: int) -> list["MembershipRow"]:
        """The user's membership rows whose last change is in ``(from_exclusive, to_inclusive]``
        (rooms joined, left, invited to since a sync token), oldest first."""
        def txn_fn(txn: Txn):
            txn.execute(
                "SELECT room_id, membership, event_id, sender, stream_ordering FROM room_memberships"
                " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
                (user_id, from_exclusive, to_inclusive))
            return [MembershipRow(*r) for r in txn.fetchall()]
        return await self.db.run("get_membership_changes", txn_fn, readonly=True)

    # --- redactions -------------------------------------------------------------------------
    async def get_redactions(self, event_ids: Iterable[str]) -> dict[str, list[str]]:
        """For each of ``event_ids`` that some stored m.room.redaction targets: the IDs of those
        redaction events (whether they are valid is the caller's policy)."""
        ids_ = list(dict.fromkeys(event_ids))

        def txn_fn(txn: Txn):
            out: dict[str, list[str]] = {}
            for start in range(0, len(ids_), 500):
                chunk = ids_[start:start + 500]
                txn.execute(f"SELECT redacts, event_id FROM redactions WHERE redacts IN ({','.join('?' * len(chunk))})",
                            chunk)
                for redacts, eid in txn.fetchall():
                    out.setdefault(redacts, []).append(eid)
            return out
        if not ids_:
            return {}
        return await self.db.run("get_redactions", txn_fn, readonly=True)

    # --- transaction IDs --------------------------------------------------------------------
    async def get_event_id_for_txn(self, user_id: str, device_id: str, txn_id: str) -> str | None:
        """The event a committed client transaction created, or None. A device's transaction
        IDs are read once and then kept up to date in memory (one process writes them)."""
        device = (user_id, device_id)
        known = self._txn_ids.get(device)
        if known is not None:
            return known.get(txn_id)
        if device not in self._txn_loading and device not in self._txn_uncached:
            self._txn_loading[device] = late = {}
            try:
                rows = await self.db.run("get_txn_ids_of_device", self._device_txn_ids_txn, user_id, device_id,
                                         readonly=True)
            finally:
                del self._txn_loading[device]
            if len(rows) <= TXN_IDS_PER_DEVICE:
                known = dict(rows)
                for t, e in late.items():
                    known.setdefault(t, e)
                self._txn_ids.set(device, known)
                return known.get(txn_id)
            self._txn_uncached.set(device, True)

        def txn_fn(txn: Txn):
            return txn.scalar("SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
                              (user_id, device_id, txn_id))
        return await self.db.read_now("get_event_id_for_txn", txn_fn)

    @staticmethod
    def _device_txn_ids_txn(txn: Txn, user_id: str, device_id: str) -> list[tuple[str, str]]:
        txn.execute("SELECT txn_id, event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? LIMIT ?",
                    (user_id, device_id, TXN_IDS_PER_DEVICE + 1))
        return txn.fetchall()

    # --- timeline ---------------------------------------------------------------------------
    async def get_room_events_stream(self, room_id: str, from_exclusive: int, to_inclusive: int,
                                     limit: int, *, newest_first: bool = True) -> list[tuple[int, Event]]:
        """Timeline events of a room with ``from_exclusive < stream_ordering <= to_inclusive``,
        at most ``limit``, newest first (or oldest first); as ``(stream_ordering, event)``."""
        order = "DESC" if newest_first else "ASC"

        def txn_fn(txn: Txn):
            txn.execute(
                "SELECT stream_ordering, event_id FROM events WHERE room_id = ? AND stream_ordering > ?"
                f" AND stream_ordering <= ? ORDER BY stream_ordering {order} LIMIT ?",
                (room_id, from_exclusive, to_inclusive, limit))
            return txn.fetchall()
        rows = await self.db.run("get_room_events_stream", txn_fn, readonly=True)
        events = await self.get_events([r[1] for r in rows])
        return [(so, events[eid]) for so, eid in rows if eid in events]


@dataclass
class RoomSnapshotRow:
    room_version: RoomVersion
    state_group: int | None
    delta_depth: int
    state: dict[StateKey, str]
    key_nids: dict[StateKey, int]
    extremities: dict[str, int]  # event_id -> depth


@dataclass(frozen=True)
class MembershipRow:
    room_id: str
    membership: str
    event_id: str
    sender: str
    stream_ordering: int


def _meta_from_row(row) -> EventMeta:
    (event_id, nid, room_id, _rv, stream, depth, outlier, rejected, soft_failed, sg_before, sg) = row[:11]
    return EventMeta(event_id, nid, room_id, stream, depth, bool(outlier), rejected, bool(soft_failed),
                     sg_before, sg)


def _indexable(ev: Event) -> bool:
    return ev.is_state() and isinstance(ev.type, str) and isinstance(ev.state_key, str)


def _int(value) -> int:
    """depth/origin_server_ts of a remote event may be garbage; store 0 rather than fail."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0
    return max(min(value, 2**63 - 1), -(2**63))
