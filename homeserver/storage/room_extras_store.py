"""SQL for the rooms client API beyond the event pipeline: redactions and transaction IDs of events
being served, forgotten rooms, content reports, and timeline look-ups by timestamp or stream
position. Schema: storage/schema/0015_room_extras.sql (plus 0010's events/redactions tables)."""
from __future__ import annotations

from typing import Iterable

from .database import Txn
from .id_generator import StreamIdGenerator


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: list, n: int = 500):
    for start in range(0, len(items), n):
        yield items[start:start + n]


class RoomExtrasStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        self._report_ids = self.db.run_sync(
            "room_extras_init", lambda txn: StreamIdGenerator.from_table(txn, "content_reports", "report_id"))

    # --- redactions -----------------------------------------------------------------------------
    async def get_redaction_ids(self, event_ids: Iterable[str]) -> dict[str, list[str]]:
        """Accepted (not rejected, not outlier) redaction events pointing at each of ``event_ids``,
        oldest first: ``{redacted event id: [redaction event ids]}``."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return await self.db.read_now("get_redaction_ids", self.redaction_ids_txn, ids)

    @staticmethod
    def redaction_ids_txn(txn: Txn, ids: list[str]) -> dict[str, list[str]]:
        """:meth:`get_redaction_ids` inside a caller's transaction."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(ids):
            txn.execute(
                "SELECT r.redacts, r.event_id FROM redactions r JOIN events e ON e.event_id = r.event_id"
                f" WHERE r.redacts IN ({_marks(len(chunk))}) AND e.rejected_reason IS NULL"
                " AND e.outlier = ? ORDER BY e.event_nid", list(chunk) + [False])
            for redacts, eid in txn.fetchall():
                out.setdefault(redacts, []).append(eid)
        return out

    # --- transaction IDs ------------------------------------------------------------------------
    async def get_txn_ids(self, event_ids: Iterable[str], user_id: str, device_id: str) -> dict[str, str]:
        """The stored transaction keys of those events sent by this user from this device."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return await self.db.read_now("get_txn_ids", self.txn_ids_txn, ids, user_id, device_id)

    @staticmethod
    def txn_ids_txn(txn: Txn, ids: list[str], user_id: str, device_id: str) -> dict[str, str]:
        """:meth:`get_txn_ids` inside a caller's transaction."""
        out = {}
        for chunk in _chunks(ids):
            txn.execute(
                f"SELECT event_id, txn_id FROM event_txn_ids WHERE event_id IN ({_marks(len(chunk))})"
                " AND user_id = ? AND device_id = ?", list(chunk) + [user_id, device_id])
            out.update({e: t for e, t in txn.fetchall()})
        return out

    # --- forgotten rooms ------------------------------------------------------------------------
    async def forget_room(self, user_id: str, room_id: str, membership_event_id: str) -> None:
        def txn_fn(txn: Txn):
            txn.execute(
                "INSERT INTO forgotten_rooms (user_id, room_id, membership_event_id) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, room_id) DO UPDATE SET membership_event_id = excluded.membership_event_id",
                (user_id, room_id, membership_event_id))
        await self.db.run("forget_room", txn_fn)

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        """Rooms the user forgot and has not had a new membership in since."""
        def txn_fn(txn: Txn):
            txn.execute(
                "SELECT f.room_id FROM forgotten_rooms f JOIN room_memberships m"
                " ON m.room_id = f.room_id AND m.user_id = f.user_id"
                " WHERE f.user_id = ? AND m.event_id = f.membership_event_id", (user_id,))
            return {r[0] for r in txn.fetchall()}
        return await self.db.run("get_forgotten_rooms", txn_fn, readonly=True)

    # --- reports --------------------------------------------------------------------------------
    async def add_report(self, kind: str, reporter: str, *, room_id: str | None = None,
                         event_id: str | None = None, target_user_id: str | None = None,
                         reason: str | None = None, score: int | None = None) -> int:
        now = self.hs.clock_ms()
        with self._report_ids.get_next() as report_id:
            def txn_fn(txn: Txn):
                txn.execute(
                    "INSERT INTO content_reports (report_id, kind, reporter, room_id, event_id, target_user_id,"
                    " reason, score, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (report_id, kind, reporter, room_id, event_id, target_user_id, reason, score, now))
            await self.db.run("add_report", txn_fn)
        return report_id

    async def get_reports(self, limit: int = 100) -> list[dict]:
        """The latest reports, newest first (for admin tools and tests)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT report_id, kind, reporter, room_id, event_id, target_user_id, reason, score,"
                        " received_ts FROM content_reports ORDER BY report_id DESC LIMIT ?", (limit,))
            cols = ("id", "kind", "reporter", "room_id", "event_id", "target_user_id", "reason", "score",
                    "received_ts")
            return [dict(zip(cols, r)) for r in txn.fetchall()]
        return await self.db.run("get_reports", txn_fn, readonly=True)

    # --- timeline look-ups ----------------------------------------------------------------------
    async def get_event_by_timestamp(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        """The timeline event closest to ``ts``: the first at or after it (``forwards``) or the last
        at or before it; ties broken by stream order. ``(event_id, origin_server_ts)`` or None."""
        if forwards:
            sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts >= ?"
                   " AND stream_ordering IS NOT NULL ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1")
        else:
            sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts <= ?"
                   " AND stream_ordering IS NOT NULL ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1")

        def txn_fn(txn: Txn):
            return txn.execute(sql, (room_id, ts)).fetchone()
        row = await self.db.run("get_event_by_timestamp", txn_fn, readonly=True)
        return (row[0], row[1]) if row else None

    async def get_last_event_at_stream(self, room_id: str, stream_pos: int) -> str | None:
        """The room's last timeline event at or before an events-stream position."""
        def txn_fn(txn: Txn):
            return txn.scalar("SELECT event_id FROM events WHERE room_id = ? AND stream_ordering IS NOT NULL"
                              " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
                              (room_id, stream_pos))
        return await self.db.run("get_last_event_at_stream", txn_fn, readonly=True)

    async def get_stream_orderings(self, event_ids: Iterable[str]) -> dict[str, int]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def txn_fn(txn: Txn):
            out = {}
            for chunk in _chunks(ids):
                txn.execute(f"SELECT event_id, stream_ordering FROM events WHERE event_id IN ({_marks(len(chunk))})"
                            " AND stream_ordering IS NOT NULL", chunk)
                out.update({e: s for e, s in txn.fetchall()})
            return out
        return await self.db.run("get_stream_orderings", txn_fn, readonly=True)

    async def get_member_event_streams(self, room_id: str, user_id: str) -> list[tuple[int, str]]:
        """``(stream_ordering, event_id)`` of every timeline ``m.room.member`` event about the user in
        the room, oldest first (for "joined at some point after the event")."""
        return await self.db.run("get_member_event_streams", self.member_event_streams_txn, room_id, user_id,
                                 readonly=True)

    @staticmethod
    def member_event_streams_txn(txn: Txn, room_id: str, user_id: str) -> list[tuple[int, str]]:
        """:meth:`get_member_event_streams` inside a caller's transaction (index
        ``events_room_members``, schema 0019)."""
        txn.execute("SELECT stream_ordering, event_id FROM events WHERE room_id = ? AND type = 'm.room.member'"
                    " AND state_key = ? AND stream_ordering IS NOT NULL ORDER BY stream_ordering",
                    (room_id, user_id))
        return [(r[0], r[1]) for r in txn.fetchall()]
