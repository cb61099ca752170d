"""SQL for reading a room's history in order: /messages and /context pages.

Pages run in (depth, stream_ordering) order over the timeline events of one room (``stream_ordering
IS NOT NULL``: outliers, rejected and soft-failed events are not history), served by the index
``events_room_topological`` (schema 0016). Positions are :class:`RoomPosition` points between events
(homeserver/sync/tokens.py). Only IDs and positions are read here; events are then fetched in one
batch through the events store's cache.
"""
from __future__ import annotations

from dataclasses import dataclass

from homeserver.sync.tokens import RoomPosition

from .database import Txn


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
        query = "".join(sql)

        def txn_fn(txn: Txn):
            txn.execute(query, args)
            return [TimelineRow(*r) for r in txn.fetchall()]
        return await self.db.run("history_paginate", txn_fn, readonly=True)

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

        def txn_fn(txn: Txn):
            txn.execute(sql, args)
            out: dict[str, tuple[str, str, int]] = {}
            for missing, citing, depth in txn.fetchall():
                out.setdefault(missing, (missing, citing, depth))
            return list(out.values())
        return await self.db.run("history_backward_extremities", txn_fn, readonly=True)
