"""SQL for event relationships and threads (schema 0016_relations.sql); no policy.

Rows are written inside the event's persist transaction (homeserver/history/indexer.py) and
removed when a redaction breaks the relationship (client-server-api "Aggregations of child
events": "when a child event is redacted then the relationship is broken"). Children are ordered
like the timeline, by (depth, stream_ordering).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from homeserver.sync.tokens import RoomPosition

from .database import Txn

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"

#: How far GET /relations?recurse=true follows relations of relations (the spec asks for >= 3).
MAX_RECURSION_DEPTH = 3


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: list, n: int = 500):
    for start in range(0, len(items), n):
        yield items[start:start + n]


@dataclass(frozen=True)
class RelationRow:
    """One child event's relationship, as recorded."""

    event_id: str
    relates_to_id: str
    rel_type: str
    aggregation_key: str | None
    room_id: str
    type: str
    sender: str
    depth: int
    stream_ordering: int
    origin_server_ts: int


@dataclass
class ThreadSummary:
    count: int
    latest_event_id: str
    participated: bool


@dataclass
class AggregationRows:
    """What the bundled aggregations of a batch of parents need from the database."""

    threads: dict[str, ThreadSummary] = field(default_factory=dict)
    # parent -> candidate edits (event_id, sender, type, origin_server_ts)
    edits: dict[str, list[tuple[str, str, str, int]]] = field(default_factory=dict)
    # parent -> referencing event IDs in timeline order
    references: dict[str, list[str]] = field(default_factory=dict)

    def restricted_to(self, parents: Iterable[str]) -> "AggregationRows":
        """The rows of only these parents (rows read for a superset of them)."""
        keep = set(parents)
        return AggregationRows({p: v for p, v in self.threads.items() if p in keep},
                               {p: v for p, v in self.edits.items() if p in keep},
                               {p: v for p, v in self.references.items() if p in keep})


class RelationsStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db

    # --- writes (inside the persist transaction) ------------------------------------------------
    @staticmethod
    def add_relation_txn(txn: Txn, row: RelationRow) -> None:
        txn.execute(
            "INSERT INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key, room_id, type,"
            " sender, depth, stream_ordering, origin_server_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (row.event_id, row.relates_to_id, row.rel_type, row.aggregation_key, row.room_id, row.type,
             row.sender, row.depth, row.stream_ordering, row.origin_server_ts))
        if row.rel_type == THREAD:
            txn.execute(
                "INSERT INTO threads (room_id, thread_id, latest_event_id, latest_stream_ordering)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (room_id, thread_id) DO UPDATE SET"
                " latest_event_id = excluded.latest_event_id,"
                " latest_stream_ordering = excluded.latest_stream_ordering"
                " WHERE excluded.latest_stream_ordering > threads.latest_stream_ordering",
                (row.room_id, row.relates_to_id, row.event_id, row.stream_ordering))

    @staticmethod
    def remove_relation_txn(txn: Txn, event_id: str) -> bool:
        """Forget the relationship of a (redacted) child event; keeps its thread's latest event
        right. Returns whether there was one."""
        row = txn.execute("SELECT relates_to_id, rel_type, room_id FROM event_relations WHERE event_id = ?",
                          (event_id,)).fetchone()
        if row is None:
            return False
        parent, rel_type, room_id = row
        txn.execute("DELETE FROM event_relations WHERE event_id = ?", (event_id,))
        if rel_type == THREAD:
            latest = txn.execute(
                "SELECT event_id, stream_ordering FROM event_relations WHERE relates_to_id = ? AND rel_type = ?"
                " ORDER BY stream_ordering DESC LIMIT 1", (parent, THREAD)).fetchone()
            if latest is None:
                txn.execute("DELETE FROM threads WHERE room_id = ? AND thread_id = ?", (room_id, parent))
            else:
                txn.execute("UPDATE threads SET latest_event_id = ?, latest_stream_ordering = ?"
                            " WHERE room_id = ? AND thread_id = ?", (latest[0], latest[1], room_id, parent))
        return True

    # --- reads ----------------------------------------------------------------------------------
    async def get_relation(self, event_id: str) -> RelationRow | None:
        def txn_fn(txn: Txn):
            row = txn.execute(f"SELECT {_COLS} FROM event_relations WHERE event_id = ?", (event_id,)).fetchone()
            return RelationRow(*row) if row else None
        return await self.db.run("get_relation", txn_fn, readonly=True)

    async def get_children(self, parent_id: str, *, rel_type: str | None = None, event_type: str | None = None,
                           from_pos: RoomPosition | None = None, to_pos: RoomPosition | None = None,
                           backwards: bool = True, limit: int = 50, recurse: bool = False) -> list[RelationRow]:
        """Child events of ``parent_id`` in page order (backwards: newest first), optionally only
        of ``rel_type`` / ``event_type``, between the points ``from_pos`` (exclusive forwards,
        inclusive backwards, as /messages) and ``to_pos``. ``recurse`` adds children of children
        up to :data:`MAX_RECURSION_DEPTH` levels (the type filters then apply to every level)."""
        where: list[str] = []
        args: list = []
        if rel_type is not None:
            where.append("r.rel_type = ?")
            args.append(rel_type)
        if event_type is not None:
            where.append("r.type = ?")
            args.append(event_type)
        lo, hi = (to_pos, from_pos) if backwards else (from_pos, to_pos)
        if lo is not None:
            where.append(_position_sql(lo, ">"))
            args += _position_args(lo)
        if hi is not None:
            where.append(_position_sql(hi, "<="))
            args += _position_args(hi)
        order = "DESC" if backwards else "ASC"
        cond = "".join(f" AND {w}" for w in where)
        if recurse:
            sql = ("WITH RECURSIVE tree(event_id, level) AS ("
                   " SELECT event_id, 1 FROM event_relations WHERE relates_to_id = ?"
                   " UNION"
                   " SELECT c.event_id, t.level + 1 FROM event_relations c JOIN tree t ON c.relates_to_id = t.event_id"
                   f" WHERE t.level < {MAX_RECURSION_DEPTH})"
                   f" SELECT DISTINCT {_COLS_R} FROM event_relations r JOIN tree ON tree.event_id = r.event_id"
                   f" WHERE 1 = 1{cond}")
        else:
            sql = f"SELECT {_COLS_R} FROM event_relations r WHERE r.relates_to_id = ?{cond}"
        sql += f" ORDER BY r.depth {order}, r.stream_ordering {order} LIMIT ?"
        all_args = [parent_id, *args, limit]

        def txn_fn(txn: Txn):
            txn.execute(sql, all_args)
            return [RelationRow(*r) for r in txn.fetchall()]
        return await self.db.run("get_relation_children", txn_fn, readonly=True)

    async def get_aggregation_rows(self, parents: Mapping[str, str], user_id: str | None,
                                   ignored_users: Iterable[str] = ()) -> AggregationRows:
        """For parents given as ``{event_id: room_id}``, in one transaction: thread summaries
        (count, latest child by (depth, stream), whether ``user_id`` sent a child), candidate edits
        and references. Only children in the parent's room count; children sent by
        ``ignored_users`` are left out (client-server-api "Aggregations of child events")."""
        if not parents:
            return AggregationRows()
        return await self.db.run("get_aggregation_rows", self.aggregation_rows_txn, dict(parents), user_id,
                                 sorted(set(ignored_users)), readonly=True)

    @staticmethod
    def aggregation_rows_txn(txn: Txn, parents: Mapping[str, str], user_id: str | None,
                             ignored: list[str]) -> AggregationRows:
        """:meth:`get_aggregation_rows` inside a caller's transaction (``ignored`` sorted)."""
        ids = list(parents)
        out = AggregationRows()
        if not ids:
            return out
        not_ignored = f" AND sender NOT IN ({_marks(len(ignored))})" if ignored else ""
        for chunk in _chunks(ids):
            marks = _marks(len(chunk))
            txn.execute(
                "SELECT relates_to_id, rel_type, event_id, sender, type, origin_server_ts, room_id"
                f" FROM event_relations WHERE relates_to_id IN ({marks}) AND rel_type IN (?, ?){not_ignored}"
                " ORDER BY depth, stream_ordering", [*chunk, REPLACE, REFERENCE, *ignored])
            for parent, rel_type, eid, sender, etype, ts, room_id in txn.fetchall():
                if room_id != parents[parent]:
                    continue
                if rel_type == REPLACE:
                    out.edits.setdefault(parent, []).append((eid, sender, etype, ts))
                else:
                    out.references.setdefault(parent, []).append(eid)
            txn.execute(
                "SELECT relates_to_id, room_id, COUNT(*), SUM(CASE WHEN sender = ? THEN 1 ELSE 0 END)"
                f" FROM event_relations WHERE relates_to_id IN ({marks}) AND rel_type = ?{not_ignored}"
                " GROUP BY relates_to_id, room_id", [user_id or "", *chunk, THREAD, *ignored])
            counts = txn.fetchall()
            for parent, room_id, count, own in counts:
                if room_id != parents[parent]:
                    continue
                latest = txn.scalar(
                    "SELECT event_id FROM event_relations WHERE relates_to_id = ? AND rel_type = ?"
                    f" AND room_id = ?{not_ignored} ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
                    [parent, THREAD, room_id, *ignored])
                if latest is not None:
                    out.threads[parent] = ThreadSummary(int(count), latest, bool(own))
        return out

    async def get_threads(self, room_id: str, *, participant: str | None = None,
                          before_stream: int | None = None, limit: int = 50) -> list[tuple[str, int]]:
        """Thread roots of a room stored as events, most recent activity first:
        ``(thread root id, stream ordering of its latest child)``. ``participant``: only threads
        that user started or replied to; ``before_stream``: only latest activity at or before it."""
        sql = ("SELECT t.thread_id, t.latest_stream_ordering FROM threads t"
               " JOIN events e ON e.event_id = t.thread_id AND e.room_id = t.room_id WHERE t.room_id = ?")
        args: list = [room_id]
        if before_stream is not None:
            sql += " AND t.latest_stream_ordering <= ?"
            args.append(before_stream)
        if participant is not None:
            sql += (" AND (e.sender = ? OR EXISTS (SELECT 1 FROM event_relations r WHERE r.relates_to_id = t.thread_id"
                    " AND r.rel_type = ? AND r.sender = ?))")
            args += [participant, THREAD, participant]
        sql += " ORDER BY t.latest_stream_ordering DESC LIMIT ?"
        args.append(limit)

        def txn_fn(txn: Txn):
            txn.execute(sql, args)
            return [(r[0], r[1]) for r in txn.fetchall()]
        return await self.db.run("get_threads", txn_fn, readonly=True)

    async def has_annotation(self, parent_id: str, sender: str, event_type: str, key: str) -> bool:
        """Whether ``sender`` already annotated ``parent_id`` with this event type and key (and that
        annotation is not redacted): modules/event_annotations.md, M_DUPLICATE_ANNOTATION."""
        def txn_fn(txn: Txn):
            return txn.scalar(
                "SELECT 1 FROM event_relations WHERE relates_to_id = ? AND rel_type = ? AND sender = ?"
                " AND type = ? AND aggregation_key = ? LIMIT 1", (parent_id, ANNOTATION, sender, event_type, key))
        return bool(await self.db.run("has_annotation", txn_fn, readonly=True))


_COLS = ("event_id, relates_to_id, rel_type, aggregation_key, room_id, type, sender, depth, stream_ordering,"
         " origin_server_ts")
_COLS_R = ", ".join("r." + c.strip() for c in _COLS.split(","))


def _position_sql(pos: RoomPosition, op: str) -> str:
    if pos.depth is None:
        return f"r.stream_ordering {op} ?"
    return f"(r.depth, r.stream_ordering) {op} (?, ?)"


def _position_args(pos: RoomPosition) -> list[int]:
    return [pos.stream] if pos.depth is None else [pos.depth, pos.stream]
