"""SQL for receipts, event push actions and unread notification counts (schema 0040_sync.sql).

The receipts stream has its own :class:`StreamIdGenerator` (``receipt_ids``); the receipts
service allocates ids and finishes them once written. Push actions are staged inside the events
persist transaction, one row per event (:meth:`ReceiptsStore.stage_push_actions_txn`, called by
the notification counter's write hook), folded in batches into the per-user tables
(:meth:`ReceiptsStore.fold_staged_txn`), and cleared by read receipts in the receipt's own
transaction (which folds first), which also recomputes the (user, room, thread) counts from what
is left. Unread counts add the user's staged rows, so they are exact as soon as the event is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from .database import Txn
from .id_generator import StreamIdGenerator

#: Receipt types that mark events as read for notification counts.
READ_TYPES = ("m.read", "m.read.private")
UNTHREADED = ""
MAIN_THREAD = "main"


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _chunks(items: Sequence, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass(frozen=True)
class ReceiptRow:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str  # "" unthreaded
    event_id: str
    data: dict
    stream_id: int


@dataclass(frozen=True)
class PushActionRow:
    user_id: str
    room_id: str
    stream_ordering: int
    event_id: str
    thread_id: str
    highlight: bool
    actions: list


class ReceiptsStore:
    def __init__(self, hs):
        self.hs = hs
        self.db = hs.db
        self.receipt_ids: StreamIdGenerator = self.db.run_sync(
            "receipts_store_init", lambda txn: StreamIdGenerator.from_table(txn, "receipts", "stream_id"))
        #: ``fn(txn, rows: list[PushActionRow], received_ts)`` run per event inside the fold
        #: transaction (homeserver/push: notification history, pusher wake-up after commit).
        self.on_fold: list = []
        #: Whether staged push actions may exist (set after a persist staged some; rows left
        #: from before a restart count too).
        self.maybe_staged = True

    # --- receipts -------------------------------------------------------------------------------
    async def upsert_receipt(self, room_id: str, receipt_type: str, user_id: str, thread_id: str, event_id: str,
                             data: dict, stream_id: int) -> bool:
        """Store a receipt unless the stored one of the same (room, type, user, thread) is for a
        later event; read receipts also clear the push actions they pass (all threads for an
        unthreaded receipt). Returns whether anything changed."""
        def txn_fn(txn: Txn) -> bool:
            if receipt_type in READ_TYPES:
                self.fold_staged_txn(txn)
            pos = txn.scalar("SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?",
                             (event_id, room_id))
            old = txn.execute(
                "SELECT event_id, event_stream_ordering FROM receipts WHERE room_id = ? AND receipt_type = ?"
                " AND user_id = ? AND thread_id = ?", (room_id, receipt_type, user_id, thread_id)).fetchone()
            if old is not None:
                if old[0] == event_id:
                    return False
                if old[1] is not None and pos is not None and pos < old[1]:
                    return False
            txn.execute(
                "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering,"
                " data, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
                " event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering,"
                " data = excluded.data, stream_id = excluded.stream_id",
                (room_id, receipt_type, user_id, thread_id, event_id, pos, _dumps(data), stream_id))
            if receipt_type in READ_TYPES and pos is not None:
                self._clear_push_actions_txn(txn, user_id, room_id, pos, thread_id or None)
            return True
        return await self.db.run("upsert_receipt", txn_fn)

    async def get_receipts_for_rooms(self, room_ids: Iterable[str], from_id: int, to_id: int) -> list[ReceiptRow]:
        """Receipts in these rooms changed in (from_id, to_id] (from_id 0: every stored one)."""
        rooms = list(dict.fromkeys(room_ids))
        if not rooms or to_id <= from_id:
            return []

        def txn_fn(txn: Txn):
            out = []
            for chunk in _chunks(rooms):
                txn.execute(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, data, stream_id FROM receipts"
                    f" WHERE room_id IN ({','.join('?' * len(chunk))}) AND stream_id > ? AND stream_id <= ?",
                    [*chunk, from_id, to_id])
                out.extend(txn.fetchall())
            return out
        rows = await self.db.run("get_receipts_for_rooms", txn_fn, readonly=True)
        return [ReceiptRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), int(r[6]))
                for r in sorted(rows, key=lambda r: r[6])]

    async def get_receipts_since(self, from_id: int, to_id: int) -> list[ReceiptRow]:
        """Every receipt changed in (from_id, to_id] (federation sender, tests)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id, receipt_type, user_id, thread_id, event_id, data, stream_id FROM receipts"
                        " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id", (from_id, to_id))
            return txn.fetchall()
        rows = await self.db.run("get_receipts_since", txn_fn, readonly=True)
        return [ReceiptRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), int(r[6])) for r in rows]

    async def get_user_receipt(self, room_id: str, user_id: str, receipt_type: str,
                               thread_id: str = UNTHREADED) -> tuple[str, int | None] | None:
        """(event_id, event stream ordering) of a user's receipt, or None."""
        def txn_fn(txn: Txn):
            return txn.execute(
                "SELECT event_id, event_stream_ordering FROM receipts WHERE room_id = ? AND receipt_type = ?"
                " AND user_id = ? AND thread_id = ?", (room_id, receipt_type, user_id, thread_id)).fetchone()
        row = await self.db.run("get_user_receipt", txn_fn, readonly=True)
        return (row[0], row[1]) if row else None

    # --- push actions and counts ------------------------------------------------------------------
    @staticmethod
    def stage_push_actions_txn(txn: Txn, room_id: str, event_id: str, stream_ordering: int, thread_id: str,
                               found: Sequence[tuple[str, list, bool]], now_ms: int) -> None:
        """Record an event's notified users ``(user_id, actions, highlight)`` as one staging row
        (inside the events persist transaction); :meth:`fold_staged_txn` spreads it later."""
        if not found:
            return
        actions: list = []
        index: dict[str, int] = {}
        users = []
        for user_id, acts, hl in found:
            key = _dumps(acts)
            i = index.get(key)
            if i is None:
                i = index[key] = len(actions)
                actions.append(acts)
            users.append([user_id, i, 1 if hl else 0])
        txn.execute(
            "INSERT INTO event_push_staging (stream_ordering, room_id, event_id, thread_id, received_ts, recipients)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (stream_ordering, room_id, event_id, thread_id, now_ms, _dumps({"a": actions, "u": users})))

    @staticmethod
    def _staged_txn(txn: Txn, user_id: str | None = None) -> list[tuple[list[PushActionRow], int]]:
        """Staged rows, oldest first, as ``(rows, received_ts)`` per event; with ``user_id`` only
        that user's rows (events not naming them are left out)."""
        sql = "SELECT stream_ordering, room_id, event_id, thread_id, received_ts, recipients FROM event_push_staging"
        args: list = []
        if user_id is not None and '"' not in user_id and "\\" not in user_id:
            pattern = '"' + user_id.replace("!", "!!").replace("%", "!%").replace("_", "!_") + '"'
            sql += " WHERE recipients LIKE ? ESCAPE '!'"
            args.append("%" + pattern + "%")
        txn.execute(sql + " ORDER BY stream_ordering", args)
        out = []
        for so, room_id, event_id, thread_id, received_ts, recipients in txn.fetchall():
            packed = json.loads(recipients)
            acts = packed["a"]
            rows = [PushActionRow(u, room_id, int(so), event_id, thread_id, bool(hl), acts[i])
                    for u, i, hl in packed["u"] if user_id is None or u == user_id]
            if rows:
                out.append((rows, int(received_ts)))
        return out

    @staticmethod
    def add_staged_counts_txn(txn: Txn, user_id: str, counts: dict[str, dict[str, tuple[int, int]]]) -> None:
        """Add the user's staged (not yet folded, hence unread) notifications to ``counts``
        ``{room_id: {thread_id: (notifications, highlights)}}`` read from notification_counts."""
        for rows, _ in ReceiptsStore._staged_txn(txn, user_id):
            for r in rows:
                threads = counts.setdefault(r.room_id, {})
                n, h = threads.get(r.thread_id, (0, 0))
                threads[r.thread_id] = (n + 1, h + (1 if r.highlight else 0))

    def fold_staged_txn(self, txn: Txn) -> int:
        """Move every staged row into event_push_actions, notification_history (the list behind
        GET /notifications) and notification_counts (counts summed per user, room and thread),
        run :attr:`on_fold` hooks (pusher wake-up) per event, and delete the staged rows.
        Returns how many events were folded."""
        txn.batch_writes()
        txn.execute("SELECT stream_ordering, room_id, event_id, thread_id, received_ts, recipients"
                    " FROM event_push_staging ORDER BY stream_ordering")
        staged = txn.fetchall()
        if not staged:
            return 0
        actions_rows = []
        history_rows = []
        sums: dict[tuple[str, str, str], list[int]] = {}
        hooks = list(self.on_fold)
        for so, room_id, event_id, thread_id, received_ts, recipients in staged:
            packed = json.loads(recipients)
            dumped = [_dumps(a) for a in packed["a"]]
            for u, i, hl in packed["u"]:
                actions_rows.append((u, room_id, so, event_id, thread_id, bool(hl), dumped[i], received_ts))
                history_rows.append((u, room_id, so, event_id, bool(hl), dumped[i], received_ts))
                c = sums.get((u, room_id, thread_id))
                if c is None:
                    c = sums[(u, room_id, thread_id)] = [0, 0]
                c[0] += 1
                c[1] += 1 if hl else 0
            if hooks:
                acts = packed["a"]
                rows = [PushActionRow(u, room_id, int(so), event_id, thread_id, bool(hl), acts[i])
                        for u, i, hl in packed["u"]]
                for hook in hooks:
                    hook(txn, rows, int(received_ts))
        txn.insert_rows(
            "INSERT INTO event_push_actions (user_id, room_id, stream_ordering, event_id, thread_id, highlight,"
            " actions, received_ts)", actions_rows, " ON CONFLICT DO NOTHING")
        txn.insert_rows(
            "INSERT INTO notification_history (user_id, room_id, stream_ordering, event_id, highlight, actions,"
            " received_ts)", history_rows, " ON CONFLICT DO NOTHING")
        txn.insert_rows(
            "INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count, highlight_count)",
            [(u, room, t, n, h) for (u, room, t), (n, h) in sums.items()],
            " ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
            " notif_count = notification_counts.notif_count + excluded.notif_count,"
            " highlight_count = notification_counts.highlight_count + excluded.highlight_count")
        txn.execute("DELETE FROM event_push_staging WHERE stream_ordering <= ?", (staged[-1][0],))
        return len(staged)

    async def fold_staged(self) -> None:
        """Fold the staged push actions now (before reading event_push_actions or
        notification_history directly); no transaction when nothing was staged since the last fold."""
        if not self.maybe_staged:
            return
        self.maybe_staged = False
        try:
            await self.db.run("fold_push_actions", self.fold_staged_txn)
        except Exception:
            self.maybe_staged = True
            raise

    @staticmethod
    def _clear_push_actions_txn(txn: Txn, user_id: str, room_id: str, up_to: int, thread_id: str | None) -> None:
        thread_sql, thread_args = ("", []) if thread_id is None else (" AND thread_id = ?", [thread_id])
        txn.execute("DELETE FROM event_push_actions WHERE user_id = ? AND room_id = ? AND stream_ordering <= ?"
                    + thread_sql, [user_id, room_id, up_to, *thread_args])
        txn.execute("DELETE FROM notification_counts WHERE user_id = ? AND room_id = ?" + thread_sql,
                    [user_id, room_id, *thread_args])
        txn.execute(
            "INSERT INTO notification_counts (user_id, room_id, thread_id, notif_count, highlight_count)"
            " SELECT user_id, room_id, thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)"
            " FROM event_push_actions WHERE user_id = ? AND room_id = ?" + thread_sql
            + " GROUP BY user_id, room_id, thread_id", [user_id, room_id, *thread_args])

    async def get_notification_counts(self, user_id: str) -> dict[str, dict[str, tuple[int, int]]]:
        """``{room_id: {thread_id: (notification_count, highlight_count)}}`` of a user's unread
        notifications (rooms and threads without any are absent)."""
        def txn_fn(txn: Txn):
            txn.execute("SELECT room_id, thread_id, notif_count, highlight_count FROM notification_counts"
                        " WHERE user_id = ? AND notif_count > 0", (user_id,))
            out: dict[str, dict[str, tuple[int, int]]] = {}
            for room_id, thread_id, n, h in txn.fetchall():
                out.setdefault(room_id, {})[thread_id] = (int(n), int(h or 0))
            self.add_staged_counts_txn(txn, user_id, out)
            return out
        return await self.db.run("get_notification_counts", txn_fn, readonly=True)

    async def get_push_actions(self, user_id: str, from_stream: int | None = None, limit: int = 100,
                               only_highlight: bool = False) -> list[PushActionRow]:
        """Unread notifying events of a user, newest first (for GET /notifications)."""
        await self.fold_staged()
        def txn_fn(txn: Txn):
            sql = ("SELECT user_id, room_id, stream_ordering, event_id, thread_id, highlight, actions"
                   " FROM event_push_actions WHERE user_id = ?")
            args: list = [user_id]
            if from_stream is not None:
                sql += " AND stream_ordering < ?"
                args.append(from_stream)
            if only_highlight:
                sql += " AND highlight = ?"
                args.append(True)
            txn.execute(sql + " ORDER BY stream_ordering DESC LIMIT ?", [*args, limit])
            return txn.fetchall()
        rows = await self.db.run("get_push_actions", txn_fn, readonly=True)
        return [PushActionRow(r[0], r[1], int(r[2]), r[3], r[4], bool(r[5]), json.loads(r[6])) for r in rows]
