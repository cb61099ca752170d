"""SQL for reading a room's history in order: /messages and /context pages.

Pages run in (depth, stream_ordering) order over the timeline events of one room (``stream_ordering
IS NOT NULL``: outliers, rejected and soft-failed events are not history), served by the index
``events_room_topological`` (schema 0016). Positions are :class:`RoomPosition` points between events
(homeserver/sync/tokens.py). Only IDs and positions are read here; events are then fetched in one
batch through the events store's cache.

:meth:`HistoryStore.read_page` reads, in one transaction (one worker-thread hop), a page's rows and
everything serving them needs from the database: the reader's transaction IDs, the redactions
pointing at the rows, the rows' aggregation rows, the reader's member events in the room
(visibility's "joined later") and whether the page's depth range cites a gap (backfill).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.sync.tokens import RoomPosition

from .database import Txn
from .relations_store import AggregationRows, RelationsStore
from .room_extras_store import RoomExtrasStore


@dataclass(frozen=True)
class TimelineRow:
    event_id: str
    depth: int
    stream_ordering: int

    @property
    def after(self) -> RoomPosition:
        return RoomPosition.after_event(self.depth, self.stream_ordering)

    @property
    def before(self) -> RoomPosition:
        return RoomPosition.before_event(self.depth, self.stream_ordering)


@dataclass
class PageRead:
    """What :meth:`HistoryStore.read_page` read for one page (see the module docstring)."""

    rows: list[TimelineRow]
    txn_ids: dict[str, str] = field(default_factory=dict)  # event ID -> stored txn key of the reader's device
    redaction_ids: dict[str, list[str]] = field(default_factory=dict)  # as RoomExtrasStore.get_redaction_ids
    aggregations: AggregationRows = field(default_factory=AggregationRows)  # of every row
    member_streams: list[tuple[int, str]] = field(default_factory=list)  # the reader's member events
    #: Backwards pages with ``gap_check``: the ``min_depth`` the gap query used (None: no lower
    #: bound, the page reached the room's start) and whether it found a gap. ``checked`` False: not asked.
    gap_checked: bool = False
    gap_min_depth: int | None = None
    has_gap: bool = False
    #: With ``with_membership``: the reader's ``(membership, event_id)`` row of room_memberships
    #: (as EventsStore.get_membership), None without one; False: not read.
    membership: tuple[str, str] | None | bool = False


class HistoryStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db

    async def paginate(self, room_id: str, from_pos: RoomPosition, to_pos: RoomPosition | None, *,
                       backwards: bool, limit: int) -> list[TimelineRow]:
        """At most ``limit`` timeline events of the room in page order.

        Backwards: events ``<= from_pos`` and ``> to_pos``, newest first. Forwards: events
        ``> from_pos`` and ``<= to_pos``, oldest first. Positions must carry a depth."""
        if limit <= 0:
            return []
        return await self.db.run("history_paginate", self._paginate_txn, room_id, from_pos, to_pos, backwards,
                                 limit, readonly=True)

    @staticmethod
    def _paginate_sql(room_id: str, from_pos: RoomPosition, to_pos: RoomPosition | None, backwards: bool,
                      limit: int) -> tuple[str, list]:
        assert from_pos.depth is not None and (to_pos is None or to_pos.depth is not None)
        sql = ["SELECT event_id, depth, stream_ordering FROM events WHERE room_id = ?"
               " AND stream_ordering IS NOT NULL"]
        args: list = [room_id]
        if backwards:
            sql.append(" AND (depth, stream_ordering) <= (?, ?)")
            args += [from_pos.depth, from_pos.stream]
            if to_pos is not None:
                sql.append(" AND (depth, stream_ordering) > (?, ?)")
                args += [to_pos.depth, to_pos.stream]
            sql.append(" ORDER BY depth DESC, stream_ordering DESC LIMIT ?")
        else:
            sql.append(" AND (depth, stream_ordering) > (?, ?)")
            args += [from_pos.depth, from_pos.stream]
            if to_pos is not None:
                sql.append(" AND (depth, stream_ordering) <= (?, ?)")
                args += [to_pos.depth, to_pos.stream]
            sql.append(" ORDER BY depth ASC, stream_ordering ASC LIMIT ?")
        args.append(limit)
        return "".join(sql), args

    @classmethod
    def _paginate_txn(cls, txn: Txn, room_id: str, from_pos: RoomPosition, to_pos: RoomPosition | None,
                      backwards: bool, limit: int) -> list[TimelineRow]:
        sql, args = cls._paginate_sql(room_id, from_pos, to_pos, backwards, limit)
        txn.execute(sql, args)
        return [TimelineRow(*r) for r in txn.fetchall()]

    async def read_page(self, room_id: str, from_pos: RoomPosition, to_pos: RoomPosition | None, *,
                        backwards: bool, limit: int, user_id: str, device_id: str | None,
                        ignored_users: set[str], gap_check: bool, with_membership: bool = False) -> PageRead:
        """:meth:`paginate` plus, for the rows read and in the same transaction, what serving
        them to ``user_id`` needs (:class:`PageRead`). ``gap_check`` (backwards only, ``from_pos``
        the page's start): also run :meth:`backward_extremities` for the depths the page covers
        when its rows are all shown (down to the last row's depth, or unbounded when the room's
        start is reached), so a caller skips asking other servers when there is no gap.
        ``with_membership``: also the reader's current membership row (for the access check)."""
        order = "DESC" if backwards else "ASC"
        page_sql, page_args = self._paginate_sql(room_id, from_pos, to_pos, backwards, limit)
        gap_check = gap_check and backwards and from_pos.depth is not None
        # One statement (each statement is a round trip to PostgreSQL), its parts told apart by
        # the first column:
        # 0. the page's rows, each with the transaction IDs stored for it (joined on the event ID
        #    alone, so that index serves it with or without planner statistics; the reader's
        #    device is picked out below) and whether anything redacts it or relates to it (only
        #    those rows are then looked up further);
        # 1. the reader's current membership row (as EventsStore.get_membership);
        # 2. the reader's member events in the room (as RoomExtrasStore.get_member_event_streams);
        # 3. a row when the page's depths cite a gap (as backward_extremities, down to the last
        #    row's depth when the page is full, else unbounded).
        parts = [
            "SELECT 0 AS part, p.event_id, p.depth, p.stream_ordering, t.user_id, t.device_id, t.txn_id,"
            " EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = p.event_id) AS redacted,"
            " EXISTS (SELECT 1 FROM event_relations c WHERE c.relates_to_id = p.event_id) AS related"
            " FROM page p LEFT JOIN event_txn_ids t ON t.event_id = p.event_id"]
        args: list = [*page_args]
        if with_membership:
            parts.append("SELECT 1, event_id, NULL, NULL, membership, NULL, NULL, NULL, NULL FROM room_memberships"
                         " WHERE room_id = ? AND user_id = ?")
            args += [room_id, user_id]
        parts.append("SELECT 2, event_id, NULL, stream_ordering, NULL, NULL, NULL, NULL, NULL FROM events"
                     " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ? AND stream_ordering IS NOT NULL")
        args += [room_id, user_id]
        if gap_check:
            parts.append(
                "SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM ("
                "SELECT 1 AS one FROM events e JOIN event_edges edge ON edge.event_id = e.event_id"
                " LEFT JOIN events p ON p.event_id = edge.prev_event_id"
                " WHERE e.room_id = ? AND e.stream_ordering IS NOT NULL AND e.depth <= ?"
                " AND (p.event_id IS NULL OR p.outlier = ?)"
                " AND e.depth >= COALESCE((SELECT CASE WHEN COUNT(*) = ? THEN MIN(depth) END FROM page), e.depth)"
                " LIMIT 1) g")
            args += [room_id, from_pos.depth, True, limit]
        sql = (f"WITH page AS ({page_sql}) " + " UNION ALL ".join(parts)
               + f" ORDER BY 1, 3 {order}, 4 {order}")
        device = device_id or ""

        def txn_fn(txn: Txn) -> PageRead:
            rows, redacted, related = [], [], []
            txn_ids: dict[str, str] = {}
            membership: tuple[str, str] | None | bool = None if with_membership else False
            member_streams: list[tuple[int, str]] = []
            has_gap = False
            txn.execute(sql, args)
            for part, event_id, depth, stream, c4, t_device, txn_id, has_redaction, has_children in txn.fetchall():
                if part == 0:
                    if txn_id is not None and c4 == user_id and t_device == device:
                        txn_ids[event_id] = txn_id
                    if rows and rows[-1].event_id == event_id:
                        continue  # another transaction ID row of the same event
                    rows.append(TimelineRow(event_id, depth, stream))
                    if has_redaction:
                        redacted.append(event_id)
                    if has_children:
                        related.append(event_id)
                elif part == 1:
                    membership = (c4, event_id)
                elif part == 2:
                    member_streams.append((stream, event_id))
                else:
                    has_gap = True
            out = PageRead(rows, txn_ids=txn_ids, membership=membership, member_streams=sorted(member_streams))
            if redacted:
                out.redaction_ids = RoomExtrasStore.redaction_ids_txn(txn, redacted)
            if related:
                out.aggregations = RelationsStore.aggregation_rows_txn(
                    txn, {i: room_id for i in related}, user_id, sorted(ignored_users))
            if gap_check:
                out.gap_checked = True
                out.gap_min_depth = rows[-1].depth if len(rows) == limit else None
                out.has_gap = has_gap
            return out
        return await self.db.run("history_read_page", txn_fn, readonly=True)

    async def end_position(self, room_id: str) -> RoomPosition:
        """The point after the room's last timeline event (``t0_0`` for a room without one)."""
        def txn_fn(txn: Txn):
            return txn.execute(
                "SELECT depth, stream_ordering FROM events WHERE room_id = ? AND stream_ordering IS NOT NULL"
                " ORDER BY depth DESC, stream_ordering DESC LIMIT 1", (room_id,)).fetchone()
        row = await self.db.run("history_end_position", txn_fn, readonly=True)
        return RoomPosition(row[0], row[1]) if row else RoomPosition(0, 0)

    async def topological_position(self, room_id: str, stream: int) -> RoomPosition:
        """A stream-only point ``s<stream>`` as a (depth, stream) point: the depth of the room's last
        timeline event at or before ``stream`` (as Synapse converts stream tokens)."""
        def txn_fn(txn: Txn):
            return txn.scalar(
                "SELECT depth FROM events WHERE room_id = ? AND stream_ordering IS NOT NULL"
                " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1", (room_id, stream))
        depth = await self.db.run("history_topological_position", txn_fn, readonly=True)
        return RoomPosition(depth if depth is not None else 0, stream)

    async def backward_extremities(self, room_id: str, min_depth: int | None, max_depth: int, *,
                                   limit: int = 20) -> list[tuple[str, str, int]]:
        """Where the room's known history has a gap behind it: ``(missing event ID, ID and depth
        of the timeline event citing it)`` for prev_events that are unknown or only stored as
        outliers, cited by timeline events with ``min_depth <= depth <= max_depth``, deepest
        first, each missing event once. A late joiner's join event cites such events; /backfill
        fetches them."""
        return await self.db.run("history_backward_extremities", self._backward_extremities_txn, room_id,
                                 min_depth, max_depth, limit, readonly=True)

    @staticmethod
    def _backward_extremities_txn(txn: Txn, room_id: str, min_depth: int | None, max_depth: int,
                                  limit: int) -> list[tuple[str, str, int]]:
        sql = ("SELECT edge.prev_event_id, e.event_id, e.depth FROM events e"
               " JOIN event_edges edge ON edge.event_id = e.event_id"
               " LEFT JOIN events p ON p.event_id = edge.prev_event_id"
               " WHERE e.room_id = ? AND e.stream_ordering IS NOT NULL AND e.depth <= ?"
               " AND (p.event_id IS NULL OR p.outlier = ?)")
        args: list = [room_id, max_depth, True]
        if min_depth is not None:
            sql += " AND e.depth >= ?"
            args.append(min_depth)
        sql += " ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT ?"
        args.append(limit)
        txn.execute(sql, args)
        out: dict[str, tuple[str, str, int]] = {}
        for missing, citing, depth in txn.fetchall():
            out.setdefault(missing, (missing, citing, depth))
        return list(out.values())
